package test

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
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
	// orchAPIPrefix is the JetStream API prefix the orchestrator accounts
	// import the worker's direct gets under.
	orchAPIPrefix = "dbusers.api"
)

// startAccountsServer runs deploy/nats-accounts.conf in process, with only
// its listen address (a free port on 127.0.0.1) and store directory
// changed, and signal handling off as for every in-process server here.
func startAccountsServer(t *testing.T) *server.Server {
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
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s
}

// userURL is the server's URL with user and password in it, as the
// worker's nats.url takes them.
func userURL(s *server.Server, user, password string) string {
	u, _ := url.Parse(s.ClientURL())
	u.User = url.UserPassword(user, password)
	return u.String()
}

// tenants is the shipped accounts file running with a worker serving shop
// (orchestrator-a's) and crm (orchestrator-b's), and a connection for each.
type tenants struct {
	worker   *nats.Conn // in the worker's account: sees what reaches it
	workerJS jetstream.JetStream
	a, b     *nats.Conn
	ca, cb   *client.Client
	shop     *mysqltest.Fixture
	crm      *mysqltest.Fixture
}

func startTenants(t *testing.T) *tenants {
	t.Helper()
	s := startAccountsServer(t)
	tn := &tenants{shop: mysqltest.NewFixture(t, mysqltest.Options{}), crm: mysqltest.NewFixture(t, mysqltest.Options{})}
	cfg := config.Default()
	cfg.NATS.URL = userURL(s, permWorkerUser, permWorkerPassword)
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "worker.xk")
	cfg.Retry.Budget = 10 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = []config.Target{target("shop", tn.shop), target("crm", tn.crm)}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	svc, err := service.Start(ctx, &cfg, service.Options{Logger: zap.NewNop(), StraySweepEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("the worker does not start in its account: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	tn.worker = connectAs(t, s, permWorkerUser, permWorkerPassword)
	tn.workerJS = jetstreamFor(t, tn.worker)
	tn.a = connectAs(t, s, permOrchAUser, permOrchAPassword)
	tn.b = connectAs(t, s, permOrchBUser, permOrchBPassword)
	for _, p := range []struct {
		nc *nats.Conn
		c  **client.Client
	}{{tn.a, &tn.ca}, {tn.b, &tn.cb}} {
		c, err := client.New(p.nc, client.WithJetStreamAPIPrefix(orchAPIPrefix), client.WithTimeout(20*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		*p.c = c
	}
	return tn
}

func connectAs(t *testing.T, s *server.Server, user, password string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password), nats.Name(user), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// watch subscribes, in the worker's account, to subject and returns a
// function that fails the test if anything arrived there.
func (tn *tenants) watch(t *testing.T, subject string) func() {
	t.Helper()
	sub, err := tn.worker.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.worker.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		defer sub.Unsubscribe()
		if m, err := sub.NextMsg(time.Second); err == nil {
			t.Errorf("a message reached %s in the worker's account: %s %q", subject, m.Subject, m.Data)
		}
	}
}

// TestTenantsOwnTargetEndToEnd: each orchestrator, in its own account, runs
// its own target's jobs through the client, generated passwords included.
func TestTenantsOwnTargetEndToEnd(t *testing.T) {
	t.Parallel()
	tn := startTenants(t)
	ctx := t.Context()
	for _, tc := range []struct {
		c      *client.Client
		target string
		f      *mysqltest.Fixture
	}{{tn.ca, "shop", tn.shop}, {tn.cb, "crm", tn.crm}} {
		name := "u_" + mysqltest.Token(8)
		creds, err := tc.c.CreateUser(ctx, tc.target, client.CreateUserRequest{Username: name, ReadOnly: true})
		if err != nil {
			t.Fatalf("%s: create: %v", tc.target, err)
		}
		if err := tc.f.CanLogin(name, creds.Password.Reveal()); err != nil {
			t.Fatalf("%s: the password in the result does not log in: %v", tc.target, err)
		}
		creds, err = tc.c.ResetPassword(ctx, tc.target, client.ResetPasswordRequest{Username: name})
		if err != nil {
			t.Fatalf("%s: reset: %v", tc.target, err)
		}
		if err := tc.f.CanLogin(name, creds.Password.Reveal()); err != nil {
			t.Fatalf("%s: the password in the result does not log in: %v", tc.target, err)
		}
		users, err := tc.c.ListUsers(ctx, tc.target)
		if err != nil || len(users) < 2 {
			t.Fatalf("%s: list: %v %v", tc.target, users, err)
		}
		if _, err := tc.c.DeleteUser(ctx, tc.target, client.DeleteUserRequest{Username: name}); err != nil {
			t.Fatalf("%s: delete: %v", tc.target, err)
		}
	}
}

// TestTenantsCannotReachEachOther runs, from orchestrator-a, every attack
// of the security review against crm (orchestrator-b's target), and checks
// that no job of A lands in crm's queue, no message from A appears under
// crm's results, none of crm's keys or ids can be read, listed, probed or
// purged by A, and crm's accounts are untouched.
func TestTenantsCannotReachEachOther(t *testing.T) {
	t.Parallel()
	tn := startTenants(t)
	ctx := t.Context()

	// crm's own state: an account with a password its tenant chose, and an
	// unread generated password in the vault.
	victim := "v_" + mysqltest.Token(8)
	const victimPassword = "crm-chosen-password-0123456789"
	if _, err := tn.cb.CreateUser(ctx, "crm", client.CreateUserRequest{Username: victim, Password: secret.New(victimPassword)}); err != nil {
		t.Fatal(err)
	}
	unreadKey := "crm.vault-probe-" + mysqltest.Token(6)
	kv, err := tn.workerJS.KeyValue(ctx, "DBUSERS_VAULT")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, unreadKey, []byte("sealed-for-crm")); err != nil {
		t.Fatal(err)
	}
	// A shop job of A's own, whose result A may read.
	if _, err := tn.ca.ListUsers(ctx, "shop"); err != nil {
		t.Fatal(err)
	}

	crmJobs := tn.watch(t, "dbusers.jobs.crm.>")
	crmResults := tn.watch(t, "dbusers.results.crm.>")
	bResults, err := tn.b.SubscribeSync("dbusers.results.crm.>")
	if err != nil {
		t.Fatal(err)
	}

	request := func(subject, reply string, hdr nats.Header, data []byte) {
		t.Helper()
		m := &nats.Msg{Subject: subject, Reply: reply, Header: hdr, Data: data}
		if err := tn.a.PublishMsg(m); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	shopResult := "dbusers.results.shop.none"
	// 1. Job injection through a reply subject: a direct get of A's own
	// (stored result, vault key) answered onto crm's job subjects.
	for _, op := range []string{"delete", "create", "reset_password"} {
		request(orchAPIPrefix+".DIRECT.GET.DBUSERS_RESULTS."+shopResult, "dbusers.jobs.crm.user."+op, nil, nil)
		request(orchAPIPrefix+".DIRECT.GET.KV_DBUSERS_VAULT.$KV.DBUSERS_VAULT.shop.x", "dbusers.jobs.crm.user."+op, nil, nil)
		// The same names the shared account used.
		request("$JS.API.DIRECT.GET.KV_DBUSERS_VAULT.$KV.DBUSERS_VAULT.shop.x", "dbusers.jobs.crm.user."+op, nil, nil)
	}
	// A's own vault write, as the review's first step: it reaches only
	// the purge service, which ignores the body.
	request("$KV.DBUSERS_VAULT.shop.x", "", nil, []byte(`{"id":"inject","username":"`+victim+`"}`))
	// 2. Result forgery: A's own shop job with crm's result subject as reply.
	request("dbusers.jobs.shop.user.list", "dbusers.results.crm.forged", nats.Header{"Nats-Msg-Id": {"forge-1"}}, []byte(`{"id":"forge-1"}`))
	// 3. Junk jobs through the info endpoint's reply.
	request("dbusers.info", "dbusers.jobs.crm.user.list", nil, nil)
	// Direct publishes on crm's subjects: no import carries them.
	request("dbusers.jobs.crm.user.delete", "", nil, []byte(`{"id":"direct","username":"`+victim+`"}`))
	request("dbusers.results.crm.forged2", "", nil, []byte(`{"id":"forged2","status":"ok"}`))
	if err := tn.a.Flush(); err != nil {
		t.Fatal(err)
	}
	crmJobs()
	crmResults()
	if m, err := bResults.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("orchestrator-b received %s %q", m.Subject, m.Data)
	}

	// 4. Probing, listing and purging crm's vault and streams.
	ask := func(subject string, hdr nats.Header, data []byte) *nats.Msg {
		t.Helper()
		m, err := tn.a.RequestMsg(&nats.Msg{Subject: subject, Header: hdr, Data: data}, 2*time.Second)
		if err != nil {
			return nil
		}
		return m
	}
	for _, probe := range []struct {
		name    string
		subject string
		hdr     nats.Header
		data    []byte
	}{
		{"expected-last-subject-sequence on crm's key", "$KV.DBUSERS_VAULT.shop.probe",
			nats.Header{"Nats-Expected-Last-Subject-Sequence-Subject": {"$KV.DBUSERS_VAULT." + unreadKey}, "Nats-Expected-Last-Subject-Sequence": {"0"}}, nil},
		{"rollup of the whole bucket", "$KV.DBUSERS_VAULT.shop.probe", nats.Header{"Nats-Rollup": {"all"}, "KV-Operation": {"PURGE"}}, nil},
		{"stream info with a subject filter", "$JS.API.STREAM.INFO.DBUSERS_RESULTS", nil, []byte(`{"subjects_filter":">"}`)},
		{"stream info under the prefix", orchAPIPrefix + ".STREAM.INFO.KV_DBUSERS_VAULT", nil, []byte(`{"subjects_filter":">"}`)},
		{"jobs stream info", "$JS.API.STREAM.INFO.DBUSERS_JOBS", nil, []byte(`{"subjects_filter":">"}`)},
		{"crm's vault key", orchAPIPrefix + ".DIRECT.GET.KV_DBUSERS_VAULT.$KV.DBUSERS_VAULT." + unreadKey, nil, nil},
		{"crm's key in a direct-get body", orchAPIPrefix + ".DIRECT.GET.KV_DBUSERS_VAULT.$KV.DBUSERS_VAULT.shop.x", nil,
			[]byte(`{"multi_last":["$KV.DBUSERS_VAULT.crm.>"]}`)},
		{"a wildcard key", orchAPIPrefix + ".DIRECT.GET.KV_DBUSERS_VAULT.$KV.DBUSERS_VAULT.*.>", nil, nil},
		{"crm's results by body", orchAPIPrefix + ".DIRECT.GET.DBUSERS_RESULTS", nil, []byte(`{"last_by_subj":"dbusers.results.crm.>"}`)},
		{"crm's purge", "$KV.DBUSERS_VAULT.crm." + strings.TrimPrefix(unreadKey, "crm."), nil, nil},
		{"a wildcard purge", "$KV.DBUSERS_VAULT.shop.*", nats.Header{"KV-Operation": {"PURGE"}, "Nats-Rollup": {"sub"}}, nil},
	} {
		m := ask(probe.subject, probe.hdr, probe.data)
		if m == nil {
			continue // nobody answered: nothing learned
		}
		body := string(m.Data) + " " + strings.Join(m.Header.Values("Nats-Subject"), ",")
		if strings.Contains(body, "crm") || strings.Contains(body, "sealed-for-crm") {
			t.Errorf("%s: A learned of crm: %q", probe.name, body)
		}
		if probe.name == "expected-last-subject-sequence on crm's key" && strings.Contains(body, "wrong last sequence") {
			t.Errorf("%s: the answer tells whether crm's key exists: %q", probe.name, body)
		}
	}
	// crm's unread vault entry is still there, and its account untouched.
	if e, err := kv.Get(ctx, unreadKey); err != nil || string(e.Value()) != "sealed-for-crm" {
		t.Errorf("crm's unread vault entry is gone: %v", err)
	}
	if err := tn.crm.CanLogin(victim, victimPassword); err != nil {
		t.Errorf("crm's account no longer logs in with its password: %v", err)
	}
	users, err := tn.cb.ListUsers(ctx, "crm")
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 {
		t.Errorf("crm's accounts changed: %+v", users)
	}
	// Every job stored was answered and removed: none stays behind (an ack's
	// removal may trail its result by a moment).
	stream, err := tn.workerJS.Stream(ctx, "DBUSERS_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			raw, _ := json.Marshal(info.State.Subjects)
			t.Fatalf("jobs left in the jobs stream: %s", raw)
		}
	}
}
