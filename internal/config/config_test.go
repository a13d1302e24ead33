package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

const minimal = `
targets:
  - name: my-app
    dsn: "root@tcp(127.0.0.1:3306)/"
    database: my_app_4553
    protected_users: [my_app_4553]
`

func TestDefault(t *testing.T) {
	got := Default()
	want := Config{
		NATS: NATS{
			URL:             "",
			Embedded:        Embedded{Listen: "127.0.0.1:4222", StoreDir: "./data/nats"},
			Prefix:          "dbusers",
			Replicas:        1,
			DuplicateWindow: 10 * time.Minute,
			Partitions:      8,
			AckWait:         30 * time.Second,
			LeaseTTL:        15 * time.Second,
			JobsMaxBytes:    1 << 30,
		},
		Vault:         Vault{XKeySeedFile: "./data/worker.xk", TTL: 5 * time.Minute},
		Results:       Results{MaxAge: 24 * time.Hour},
		Retry:         Retry{Budget: 5 * time.Minute},
		ShutdownGrace: 20 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Default() = %+v, want %+v", got, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "missing keys keep defaults",
			yaml: "nats:\n  url: nats://x:4222\n  embedded:\n    listen: 0.0.0.0:4333\nvault:\n" + minimal,
			check: func(t *testing.T, c *Config) {
				want := Default()
				want.NATS.URL = "nats://x:4222"
				want.NATS.Embedded.Listen = "0.0.0.0:4333"
				want.Targets = c.Targets
				if !reflect.DeepEqual(*c, want) {
					t.Errorf("got %+v, want %+v", *c, want)
				}
			},
		},
		{
			name: "durations and numbers",
			yaml: "nats:\n  replicas: 3\n  duplicate_window: 15m\nvault:\n  ttl: 90s\nresults:\n  max_age: 48h\nretry:\n  budget: 1m30s\n" + minimal,
			check: func(t *testing.T, c *Config) {
				if c.NATS.Replicas != 3 || c.NATS.DuplicateWindow != 15*time.Minute || c.Vault.TTL != 90*time.Second ||
					c.Results.MaxAge != 48*time.Hour || c.Retry.Budget != 90*time.Second {
					t.Errorf("got %+v", *c)
				}
			},
		},
		{
			name: "env in dsn with yaml special characters",
			yaml: `
targets:
  - name: a
    dsn: root:${PW}@tcp(${HOST}:3306)/
    database: a
  - name: b
    dsn: "root:${PW}@tcp(h:3306)/"
    database: b
`,
			env: map[string]string{"PW": `p: #x "q' \ ${NOPE} null`, "HOST": "db.example"},
			check: func(t *testing.T, c *Config) {
				want := `root:p: #x "q' \ ${NOPE} null@tcp(db.example:3306)/`
				if got := c.Targets[0].DSN.Reveal(); got != want {
					t.Errorf("dsn = %q, want %q", got, want)
				}
				if got := c.Targets[1].DSN.Reveal(); got != `root:p: #x "q' \ ${NOPE} null@tcp(h:3306)/` {
					t.Errorf("quoted dsn = %q", got)
				}
			},
		},
		{
			name: "whole value from env stays a string even if it looks like null or a number",
			yaml: "nats:\n  credentials: ${A}\n  url: ${B}\n" + minimal,
			env:  map[string]string{"A": "null", "B": "123"},
			check: func(t *testing.T, c *Config) {
				if c.NATS.Credentials != "null" || c.NATS.URL != "123" {
					t.Errorf("credentials=%q url=%q", c.NATS.Credentials, c.NATS.URL)
				}
			},
		},
		{
			name: "env into number and duration",
			yaml: "nats:\n  replicas: ${R}\n  duplicate_window: ${D}\n" + minimal,
			env:  map[string]string{"R": "3", "D": "20m"},
			check: func(t *testing.T, c *Config) {
				if c.NATS.Replicas != 3 || c.NATS.DuplicateWindow != 20*time.Minute {
					t.Errorf("got %+v", c.NATS)
				}
			},
		},
		{
			name: "NATS user, password from env, TLS",
			yaml: "nats:\n  url: tls://n1:4222\n  user: dbusers-worker\n  password: ${NATS_PW}\n  nkey_seed_file: /s.nk\n" +
				"  tls:\n    ca_file: /ca.pem\n    cert_file: /c.pem\n    key_file: /k.pem\n" + minimal,
			env: map[string]string{"NATS_PW": `p: #x "q' null`},
			check: func(t *testing.T, c *Config) {
				n := c.NATS
				if n.User != "dbusers-worker" || n.Password.Reveal() != `p: #x "q' null` || n.NkeySeedFile != "/s.nk" ||
					n.TLS != (NATSTLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem"}) {
					t.Errorf("got %+v, password of %d bytes", n, n.Password.Len())
				}
			},
		},
		{
			name: "a password is a string whatever it looks like",
			yaml: "nats:\n  password: 123456\n  user: ${U}\n" + minimal,
			env:  map[string]string{"U": "true"},
			check: func(t *testing.T, c *Config) {
				if c.NATS.Password.Reveal() != "123456" || c.NATS.User != "true" {
					t.Errorf("password of %d bytes, user %q", c.NATS.Password.Len(), c.NATS.User)
				}
			},
		},
		{
			name: "a password from env that says null stays",
			yaml: "nats:\n  password: ${P}\n" + minimal,
			env:  map[string]string{"P": "null"},
			check: func(t *testing.T, c *Config) {
				if c.NATS.Password.Reveal() != "null" {
					t.Errorf("password of %d bytes", c.NATS.Password.Len())
				}
			},
		},
		{
			name: "empty file gives defaults",
			yaml: "",
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(*c, Default()) {
					t.Errorf("got %+v", *c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), env(tt.env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseErrors(t *testing.T) {
	const secret = "s3cr3t-value"
	tests := []struct {
		name    string
		yaml    string
		env     map[string]string
		want    []string // substrings of the error
		notWant string
	}{
		{
			name: "unset variable",
			yaml: "targets:\n  - name: a\n    dsn: root:${DB_PW}@tcp(h)/\n",
			want: []string{"targets[0].dsn", "DB_PW", "not set"},
		},
		{
			name: "unknown top-level key",
			yaml: "natz:\n  url: x\n",
			want: []string{"natz", "unknown key"},
		},
		{
			name: "unknown nested key",
			yaml: "nats:\n  embeded:\n    listen: x\n",
			want: []string{"nats.embeded", "unknown key"},
		},
		{
			name: "unknown key in a target",
			yaml: "targets:\n  - name: a\n    readonly: true\n",
			want: []string{"targets[0].readonly", "unknown key"},
		},
		{
			name: "bad duration",
			yaml: "vault:\n  ttl: 5 minutes\n",
			want: []string{"vault.ttl", "line 2", "not a duration"},
		},
		{
			name:    "bad substituted number does not show the value",
			yaml:    "nats:\n  replicas: ${R}\n",
			env:     map[string]string{"R": secret},
			want:    []string{"nats.replicas", "not an integer"},
			notWant: secret,
		},
		{
			name:    "bad substituted duration does not show the value",
			yaml:    "nats:\n  duplicate_window: ${R}\n",
			env:     map[string]string{"R": secret},
			want:    []string{"nats.duplicate_window", "not a duration"},
			notWant: secret,
		},
		{
			name:    "bad substituted boolean does not show the value",
			yaml:    "nats:\n  url: nats://h:4222\n  store_encrypted: ${R}\n",
			env:     map[string]string{"R": secret},
			want:    []string{"nats.store_encrypted", "not a boolean"},
			notWant: secret,
		},
		{
			name: "yes is not a boolean here",
			yaml: "nats:\n  url: nats://h:4222\n  store_encrypted: yes\n",
			want: []string{"nats.store_encrypted", "line 3", "not a boolean"},
		},
		{
			name: "password as a mapping",
			yaml: "nats:\n  password: {a: b}\n",
			want: []string{"nats.password", "expected a single value"},
		},
		{
			name: "unknown key under nats.tls",
			yaml: "nats:\n  tls:\n    ca: x\n",
			want: []string{"nats.tls.ca", "unknown key"},
		},
		{
			name: "list where a mapping belongs",
			yaml: "nats: [a]\n",
			want: []string{"nats", "expected a mapping"},
		},
		{
			name: "duplicate key",
			yaml: "nats:\n  url: a\n  url: b\n",
			want: []string{"already defined"},
		},
		{
			name: "not yaml",
			yaml: "nats: [\n",
			want: []string{"config"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), env(tt.env))
			if err == nil {
				t.Fatal("Parse: want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q shows %q", err, tt.notWant)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	const password = "NATS-pw-UNIQUE-77"
	pw := secret.New(password)
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seedValue, _ := kp.Seed()
	seed, openSeed := filepath.Join(dir, "user.nk"), filepath.Join(dir, "open.nk")
	for path, mode := range map[string]os.FileMode{seed: 0o600, openSeed: 0o644} {
		if err := os.WriteFile(path, seedValue, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	ca := natstest.NewCA(t, "config test CA").CertFile
	valid := func() Config {
		c := Default()
		c.Targets = []Target{
			{Name: "my-app", DSN: secret.New("root:pw@tcp(127.0.0.1:3306)/"), Database: "my_app_4553", ProtectedUsers: []string{"my_app_4553"}},
			{Name: "other_1", DSN: secret.New("admin@tcp(db:3306)/?timeout=5s"), Database: "o$-DB"},
		}
		return c
	}
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   string // "" means valid; else the key path expected in the error
	}{
		{"valid", func(*Config) {}, ""},
		{"url set skips embedded checks", func(c *Config) { c.NATS.URL = "nats://x"; c.NATS.Embedded = Embedded{} }, ""},
		{"outside NATS encrypted at rest", func(c *Config) { c.NATS.URL = "nats://x"; c.NATS.StoreEncrypted = true }, ""},
		{"no targets", func(c *Config) { c.Targets = nil }, "targets:"},
		{"name uppercase", func(c *Config) { c.Targets[1].Name = "Other" }, "targets[1].name"},
		{"name starts with dash", func(c *Config) { c.Targets[1].Name = "-x" }, "targets[1].name"},
		{"name too long", func(c *Config) { c.Targets[0].Name = strings.Repeat("a", 64) }, "targets[0].name"},
		{"name empty", func(c *Config) { c.Targets[0].Name = "" }, "targets[0].name"},
		{"name duplicate", func(c *Config) { c.Targets[1].Name = "my-app" }, "targets[1].name"},
		{"dsn empty", func(c *Config) { c.Targets[0].DSN = secret.Secret{} }, "targets[0].dsn"},
		{"dsn no slash", func(c *Config) { c.Targets[0].DSN = secret.New("root:pw@tcp(h:3306)") }, "targets[0].dsn"},
		{"dsn bad param", func(c *Config) { c.Targets[0].DSN = secret.New("root:pw@tcp(h)/?parseTime=maybe") }, "targets[0].dsn"},
		{"database empty", func(c *Config) { c.Targets[0].Database = "" }, "targets[0].database"},
		{"database bad char", func(c *Config) { c.Targets[0].Database = "a.b" }, "targets[0].database"},
		{"database too long", func(c *Config) { c.Targets[0].Database = strings.Repeat("d", 65) }, "targets[0].database"},
		{"protected user empty", func(c *Config) { c.Targets[0].ProtectedUsers = []string{"x", ""} }, "targets[0].protected_users[1]"},
		{"prefix empty", func(c *Config) { c.NATS.Prefix = "" }, "nats.prefix"},
		{"prefix dot", func(c *Config) { c.NATS.Prefix = "a.b" }, "nats.prefix"},
		{"replicas 0", func(c *Config) { c.NATS.Replicas = 0 }, "nats.replicas"},
		{"replicas 6", func(c *Config) { c.NATS.Replicas = 6 }, "nats.replicas"},
		{"duplicate window short", func(c *Config) { c.NATS.DuplicateWindow = 119 * time.Second }, "nats.duplicate_window"},
		{"duplicate window 2m ok", func(c *Config) { c.NATS.DuplicateWindow = 2 * time.Minute }, ""},
		{"ttl zero", func(c *Config) { c.Vault.TTL = 0 }, "vault.ttl"},
		{"max age negative", func(c *Config) { c.Results.MaxAge = -time.Second }, "results.max_age"},
		{"budget zero", func(c *Config) { c.Retry.Budget = 0 }, "retry.budget"},
		{"seed file empty", func(c *Config) { c.Vault.XKeySeedFile = "" }, "vault.xkey_seed_file"},
		{"listen not host:port", func(c *Config) { c.NATS.Embedded.Listen = "4222" }, "nats.embedded.listen"},
		{"store dir empty", func(c *Config) { c.NATS.Embedded.StoreDir = "" }, "nats.embedded.store_dir"},
		{"partitions 0", func(c *Config) { c.NATS.Partitions = 0 }, "nats.partitions"},
		{"partitions 257", func(c *Config) { c.NATS.Partitions = 257 }, "nats.partitions"},
		{"ack wait short", func(c *Config) { c.NATS.AckWait = 500 * time.Millisecond }, "nats.ack_wait"},
		{"lease ttl short", func(c *Config) { c.NATS.LeaseTTL = 0 }, "nats.lease_ttl"},
		{"jobs max bytes small", func(c *Config) { c.NATS.JobsMaxBytes = 1 << 20 }, "nats.jobs_max_bytes"},
		{"shutdown grace zero", func(c *Config) { c.ShutdownGrace = 0 }, "shutdown_grace"},
		{"http listen bad", func(c *Config) { c.HTTP.Listen = "9090" }, "http.listen"},
		{"http listen set", func(c *Config) { c.HTTP.Listen = "127.0.0.1:9090" }, ""},
		{"embedded with nats.user", func(c *Config) { c.NATS.User = "u"; c.NATS.Password = pw }, "nats.user: applies to an outside NATS only"},
		{"embedded with nats.credentials", func(c *Config) { c.NATS.Credentials = seed }, "nats.credentials: applies to an outside NATS only"},
		{"embedded with nats.tls.ca_file", func(c *Config) { c.NATS.TLS.CAFile = ca }, "nats.tls.ca_file: applies to an outside NATS only"},
		{"embedded with nats.store_encrypted", func(c *Config) { c.NATS.StoreEncrypted = true }, "nats.store_encrypted: applies to an outside NATS only"},
		{"user and password", func(c *Config) { c.NATS.URL = "tls://n:4222"; c.NATS.User = "u"; c.NATS.Password = pw }, ""},
		{"nkey seed and CA", func(c *Config) { c.NATS.URL = "tls://n:4222"; c.NATS.NkeySeedFile = seed; c.NATS.TLS.CAFile = ca }, ""},
		{"user without password", func(c *Config) { c.NATS.URL = "nats://n"; c.NATS.User = "u" }, "nats.password: must be given with nats.user"},
		{"password without user", func(c *Config) { c.NATS.URL = "nats://n"; c.NATS.Password = pw }, "nats.user: must be given with nats.password"},
		{"nkey and user", func(c *Config) {
			c.NATS.URL = "nats://n"
			c.NATS.NkeySeedFile = seed
			c.NATS.User = "u"
			c.NATS.Password = pw
		},
			"nats.nkey_seed_file, nats.user and nats.password: give one way"},
		{"nkey seed open to others", func(c *Config) { c.NATS.URL = "nats://n"; c.NATS.NkeySeedFile = openSeed }, "nats.nkey_seed_file: " + openSeed + " has mode 0644"},
		{"missing CA file", func(c *Config) { c.NATS.URL = "tls://n"; c.NATS.TLS.CAFile = ca + ".gone" }, "nats.tls.ca_file: "},
		{"cert without key", func(c *Config) { c.NATS.URL = "tls://n"; c.NATS.TLS.CertFile = ca }, "nats.tls.key_file: must be given with nats.tls.cert_file"},
		{"user in the URL", func(c *Config) { c.NATS.URL = "nats://u:p@n" }, ""},
		{"user in the URL and nats.user", func(c *Config) { c.NATS.URL = "nats://u:p@n"; c.NATS.User = "u"; c.NATS.Password = pw }, "nats.url: holds a user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate: want an error naming %s", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not name %s", err, tt.want)
			case err != nil && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), string(seedValue))):
				t.Fatalf("error %q shows a secret", err)
			}
		})
	}
}

// TestDSNPasswordNeverInErrors feeds broken DSNs whose passwords are distinctive
// and checks no error text, from Parse or Validate, contains them.
func TestDSNPasswordNeverInErrors(t *testing.T) {
	const pw = "Zq9-UNIQUE-pw"
	dsns := []string{
		"root:" + pw + "@tcp(h:3306)",             // no slash
		"root:" + pw + "@tcp(h:3306/",             // unterminated address
		"root:" + pw + "@tcp(h)/?parseTime=" + pw, // bad bool param quoting the value
		"root:" + pw + "@tcp(h)/?tls=" + pw,       // unknown tls config name
		"root:" + pw + "@tcp(h)/db%" + pw,         // bad escape in db name
		"root:" + pw + "@tcp(h)/?interpolateParams=true&collation=" + pw,
		"root:" + pw + "@tcp(h)/?serverPubKey=" + pw,
		"root:" + pw + "@tcp(h)/?connectionAttributes=" + pw,
	}
	for _, dsn := range dsns {
		t.Run(dsn, func(t *testing.T) {
			yml := "targets:\n  - name: a\n    dsn: ${DSN}\n    database: a\n"
			c, err := Parse([]byte(yml), env(map[string]string{"DSN": dsn}))
			if err != nil {
				if strings.Contains(err.Error(), pw) {
					t.Fatalf("Parse error shows the password: %v", err)
				}
				return
			}
			err = c.Validate()
			if err == nil {
				t.Skip("parser accepts this DSN")
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("Validate error shows the password: %v", err)
			}
		})
	}
}

// TestNATSURLPasswordNeverInErrors: a nats.url that does not parse (a
// password with characters it should have percent-encoded) is refused by
// Validate without showing it, before nats.go's parse error could.
func TestNATSURLPasswordNeverInErrors(t *testing.T) {
	const pw = "Zq9^UNIQUE#pw"
	for _, u := range []string{"nats://worker:" + pw + "@127.0.0.1:4222", "worker:" + pw + "@127.0.0.1:4222"} {
		t.Run(u, func(t *testing.T) {
			yml := minimal + "nats:\n  url: ${URL}\n"
			c, err := Parse([]byte(yml), env(map[string]string{"URL": u}))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), "nats.url") {
				t.Fatalf("err = %v, want nats.url refused", err)
			}
			if strings.Contains(err.Error(), "UNIQUE") {
				t.Fatalf("the error shows the URL's password: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string
		wantErr bool
	}{
		{"file", new(minimal), false},
		{"missing file", nil, true},
		{"invalid values are refused at load", new(strings.Replace(minimal, "name: my-app", "name: Bad Name", 1)), true},
		{"short duplicate window is refused at load", new(minimal + "nats:\n  duplicate_window: 30s\n"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load: err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil {
				if verr := c.Validate(); verr != nil {
					t.Fatalf("Validate: %v", verr)
				}
			}
		})
	}
}
