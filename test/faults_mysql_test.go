package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// collect reads results from sub until every id in want has one, and
// fails the test on a second, different result for an id.
func collect(t *testing.T, sub *nats.Subscription, want map[string]bool, timeout time.Duration) map[string]wire.Result {
	t.Helper()
	got := map[string]wire.Result{}
	raw := map[string]string{}
	deadline := time.Now().Add(timeout)
	for len(got) < len(want) {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("%d of %d results after %v: %v", len(got), len(want), timeout, err)
		}
		var res wire.Result
		if err := json.Unmarshal(msg.Data, &res); err != nil {
			t.Fatal(err)
		}
		if !want[res.ID] {
			continue
		}
		if prev, ok := raw[res.ID]; ok && prev != string(msg.Data) {
			t.Fatalf("job %s got two different results:\n%s\n%s", res.ID, prev, msg.Data)
		}
		raw[res.ID] = string(msg.Data)
		got[res.ID] = res
	}
	return got
}

// TestMySQLDownMidRun stops the test's own MariaDB for about 10 s while
// jobs run: no job fails, all complete once it is back, and every
// delivered password logs in.
func TestMySQLDownMidRun(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts its own MariaDB")
	}
	srv := mysqltest.StartServer(t)
	f := mysqltest.NewFixture(t, mysqltest.Options{Server: srv})
	e := startWorker(t, []config.Target{target("own", f)}, func(c *config.Config) {
		c.Retry.Budget = 90 * time.Second
		c.NATS.AckWait = 5 * time.Second
	})
	sub, err := e.nc.SubscribeSync(prefix + ".results.own.>")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	type job struct {
		id, op, user string
		r            requester
	}
	var plan []job
	for i := range 20 {
		u := fmt.Sprintf("down%02d_%s", i, mysqltest.Token(6))
		for _, op := range []string{"create", "reset_password"} {
			plan = append(plan, job{id: fmt.Sprintf("down-%s-%d-%s", op[:1], i, mysqltest.Token(4)), op: op, user: u, r: newRequester(t)})
		}
	}
	want := map[string]bool{}
	publish := func(j job) {
		body, _ := json.Marshal(map[string]any{"id": j.id, "username": j.user, "reply_key": j.r.pub})
		msg := nats.NewMsg(prefix + ".jobs.own.user." + j.op)
		msg.Data = body
		msg.Header.Set("Nats-Msg-Id", j.id)
		if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
		want[j.id] = true
	}
	for _, j := range plan[:10] {
		publish(j)
	}
	first := collect(t, sub, want, 30*time.Second)
	want = map[string]bool{}
	srv.Stop()
	for _, j := range plan[10:] {
		publish(j)
	}
	time.Sleep(10 * time.Second)
	srv.Start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", e.logs.String())
		}
	})
	results := collect(t, sub, want, 120*time.Second)
	for id, r := range first {
		results[id] = r
	}

	for _, j := range plan {
		res := results[j.id]
		if res.Status != wire.StatusOK {
			t.Errorf("%s %s: %+v", j.op, j.user, res.Error)
		}
	}
	// The password of the last reset of each user is the one in force.
	for _, j := range plan {
		if j.op != "reset_password" || results[j.id].Secret == nil {
			continue
		}
		pw := e.readSecret(j.r, j.id, results[j.id].Secret)
		if err := f.CanLogin(j.user, pw); err != nil {
			t.Errorf("%s: the delivered password does not log in: %v", j.user, err)
		}
	}
}

