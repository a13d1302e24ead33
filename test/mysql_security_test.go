package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// dsnWithoutPassword is f's admin DSN with the password taken out.
func dsnWithoutPassword(t *testing.T, f *mysqltest.Fixture) secret.Secret {
	t.Helper()
	cfg, err := mysql.ParseDSN(f.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Passwd = ""
	return secret.New(cfg.FormatDSN())
}

// workerConfig is startWorker's configuration, for tests that start the
// worker themselves.
func workerConfig(t *testing.T, targets []config.Target) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.NATS.URL = startNATS(t).ClientURL()
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "worker.xk")
	cfg.Retry.Budget = 10 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = targets
	return cfg
}

// tryStart starts a worker that may refuse to start; it is stopped when
// the test ends.
func tryStart(t *testing.T, cfg config.Config, logs *logBuffer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	svc, err := service.Start(ctx, &cfg, service.Options{Logger: zap.New(zapcoreFor(logs))})
	if err != nil {
		return err
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return nil
}

// TestMySQLOverTLSWithOwnCA runs the worker against a mariadbd of the
// test's own that serves a certificate of a CA made by the test, with
// admin accounts that REQUIRE SSL and REQUIRE X509: the worker connects
// with the target's ca_file (and client certificate) and runs jobs; with
// another CA, or another server name, the target's jobs fail with an error
// that says what to check and shows no password.
func TestMySQLOverTLSWithOwnCA(t *testing.T) {
	t.Parallel()
	ca := natstest.NewCA(t, "dbusers test MySQL CA")
	serverCert, serverKey := ca.Issue(t, "server", true) // 127.0.0.1 and localhost
	srv := mysqltest.StartServer(t, "--ssl-ca="+ca.CertFile, "--ssl-cert="+serverCert, "--ssl-key="+serverKey)

	f := mysqltest.NewFixture(t, mysqltest.Options{Server: srv})
	f.Exec("ALTER USER ?@'%' REQUIRE SSL", f.Admin)
	if err := f.CanLogin(f.Admin, f.AdminPassword); err == nil {
		t.Fatal("the REQUIRE SSL admin logged in without TLS")
	}
	g := mysqltest.NewFixture(t, mysqltest.Options{Server: srv})
	g.Exec("ALTER USER ?@'%' REQUIRE X509", g.Admin)
	clientCert, clientKey := ca.Issue(t, "dbusers-worker", false)

	otherCA := natstest.NewCA(t, "another CA")
	tlsTarget := func(name string, fx *mysqltest.Fixture, tc config.TargetTLS) config.Target {
		tg := target(name, fx)
		tg.TLS = tc
		return tg
	}
	targets := []config.Target{
		tlsTarget("tls", f, config.TargetTLS{CAFile: ca.CertFile}),
		tlsTarget("mtls", g, config.TargetTLS{CAFile: ca.CertFile, ServerName: "localhost", CertFile: clientCert, KeyFile: clientKey}),
		tlsTarget("wrongca", f, config.TargetTLS{CAFile: otherCA.CertFile}),
		tlsTarget("wrongname", f, config.TargetTLS{CAFile: ca.CertFile, ServerName: "db.internal"}),
	}
	e := runWorker(t, workerConfig(t, targets))

	for _, tc := range []struct {
		target string
		fx     *mysqltest.Fixture
	}{{"tls", f}, {"mtls", g}} {
		user := mysqltest.Username("tls_")
		tc.fx.DropUserLater(user)
		res, pw := e.create(tc.target, user, false, "")
		wantOK(t, res)
		if !tc.fx.AccountExists(user) || pw == "" {
			t.Errorf("%s: the account was not created", tc.target)
		}
	}

	for _, tc := range []struct{ target, want string }{
		{"wrongca", "check the target's tls.ca_file"},
		{"wrongname", "check the target's tls.server_name"},
	} {
		user := mysqltest.Username("tls_")
		f.DropUserLater(user)
		res, _ := e.create(tc.target, user, false, "")
		wantCode(t, res, wire.CodeInternal)
		if !strings.Contains(res.Error.Message, tc.want) || !strings.Contains(res.Error.Message, "certificate") {
			t.Errorf("%s: message %q, want it to say %q", tc.target, res.Error.Message, tc.want)
		}
		if strings.Contains(res.Error.Message, f.AdminPassword) {
			t.Errorf("%s: the message holds the admin password", tc.target)
		}
		if f.AccountExists(user) {
			t.Errorf("%s: an account was created over an unverified connection", tc.target)
		}
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "not trusted") {
		t.Errorf("no start-up warning about the untrusted certificate:\n%s", logs)
	}
	if strings.Contains(logs, f.AdminPassword) || strings.Contains(logs, g.AdminPassword) {
		t.Error("the log holds an admin password")
	}
}

// TestAdminPasswordFromFile runs a worker whose target DSN has no password:
// it comes from password_file, and appears in no log line.
func TestAdminPasswordFromFile(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := target("app", f)
	tg.DSN = dsnWithoutPassword(t, f)
	tg.PasswordFile = writePrivate(t, "admin.password", f.AdminPassword+"\n")
	e := runWorker(t, workerConfig(t, []config.Target{tg}))

	user := mysqltest.Username("pwf_")
	f.DropUserLater(user)
	res, pw := e.create("app", user, true, "")
	wantOK(t, res)
	if err := f.CanLogin(user, pw); err != nil {
		t.Fatalf("the new account cannot log in: %v", err)
	}
	if strings.Contains(e.logs.String(), f.AdminPassword) {
		t.Error("the log holds the admin password")
	}

	// Rotation without a restart, caught half way: the password changes in
	// MySQL and the admin's open connections end, but the file still holds
	// the old one. A job arriving then has its login refused; it retries
	// (a refused login with a password from a file is transient) until the
	// file is replaced too (whole, as a mounted secret is), and succeeds.
	rotated := mysqltest.Password()
	f.Exec("ALTER USER ?@'%' IDENTIFIED BY ?", f.Admin, rotated)
	killSessions(t, f, f.Admin)
	after := mysqltest.Username("pwr_")
	f.DropUserLater(after)
	id := e.nextID()
	sub, err := e.nc.SubscribeSync(prefix + ".results.app." + id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	msg := nats.NewMsg(prefix + ".jobs.app.user.create")
	msg.Data = fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q}`, id, after, newRequester(t).pub)
	msg.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	refused := func() bool {
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, `"retrying"`) && strings.Contains(line, id) &&
				strings.Contains(line, "refused the admin's login") {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(8 * time.Second); !refused(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no retry of the refused login logged for %s; log:\n%s", id, e.logs.String())
		}
	}
	next := tg.PasswordFile + ".new"
	if err := os.WriteFile(next, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, tg.PasswordFile); err != nil {
		t.Fatal(err)
	}
	got, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no result for the job caught by the rotation: %v", err)
	}
	var caught wire.Result
	if err := json.Unmarshal(got.Data, &caught); err != nil {
		t.Fatal(err)
	}
	wantOK(t, caught)
	if caught.Attempts < 2 || !f.AccountExists(after) {
		t.Fatalf("attempts %d, account made %v: want a retried job that made it", caught.Attempts, f.AccountExists(after))
	}
	if strings.Contains(e.logs.String(), rotated) {
		t.Error("the log holds the rotated admin password")
	}
}

// killSessions ends every connection of user.
func killSessions(t *testing.T, f *mysqltest.Fixture, user string) {
	t.Helper()
	rows, err := f.Root.QueryContext(t.Context(), "SELECT id FROM information_schema.processlist WHERE user = ?", user)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil || len(ids) == 0 {
		t.Fatalf("the connections of %s: %v, %v (want at least one to end)", user, ids, err)
	}
	for _, id := range ids {
		f.Exec("KILL CONNECTION ?", id)
	}
}

// TestStartRefusesExcessPrivileges starts a worker whose target admin holds
// more than contract §5.7: it refuses to start, naming the target, the
// account, the excess and the REVOKE; with allow_excess_privileges it
// starts, warns with the excess, and runs jobs.
func TestStartRefusesExcessPrivileges(t *testing.T) {
	t.Parallel()
	least := func(db string, extra ...string) []string {
		return append([]string{
			"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s",
			"GRANT SELECT ON mysql.* TO %s",
			"GRANT ALL PRIVILEGES ON `" + mysqltest.EscapePattern(db) + "`.* TO %s WITH GRANT OPTION",
		}, extra...)
	}
	tests := []struct {
		name   string
		grants func(db string) []string
		want   []string // in the error and in the override's warning
	}{
		{"file", func(db string) []string { return least(db, "GRANT FILE ON *.* TO %s") },
			[]string{"FILE ON *.*", "REVOKE FILE ON *.* FROM `"}},
		{"all privileges", func(string) []string { return []string{"GRANT ALL PRIVILEGES ON *.* TO %s WITH GRANT OPTION"} },
			[]string{"ALL PRIVILEGES, GRANT OPTION ON *.*", "REVOKE ALL PRIVILEGES ON *.*"}},
		{"another schema", func(db string) []string { return least(db, "GRANT SELECT ON sys.* TO %s") },
			[]string{"SELECT ON `sys`.*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := "dbu_" + mysqltest.Token(10)
			f := mysqltest.NewFixture(t, mysqltest.Options{Database: db, AdminGrants: tt.grants(db)})
			tg := target("app", f)

			logs := &logBuffer{}
			err := tryStart(t, workerConfig(t, []config.Target{tg}), logs)
			if err == nil {
				t.Fatal("the worker started with an over-privileged admin")
			}
			msg := err.Error()
			for _, want := range append([]string{"targets[0] (app)", "`" + f.Admin + "`@`%`", "allow_excess_privileges: true"}, tt.want...) {
				if !strings.Contains(msg, want) {
					t.Errorf("error lacks %q:\n%s", want, msg)
				}
			}
			if strings.Contains(msg, f.AdminPassword) || strings.Contains(logs.String(), f.AdminPassword) {
				t.Error("the error or the log holds the admin password")
			}

			tg.AllowExcessPrivileges = true
			e := runWorker(t, workerConfig(t, []config.Target{tg}))
			warned := false
			for _, line := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "beyond contract") &&
					strings.Contains(line, tt.want[0]) {
					warned = true
				}
			}
			if !warned {
				t.Errorf("no warning naming %q:\n%s", tt.want[0], e.logs.String())
			}
			user := mysqltest.Username("exc_")
			f.DropUserLater(user)
			wantOK(t, first(e.create("app", user, false, "")))
		})
	}
}

