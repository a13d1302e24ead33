package config

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
)

// writeFile writes content to a new file of the test and returns its path.
func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestParseTargetAdminKeys decodes password_file, the tls block and
// allow_excess_privileges, with ${NAME} in the DSN and a file path.
func TestParseTargetAdminKeys(t *testing.T) {
	yml := `
targets:
  - name: a
    dsn: "adm@tcp(db.internal:3306)/?timeout=3s"
    password_file: ${PW_FILE}
    tls:
      ca_file: /etc/dbusers/mysql-ca.pem
      server_name: db.internal
      cert_file: /etc/dbusers/client.pem
      key_file: /etc/dbusers/client-key.pem
    allow_excess_privileges: true
    database: a
  - name: b
    dsn: adm:${PW}@tcp(h:3306)/
    database: b
`
	c, err := Parse([]byte(yml), env(map[string]string{"PW_FILE": "/run/secrets/a", "PW": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Targets[0], c.Targets[1]
	want := TargetTLS{CAFile: "/etc/dbusers/mysql-ca.pem", ServerName: "db.internal",
		CertFile: "/etc/dbusers/client.pem", KeyFile: "/etc/dbusers/client-key.pem"}
	if a.TLS != want || !a.TLS.Enabled() {
		t.Errorf("tls = %+v, want %+v", a.TLS, want)
	}
	if a.PasswordFile != "/run/secrets/a" || !a.AllowExcessPrivileges {
		t.Errorf("password_file = %q, allow_excess_privileges = %t", a.PasswordFile, a.AllowExcessPrivileges)
	}
	if a.DSN.Reveal() != "adm@tcp(db.internal:3306)/?timeout=3s" || b.DSN.Reveal() != "adm:s3cret@tcp(h:3306)/" {
		t.Errorf("dsn = %q, %q", a.DSN.Reveal(), b.DSN.Reveal())
	}
	if b.TLS.Enabled() || b.AllowExcessPrivileges || b.PasswordFile != "" {
		t.Errorf("target b: %+v", b)
	}

	if _, err := Parse([]byte("targets:\n  - name: a\n    tls:\n      ca: x\n"), env(nil)); err == nil ||
		!strings.Contains(err.Error(), "targets[0].tls.ca") || !strings.Contains(err.Error(), "unknown key") {
		t.Errorf("unknown key under tls: %v", err)
	}
	if _, err := Parse([]byte("targets:\n  - name: a\n    dsn: {a: b}\n"), env(nil)); err == nil ||
		!strings.Contains(err.Error(), "expected a single value") {
		t.Errorf("dsn as a mapping: %v", err)
	}
}

// TestValidateTargetAdmin checks the rules of password_file and the tls
// block: each error names its key, and none shows a password.
func TestValidateTargetAdmin(t *testing.T) {
	const pw = "pw-from-file-Zq9x"
	pwFile := writeFile(t, "admin.password", pw+"\n", 0o600)
	emptyFile := writeFile(t, "empty.password", "\n", 0o600)
	ca := natstest.NewCA(t, "mysql-ca")
	certFile, keyFile := ca.Issue(t, "client", false)
	otherCert, _ := natstest.NewCA(t, "other").Issue(t, "client", false)
	notPEM := writeFile(t, "not.pem", "not a certificate", 0o644)
	openFile := writeFile(t, "open.password", pw, 0o644)
	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	openKey := writeFile(t, "open-key.pem", string(key), 0o644)

	tests := []struct {
		name string
		edit func(*Target)
		want string // "" for valid; else a substring of the error
	}{
		{"password file", func(tg *Target) { tg.PasswordFile = pwFile }, ""},
		{"password file and DSN password", func(tg *Target) {
			tg.PasswordFile = pwFile
			tg.DSN = secret.New("adm:dsn-password-Kx7@tcp(h:3306)/")
		}, "targets[0].password_file: the DSN (targets[0].dsn) carries a password too"},
		{"missing password file", func(tg *Target) { tg.PasswordFile = pwFile + ".gone" }, "targets[0].password_file: stat "},
		{"empty password file", func(tg *Target) { tg.PasswordFile = emptyFile }, "targets[0].password_file: " + emptyFile + " is empty"},
		{"password file open to others", func(tg *Target) { tg.PasswordFile = openFile }, "targets[0].password_file: " + openFile + " has mode 0644"},
		{"key file open to others", func(tg *Target) { tg.TLS = TargetTLS{CertFile: certFile, KeyFile: openKey} }, "targets[0].tls.key_file: " + openKey + " has mode 0644"},
		{"tls with ca", func(tg *Target) { tg.TLS = TargetTLS{CAFile: ca.CertFile} }, ""},
		{"tls with ca and client certificate", func(tg *Target) {
			tg.TLS = TargetTLS{CAFile: ca.CertFile, ServerName: "db", CertFile: certFile, KeyFile: keyFile}
		}, ""},
		{"tls server name only (system CAs)", func(tg *Target) { tg.TLS = TargetTLS{ServerName: "db.example"} }, ""},
		{"tls and tls=true in the DSN", func(tg *Target) {
			tg.TLS = TargetTLS{CAFile: ca.CertFile}
			tg.DSN = secret.New("adm@tcp(h:3306)/?tls=true")
		}, ""},
		{"tls and tls=false in the DSN", func(tg *Target) {
			tg.TLS = TargetTLS{CAFile: ca.CertFile}
			tg.DSN = secret.New("adm:dsn-password-Kx7@tcp(h:3306)/?tls=false")
		}, "targets[0].dsn: its tls parameter conflicts with targets[0].tls"},
		{"tls and tls=skip-verify in the DSN", func(tg *Target) {
			tg.TLS = TargetTLS{CAFile: ca.CertFile}
			tg.DSN = secret.New("adm@tcp(h:3306)/?tls=skip-verify")
		}, "targets[0].dsn: its tls parameter conflicts"},
		{"tls=true in the DSN alone", func(tg *Target) { tg.DSN = secret.New("adm@tcp(h:3306)/?tls=true") }, ""},
		{"missing ca file", func(tg *Target) { tg.TLS = TargetTLS{CAFile: ca.CertFile + ".gone"} }, "targets[0].tls.ca_file: open "},
		{"ca file without PEM", func(tg *Target) { tg.TLS = TargetTLS{CAFile: notPEM} }, "targets[0].tls.ca_file: " + notPEM + " holds no PEM certificate"},
		{"cert without key", func(tg *Target) { tg.TLS = TargetTLS{CAFile: ca.CertFile, CertFile: certFile} }, "targets[0].tls.key_file: must be given with tls.cert_file"},
		{"key without cert", func(tg *Target) { tg.TLS = TargetTLS{KeyFile: keyFile} }, "targets[0].tls.cert_file: must be given with tls.key_file"},
		{"cert and key that do not match", func(tg *Target) { tg.TLS = TargetTLS{CertFile: otherCert, KeyFile: keyFile} }, "targets[0].tls.cert_file: with tls.key_file: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Targets = []Target{{Name: "a", DSN: secret.New("adm@tcp(h:3306)/"), Database: "a"}}
			tt.edit(&c.Targets[0])
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
			if err != nil {
				for _, s := range []string{pw, "dsn-password-Kx7", "PRIVATE KEY"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error shows %q: %v", s, err)
					}
				}
			}
		})
	}
}

// TestAdminPassword trims trailing newlines only.
func TestAdminPassword(t *testing.T) {
	for _, tt := range []struct{ content, want string }{
		{"pw\n", "pw"},
		{"pw\r\n", "pw"},
		{"pw", "pw"},
		{" p w \n\n", " p w "},
	} {
		tg := Target{PasswordFile: writeFile(t, "pw", tt.content, 0o600)}
		got, err := tg.AdminPassword()
		if err != nil || got.Reveal() != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.content, got.Reveal(), err, tt.want)
		}
	}
	if got, err := (Target{}).AdminPassword(); err != nil || !got.IsZero() {
		t.Errorf("no password_file: %q, %v", got.Reveal(), err)
	}
}

