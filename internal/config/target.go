package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/secret"
)

// TargetTLS configures TLS from the worker to a target's MySQL server.
// Setting any key turns TLS on and makes it verified.
type TargetTLS struct {
	// CAFile is a PEM file of the CAs the server's certificate must chain
	// to; empty: the system's CAs.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the server's certificate must carry; empty:
	// the host of the DSN's address.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are a client certificate and its key (PEM), for
	// an account that REQUIREs X509; both or neither. The key file must
	// not be open to group or others.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether any key is set.
func (t TargetTLS) Enabled() bool { return t != TargetTLS{} }

// ClientConfig reads the files and returns the TLS configuration of the
// target's connections: the CAs of CAFile (the system's when empty), TLS
// 1.2 or later, ServerName, and the client certificate when given. Its
// errors name the key at fault (tls.ca_file, …).
func (t TargetTLS) ClientConfig() (*tls.Config, error) {
	cfg, key, err := t.load()
	if err != nil {
		return nil, fmt.Errorf("tls.%s: %w", key, err)
	}
	return cfg, nil
}

// load is ClientConfig, with the key at fault apart.
func (t TargetTLS) load() (*tls.Config, string, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, "ca_file", err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "ca_file", fmt.Errorf("%s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return nil, "key_file", errors.New("must be given with tls.cert_file")
	case t.CertFile == "" && t.KeyFile != "":
		return nil, "cert_file", errors.New("must be given with tls.key_file")
	case t.CertFile != "":
		if err := secret.CheckFile(t.KeyFile); err != nil {
			return nil, "key_file", err
		}
		// LoadX509KeyPair's errors name the files, never their content.
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, "cert_file", fmt.Errorf("with tls.key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, "", nil
}

// AdminPassword reads PasswordFile: its content without trailing newlines.
// It is the zero Secret when PasswordFile is empty. A file open to group or
// others is refused. Errors name the file, never its content.
func (t Target) AdminPassword() (secret.Secret, error) {
	if t.PasswordFile == "" {
		return secret.Secret{}, nil
	}
	if err := secret.CheckFile(t.PasswordFile); err != nil {
		return secret.Secret{}, err
	}
	b, err := os.ReadFile(t.PasswordFile)
	if err != nil {
		return secret.Secret{}, err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return secret.Secret{}, fmt.Errorf("%s is empty", t.PasswordFile)
	}
	return secret.New(pw), nil
}

// validateAdmin checks how the worker logs in to the target: the DSN, the
// password file and the TLS block, each error naming its key under path.
// No error quotes the DSN or a password.
func (t Target) validateAdmin(path string) []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{path, key}, args...)...))
	}
	if err := checkDSN(t.DSN); err != nil {
		add("dsn", "%s", err)
		return errs
	}
	dsn, _ := mysql.ParseDSN(t.DSN.Reveal()) // checked above
	if t.PasswordFile != "" {
		if dsn.Passwd != "" {
			add("password_file", "the DSN (%s.dsn) carries a password too: give one or the other", path)
		}
		if _, err := t.AdminPassword(); err != nil {
			add("password_file", "%s", err)
		}
	}
	if t.TLS.Enabled() {
		if dsn.TLSConfig != "" && dsn.TLSConfig != "true" {
			add("dsn", "its tls parameter conflicts with %s.tls: remove tls= from the DSN (the tls block turns verified TLS on)", path)
		}
		if _, key, err := t.TLS.load(); err != nil {
			add("tls."+key, "%s", err)
		}
	}
	return errs
}