// TestExcessFoundWhenTargetComesUp starts the worker while a target's
// MySQL is down (not fatal); when it comes up with an over-privileged
// admin, /readyz says the target is not ready and names the excess, and
// the check runs before the first job: the job fails with an internal
// error naming the excess, the worker logs an error, and nothing changes
// on the server. Once the excess is revoked, /readyz is ready and jobs run
// again.
func TestExcessFoundWhenTargetComesUp(t *testing.T) {
	t.Parallel()
	srv := mysqltest.StartServer(t)
	db := "dbu_" + mysqltest.Token(10)
	f := mysqltest.NewFixture(t, mysqltest.Options{Server: srv, Database: db, AdminGrants: []string{
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN, SUPER ON *.* TO %s",
		"GRANT SELECT ON mysql.* TO %s",
		"GRANT ALL PRIVILEGES ON `" + mysqltest.EscapePattern(db) + "`.* TO %s WITH GRANT OPTION",
	}})
	srv.Stop()

	cfg := workerConfig(t, []config.Target{target("own", f)})
	cfg.HTTP.Listen = "127.0.0.1:0"
	e := runWorker(t, cfg)
	if !strings.Contains(e.logs.String(), "cannot reach or log in to the target at start") {
		t.Fatalf("no warning about the target being down:\n%s", e.logs.String())
	}
	wantReady := func(ready bool, want string) {
		t.Helper()
		if code, report := readyz(t, e); (code == http.StatusOK) != ready || !strings.Contains(report["target own"], want) {
			t.Fatalf("/readyz = %d %v, want ready %v and the target's entry saying %q", code, report, ready, want)
		}
	}
	wantReady(false, "MySQL does not answer")
	srv.Start()
	// MySQL answers now, but its admin holds too much: not ready, and the
	// report says why, before any job found it.
	wantReady(false, "REVOKE SUPER ON *.*")

	user := mysqltest.Username("late_")
	f.DropUserLater(user)
	res, _ := e.create("own", user, false, "")
	wantCode(t, res, wire.CodeInternal)
	if !strings.Contains(res.Error.Message, "SUPER ON *.*") || !strings.Contains(res.Error.Message, "REVOKE SUPER ON *.*") {
		t.Errorf("message %q does not name the excess and its fix", res.Error.Message)
	}
	if f.AccountExists(user) {
		t.Fatal("a job ran on a target whose admin holds too much")
	}
	if !strings.Contains(e.logs.String(), `"level":"error"`) || !strings.Contains(e.logs.String(), "SUPER ON *.*") {
		t.Errorf("no error log naming the excess:\n%s", e.logs.String())
	}

	f.Exec("REVOKE SUPER ON *.* FROM ?@'%'", f.Admin)
	wantReady(true, "ok")
	wantOK(t, first(e.create("own", user, false, "")))
}

