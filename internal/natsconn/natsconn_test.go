package natsconn_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/natsconn"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
)

// names are flag-like names, so a test can check that an error names its
// setting.
var names = natsconn.Names{
	CredsFile: "--creds", NkeySeedFile: "--nkey", User: "--user", Password: "--password-file",
	CAFile: "--tls-ca", CertFile: "--tls-cert", KeyFile: "--tls-key",
}

const password = "Pw-UNIQUE-never-shown-0451"

// files are the test's credential files, each valid unless its name says
// otherwise.
type files struct {
	creds, seed, accountSeed, garbage, ca, cert, key, otherKey string
	seedValue                                                  string
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; make it exact.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func userSeed(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

func newFiles(t *testing.T) files {
	t.Helper()
	dir := t.TempDir()
	f := files{seedValue: userSeed(t)}
	akp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	aseed, _ := akp.Seed()
	// ParseDecoratedJWT only cuts the token out of its decoration; a
	// well-formed fake is enough here.
	creds := fmt.Sprintf("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"+
		"-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n",
		"eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln", userSeed(t))
	f.creds = writeFile(t, dir, "user.creds", creds, 0o600)
	f.seed = writeFile(t, dir, "user.nk", f.seedValue+"\n", 0o600)
	f.accountSeed = writeFile(t, dir, "account.nk", string(aseed), 0o600)
	f.garbage = writeFile(t, dir, "garbage", "not a key\n", 0o600)
	ca := natstest.NewCA(t, "unit CA")
	f.ca = ca.CertFile
	f.cert, f.key = ca.Issue(t, "client", false)
	_, f.otherKey = ca.Issue(t, "other", false)
	return f
}

func TestOptions(t *testing.T) {
	f := newFiles(t)
	dir := t.TempDir()
	open := func(path string, mode os.FileMode) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, fmt.Sprintf("%s-%04o", filepath.Base(path), mode), string(b), mode)
	}
	pw := secret.New(password)
	tests := []struct {
		name     string
		settings natsconn.Settings
		wantErr  []string // each must appear in the error; nil: valid
		check    func(t *testing.T, o *nats.Options)
	}{
		{name: "nothing", check: func(t *testing.T, o *nats.Options) {
			if o.Secure || o.User != "" || o.Nkey != "" || o.UserJWT != nil {
				t.Errorf("options changed: %+v", o)
			}
		}},
		{name: "creds file", settings: natsconn.Settings{CredsFile: f.creds}, check: func(t *testing.T, o *nats.Options) {
			if o.UserJWT == nil || o.SignatureCB == nil {
				t.Error("no JWT callbacks")
			}
		}},
		{name: "nkey seed", settings: natsconn.Settings{NkeySeedFile: f.seed}, check: func(t *testing.T, o *nats.Options) {
			kp, _ := nkeys.FromSeed([]byte(f.seedValue))
			pub, _ := kp.PublicKey()
			if o.Nkey != pub || o.SignatureCB == nil {
				t.Errorf("nkey %q, want %q", o.Nkey, pub)
			}
		}},
		{name: "user and password", settings: natsconn.Settings{User: "worker", Password: pw}, check: func(t *testing.T, o *nats.Options) {
			if o.User != "worker" || o.Password != password || o.Secure {
				t.Errorf("user %q, secure %v", o.User, o.Secure)
			}
		}},
		{name: "CA file", settings: natsconn.Settings{TLS: natsconn.TLS{CAFile: f.ca}}, check: func(t *testing.T, o *nats.Options) {
			if !o.Secure || o.TLSConfig == nil || o.TLSConfig.MinVersion != tls.VersionTLS12 || o.RootCAsCB == nil {
				t.Errorf("secure %v, TLS config %+v", o.Secure, o.TLSConfig)
			}
		}},
		{name: "client certificate", settings: natsconn.Settings{User: "u", Password: pw, TLS: natsconn.TLS{CAFile: f.ca, CertFile: f.cert, KeyFile: f.key}},
			check: func(t *testing.T, o *nats.Options) {
				if !o.Secure || o.TLSCertCB == nil || o.RootCAsCB == nil || o.User != "u" {
					t.Errorf("secure %v, cert callback %v", o.Secure, o.TLSCertCB != nil)
				}
			}},
		{name: "creds and nkey", settings: natsconn.Settings{CredsFile: f.creds, NkeySeedFile: f.seed}, wantErr: []string{"--creds, --nkey: give one way"}},
		{name: "nkey and user", settings: natsconn.Settings{NkeySeedFile: f.seed, User: "u", Password: pw}, wantErr: []string{"--nkey, --user and --password-file: give one way"}},
		{name: "user without password", settings: natsconn.Settings{User: "u"}, wantErr: []string{"--password-file: must be given with --user"}},
		{name: "password without user", settings: natsconn.Settings{Password: pw}, wantErr: []string{"--user: must be given with --password-file"}},
		{name: "cert without key", settings: natsconn.Settings{TLS: natsconn.TLS{CertFile: f.cert}}, wantErr: []string{"--tls-key: must be given with --tls-cert"}},
		{name: "key without cert", settings: natsconn.Settings{TLS: natsconn.TLS{KeyFile: f.key}}, wantErr: []string{"--tls-cert: must be given with --tls-key"}},
		{name: "key of another cert", settings: natsconn.Settings{TLS: natsconn.TLS{CertFile: f.cert, KeyFile: f.otherKey}}, wantErr: []string{"--tls-cert and --tls-key: tls: private key does not match"}},
		{name: "missing creds", settings: natsconn.Settings{CredsFile: filepath.Join(dir, "none.creds")}, wantErr: []string{"--creds: ", "no such file"}},
		{name: "creds open to others", settings: natsconn.Settings{CredsFile: open(f.creds, 0o644)}, wantErr: []string{"--creds: ", "mode 0644", "chmod 600"}},
		{name: "creds without JWT", settings: natsconn.Settings{CredsFile: f.seed}, wantErr: []string{"--creds: ", "no user JWT"}},
		{name: "missing seed", settings: natsconn.Settings{NkeySeedFile: filepath.Join(dir, "none.nk")}, wantErr: []string{"--nkey: ", "no such file"}},
		{name: "seed readable by group", settings: natsconn.Settings{NkeySeedFile: open(f.seed, 0o640)}, wantErr: []string{"--nkey: ", "mode 0640", "chmod 600"}},
		{name: "seed readable by others", settings: natsconn.Settings{NkeySeedFile: open(f.seed, 0o604)}, wantErr: []string{"--nkey: ", "chmod 600"}},
		{name: "seed is a directory", settings: natsconn.Settings{NkeySeedFile: dir}, wantErr: []string{"--nkey: ", "not a regular file"}},
		{name: "seed is garbage", settings: natsconn.Settings{NkeySeedFile: f.garbage}, wantErr: []string{"--nkey: ", "no nkey seed"}},
		{name: "seed of an account", settings: natsconn.Settings{NkeySeedFile: f.accountSeed}, wantErr: []string{"--nkey: ", "not a user nkey seed"}},
		{name: "missing CA", settings: natsconn.Settings{TLS: natsconn.TLS{CAFile: filepath.Join(dir, "none.pem")}}, wantErr: []string{"--tls-ca: ", "no such file"}},
		{name: "CA not PEM", settings: natsconn.Settings{TLS: natsconn.TLS{CAFile: f.garbage}}, wantErr: []string{"--tls-ca: ", "no PEM certificate"}},
		{name: "client key open to others", settings: natsconn.Settings{TLS: natsconn.TLS{CertFile: f.cert, KeyFile: open(f.key, 0o644)}}, wantErr: []string{"--tls-key: ", "chmod 600"}},
		{name: "every violation at once", settings: natsconn.Settings{NkeySeedFile: f.garbage, Password: pw, TLS: natsconn.TLS{CAFile: f.garbage, CertFile: f.cert}},
			wantErr: []string{"give one way", "--user: must be given", "--tls-key: must be given", "--nkey: ", "--tls-ca: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := tt.settings.Options(names)
			if verr := tt.settings.Validate(names); (verr == nil) != (err == nil) {
				t.Fatalf("Validate %v, Options %v", verr, err)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				for _, s := range []string{password, f.seedValue} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error shows a secret: %q", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o := nats.GetDefaultOptions()
			for _, opt := range opts {
				if err := opt(&o); err != nil {
					t.Fatalf("option: %v", err)
				}
			}
			tt.check(t, &o)
		})
	}
}

func TestGiven(t *testing.T) {
	s := natsconn.Settings{User: "u", Password: secret.New(password), TLS: natsconn.TLS{CAFile: "ca.pem"}}
	got := strings.Join(s.Given(names), " ")
	if got != "--user --password-file --tls-ca" {
		t.Fatalf("Given = %q", got)
	}
	if s.IsZero() || !(natsconn.Settings{}).IsZero() {
		t.Fatal("IsZero wrong")
	}
}

func TestURLHasUserInfo(t *testing.T) {
	tests := []struct {
		urls string
		want bool
	}{
		{"", false},
		{"nats://127.0.0.1:4222", false},
		{"tls://a:4222,tls://b:4222", false},
		{"nats://u:p@127.0.0.1:4222", true},
		{"nats://token@127.0.0.1:4222", true},
		{"tls://a:4222, tls://u:p@b:4222", true},
		{"127.0.0.1:4222", false},
		{"alice:pw@127.0.0.1:4222", true}, // nats.go reads it as nats://alice:pw@…
	}
	for _, tt := range tests {
		if got := natsconn.URLHasUserInfo(tt.urls); got != tt.want {
			t.Errorf("URLHasUserInfo(%q) = %v, want %v", tt.urls, got, tt.want)
		}
	}
}

// TestURLsNeverShowTheirPassword: a URL that does not parse is refused
// without its text, and a redacted list keeps no user info, whether the
// URL has a scheme or not.
func TestURLsNeverShowTheirPassword(t *testing.T) {
	const pw = "Pa^ss#w0rd"
	tests := []struct {
		urls       string
		wantErr    string // "" when it parses
		wantRedact string
	}{
		{"nats://127.0.0.1:4222", "", "nats://127.0.0.1:4222"},
		{"nats://alice:secret@host:4222", "", "nats://host:4222"},
		{"nats://s3cr3t-token@host:4222,nats://other:4222", "", "nats://host:4222,nats://other:4222"},
		{"alice:secret@host:4222", "", "nats://host:4222"},
		{"nats://worker:" + pw + "@127.0.0.1:4222", "the URL does not parse", "(unparsable URL)"},
		{"nats://a:4222, tls://worker:" + pw + "@b:4222", "URL 2 of the list does not parse", "nats://a:4222,(unparsable URL)"},
		{"worker:" + pw + "@127.0.0.1:4222", "the URL does not parse", "(unparsable URL)"},
		// Parses, but as host "worker", the rest a path or a fragment.
		{"nats://worker/" + "Pa/ss@127.0.0.1:4222", "the URL has an @ outside its user info", "nats://(hidden)@127.0.0.1:4222"},
		{"nats://worker:1234#Pa-ss@127.0.0.1:4222", "the URL has an @ outside its user info", "nats://(hidden)@127.0.0.1:4222"},
	}
	for _, tt := range tests {
		t.Run(tt.urls, func(t *testing.T) {
			err := natsconn.CheckURLs(tt.urls)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckURLs = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("CheckURLs = %v, want %q", err, tt.wantErr)
			case err != nil && (strings.Contains(err.Error(), "Pa") || strings.Contains(err.Error(), "worker")):
				t.Fatalf("CheckURLs shows the URL: %v", err)
			}
			got := natsconn.RedactURLs(tt.urls)
			if got != tt.wantRedact {
				t.Fatalf("RedactURLs = %q, want %q", got, tt.wantRedact)
			}
			if strings.Contains(got, "Pa") || strings.Contains(got, "secret") || strings.Contains(got, "token") {
				t.Fatalf("RedactURLs shows a credential: %q", got)
			}
		})
	}
}

func TestReadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want, wantErr string
	}{
		{"one line", password + "\n", 0o600, password, ""},
		{"no newline", password, 0o400, password, ""},
		{"CRLF and more lines", password + "\r\nsecond\n", 0o600, password, ""},
		{"empty first line", "\n" + password, 0o600, "", "the first line is empty"},
		{"open to group", password, 0o640, "", "chmod 600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "_"), tt.content, tt.mode)
			got, err := natsconn.ReadPasswordFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), password) {
					t.Fatalf("error %v, want %q without the password", err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Reveal() != tt.want {
				t.Fatalf("got %d bytes, err %v", got.Len(), err)
			}
		})
	}
	if _, err := natsconn.ReadPasswordFile(filepath.Join(dir, "none")); err == nil {
		t.Fatal("a missing file was read")
	}
}

func TestHintWords(t *testing.T) {
	userPw := natsconn.Settings{User: "u", Password: secret.New(password)}
	withCA := natsconn.Settings{TLS: natsconn.TLS{CAFile: "ca.pem"}}
	tests := []struct {
		name     string
		settings natsconn.Settings
		err      error
		want     string
	}{
		{"not recognized", userPw, errors.New("dial tcp: connection refused"), ""},
		{"wrong password", userPw, fmt.Errorf("x: %w", nats.ErrAuthorization), "--user and --password-file (an unknown user or a wrong password)"},
		{"no credentials", natsconn.Settings{}, nats.ErrAuthorization, "without credentials; give --creds, --nkey, or --user"},
		{"unknown CA, none given", natsconn.Settings{}, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, "give the CA that signed it with --tls-ca"},
		{"unknown CA, one given", withCA, fmt.Errorf("%w: %w", nats.ErrTLS, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), "not signed by the CA of --tls-ca"},
		{"host name", withCA, x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}, "not for the host"},
		{"client certificate wanted", withCA, errors.New("remote error: tls: certificate required"), "give --tls-cert and --tls-key"},
		{"TLS not offered", withCA, nats.ErrSecureConnWanted, "does not offer it"},
		{"closed after the handshake", withCA, fmt.Errorf("%w: connection closed by remote after TLS handshake: %w", nats.ErrTLS, errors.New("broken pipe")),
			"it probably wants a client certificate; give --tls-cert and --tls-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.settings.Hint(tt.err, names)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("Hint = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRefusals connects to a TLS server with users and checks that each
// refusal nats.go reports gets its hint.
func TestRefusals(t *testing.T) {
	ca := natstest.NewCA(t, "server CA")
	other := natstest.NewCA(t, "other CA")
	f := newFiles(t)
	kp, _ := nkeys.FromSeed([]byte(f.seedValue))
	pub, _ := kp.PublicKey()
	start := func(verify bool) *server.Server {
		return natstest.Run(t, natstest.Options{Edit: func(o *server.Options) {
			o.JetStream = false
			o.TLSConfig = ca.ServerTLS(t)
			o.TLS = true
			if verify {
				o.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
				o.TLSConfig.ClientCAs = ca.Pool
				o.TLSVerify = true
			}
			o.Users = []*server.User{{Username: "app", Password: password}}
			o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
		}})
	}
	plain, verifying := start(false), start(true)
	clientCert, clientKey := ca.Issue(t, "cli", false)
	otherCert, otherKey := other.Issue(t, "intruder", false)
	tlsURL := func(s *server.Server) string { return strings.Replace(s.ClientURL(), "nats://", "tls://", 1) }

	pw := secret.New(password)
	tests := []struct {
		name     string
		server   *server.Server
		settings natsconn.Settings
		wantHint string // "": connects
	}{
		{"user and password", plain, natsconn.Settings{User: "app", Password: pw, TLS: natsconn.TLS{CAFile: ca.CertFile}}, ""},
		{"nkey", plain, natsconn.Settings{NkeySeedFile: f.seed, TLS: natsconn.TLS{CAFile: ca.CertFile}}, ""},
		{"wrong password", plain, natsconn.Settings{User: "app", Password: secret.New("wrong-" + password), TLS: natsconn.TLS{CAFile: ca.CertFile}}, "an unknown user or a wrong password"},
		{"no credentials", plain, natsconn.Settings{TLS: natsconn.TLS{CAFile: ca.CertFile}}, "without credentials"},
		{"no CA", plain, natsconn.Settings{User: "app", Password: pw}, "not signed by a CA this machine trusts"},
		{"another CA", plain, natsconn.Settings{User: "app", Password: pw, TLS: natsconn.TLS{CAFile: other.CertFile}}, "not signed by the CA of --tls-ca"},
		{"client certificate", verifying, natsconn.Settings{User: "app", Password: pw, TLS: natsconn.TLS{CAFile: ca.CertFile, CertFile: clientCert, KeyFile: clientKey}}, ""},
		{"no client certificate", verifying, natsconn.Settings{User: "app", Password: pw, TLS: natsconn.TLS{CAFile: ca.CertFile}}, "wants a client certificate"},
		{"client certificate of another CA", verifying, natsconn.Settings{User: "app", Password: pw, TLS: natsconn.TLS{CAFile: ca.CertFile, CertFile: otherCert, KeyFile: otherKey}}, "refused the client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := tt.settings.Options(names)
			if err != nil {
				t.Fatal(err)
			}
			nc, err := nats.Connect(tlsURL(tt.server), append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())...)
			if err == nil {
				// A refused client certificate under TLS 1.3 shows only
				// on the first round trip.
				err = nc.Flush()
				t.Cleanup(nc.Close)
			}
			if tt.wantHint == "" {
				if err != nil {
					t.Fatalf("connect: %v (hint %q)", err, tt.settings.Hint(err, names))
				}
				if !nc.TLSRequired() {
					t.Fatal("connected without TLS")
				}
				return
			}
			if err == nil {
				t.Fatal("connected")
			}
			hint := tt.settings.Hint(err, names)
			t.Logf("error %q, hint %q", err, hint)
			if !strings.Contains(hint, tt.wantHint) {
				t.Fatalf("error %q: hint %q, want %q", err, hint, tt.wantHint)
			}
			if strings.Contains(err.Error(), password) {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}
