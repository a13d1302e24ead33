// Package apitest holds the integration tests of dbusers-api: the
// platform's database-users API and the dashboard, over a real worker
// (internal/service) on an in-process nats-server and the local MariaDB,
// driven over HTTP, by the platform's own CLI and by a real browser.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/dashboard"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/internal/platformapi"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/secret"
)

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Sync() error { return nil }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func logger(w *syncBuffer) *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.DebugLevel))
}

// The database ids an env serves.
const (
	dbID       = "ad-0123abcd"
	deadDBID   = "ad-dead0000"  // a target whose MySQL does not answer
	orphanDBID = "ad-orphan000" // a target the worker does not have
)

// env is a worker, an API in front of it and the fixture database the
// worker's target manages.
type env struct {
	t      testing.TB
	f      *mysqltest.Fixture
	ns     *server.Server
	svc    *service.Service
	url    string // the API's base URL
	key    []byte
	seed   string // the worker's xkey seed file, kept across restarts
	wKey   string // the worker's curve public key
	apiLog *syncBuffer
	wLog   *syncBuffer
	api    *platformapi.Server

	mu      sync.Mutex
	secrets []string // passwords and tokens seen: none may be logged
}

// envOptions tune newEnv.
type envOptions struct {
	// timeout is the API's wait for a result; 30s when zero.
	timeout time.Duration
	// noWorker starts the worker once (to make the streams) and stops it,
	// so that jobs are accepted but nobody takes them. The API's client
	// then pins the worker's key, which it cannot ask for.
	noWorker bool
}