// readyz returns e's /readyz status and report.
func readyz(t *testing.T, e *env) (int, map[string]string) {
	t.Helper()
	code, body := get(t, "http://"+e.svc.HTTPAddr()+"/readyz")
	var report map[string]string
	if err := json.Unmarshal([]byte(body), &report); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, report
}

// TestExcessGrantedLaterIsFound: a privilege granted to a target's admin
// after its check passed is found once the check is due again: /readyz
// turns not ready naming it, an error is logged, and jobs fail naming it
// and change nothing, until it is revoked.
func TestExcessGrantedLaterIsFound(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	cfg := workerConfig(t, []config.Target{target("app", f)})
	cfg.HTTP.Listen = "127.0.0.1:0"
	e := runWorkerWith(t, cfg, service.Options{PrivilegeRecheck: 200 * time.Millisecond})
	user := mysqltest.Username("later_")
	f.DropUserLater(user)
	wantOK(t, e.job("app", "list", map[string]any{}))

	f.Exec("GRANT FILE ON *.* TO ?@'%'", f.Admin)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, report := readyz(t, e)
		if code != http.StatusOK {
			if !strings.Contains(report["target app"], "REVOKE FILE ON *.*") {
				t.Fatalf("/readyz %v does not name the excess and its fix", report)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still ready 10 s after the admin was granted FILE: %v", report)
		}
	}
	if !strings.Contains(e.logs.String(), `"level":"error"`) || !strings.Contains(e.logs.String(), "FILE ON *.*") {
		t.Errorf("no error log naming the excess:\n%s", e.logs.String())
	}
	res, _ := e.create("app", user, false, "")
	wantCode(t, res, wire.CodeInternal)
	if !strings.Contains(res.Error.Message, "FILE ON *.*") {
		t.Errorf("message %q does not name the excess", res.Error.Message)
	}
	if f.AccountExists(user) {
		t.Fatal("a job ran on a target whose admin now holds too much")
	}

	f.Exec("REVOKE FILE ON *.* FROM ?@'%'", f.Admin)
	wantOK(t, first(e.create("app", user, false, "")))
}
