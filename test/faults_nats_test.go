package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/wire"
)

// planned is one job of a fault test's plan.
type planned struct {
	target, op, user, id string
	r                    requester
}

// userPlan is create → reset → reset (→ delete for every third user),
// for perTarget users on each target.
func userPlan(t *testing.T, targets []string, perTarget int) []planned {
	t.Helper()
	var plan []planned
	for _, tg := range targets {
		for i := range perTarget {
			u := fmt.Sprintf("k%03d_%s", i, mysqltest.Token(8))
			ops := []string{"create", "reset_password", "reset_password"}
			if i%3 == 0 {
				ops = append(ops, "delete")
			}
			for n, op := range ops {
				plan = append(plan, planned{target: tg, op: op, user: u,
					id: fmt.Sprintf("%s-%s-%d-%s", tg, u, n, mysqltest.Token(4)), r: newRequester(t)})
			}
		}
	}
	return plan
}

// publishPlan publishes the jobs of plan, interleaving targets the way
// independent orchestrators would, and returns the set of ids.
func publishPlan(t *testing.T, nc *nats.Conn, plan []planned) map[string]bool {
	t.Helper()
	js := jetstreamFor(t, nc)
	want := map[string]bool{}
	for _, j := range plan {
		fields := map[string]any{"id": j.id, "username": j.user}
		if j.op != "delete" {
			fields["reply_key"] = j.r.pub
		}
		body, _ := json.Marshal(fields)
		msg := nats.NewMsg(prefix + ".jobs." + j.target + ".user." + j.op)
		msg.Data = body
		msg.Header.Set("Nats-Msg-Id", j.id)
		// While a cluster elects a new leader a publish can time out;
		// retrying with the same Nats-Msg-Id is safe, as for any publisher.
		for deadline := time.Now().Add(30 * time.Second); ; {
			_, err := js.PublishMsg(t.Context(), msg)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("publish %s: %v", j.id, err)
				return want
			}
			time.Sleep(200 * time.Millisecond)
		}
		want[j.id] = true
	}
	return want
}

// verifyPlan checks that every job succeeded and MySQL holds exactly what
// the plan implies: deleted users are gone, the others exist with their
// grant, and the password of each user's last reset logs in.
func verifyPlan(t *testing.T, e *env, fixtures map[string]*mysqltest.Fixture, plan []planned, results map[string]wire.Result) {
	t.Helper()
	last := map[string]planned{}
	for _, j := range plan {
		res, ok := results[j.id]
		if !ok {
			t.Errorf("no result for %s", j.id)
			continue
		}
		if res.Status != wire.StatusOK {
			t.Errorf("%s %s on %s: %+v", j.op, j.user, j.target, res.Error)
		}
		last[j.user] = j
	}
	for user, j := range last {
		f := fixtures[j.target]
		exists := f.AccountExists(user)
		if j.op == "delete" {
			if exists {
				t.Errorf("%s exists after its delete", user)
			}
			continue
		}
		if !exists {
			t.Errorf("%s does not exist", user)
			continue
		}
		var grants int
		if err := f.Root.QueryRow("SELECT COUNT(*) FROM mysql.db WHERE User = ? AND Host = '%' AND Db IN (?, ?)",
			user, f.Database, mysqltest.EscapePattern(f.Database)).Scan(&grants); err != nil || grants != 1 {
			t.Errorf("%s has %d grants on its database (err %v): half-made", user, grants, err)
		}
		res := results[j.id]
		if res.Secret == nil {
			t.Errorf("%s: last reset has no secret", user)
			continue
		}
		pw := e.readSecret(j.r, j.id, res.Secret)
		if err := f.CanLogin(user, pw); err != nil {
			t.Errorf("%s: the delivered password is not in force: %v", user, err)
		}
	}
}

// natsOnTCP runs a JetStream server on a fixed port and store, so that it
// can be restarted in place.
func natsOnTCP(t *testing.T, storeDir string, port int) *server.Server {
	t.Helper()
	return natstest.Run(t, natstest.Options{StoreDir: storeDir, Port: port, ServerName: "fault-nats"})
}

// TestWorkerKilled runs 1,000 mixed jobs over three targets through a
// worker process that is killed with SIGKILL at random moments and
// restarted: every job gets one result, and MySQL ends exactly as the jobs
// say.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs worker processes")
	}
	ns := natsOnTCP(t, t.TempDir(), -1)
	names := []string{"ka", "kb", "kc"}
	fixtures := map[string]*mysqltest.Fixture{}
	var targets []config.Target
	for _, n := range names {
		fixtures[n] = mysqltest.NewFixture(t, mysqltest.Options{})
		targets = append(targets, target(n, fixtures[n]))
	}
	dir := t.TempDir()
	cfgPath := workerYAML(t, dir, ns.ClientURL(), targets, "retry:\n  budget: 2m\n")
	p := startProc(t, cfgPath)
	e := &env{t: t, nc: connect(t, ns.ClientURL())}
	e.js = jetstreamFor(t, e.nc)
	sub, err := e.nc.SubscribeSync(prefix + ".results.>")
	if err != nil {
		t.Fatal(err)
	}
	plan := userPlan(t, names, 100) // 3 × (100 × 3 + 34) = 1,002 jobs
	// Publish over about five seconds, from another connection, while the
	// worker is killed and restarted.
	want := map[string]bool{}
	for _, j := range plan {
		want[j.id] = true
	}
	pubNC := connect(t, ns.ClientURL())
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := 0; i < len(plan); i += 10 {
			publishPlan(t, pubNC, plan[i:min(i+10, len(plan))])
			time.Sleep(50 * time.Millisecond)
		}
	}()
	kills := 0
	for kills < 6 {
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		p.kill()
		kills++
		p = startProc(t, cfgPath)
	}
	select {
	case <-published:
		t.Log("all jobs were published before the last kill")
	default:
	}
	results := collect(t, sub, want, 5*time.Minute)
	e.svcKey = workerKey(t, e.nc)
	verifyPlan(t, e, fixtures, plan, results)
	redelivered := 0
	for _, r := range results {
		if r.Attempts > 1 {
			redelivered++
		}
	}
	t.Logf("%d jobs, %d kills, %d answered after more than one attempt", len(plan), kills, redelivered)
}