// newEnv starts everything; all of it is stopped when the test ends.
func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	e := &env{t: t, apiLog: &syncBuffer{}, wLog: &syncBuffer{}, seed: filepath.Join(t.TempDir(), "worker.xk")}
	e.f = mysqltest.NewFixture(t, mysqltest.Options{})
	e.ns = natstest.Run(t, natstest.Options{})
	e.svc = e.startWorker()
	workerKey := e.svc.PublicKey()
	e.wKey = workerKey
	if opts.noWorker {
		if err := e.svc.Stop(); err != nil {
			t.Fatalf("stop worker: %v", err)
		}
		e.svc = nil
	}
	e.key = []byte("a-test-key-of-more-than-32-bytes-" + mysqltest.Token(16))
	timeout := opts.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	copts := []client.Option{client.WithTimeout(timeout)}
	if opts.noWorker {
		copts = append(copts, client.WithWorkerKey(workerKey))
	}
	c, err := client.New(nc, copts...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := platformapi.NewVerifier(e.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.api, err = platformapi.New(platformapi.Options{
		Users: c, Verifier: v, Timeout: timeout, Logger: logger(e.apiLog), Dashboard: dashboard.Handler(),
		Databases: map[string]string{dbID: "app", deadDBID: "dead", orphanDBID: "orphan"},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.api)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	t.Cleanup(e.checkLogs)
	return e
}

// workerConfig is the worker's config: target "app" on the fixture, and
// "dead" on a port nothing listens on.
func (e *env) workerConfig() config.Config {
	cfg := config.Default()
	cfg.NATS.URL = e.ns.ClientURL()
	cfg.Vault.XKeySeedFile = e.seed
	cfg.Retry.Budget = 3 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = []config.Target{
		{Name: "app", DSN: secret.New(e.f.AdminDSN), Database: e.f.Database, ProtectedUsers: []string{e.f.Protected}},
		{Name: "dead", DSN: secret.New("adm:pw@tcp(127.0.0.1:" + fmt.Sprint(freePort(e.t)) + ")/"), Database: "gone_db"},
	}
	return cfg
}

// startWorker starts a worker on the env's NATS, stopped when the test ends.
func (e *env) startWorker() *service.Service {
	e.t.Helper()
	cfg := e.workerConfig()
	ctx, cancel := context.WithTimeout(e.t.Context(), 30*time.Second)
	defer cancel()
	svc, err := service.Start(ctx, &cfg, service.Options{Logger: logger(e.wLog)})
	if err != nil {
		e.t.Fatalf("start worker: %v", err)
	}
	// Stop is idempotent: a test that stopped the worker itself is fine.
	e.t.Cleanup(func() { _ = svc.Stop() })
	// The info endpoint answers a moment after Start returns on another
	// connection: wait for it, as an orchestrator would.
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	defer nc.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := nc.Request("dbusers.info", nil, time.Second); err == nil {
			break
		} else if time.Now().After(deadline) {
			e.t.Fatalf("the worker's info endpoint does not answer: %v", err)
		}
	}
	return svc
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// remember records a password or token that must appear in no log line.
func (e *env) remember(s string) {
	if s == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
}

// checkLogs fails the test when a password or token seen during it is in
// the API's or the worker's log.
func (e *env) checkLogs() {
	e.mu.Lock()
	defer e.mu.Unlock()
	logs := e.apiLog.String() + e.wLog.String()
	for _, s := range e.secrets {
		if strings.Contains(logs, s) {
			e.t.Errorf("a password or token (%d characters) is in the logs", len(s))
		}
	}
}

// token mints a token for database id with exp in an hour.
func (e *env) token(id string) string {
	return e.sign(map[string]any{"sub": id, "exp": time.Now().Add(time.Hour).Unix()})
}

func (e *env) sign(claims map[string]any) string {
	tok, err := platformapi.SignToken(e.key, claims)
	if err != nil {
		e.t.Fatal(err)
	}
	e.remember(tok)
	return tok
}

// response is an HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic map.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends one request with a bearer token ("" for none); body is
// marshalled unless it is a string or nil.
func (e *env) do(method, path, token string, body any) response {
	e.t.Helper()
	authorization := ""
	if token != "" {
		authorization = "Bearer " + token
	}
	return e.doRaw(method, path, authorization, body)
}

// doRaw is do with the Authorization header as given ("" for none).
func (e *env) doRaw(method, path, authorization string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

// users is the path of the users collection of database id.
func users(id string) string { return "/api/databases/" + id + "/users" }

// account is one account as MySQL has it, for "nothing changed" checks.
type account struct {
	user, auth string
	grants     []string
}

// snapshot returns every account that holds a grant on the fixture's
// database, and those of the given names that exist (anywhere): its
// password hash and its grants.
func (e *env) snapshot(names ...string) []account {
	e.t.Helper()
	db := e.f.Root
	seen := map[string]bool{}
	rows, err := db.Query("SELECT DISTINCT User FROM mysql.db WHERE Db IN (?, ?)", e.f.Database, mysqltest.EscapePattern(e.f.Database))
	if err != nil {
		e.t.Fatal(err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			e.t.Fatal(err)
		}
		seen[u] = true
	}
	rows.Close()
	for _, n := range names {
		if e.f.AccountExists(n) {
			seen[n] = true
		}
	}
	var out []account
	for u := range seen {
		a := account{user: u}
		if err := db.QueryRow("SELECT IFNULL(JSON_VALUE(Priv, '$.authentication_string'), '') FROM mysql.global_priv WHERE User = ? AND Host = '%'", u).Scan(&a.auth); err != nil {
			e.t.Fatalf("password hash of %s: %v", u, err)
		}
		g, err := db.Query("SHOW GRANTS FOR ?@'%'", u)
		if err != nil {
			e.t.Fatalf("grants of %s: %v", u, err)
		}
		for g.Next() {
			var line string
			if err := g.Scan(&line); err != nil {
				e.t.Fatal(err)
			}
			a.grants = append(a.grants, line)
		}
		g.Close()
		slices.Sort(a.grants)
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b account) int { return strings.Compare(a.user, b.user) })
	return out
}

// makeAccount creates an account directly as root, the way the worker
// does (read-write: ALL PRIVILEGES; read-only: SELECT, SHOW VIEW, on the
// escaped database name), and returns its password.
func (e *env) makeAccount(name string, readOnly bool) string {
	e.t.Helper()
	pw := mysqltest.Password()
	e.f.DropUserLater(name)
	e.f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", name, pw)
	privs := "ALL PRIVILEGES"
	if readOnly {
		privs = "SELECT, SHOW VIEW"
	}
	e.f.Exec("GRANT "+privs+" ON `"+mysqltest.EscapePattern(e.f.Database)+"`.* TO ?@'%'", name)
	return pw
}

// canWrite reports whether user can create a table in the fixture's
// database; canRead whether it can read one.
func (e *env) canWrite(user, password string) error {
	e.t.Helper()
	conn, err := e.f.Login(user, password)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	table := "t_" + mysqltest.Token(8)
	if _, err := conn.ExecContext(e.t.Context(), "CREATE TABLE "+table+" (id INT)"); err != nil {
		return err
	}
	_, err = conn.ExecContext(e.t.Context(), "DROP TABLE "+table)
	return err
}

func (e *env) canRead(user, password string) error {
	e.t.Helper()
	conn, err := e.f.Login(user, password)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	var n int
	return conn.QueryRowContext(e.t.Context(), "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").Scan(&n)
}
