// Package natsconn owns how the worker and the dbusers CLI authenticate to
// an outside NATS and secure the connection to it: the settings (a .creds
// file, an nkey seed file, or a user and password; a CA file and a client
// certificate for TLS), their validation, the nats.Options they amount to,
// and the plain words for a refused connection.
//
// Errors name each setting as its caller calls it (a config key such as
// nats.tls.ca_file, or a flag such as --tls-ca) and never show a password,
// a seed or a key.
package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/secret"
)

// Settings say how to authenticate to NATS and how to verify it. At most
// one way to authenticate may be set: CredsFile, NkeySeedFile, or User with
// Password. The zero value authenticates with nothing (or with what the URL
// holds) and uses TLS only when the URL asks for it (tls://) or the server
// requires it, verifying the server against the system's CAs.
type Settings struct {
	// CredsFile is a .creds file: a user JWT and its nkey seed (operator
	// mode, decentralized auth).
	CredsFile string
	// NkeySeedFile holds a user nkey seed (SU…); the public key is what the
	// server's authorization names.
	NkeySeedFile string
	// User and Password authenticate with a user of the server's
	// authorization block.
	User     string
	Password secret.Secret
	TLS      TLS
}

// TLS is how the connection is encrypted and the server verified. Setting
// any field makes TLS required, whatever the URL's scheme.
type TLS struct {
	// CAFile is a PEM file of the CA certificates that the server's
	// certificate must chain to, instead of the system's.
	CAFile string
	// CertFile and KeyFile are a client certificate and its private key
	// (PEM), for a server that verifies clients (tls { verify: true }).
	// Both or neither.
	CertFile string
	KeyFile  string
}

// Names are what the caller calls each setting, for error messages: config
// keys for the worker, flags for the CLI.
type Names struct {
	CredsFile    string
	NkeySeedFile string
	User         string
	Password     string
	CAFile       string
	CertFile     string
	KeyFile      string
}

// IsZero reports whether no setting is given.
func (s Settings) IsZero() bool {
	return s.CredsFile == "" && s.NkeySeedFile == "" && s.User == "" && s.Password.IsZero() && s.TLS == TLS{}
}

// Authenticates reports whether a way to authenticate is set.
func (s Settings) Authenticates() bool {
	return s.CredsFile != "" || s.NkeySeedFile != "" || s.User != "" || !s.Password.IsZero()
}

// Given lists the names of the settings that are given, in field order,
// for a caller that refuses them where they do not apply (the worker's
// embedded server).
func (s Settings) Given(n Names) []string {
	var out []string
	for _, f := range []struct {
		given bool
		name  string
	}{
		{s.CredsFile != "", n.CredsFile},
		{s.NkeySeedFile != "", n.NkeySeedFile},
		{s.User != "", n.User},
		{!s.Password.IsZero(), n.Password},
		{s.TLS.CAFile != "", n.CAFile},
		{s.TLS.CertFile != "", n.CertFile},
		{s.TLS.KeyFile != "", n.KeyFile},
	} {
		if f.given {
			out = append(out, f.name)
		}
	}
	return out
}

// Validate checks every rule and returns all violations joined, each
// naming its setting: at most one way to authenticate; a user and a
// password together; a certificate and a key together; every file present,
// readable and of the right kind; and files holding a private key (the
// .creds file, the nkey seed, the client key) open to neither group nor
// others, since whoever reads them can connect as this user.
func (s Settings) Validate(n Names) error {
	var errs []error
	add := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
	}

	var methods []string
	if s.CredsFile != "" {
		methods = append(methods, n.CredsFile)
	}
	if s.NkeySeedFile != "" {
		methods = append(methods, n.NkeySeedFile)
	}
	if s.User != "" || !s.Password.IsZero() {
		methods = append(methods, n.User+" and "+n.Password)
	}
	if len(methods) > 1 {
		errs = append(errs, fmt.Errorf("%s: give one way to authenticate to NATS, not %d", strings.Join(methods, ", "), len(methods)))
	}
	switch {
	case s.User != "" && s.Password.IsZero():
		add(n.Password, "must be given with %s", n.User)
	case s.User == "" && !s.Password.IsZero():
		add(n.User, "must be given with %s", n.Password)
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		if s.TLS.CertFile == "" {
			add(n.CertFile, "must be given with %s", n.KeyFile)
		} else {
			add(n.KeyFile, "must be given with %s", n.CertFile)
		}
	}

	if s.CredsFile != "" {
		if err := checkCreds(s.CredsFile); err != nil {
			add(n.CredsFile, "%w", err)
		}
	}
	if s.NkeySeedFile != "" {
		if err := checkNkeySeed(s.NkeySeedFile); err != nil {
			add(n.NkeySeedFile, "%w", err)
		}
	}
	if s.TLS.CAFile != "" {
		if _, err := loadCAs(s.TLS.CAFile); err != nil {
			add(n.CAFile, "%w", err)
		}
	}
	if s.TLS.CertFile != "" && s.TLS.KeyFile != "" {
		if err := secret.CheckFile(s.TLS.KeyFile); err != nil {
			add(n.KeyFile, "%w", err)
		} else if _, err := tls.LoadX509KeyPair(s.TLS.CertFile, s.TLS.KeyFile); err != nil {
			// crypto/tls's errors name the problem (no PEM block, key does
			// not match) and never quote the key.
			add(n.CertFile+" and "+n.KeyFile, "%w", err)
		}
	}
	return errors.Join(errs...)
}

