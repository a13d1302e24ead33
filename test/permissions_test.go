package test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/internal/vault"
	"github.com/dbusers/dbusers/secret"
)

// accountsConf is the deploy file under test, loaded as it is.
const accountsConf = "../deploy/nats-accounts.conf"

// The example credentials of deploy/nats-accounts.conf: the file holds their
// bcrypt hashes.
const (
	permWorkerUser     = "dbusers-worker"
	permWorkerPassword = "example-worker-password-change-me"
	permOrchAUser      = "orchestrator-a"
	permOrchAPassword  = "example-orchestrator-a-password-change-me"
	permOrchBUser      = "orchestrator-b"
	permOrchBPassword  = "example-orchestrator-b-password-change-me"
)

// serverLog keeps the error lines of a nats-server, where it reports every
// permissions violation with the account and user of the connection.
type serverLog struct {
	mu     sync.Mutex
	errors []string
}

func (l *serverLog) Noticef(string, ...any) {}
func (l *serverLog) Warnf(string, ...any)   {}
func (l *serverLog) Debugf(string, ...any)  {}
func (l *serverLog) Tracef(string, ...any)  {}
func (l *serverLog) Fatalf(format string, v ...any) {
	l.Errorf(format, v...)
}
func (l *serverLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errors = append(l.errors, fmt.Sprintf(format, v...))
}

// violations returns the permissions violations logged for user.
func (l *serverLog) violations(user string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.errors {
		if strings.Contains(line, "Violation") && strings.Contains(line, `"DBUSERS/user:`+user+`"`) {
			out = append(out, line)
		}
	}
	return out
}

// startAccountsServer runs deploy/nats-accounts.conf in process, with only
// its listen address (a free port on 127.0.0.1) and store directory
// changed, and signal handling off as for every in-process server here.
func startAccountsServer(t *testing.T) (*server.Server, *serverLog) {
	t.Helper()
	opts, err := server.ProcessConfigFile(accountsConf)
	if err != nil {
		t.Fatalf("%s: %v", accountsConf, err)
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("%s: %v", accountsConf, err)
	}
	log := &serverLog{}
	s.SetLoggerV2(log, false, false, false)
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s, log
}

// userURL is the server's URL with user and password in it, as the
// worker's nats.url takes them.
func userURL(s *server.Server, user, password string) string {
	u, _ := url.Parse(s.ClientURL())
	u.User = url.UserPassword(user, password)
	return u.String()
}

// orchestrator is an orchestrator's connection: its own user and inbox
// prefix, and the asynchronous errors the server sent it.
type orchestrator struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	mu   sync.Mutex
	errs []error
}

func connectOrchestrator(t *testing.T, s *server.Server, user, password string) *orchestrator {
	t.Helper()
	o := &orchestrator{}
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password), nats.Name(user), nats.Timeout(10*time.Second),
		nats.CustomInboxPrefix("_INBOX_"+user),
		// A refused subscription then fails NextMsg, not just the error
		// handler.
		nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.errs = append(o.errs, err)
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	o.nc, o.js = nc, jetstreamFor(t, nc)
	return o
}

// waitViolation waits until the server has told o that its publish to, or
// subscription on, subject was refused.
func (o *orchestrator) waitViolation(t *testing.T, kind, subject string) {
	t.Helper()
	want := fmt.Sprintf("permissions violation for %s to %q", kind, subject)
	deadline := time.Now().Add(5 * time.Second)
	for {
		o.mu.Lock()
		for _, err := range o.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				o.mu.Unlock()
				return
			}
		}
		o.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %q from the server", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shortCtx bounds a call that is expected to fail: a refused request is