// TestTLSClientConfig checks what the worker's MySQL connections get.
func TestTLSClientConfig(t *testing.T) {
	ca := natstest.NewCA(t, "mysql-ca")
	certFile, keyFile := ca.Issue(t, "client", false)
	cfg, err := TargetTLS{CAFile: ca.CertFile, ServerName: "db.internal", CertFile: certFile, KeyFile: keyFile}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "db.internal" || cfg.RootCAs == nil ||
		len(cfg.Certificates) != 1 || cfg.InsecureSkipVerify {
		t.Errorf("config: min %x, server name %q, roots %v, %d certificates, skip verify %t",
			cfg.MinVersion, cfg.ServerName, cfg.RootCAs != nil, len(cfg.Certificates), cfg.InsecureSkipVerify)
	}
	cfg, err = TargetTLS{ServerName: "db.internal"}.ClientConfig()
	if err != nil || cfg.RootCAs != nil {
		t.Errorf("without ca_file: roots %v, err %v; want the system's", cfg.RootCAs, err)
	}
	if _, err := (TargetTLS{CAFile: "/nonexistent/ca.pem"}).ClientConfig(); err == nil || !strings.HasPrefix(err.Error(), "tls.ca_file: ") {
		t.Errorf("missing CA: %v", err)
	}
}

// TestDeployConfigsParse decodes the shipped configs: every key they show
// exists, and their targets log in the ways the docs describe.
func TestDeployConfigsParse(t *testing.T) {
	anyEnv := func(string) (string, bool) { return "from-env", true }
	for _, tt := range []struct {
		file  string
		check func(*testing.T, *Config)
	}{
		{"dev.yaml", func(t *testing.T, c *Config) {
			if tg := c.Targets[0]; tg.PasswordFile != "./data/dev-admin.password" || tg.AllowExcessPrivileges {
				t.Errorf("demo target: password_file %q, allow_excess_privileges %t", tg.PasswordFile, tg.AllowExcessPrivileges)
			}
		}},
		{"production.yaml", func(t *testing.T, c *Config) {
			if tg := c.Targets[0]; tg.PasswordFile == "" || tg.TLS.CAFile == "" || tg.TLS.ServerName == "" {
				t.Errorf("first target: password_file %q, tls %+v", tg.PasswordFile, tg.TLS)
			}
		}},
		{"worker-cluster.yaml", nil},
	} {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "deploy", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(data, anyEnv)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
