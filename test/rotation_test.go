package test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/wire"
)

// fastExpiry has the expiry watcher look for ended old passwords every
// 100 ms.
var fastExpiry = service.Options{OldPasswordCheckEvery: 100 * time.Millisecond}

// accountsWithPasswords makes n accounts of the fixture's database, each
// with a password of its own, and returns username → password.
func accountsWithPasswords(t *testing.T, f *mysqltest.Fixture, prefix string, n int) map[string]string {
	t.Helper()
	names := makeAccounts(t, f, prefix, n)
	pws := make(map[string]string, n)
	for _, u := range names {
		pw := mysqltest.Password()
		if _, err := f.Root.Exec("ALTER USER ?@'%' IDENTIFIED BY ?", u, pw); err != nil {
			t.Fatal(err)
		}
		pws[u] = pw
	}
	return pws
}

// appLoop is an application that opens a new connection with each
// account's old password, one after another, until stopped; it counts the
// logins that failed.
type appLoop struct {
	stop   chan struct{}
	done   chan struct{}
	logins atomic.Int64
	failed atomic.Int64
	mu     sync.Mutex
	first  error
}

func startAppLoop(t *testing.T, f *mysqltest.Fixture, pws map[string]string) *appLoop {
	a := &appLoop{stop: make(chan struct{}), done: make(chan struct{})}
	users := make([]string, 0, len(pws))
	for u := range pws {
		users = append(users, u)
	}
	go func() {
		defer close(a.done)
		for i := 0; ; i++ {
			select {
			case <-a.stop:
				return
			default:
			}
			u := users[i%len(users)]
			a.logins.Add(1)
			if err := loginError(context.Background(), f, u, pws[u]); err != nil {
				a.failed.Add(1)
				a.mu.Lock()
				if a.first == nil {
					a.first = fmt.Errorf("%s: %w", u, err)
				}
				a.mu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(a.end)
	return a
}

func (a *appLoop) end() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

// refusedLogins returns the accounts of pws whose password still logs in.
func stillLogIn(t *testing.T, f *mysqltest.Fixture, pws map[string]string) []string {
	t.Helper()
	var in []string
	for u, pw := range pws {
		if loginError(t.Context(), f, u, pw) == nil {
			in = append(in, u)
		}
	}
	return in
}

// TestRotationWithoutDowntime: while an application keeps opening new
// connections with the old passwords, a 200-account rotation keeping them
// runs through the CLI: no login fails, every new password logs in, and
// the old ones stop after a discard job, and, in a second run, when their
// time comes (the schedule entry's time moved to now, as time passing
// would).
func TestRotationWithoutDowntime(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorkerWith(t, []config.Target{target("app", f)}, nil, fastExpiry)
	waitForInfo(t, e)
	c := newCLI(t, buildCLI(t), e.cfg.NATS.URL, "app")
	old := accountsWithPasswords(t, f, "zdt_", 200)

	app := startAppLoop(t, f, old)
	out := filepath.Join(t.TempDir(), "new.jsonl")
	r := c.run("", "database-users-rotate", "--all", "--keep-old", "2m", "--out", out, "--concurrency", "16")
	time.Sleep(100 * time.Millisecond) // the application's logins right after the rotation
	app.end()
	if r.code != 0 {
		t.Fatalf("rotate: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	if n := app.failed.Load(); n != 0 {
		t.Fatalf("%d of %d logins with the old passwords failed during the rotation; first: %v", n, app.logins.Load(), app.first)
	}
	if app.logins.Load() < 50 {
		t.Fatalf("only %d logins during the rotation: the application loop did not run beside it", app.logins.Load())
	}
	fresh := readCredentials(t, out)
	if len(fresh) != len(old) {
		t.Fatalf("%d new credentials for %d accounts", len(fresh), len(old))
	}
	checkLogins(t, f, fresh)
	checkLogins(t, f, old)

	// A discard job ends the old password at once.
	half := map[string]string{}
	for u, pw := range old {
		if len(half) == len(old)/2 {
			break
		}
		half[u] = pw
	}
	for u := range half {
		if r := c.run("", "database-users-discard-old-password", u); r.code != 0 {
			t.Fatalf("discard %s: exit %d, %s", u, r.code, r.stderr)
		}
	}
	if in := stillLogIn(t, f, half); len(in) != 0 {
		t.Fatalf("%d old passwords still log in after their discard: %v", len(in), in)
	}
	checkLogins(t, f, fresh)

	// The others end when their time comes: here, now.
	rest := map[string]string{}
	for u, pw := range old {
		if _, gone := half[u]; !gone {
			rest[u] = pw
		}
	}
	checkLogins(t, f, rest)
	kv, err := e.js.KeyValue(t.Context(), "DBUSERS_OLD_PASSWORDS")
	if err != nil {
		t.Fatal(err)
	}
	for u := range rest {
		entry, err := kv.Get(t.Context(), "app."+u)
		if err != nil {
			t.Fatalf("no schedule entry for %s: %v", u, err)
		}
		var v map[string]any
		if err := json.Unmarshal(entry.Value(), &v); err != nil {
			t.Fatal(err)
		}
		v["until"] = time.Now().UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(v)
		if _, err := kv.Put(t.Context(), "app."+u, b); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		in := stillLogIn(t, f, rest)
		if len(in) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d old passwords still log in 30s after their time: %v", len(in), in)
		}
		time.Sleep(500 * time.Millisecond)
	}
	checkLogins(t, f, fresh)
}

// keepOldPlan publishes one keep-old reset per account, without waiting
// for each ack, and returns job id → username.
func keepOldPlan(t *testing.T, nc *nats.Conn, r requester, users []string, keep string) map[string]string {
	t.Helper()
	js := jetstreamFor(t, nc)
	ids := map[string]string{}
	for i, u := range users {
		id := fmt.Sprintf("app-keep-%d", i)
		body, _ := json.Marshal(map[string]any{"id": id, "username": u, "reply_key": r.pub, "keep_old_for": keep})
		msg := nats.NewMsg(prefix + ".jobs.app.user.reset_password")
		msg.Data = body
		msg.Header.Set("Nats-Msg-Id", id)
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		ids[id] = u
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the jobs stream did not ack every job in 30s")
	}
	return ids
}

// TestWorkerKilledDuringKeepOldRotation: a 600-account keep-old bulk rotation while
// the worker process is killed (-9) and restarted: afterwards each account
// accepts its original password and its delivered new one, and holds
// exactly those two.
func TestWorkerKilledDuringKeepOldRotation(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs worker processes")
	}
	ns := natsOnTCP(t, t.TempDir(), -1)
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	cfgPath := workerYAML(t, t.TempDir(), ns.ClientURL(), []config.Target{target("app", f)}, "retry:\n  budget: 2m\n")
	p := startProc(t, cfgPath)
	// Enough accounts for several batches, so that kills land between
	// and inside their statements.
	old := accountsWithPasswords(t, f, "zkill_", 600)
	users := make([]string, 0, len(old))
	for u := range old {
		users = append(users, u)
	}
	e := &env{t: t, nc: connect(t, ns.ClientURL())}
	e.js = jetstreamFor(t, e.nc)
	sub, err := e.nc.SubscribeSync(prefix + ".results.app.>")
	if err != nil {
		t.Fatal(err)
	}
	r := newRequester(t)
	ids := keepOldPlan(t, connect(t, ns.ClientURL()), r, users, "10m")
	midRun := 0 // processes killed after answering some jobs, before all
	for kills := 0; kills < 4; kills++ {
		// Killed once it answered a few jobs: a batch or two of 600
		// go by in a tenth of a second.
		some := 1 + rand.IntN(40)
		for deadline := time.Now().Add(20 * time.Second); p.jobLines() < some && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		p.kill()
		if n := p.jobLines(); n > 0 && n < len(users) {
			midRun++
		}
		p = startProc(t, cfgPath)
	}
	if midRun == 0 {
		t.Error("no process was killed in the middle of the rotation")
	}
	want := map[string]bool{}
	for id := range ids {
		want[id] = true
	}
	results := collect(t, sub, want, 3*time.Minute)
	e.svcKey = workerKey(t, e.nc)
	fresh := map[string]string{}
	for id, res := range results {
		if res.Status != wire.StatusOK || res.Secret == nil || res.User == nil || res.User.OldPasswordUntil == nil {
			t.Fatalf("job %s: %+v", id, res)
		}
		fresh[ids[id]] = e.readSecret(r, id, res.Secret)
	}
	checkLogins(t, f, old)
	checkLogins(t, f, fresh)
	// Exactly two methods each: the new password's and the original's.
	for _, u := range users {
		var two bool
		if err := f.Root.QueryRow("SELECT JSON_EXISTS(Priv, '$.auth_or[1]') AND NOT JSON_EXISTS(Priv, '$.auth_or[2]') FROM mysql.global_priv WHERE User = ? AND Host = '%'", u).Scan(&two); err != nil {
			t.Fatal(err)
		}
		if !two {
			t.Fatalf("%s does not hold exactly two passwords", u)
		}
	}
}

// TestOldPasswordOutlivesARestart: a retained old password is still
// there after the worker restarts, and still ends at its time, ended by
// the new process.
func TestOldPasswordOutlivesARestart(t *testing.T) {
	t.Parallel()
	ns := natsOnTCP(t, t.TempDir(), -1)
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	old := accountsWithPasswords(t, f, "zrst_", 3)
	e := startWorkerOnWith(t, ns, []config.Target{target("app", f)}, nil, fastExpiry)
	waitForInfo(t, e)
	fresh := map[string]string{}
	for u := range old {
		res, pw := e.withPassword("app", "reset_password", map[string]any{"username": u, "keep_old_for": "1m"}, "")
		wantOK(t, res)
		if res.User == nil || res.User.OldPasswordUntil == nil {
			t.Fatalf("result %+v: no old_password_until", res)
		}
		fresh[u] = pw
	}
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	checkLogins(t, f, old)
	e2 := startWorkerOnWith(t, ns, []config.Target{target("app", f)}, nil, fastExpiry)
	waitForInfo(t, e2)
	// Listing shows when each ends.
	list := e2.job("app", "list", map[string]any{})
	wantOK(t, list)
	ends := 0
	for _, a := range list.Users {
		if _, ok := old[a.Username]; ok && a.OldPasswordUntil != nil {
			ends++
		}
	}
	if ends != len(old) {
		t.Fatalf("the list shows the old password's end of %d of %d accounts", ends, len(old))
	}
	// The minute passes (moved forward: the entries say now).
	kv, err := e2.js.KeyValue(t.Context(), "DBUSERS_OLD_PASSWORDS")
	if err != nil {
		t.Fatal(err)
	}
	for u := range old {
		entry, err := kv.Get(t.Context(), "app."+u)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		_ = json.Unmarshal(entry.Value(), &v)
		v["until"] = time.Now().UTC().Format(time.RFC3339Nano)
		b, _ := json.Marshal(v)
		if _, err := kv.Put(t.Context(), "app."+u, b); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(stillLogIn(t, f, old)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("old passwords still log in 30s after their time, after a restart")
		}
		time.Sleep(300 * time.Millisecond)
	}
	checkLogins(t, f, fresh)
}