// dropped by the server and only times out.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestNATSAccountsConf loads deploy/nats-accounts.conf into a server and
// proves that the worker works under its restricted user, that an
// orchestrator works its own targets through the client package, and that
// it can neither publish jobs for another orchestrator's target, nor read
// its results, nor read or purge its vault entries.
func TestNATSAccountsConf(t *testing.T) {
	s, slog := startAccountsServer(t)
	shop := mysqltest.NewFixture(t, mysqltest.Options{})
	crm := mysqltest.NewFixture(t, mysqltest.Options{})

	// The worker, as the dbusers-worker user; short leases so that their
	// renewal and listing run during the test.
	cfg := config.Default()
	cfg.NATS.URL = userURL(s, permWorkerUser, permWorkerPassword)
	cfg.NATS.LeaseTTL = 2 * time.Second
	cfg.HTTP.Listen = "127.0.0.1:0" // metrics and readiness read consumers and streams
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "worker.xk")
	cfg.Retry.Budget = 10 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = []config.Target{target("shop", shop), target("crm", crm)}
	logs := &logBuffer{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), logs, zap.DebugLevel))
	startCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	svc, err := service.Start(startCtx, &cfg, service.Options{Logger: log})
	cancel()
	if err != nil {
		t.Fatalf("the worker does not start under its user: %v\nserver: %q", err, slog.violations(permWorkerUser))
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})
	if strings.Contains(logs.String(), permWorkerPassword) {
		t.Error("the worker logged its NATS password")
	}

	a := connectOrchestrator(t, s, permOrchAUser, permOrchAPassword)
	b := connectOrchestrator(t, s, permOrchBUser, permOrchBPassword)
	ca, err := client.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := client.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("own target end to end", func(t *testing.T) {
		ctx := clientCtx(t)
		if _, err := ca.WorkerInfo(ctx); err != nil {
			t.Fatalf("info: %v", err)
		}
		gen := mysqltest.Username("perm_")
		shop.DropUserLater(gen)
		creds, err := ca.CreateUser(ctx, "shop", client.CreateUserRequest{Username: gen})
		if err != nil {
			t.Fatalf("create with a generated password: %v", err)
		}
		if err := shop.CanLogin(gen, creds.Password.Reveal()); err != nil {
			t.Fatalf("the generated password read from the vault does not log in: %v", err)
		}
		chosen, pw := mysqltest.Username("perm_"), "Chosen-"+mysqltest.Token(24)
		shop.DropUserLater(chosen)
		if _, err := ca.CreateUser(ctx, "shop", client.CreateUserRequest{Username: chosen, ReadOnly: true, Password: secret.New(pw)}); err != nil {
			t.Fatalf("create with a chosen password: %v", err)
		}
		if err := shop.CanLogin(chosen, pw); err != nil {
			t.Fatalf("the chosen password does not log in: %v", err)
		}
		reset, err := ca.ResetPassword(ctx, "shop", client.ResetPasswordRequest{Username: chosen})
		if err != nil {
			t.Fatalf("reset: %v", err)
		}
		if err := shop.CanLogin(chosen, reset.Password.Reveal()); err != nil {
			t.Fatalf("the reset password does not log in: %v", err)
		}
		users, err := ca.ListUsers(ctx, "shop")
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(users) != 3 {
			t.Errorf("list shows %+v, want the protected user and two more", users)
		}
		if _, err := ca.DeleteUser(ctx, "shop", client.DeleteUserRequest{Username: gen}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		// A job for a target of orchestrator-a that the worker does not
		// serve is answered too.
		if _, err := ca.ListUsers(ctx, "blog"); !errors.Is(err, client.ErrUnknownTarget) {
			t.Fatalf("list on blog: %v, want unknown_target", err)
		}
		// The stored-result path (direct get on the results stream).
		res, err := a.js.Stream(ctx, "DBUSERS_RESULTS")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := res.GetLastMsgForSubject(ctx, "dbusers.results.shop."+reset.JobID); err != nil {
			t.Fatalf("orchestrator-a cannot read its own stored result: %v", err)
		}
	})

	// orchestrator-b runs a create with a generated password without
	// reading the vault: its result and its sealed password are what
	// orchestrator-a must not reach.
	bUser := mysqltest.Username("permb_")
	crm.DropUserLater(bUser)
	bKey, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	bReply, _ := bKey.PublicKey()
	bJob := "job-crm-" + mysqltest.Token(8)
	bResult := "dbusers.results.crm." + bJob
	bVaultKey := "crm." + bJob
	{
		sub, err := b.nc.SubscribeSync(bResult)
		if err != nil {
			t.Fatal(err)
		}
		msg := nats.NewMsg("dbusers.jobs.crm.user.create")
		msg.Header.Set(jetstream.MsgIDHeader, bJob)
		msg.Data = fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q}`, bJob, bUser, bReply)
		if _, err := b.js.PublishMsg(clientCtx(t), msg); err != nil {
			t.Fatalf("orchestrator-b publishes a job for crm: %v", err)
		}
		if _, err := sub.NextMsg(30 * time.Second); err != nil {
			t.Fatalf("orchestrator-b gets no live result: %v", err)
		}
		_ = sub.Unsubscribe()
	}

	t.Run("cannot publish jobs for another target", func(t *testing.T) {
		for _, op := range []string{"user.create", "user.list", "user.delete"} {
			subject := "dbusers.jobs.crm." + op
			id := "job-forged-" + mysqltest.Token(8)
			msg := nats.NewMsg(subject)
			msg.Header.Set(jetstream.MsgIDHeader, id)
			msg.Data = fmt.Appendf(nil, `{"id":%q,"username":%q}`, id, bUser)
			if _, err := a.js.PublishMsg(shortCtx(t), msg); err == nil {
				t.Fatalf("the jobs stream accepted orchestrator-a's %s", subject)
			}
			a.waitViolation(t, "publish", subject)
			// The job never reached the worker: no result, and the
			// account is still there.
			rs, err := b.js.Stream(clientCtx(t), "DBUSERS_RESULTS")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rs.GetLastMsgForSubject(clientCtx(t), "dbusers.results.crm."+id); !errors.Is(err, jetstream.ErrMsgNotFound) {
				t.Fatalf("a result for the refused job %s: %v", id, err)
			}
		}
		// Through the client it fails too (it cannot tell why: the server
		// drops the publish).
		if _, err := ca.DeleteUser(shortCtx(t), "crm", client.DeleteUserRequest{Username: bUser}); err == nil {
			t.Fatal("orchestrator-a deleted an account of crm")
		}
		if !crm.AccountExists(bUser) {
			t.Fatal("orchestrator-a's delete on crm reached MySQL")
		}
	})

	t.Run("cannot read another target's results", func(t *testing.T) {
		// orchestrator-b can read its stored result...
		rsB, err := b.js.Stream(clientCtx(t), "DBUSERS_RESULTS")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rsB.GetLastMsgForSubject(clientCtx(t), bResult); err != nil {
			t.Fatalf("orchestrator-b cannot read its own result: %v", err)
		}
		// ...orchestrator-a cannot, by subject...
		rsA, err := a.js.Stream(clientCtx(t), "DBUSERS_RESULTS")
		if err != nil {
			t.Fatal(err)
		}
		if m, err := rsA.GetLastMsgForSubject(shortCtx(t), bResult); err == nil {
			t.Fatalf("orchestrator-a read crm's result: %s", m.Data)
		}
		a.waitViolation(t, "publish", "$JS.API.DIRECT.GET.DBUSERS_RESULTS."+bResult)
		// ...nor live: each of these subscriptions is refused.
		for _, subject := range []string{bResult, "dbusers.results.crm.>", "dbusers.results.>", "dbusers.results.*.*", ">",
			"_INBOX.>", "_INBOX_orchestrator-b.>", "$JS.API.>"} {
			sub, err := a.nc.SubscribeSync(subject)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			a.waitViolation(t, "subscription", subject)
			if _, err := sub.NextMsg(time.Second); !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("subscription on %s: NextMsg = %v, want a permissions violation", subject, err)
			}
			_ = sub.Unsubscribe()
		}
	})

	t.Run("cannot read or purge another target's vault entries", func(t *testing.T) {
		kvA, err := a.js.KeyValue(clientCtx(t), "DBUSERS_VAULT")
		if err != nil {
			t.Fatalf("orchestrator-a cannot open the vault bucket: %v", err)
		}
		if e, err := kvA.Get(shortCtx(t), bVaultKey); err == nil {
			t.Fatalf("orchestrator-a read crm's vault entry (%d bytes)", len(e.Value()))
		}
		a.waitViolation(t, "publish", "$JS.API.DIRECT.GET.KV_DBUSERS_VAULT.$KV.DBUSERS_VAULT."+bVaultKey)
		if err := kvA.Purge(shortCtx(t), bVaultKey); err == nil {
			t.Fatal("orchestrator-a purged crm's vault entry")
		}
		a.waitViolation(t, "publish", "$KV.DBUSERS_VAULT."+bVaultKey)
		if _, err := kvA.Keys(shortCtx(t)); err == nil {
			t.Fatal("orchestrator-a listed the vault's keys")
		}
		// The entry is still there for orchestrator-b, and opens.
		kvB, err := b.js.KeyValue(clientCtx(t), "DBUSERS_VAULT")
		if err != nil {
			t.Fatal(err)
		}
		e, err := kvB.Get(clientCtx(t), bVaultKey)
		if err != nil {
			t.Fatalf("orchestrator-b cannot read its vault entry: %v", err)
		}
		pw, err := vault.OpenGeneratedPassword(bKey, svc.PublicKey(), e.Value(), bJob)
		if err != nil {
			t.Fatal(err)
		}
		if err := crm.CanLogin(bUser, pw.Reveal()); err != nil {
			t.Fatalf("orchestrator-b's generated password does not log in: %v", err)
		}
		if err := kvB.Purge(clientCtx(t), bVaultKey); err != nil {
			t.Fatalf("orchestrator-b cannot purge its vault entry: %v", err)
		}
	})

	// Every other way in that the JetStream API offers: body-addressed
	// gets, consumers (which would deliver any subject), forged results,
	// and administration.
	t.Run("refused API requests", func(t *testing.T) {
		tests := []struct {
			name, subject, body string
		}{
			{"direct get by body", "$JS.API.DIRECT.GET.DBUSERS_RESULTS", `{"last_by_subj":"` + bResult + `"}`},
			{"message get by body", "$JS.API.STREAM.MSG.GET.DBUSERS_RESULTS", `{"last_by_subj":"` + bResult + `"}`},
			{"vault get by body", "$JS.API.STREAM.MSG.GET.KV_DBUSERS_VAULT", `{"last_by_subj":"$KV.DBUSERS_VAULT.` + bVaultKey + `"}`},
			{"direct get of a jobs", "$JS.API.DIRECT.GET.DBUSERS_JOBS", `{"seq":1}`},
			{"wildcard direct get", "$JS.API.DIRECT.GET.DBUSERS_RESULTS.dbusers.results.*.*", ""},
			{"results consumer", "$JS.API.CONSUMER.CREATE.DBUSERS_RESULTS.peek", `{"stream_name":"DBUSERS_RESULTS","config":{"name":"peek"}}`},
			{"filtered results consumer", "$JS.API.CONSUMER.CREATE.DBUSERS_RESULTS.peek.dbusers.results.crm.>", `{}`},
			{"vault consumer", "$JS.API.CONSUMER.CREATE.KV_DBUSERS_VAULT.peek", `{}`},
			{"jobs consumer", "$JS.API.CONSUMER.CREATE.DBUSERS_JOBS.peek", `{}`},
			{"pull the worker's consumer", "$JS.API.CONSUMER.MSG.NEXT.DBUSERS_JOBS.worker-misc", `{"batch":1}`},
			{"forged result of another target", "dbusers.results.crm.job-forged", `{"status":"ok"}`},
			{"forged result of its own target", "dbusers.results.shop.job-forged", `{"status":"ok"}`},
			{"vault put for another target", "$KV.DBUSERS_VAULT.crm.job-forged", "x"},
			{"wildcard vault purge", "$KV.DBUSERS_VAULT.*.*", ""},
			{"intents", "$KV.DBUSERS_INTENTS.crm.someone", "x"},
			{"leases", "$KV.DBUSERS_LEASES.partition.0", "x"},
			{"purge the jobs stream", "$JS.API.STREAM.PURGE.DBUSERS_JOBS", ""},
			{"delete the results stream", "$JS.API.STREAM.DELETE.DBUSERS_RESULTS", ""},
			{"update the vault stream", "$JS.API.STREAM.UPDATE.KV_DBUSERS_VAULT", "{}"},
			{"stream list", "$JS.API.STREAM.LIST", ""},
			{"ack a job", "$JS.ACK.DBUSERS_JOBS.worker-p0.1.1.1.1.0", ""},
			{"micro service discovery", "$SRV.PING", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				// The server drops a refused publish and says so; a request
				// would only time out.
				msg := nats.NewMsg(tt.subject)
				msg.Reply = a.nc.NewRespInbox()
				msg.Data = []byte(tt.body)
				if err := a.nc.PublishMsg(msg); err != nil {
					t.Fatal(err)
				}
				a.waitViolation(t, "publish", tt.subject)
			})
		}
		// The vault entry is still sealed where it was: nothing above
		// reached it (orchestrator-b purged it itself; the bucket holds its
		// purge marker).
		if _, err := b.js.KeyValue(clientCtx(t), "DBUSERS_VAULT"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("orchestrator-b is held to crm", func(t *testing.T) {
		subject := "dbusers.jobs.shop.user.list"
		if _, err := b.js.Publish(shortCtx(t), subject, []byte(`{"id":"job-b-on-shop"}`)); err == nil {
			t.Fatalf("the jobs stream accepted orchestrator-b's %s", subject)
		}
		b.waitViolation(t, "publish", subject)
		if _, err := cb.ListUsers(clientCtx(t), "crm"); err != nil {
			t.Fatalf("orchestrator-b lists crm: %v", err)
		}
	})

	t.Run("worker needed nothing it was refused", func(t *testing.T) {
		// Let a few lease renewals run under the worker's user, and read
		// its metrics and readiness, which ask JetStream too.
		time.Sleep(2 * cfg.NATS.LeaseTTL)
		for _, path := range []string{"/readyz", "/metrics"} {
			resp, err := http.Get("http://" + svc.HTTPAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %s", path, resp.Status)
			}
		}
		if v := slog.violations(permWorkerUser); len(v) > 0 {
			t.Fatalf("the worker hit permissions violations:\n%s", strings.Join(v, "\n"))
		}
		if res, err := cb.ListUsers(clientCtx(t), "crm"); err != nil || len(res) != 2 {
			t.Fatalf("list after lease renewals: %+v, %v", res, err)
		}
		// The server log does name violations by user: orchestrator-a's
		// are there.
		if len(slog.violations(permOrchAUser)) == 0 {
			t.Fatal("the server logged no violation of orchestrator-a: the log check proves nothing")
		}
	})
}
