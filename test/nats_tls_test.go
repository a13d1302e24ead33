package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/natsconn"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/secret"
)

// secureNATS is an in-process nats-server that takes TLS only, with a
// certificate of a CA made for the test, and users of each kind.
type secureNATS struct {
	url     string // tls://127.0.0.1:<free port>
	ca      *natstest.CA
	workerU string
	workerP string
	cliU    string
	cliP    string
	// cliSeed is a user nkey seed file (0600) the server knows.
	cliSeed string
}

func startSecureNATS(t *testing.T) *secureNATS {
	t.Helper()
	n := &secureNATS{
		ca:      natstest.NewCA(t, "dbusers test CA"),
		workerU: "dbusers-worker", workerP: "worker-" + mysqltest.Token(20),
		cliU: "platform", cliP: "platform-" + mysqltest.Token(20),
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	n.cliSeed = writePrivate(t, "cli.nk", string(seed)+"\n")
	s := natstest.Run(t, natstest.Options{Edit: func(o *server.Options) {
		o.TLSConfig = n.ca.ServerTLS(t)
		o.TLS = true
		o.Users = []*server.User{{Username: n.workerU, Password: n.workerP}, {Username: n.cliU, Password: n.cliP}}
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}})
	n.url = strings.Replace(s.ClientURL(), "nats://", "tls://", 1)
	return n
}

// writePrivate writes a file of mode 0600 in a temporary directory.
func writePrivate(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// secureWorkerConfig loads a worker config whose nats section is as an
// operator writes it (the password from the environment), with the test's
// target.
func secureWorkerConfig(t *testing.T, n *secureNATS, caFile string, targets []config.Target) *config.Config {
	t.Helper()
	t.Setenv("DBUSERS_TEST_NATS_PASSWORD", n.workerP)
	yml := fmt.Sprintf(`nats:
  url: %q
  user: %s
  password: ${DBUSERS_TEST_NATS_PASSWORD}
  tls:
    ca_file: %q
vault:
  xkey_seed_file: %q
retry:
  budget: 10s
shutdown_grace: 5s
targets:
  - name: placeholder
    dsn: "u@tcp(127.0.0.1:1)/"
    database: placeholder
`, n.url, n.workerU, caFile, filepath.Join(t.TempDir(), "worker.xk"))
	cfg, err := config.Load(writePrivate(t, "worker.yaml", yml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Targets = targets
	return cfg
}

// TestNATSOverTLS: the worker reaches a TLS-only nats-server over tls://
// with a CA file and a user and password from its config, and runs the
// jobs that the CLI sends with a user and password (from a file and from
// the environment) and with an nkey, and that the Go client sends. A
// client without the CA or with another CA, and a wrong password, are
// refused with words that name the setting to fix; so is a worker with
// another CA or a wrong password.
func TestNATSOverTLS(t *testing.T) {
	n := startSecureNATS(t)
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	cfg := secureWorkerConfig(t, n, n.ca.CertFile, []config.Target{target("app", f)})
	if cfg.NATS.Password.Reveal() != n.workerP {
		t.Fatal("the worker's password did not come from the environment")
	}
	logs := &logBuffer{}
	startCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	svc, err := service.Start(startCtx, cfg, service.Options{Logger: zapTo(logs)})
	cancel()
	if err != nil {
		t.Fatalf("the worker does not start over TLS: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})

	bin := buildCLI(t)
	cliWith := func(env ...string) *cli {
		c := newCLI(t, bin, n.url, "app")
		c.env = append(c.env, env...)
		return c
	}
	pwFile := writePrivate(t, "nats-password", n.cliP+"\n")
	withCA := "DBUSERS_TLS_CA=" + n.ca.CertFile
	user := mysqltest.Username("tls_")
	f.DropUserLater(user)

	t.Run("user and password file: create", func(t *testing.T) {
		r := cliWith(withCA).run("\n", "--user", n.cliU, "--password-file", pwFile, "database-users-create", user)
		if r.code != 0 || !generatedLine(user, "created").MatchString(r.stdout) {
			t.Fatalf("exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
		if !f.AccountExists(user) {
			t.Fatal("no account after create")
		}
	})
	t.Run("user and password from the environment: list", func(t *testing.T) {
		r := cliWith(withCA, "DBUSERS_NATS_USER="+n.cliU, "DBUSERS_NATS_PASSWORD="+n.cliP).run("", "database-users-list")
		if r.code != 0 || !strings.Contains(r.stdout, "| "+user+" ") {
			t.Fatalf("exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("nkey over a nats:// URL with the CA: list", func(t *testing.T) {
		// The server requires TLS and the CA file makes it required on
		// this side too: the scheme does not matter.
		c := cliWith("DBUSERS_NKEY=" + n.cliSeed)
		r := c.run("", "--nats-url", strings.Replace(n.url, "tls://", "nats://", 1), "--tls-ca", n.ca.CertFile, "database-users-list", "--json")
		if r.code != 0 || !strings.Contains(r.stdout, `"username":"`+user+`"`) {
			t.Fatalf("exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("Go client with an nkey: list", func(t *testing.T) {
		opts, err := natsconn.Settings{NkeySeedFile: n.cliSeed, TLS: natsconn.TLS{CAFile: n.ca.CertFile}}.Options(natsconn.Names{})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(n.url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if !nc.TLSRequired() {
			t.Fatal("connected without TLS")
		}
		c, err := client.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		accounts, err := c.ListUsers(t.Context(), "app")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range accounts {
			found = found || a.Username == user
		}
		if !found {
			t.Fatalf("%s not in %+v", user, accounts)
		}
	})
	t.Run("nkey: delete", func(t *testing.T) {
		r := cliWith(withCA).run("", "--nkey", n.cliSeed, "database-users-delete", user)
		if r.code != 0 || r.stdout != "User "+user+" has been deleted\n" {
			t.Fatalf("exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
		}
	})

	other := natstest.NewCA(t, "another CA")
	for _, tt := range []struct {
		name       string
		env        []string
		args       []string
		wantStderr *regexp.Regexp
	}{
		{"no CA", nil, []string{"--user", n.cliU, "--password-file", pwFile},
			regexp.MustCompile(`^Cannot connect to NATS at tls://127\.0\.0\.1:\d+: .*x509: certificate signed by unknown authority\.\n` +
				`The server's TLS certificate is not signed by a CA this machine trusts; give the CA that signed it with --tls-ca\.\n$`)},
		{"another CA", []string{"DBUSERS_TLS_CA=" + other.CertFile}, []string{"--nkey", n.cliSeed},
			regexp.MustCompile(`^Cannot connect to NATS at .*: .*certificate signed by unknown authority\.\n` +
				`The server's TLS certificate is not signed by the CA of --tls-ca\.\n$`)},
		{"wrong password", []string{withCA, "DBUSERS_NATS_USER=" + n.cliU, "DBUSERS_NATS_PASSWORD=wrong-" + n.cliP}, nil,
			regexp.MustCompile(`^Cannot connect to NATS at .*: nats: Authorization Violation\.\n` +
				`The server refused the user and password of --user and DBUSERS_NATS_PASSWORD \(an unknown user or a wrong password\)\.\n$`)},
		{"another user's password", []string{withCA}, []string{"--user", n.workerU, "--password-file", pwFile},
			regexp.MustCompile(`Authorization Violation\.\nThe server refused the user and password of --user and --password-file`)},
		{"no credentials", []string{withCA}, nil,
			regexp.MustCompile(`Authorization Violation\.\nThe server refused a connection without credentials; give --creds, --nkey, or --user`)},
	} {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			r := cliWith(tt.env...).run("", append(tt.args, "database-users-list")...)
			if r.code != 2 || r.stdout != "" || !tt.wantStderr.MatchString(r.stderr) {
				t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant stderr %s", r.code, r.stdout, r.stderr, tt.wantStderr)
			}
			if strings.Contains(r.stderr, n.cliP) {
				t.Fatalf("stderr shows the password: %q", r.stderr)
			}
		})
	}

	t.Run("refused: a worker with another CA or a wrong password", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			edit func(*config.Config)
			want string
		}{
			{"another CA", func(c *config.Config) { c.NATS.TLS.CAFile = other.CertFile },
				"certificate signed by unknown authority: the server's TLS certificate is not signed by the CA of nats.tls.ca_file"},
			{"wrong password", func(c *config.Config) { c.NATS.Password = secret.New("wrong-" + n.workerP) },
				"Authorization Violation: the server refused the user and password of nats.user and nats.password"},
		} {
			cfg := secureWorkerConfig(t, n, n.ca.CertFile, []config.Target{target("app", f)})
			tt.edit(cfg)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			svc, err := service.Start(ctx, cfg, service.Options{})
			cancel()
			if err == nil {
				_ = svc.Stop()
				t.Fatalf("%s: the worker started", tt.name)
			}
			if !strings.Contains(err.Error(), "nats.url: connect: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: error %q, want %q", tt.name, err, tt.want)
			}
			if strings.Contains(err.Error(), n.workerP) {
				t.Errorf("%s: error shows the password: %q", tt.name, err)
			}
		}
	})
	if strings.Contains(logs.String(), n.workerP) {
		t.Fatal("the worker's log shows its NATS password")
	}
}
