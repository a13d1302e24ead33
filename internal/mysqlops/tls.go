package mysqlops

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

// explainTLS adds what to check to an error of the TLS handshake with the
// server; other errors pass unchanged. The driver's TLS errors never carry
// the DSN or the password.
func explainTLS(err error) error {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &hostname): // inside a CertificateVerificationError
		return fmt.Errorf("TLS to MySQL: the server's certificate is for another name (check the target's tls.server_name): %w", err)
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &invalid):
		return fmt.Errorf("TLS to MySQL: the server's certificate is not trusted (check the target's tls.ca_file): %w", err)
	case errors.Is(err, mysql.ErrNoTLS):
		return fmt.Errorf("TLS to MySQL: the server does not offer TLS (check its ssl settings): %w", err)
	}
	return err
}
