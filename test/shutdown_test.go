package test

import (
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/wire"
)

// TestShutdownHandsBackAStuckJob: a job stuck behind a backup lock when the
// worker is told to stop is handed back within the shutdown grace, without
// a result; the next worker completes it.
func TestShutdownHandsBackAStuckJob(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts its own MariaDB")
	}
	srv := mysqltest.StartServer(t)
	f := mysqltest.NewFixture(t, mysqltest.Options{Server: srv})
	e := startWorker(t, []config.Target{target("own", f)}, func(c *config.Config) {
		c.ShutdownGrace = 2 * time.Second
		c.NATS.AckWait = 2 * time.Second
	})
	unlock := mysqltest.HoldBackupLock(t, f.Root)
	sub, err := e.nc.SubscribeSync(prefix + ".results.own.>")
	if err != nil {
		t.Fatal(err)
	}
	user := mysqltest.Username("stuck_")
	f.DropUserLater(user)
	plan := []planned{{target: "own", op: "create", user: user, id: "stuck-" + mysqltest.Token(6), r: newRequester(t)}}
	want := publishPlan(t, e.nc, plan)
	time.Sleep(500 * time.Millisecond) // the create is waiting for the lock

	start := time.Now()
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("stop took %v with a 2s grace", took)
	}
	if msg, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("a stopped worker published a result for a job it did not finish: %s", msg.Data)
	}
	unlock()

	next, err := service.Start(t.Context(), e.cfg, service.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Stop() })
	e.svc = next
	results := collect(t, sub, want, time.Minute)
	if res := results[plan[0].id]; res.Status != wire.StatusOK {
		t.Fatalf("handed-back create: %+v", res.Error)
	}
	if !f.AccountExists(user) {
		t.Fatal("the account was not made")
	}
	res := results[plan[0].id]
	if pw := e.readSecret(plan[0].r, plan[0].id, res.Secret); f.CanLogin(user, pw) != nil {
		t.Fatal("the delivered password does not log in")
	}
}