// TestBudgetSpentWhileMySQLDown: a job whose retry budget runs out while
// MySQL is down ends unavailable and leaves no account behind.
func TestBudgetSpentWhileMySQLDown(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts its own MariaDB")
	}
	srv := mysqltest.StartServer(t)
	f := mysqltest.NewFixture(t, mysqltest.Options{Server: srv})
	e := startWorker(t, []config.Target{target("own", f)}, func(c *config.Config) { c.Retry.Budget = 3 * time.Second })
	srv.Stop()
	user := mysqltest.Username("budget_")
	start := time.Now()
	res, _ := e.create("own", user, false, "")
	wantCode(t, res, wire.CodeUnavailable)
	if took := time.Since(start); took < 2900*time.Millisecond || took > 30*time.Second {
		t.Errorf("unavailable after %v with a 3s budget", took)
	}
	if res.Attempts < 2 {
		t.Errorf("attempts = %d: transient faults were not retried", res.Attempts)
	}
	srv.Start()
	if f.AccountExists(user) {
		t.Fatal("an unavailable create left an account")
	}
	// The server is back: the same username can be created by a new job.
	res, pw := e.create("own", user, false, "")
	wantOK(t, res)
	if err := f.CanLogin(user, pw); err != nil {
		t.Fatal(err)
	}
}

// TestStatementBoundedUnderBackupLock: under FLUSH TABLES WITH READ LOCK,
// CREATE USER would wait forever; the statement bound ends it with a
// transient error, and the account is made once the lock is gone.
func TestStatementBoundedUnderBackupLock(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts its own MariaDB")
	}
	srv := mysqltest.StartServer(t)
	f := mysqltest.NewFixture(t, mysqltest.Options{Server: srv})
	ctx := context.Background()
	unlock := mysqltest.HoldBackupLock(t, f.Root)
	db, err := mysqlops.OpenDB(secret.New(f.AdminDSN), mysqlops.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	tg := mysqlops.New(db, mysqlops.Options{Database: f.Database, StatementTimeout: time.Second})
	user := mysqltest.Username("lock_")
	start := time.Now()
	err = tg.Create(ctx, user, secret.New(mysqltest.Password()), false, &recordIntent{}, nil)
	if err == nil || mysqlops.Classify(err) == mysqlops.Permanent {
		t.Fatalf("create under a backup lock: %v (class %v), want a transient error", err, mysqlops.Classify(err))
	}
	if !errors.Is(err, &mysql.MySQLError{Number: 1969}) {
		t.Logf("ended by %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the statement bound did not hold: %v", took)
	}
	unlock()
	if err := tg.Create(ctx, user, secret.New(mysqltest.Password()), false, &recordIntent{recorded: true}, nil); err != nil {
		t.Fatalf("create after the lock: %v", err)
	}
}

// recordIntent is an in-memory intent record.
type recordIntent struct{ recorded bool }

func (i *recordIntent) Mine(context.Context) (bool, error) { return i.recorded, nil }
func (i *recordIntent) Record(context.Context) (bool, error) {
	earlier := i.recorded
	i.recorded = true
	return earlier, nil
}
func (i *recordIntent) Unsent() {}

// TestStuckTargetHoldsUpOnlyItself: 5,000 jobs of a target whose MySQL does
// not answer, published ahead of another target's jobs in the same
// partition, fill the stuck target's lane but not the partition consumer's
// ack-pending window (16,384; with the former 4,096 this test failed): the
// other target's jobs still finish. A target with more stuck jobs than the
// window does stall its partition (docs/operations.md, "At the limits").
func TestStuckTargetHoldsUpOnlyItself(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	// Two target names in one partition.
	var stuckName string
	for i := 0; ; i++ {
		if name := fmt.Sprintf("stuck%d", i); wire.Partition(name, 8) == wire.Partition("live", 8) {
			stuckName = name
			break
		}
	}
	stuck := deadTarget(t, stuckName)
	e := startWorker(t, []config.Target{target("live", f), stuck}, func(c *config.Config) { c.Retry.Budget = 5 * time.Minute })

	js := e.js
	for i := range 5000 {
		body := fmt.Sprintf(`{"id":"stuck-%d","username":"stuck_user%d"}`, i, i)
		if _, err := js.PublishAsync(prefix+".jobs."+stuckName+".user.delete", []byte(body)); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 { // stay under the async window
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publishing the stuck target's jobs did not finish")
			}
		}
	}
	start := time.Now()
	for i := range 20 {
		wantOK(t, e.job("live", "list", map[string]any{"id": fmt.Sprintf("live-%d", i)}))
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("the live target's 20 jobs took %v behind a stuck target in its partition", took)
	}
}