// TestTwoWorkersShareTheLoadInOrder: two worker processes on the same
// streams; for several users per target, create → reset → reset → delete →
// create is applied in that order, and both processes did part of it.
func TestTwoWorkersShareTheLoadInOrder(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs worker processes")
	}
	ns := natsOnTCP(t, t.TempDir(), -1)
	// One target per partition, so each process is sure to own some.
	fixtures := map[string]*mysqltest.Fixture{}
	var targets []config.Target
	var names []string
	covered := map[int]bool{}
	for i := 0; len(covered) < 8; i++ {
		name := fmt.Sprintf("tw%d", i)
		if p := wire.Partition(name, 8); !covered[p] {
			covered[p] = true
			fixtures[name] = mysqltest.NewFixture(t, mysqltest.Options{})
			targets = append(targets, target(name, fixtures[name]))
			names = append(names, name)
		}
	}
	dir := t.TempDir()
	cfgPath := workerYAML(t, dir, ns.ClientURL(), targets, "")
	a := startProc(t, cfgPath)
	b := startProc(t, cfgPath)
	// Wait until the partitions are shared.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.logs.String(), "partition taken") || !strings.Contains(a.logs.String(), "handed back for balance") {
		if time.Now().After(deadline) {
			t.Fatalf("partitions not shared in 20s:\nA:\n%s\nB:\n%s", a.logs.String(), b.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the hand-over settle

	e := &env{t: t, nc: connect(t, ns.ClientURL())}
	e.js = jetstreamFor(t, e.nc)
	sub, err := e.nc.SubscribeSync(prefix + ".results.>")
	if err != nil {
		t.Fatal(err)
	}
	var plan []planned
	for _, tg := range names {
		for i := range 4 {
			u := fmt.Sprintf("two%d_%s", i, mysqltest.Token(8))
			fixtures[tg].DropUserLater(u)
			for n, op := range []string{"create", "reset_password", "reset_password", "delete", "create"} {
				plan = append(plan, planned{target: tg, op: op, user: u, id: fmt.Sprintf("%s-%s-%d", tg, u, n), r: newRequester(t)})
			}
		}
	}
	want := publishPlan(t, e.nc, plan)
	results := collect(t, sub, want, 2*time.Minute)
	for _, j := range plan {
		if res := results[j.id]; res.Status != wire.StatusOK {
			t.Errorf("%s %s on %s: %+v (applied out of order?)", j.op, j.user, j.target, res.Error)
		}
	}
	for _, j := range plan {
		if !fixtures[j.target].AccountExists(j.user) {
			t.Errorf("%s does not exist after create, reset, reset, delete, create", j.user)
		}
	}
	if a.jobLines() == 0 || b.jobLines() == 0 {
		t.Errorf("the load was not shared: A answered %d jobs, B %d", a.jobLines(), b.jobLines())
	}
	t.Logf("A answered %d jobs, B %d", a.jobLines(), b.jobLines())
}

// TestNATSRestarted restarts nats-server with the same store while jobs
// run: nothing accepted is lost.
func TestNATSRestarted(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a worker process")
	}
	store := t.TempDir()
	ns := natsOnTCP(t, store, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	fixtures := map[string]*mysqltest.Fixture{"nr": f}
	cfgPath := workerYAML(t, t.TempDir(), ns.ClientURL(), []config.Target{target("nr", f)}, "")
	startProc(t, cfgPath)

	nc := connect(t, ns.ClientURL())
	plan := userPlan(t, []string{"nr"}, 60)
	want := publishPlan(t, nc, plan[:len(plan)/2])
	ns.Shutdown()
	ns.WaitForShutdown()
	time.Sleep(time.Second)
	ns = natsOnTCP(t, store, port)

	e := &env{t: t, nc: connect(t, ns.ClientURL())}
	e.js = jetstreamFor(t, e.nc)
	// Results published before the restart are in the stream; read every
	// result from there once all jobs are answered.
	for id := range publishPlan(t, e.nc, plan[len(plan)/2:]) {
		want[id] = true
	}
	results := storedResults(t, e, want, 2*time.Minute)
	e.svcKey = workerKey(t, e.nc)
	verifyPlan(t, e, fixtures, plan, results)
}