// Options validates the settings and returns the nats.Options that apply
// them. The files are read again at every (re)connection, so a renewed
// certificate or CA is picked up without a restart.
func (s Settings) Options(n Names) ([]nats.Option, error) {
	if err := s.Validate(n); err != nil {
		return nil, err
	}
	var opts []nats.Option
	switch {
	case s.CredsFile != "":
		opts = append(opts, nats.UserCredentials(s.CredsFile))
	case s.NkeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(s.NkeySeedFile)
		if err != nil {
			// nats.go and nkeys errors are fixed texts or file errors;
			// neither quotes the seed.
			return nil, fmt.Errorf("%s: %w", n.NkeySeedFile, err)
		}
		opts = append(opts, opt)
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password.Reveal()))
	}
	if s.TLS != (TLS{}) {
		// Secure first: RootCAs and ClientCert then fill this config
		// instead of making their own.
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))
		if s.TLS.CAFile != "" {
			opts = append(opts, nats.RootCAs(s.TLS.CAFile))
		}
		if s.TLS.CertFile != "" {
			opts = append(opts, nats.ClientCert(s.TLS.CertFile, s.TLS.KeyFile))
		}
	}
	return opts, nil
}

// parseURL parses one URL of a NATS server list as nats.go does: one
// without a scheme is a nats:// URL (user:pw@host:4222 logs in as user).
func parseURL(raw string) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	if !strings.Contains(raw, "://") {
		raw = "nats://" + raw
	}
	return url.Parse(raw)
}

// CheckURLs reports whether every URL of a comma-separated NATS server list
// parses, before nats.Connect sees it: nats.go's parse error quotes the
// whole URL, and with it any password the URL holds. This error names the
// URL by its place in the list only.
//
// A URL whose user info holds an unencoded / ? or # parses, but as a host
// with the rest in its path, query or fragment: the password would be
// shown wherever the URL is, and never sent. It is refused too.
func CheckURLs(urls string) error {
	list := strings.Split(urls, ",")
	for i, raw := range list {
		which := "the URL"
		if len(list) > 1 {
			which = fmt.Sprintf("URL %d of the list", i+1)
		}
		u, err := parseURL(raw)
		switch {
		case err != nil:
			return fmt.Errorf("%s does not parse (not shown: it may hold a password); percent-encode special characters (space # / ? %% ^) in its user and password", which)
		case atOutsideUserInfo(u, raw):
			return fmt.Errorf("%s has an @ outside its user info (not shown: it may hold a password); percent-encode / ? and # in its user and password", which)
		}
	}
	return nil
}

// atOutsideUserInfo reports whether raw, parsed as u, has an @ that did
// not end up in its user info: a user or password with an unencoded / ? or
// #, now in the path, query or fragment.
func atOutsideUserInfo(u *url.URL, raw string) bool {
	return u.User == nil && strings.Contains(raw, "@")
}

// URLHasUserInfo reports whether any URL of a comma-separated NATS server
// list carries a user, password or token (nats://user:pw@host): a caller
// refuses it together with Settings that authenticate, since the URL's
// would silently win.
func URLHasUserInfo(urls string) bool {
	for raw := range strings.SplitSeq(urls, ",") {
		u, err := parseURL(raw)
		if err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// RedactURLs returns a comma-separated NATS server list without the user
// info (a user, password or token) of any of its URLs, for messages. A URL
// with an @ that is not in its user info (see CheckURLs) keeps only its
// scheme and what follows its last @.
func RedactURLs(urls string) string {
	list := strings.Split(urls, ",")
	for i, raw := range list {
		u, err := parseURL(raw)
		switch {
		case err != nil:
			list[i] = "(unparsable URL)"
		case atOutsideUserInfo(u, raw):
			list[i] = u.Scheme + "://(hidden)@" + raw[strings.LastIndex(raw, "@")+1:]
		default:
			u.User = nil
			list[i] = u.String()
		}
	}
	return strings.Join(list, ",")
}

// ReadPasswordFile reads a password from the first line of a file that
// neither group nor others can access. The error never shows the content.
func ReadPasswordFile(path string) (secret.Secret, error) {
	if err := secret.CheckFile(path); err != nil {
		return secret.Secret{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return secret.Secret{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	clear(b)
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return secret.Secret{}, fmt.Errorf("%s: the first line is empty", path)
	}
	return secret.New(line), nil
}

// Hint words why a connection with these settings was refused, naming the
// setting to look at; "" when err is not a refusal it recognizes.
func (s Settings) Hint(err error, n Names) string {
	if err == nil {
		return ""
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return "the server refused " + s.credentials(n)
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAccountAuthExpired):
		return "the server says the credentials of " + n.CredsFile + " expired; renew them"
	case errors.Is(err, nats.ErrAuthRevoked):
		return "the server says the credentials of " + n.CredsFile + " were revoked"
	case errors.As(err, &unknownCA):
		if s.TLS.CAFile == "" {
			return "the server's TLS certificate is not signed by a CA this machine trusts; give the CA that signed it with " + n.CAFile
		}
		return "the server's TLS certificate is not signed by the CA of " + n.CAFile
	case errors.As(err, &hostname):
		return "the server's TLS certificate is not for the host in the URL; connect with a name or IP the certificate holds"
	case errors.As(err, &invalid):
		return "the server's TLS certificate is not valid (expired, not yet valid, or not for server use)"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS was asked for (a tls:// URL or a TLS setting) but the server does not offer it"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"),
		strings.Contains(msg, "unknown certificate authority"), strings.Contains(msg, "expired certificate"):
		if s.TLS.CertFile == "" {
			return "the server wants a client certificate; give " + n.CertFile + " and " + n.KeyFile
		}
		return "the server refused the client certificate of " + n.CertFile
	case strings.Contains(msg, "closed by remote after TLS handshake"):
		// Under TLS 1.3 the server checks the client certificate after
		// the client's side of the handshake is done: its alert may be
		// lost and only the closed connection seen.
		if s.TLS.CertFile == "" {
			return "the server closed the connection right after the TLS handshake: it probably wants a client certificate; give " + n.CertFile + " and " + n.KeyFile
		}
		return "the server closed the connection right after the TLS handshake: it probably refused the client certificate of " + n.CertFile
	case errors.Is(err, nats.ErrTLS):
		return "the TLS handshake failed"
	}
	return ""
}

// credentials words what was offered to the server, for a refusal.
func (s Settings) credentials(n Names) string {
	switch {
	case s.CredsFile != "":
		return "the credentials of " + n.CredsFile + " (a user or account it does not know)"
	case s.NkeySeedFile != "":
		return "the nkey of " + n.NkeySeedFile + " (a public key its authorization does not list)"
	case s.User != "":
		return "the user and password of " + n.User + " and " + n.Password + " (an unknown user or a wrong password)"
	}
	return fmt.Sprintf("a connection without credentials; give %s, %s, or %s and %s", n.CredsFile, n.NkeySeedFile, n.User, n.Password)
}

// withPrivate reads a file that must be private (secret.CheckFile) and
// hands its bytes to check, wiping them after.
func withPrivate(path string, check func(b []byte) error) error {
	if err := secret.CheckFile(path); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer clear(b)
	return check(b)
}

// checkCreds checks that a .creds file is private and holds a user JWT and
// a user nkey seed.
func checkCreds(path string) error {
	return withPrivate(path, func(b []byte) error {
		// ParseDecoratedJWT takes an undecorated file for a bare JWT: check
		// the token's shape (header.payload.signature) too.
		if jwt, err := nkeys.ParseDecoratedJWT(b); err != nil || strings.Count(jwt, ".") != 2 || strings.ContainsAny(jwt, " \n") {
			return fmt.Errorf("%s: no user JWT in it (want the file nsc writes: a JWT and a seed, each between ----- lines)", path)
		}
		return checkUserSeed(path, b)
	})
}

// checkNkeySeed checks that a seed file is private and holds a user nkey
// seed.
func checkNkeySeed(path string) error {
	return withPrivate(path, func(b []byte) error { return checkUserSeed(path, b) })
}

// checkUserSeed checks that b holds a user nkey seed (SU…), plain or
// decorated as in a .creds file.
func checkUserSeed(path string, b []byte) error {
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		// nkeys errors are fixed texts; the seed is never quoted.
		return fmt.Errorf("%s: no nkey seed in it: %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("%s: the seed is not a user nkey seed (SU…)", path)
	}
	return nil
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}
