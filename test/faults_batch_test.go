package test

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
)

// phasedPlan is userPlan ordered by phase: every user's create, then every
// first reset, then every second reset, then the deletes, the way a bulk
// run publishes them. Consecutive jobs of a target then have the same op
// on distinct accounts, and the worker runs them many accounts to a
// statement.
func phasedPlan(t *testing.T, targets []string, perTarget int) []planned {
	t.Helper()
	plan := userPlan(t, targets, perTarget)
	phase := map[string]int{}
	seen := map[string]int{}
	for _, j := range plan {
		phase[j.id] = seen[j.user]
		seen[j.user]++
	}
	sort.SliceStable(plan, func(a, b int) bool { return phase[plan[a].id] < phase[plan[b].id] })
	return plan
}

// publishPlanAsync publishes plan without waiting for each ack, so that
// jobs queue up in their lanes, and returns the set of ids.
func publishPlanAsync(t *testing.T, nc *nats.Conn, plan []planned) map[string]bool {
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
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatalf("publish %s: %v", j.id, err)
		}
		want[j.id] = true
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the jobs stream did not ack every job in 30s")
	}
	return want
}

// TestWorkerKilledDuringManyAccountStatements: bulk creates, resets and
// deletes run many accounts to a statement while the worker process is
// killed and restarted at random: every job gets one result, MySQL holds
// exactly the accounts the jobs imply, none half-made, and every delivered
// password is in force.
func TestWorkerKilledDuringManyAccountStatements(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs worker processes")
	}
	ns := natsOnTCP(t, t.TempDir(), -1)
	names := []string{"ma", "mb"}
	fixtures := map[string]*mysqltest.Fixture{}
	var targets []config.Target
	for _, n := range names {
		fixtures[n] = mysqltest.NewFixture(t, mysqltest.Options{})
		targets = append(targets, target(n, fixtures[n]))
	}
	cfgPath := workerYAML(t, t.TempDir(), ns.ClientURL(), targets, "retry:\n  budget: 2m\n")
	p := startProc(t, cfgPath)
	e := &env{t: t, nc: connect(t, ns.ClientURL())}
	e.js = jetstreamFor(t, e.nc)
	sub, err := e.nc.SubscribeSync(prefix + ".results.>")
	if err != nil {
		t.Fatal(err)
	}
	plan := phasedPlan(t, names, 300) // 2 × (300 × 3 + 100) = 2,000 jobs
	pubNC := connect(t, ns.ClientURL())
	published := make(chan map[string]bool, 1)
	go func() { published <- publishPlanAsync(t, pubNC, plan) }()
	var answered []int // by each killed process
	for len(answered) < 4 {
		// Kill each process once it works (a new one first waits for the
		// killed one's leases to expire), at a random point after.
		for deadline := time.Now().Add(20 * time.Second); p.jobLines() == 0 && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		p.kill()
		answered = append(answered, p.jobLines())
		p = startProc(t, cfgPath)
	}
	want := <-published
	results := collect(t, sub, want, 5*time.Minute)
	e.svcKey = workerKey(t, e.nc)
	verifyPlan(t, e, fixtures, plan, results)
	killedMidRun := 0
	for _, n := range answered {
		if n > 0 {
			killedMidRun++
		}
	}
	if killedMidRun < 2 {
		t.Errorf("no process was killed while it answered jobs (answered %v): too few kills landed mid-run", answered)
	}
	t.Logf("%d jobs; the killed processes answered %v, the last %d", len(plan), answered, p.jobLines())
}

// cutProxy forwards TCP connections to a MySQL server and, once for each
// kind of many-account statement (ALTER USER, CREATE USER, GRANT, DROP
// USER naming several accounts), lets the statement through, then cuts
// the connection before its reply reaches the client: the statement ran,
// and the worker cannot know it.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    map[string]int // statement kind → connections cut after it
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, ln: ln, target: target, cut: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go p.accept()
	return p
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		go p.serve(c, s)
	}
}

// kind returns the kind of a many-account statement in a COM_QUERY
// payload, "" for any other packet.
func kind(payload []byte) string {
	if len(payload) < 2 || payload[0] != 0x03 {
		return ""
	}
	q := string(payload[1:])
	for _, k := range []string{"ALTER USER", "CREATE USER", "DROP USER", "GRANT"} {
		if strings.Contains(q, k) && strings.Count(q, "@'%'") > 1 {
			return k
		}
	}
	return ""
}

func (p *cutProxy) serve(client, server net.Conn) {
	var cutting atomic.Bool
	done := make(chan struct{})
	go func() { // server → client, until a cut
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && !cutting.Load() {
				if _, werr := client.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		client.Close()
		server.Close()
		<-done
	}()
	header := make([]byte, 4)
	for {
		if _, err := io.ReadFull(client, header); err != nil {
			return
		}
		size := int(header[0]) | int(header[1])<<8 | int(header[2])<<16
		payload := make([]byte, size)
		if _, err := io.ReadFull(client, payload); err != nil {
			return
		}
		k := kind(payload)
		cut := false
		if k != "" {
			p.mu.Lock()
			if p.cut[k] == 0 {
				p.cut[k]++
				cut = true
			}
			p.mu.Unlock()
		}
		if cut {
			cutting.Store(true)
		}
		if _, err := server.Write(append(header, payload...)); err != nil {
			return
		}
		if cut {
			time.Sleep(500 * time.Millisecond) // the statement runs on the server
			return
		}
	}
}

func (p *cutProxy) cuts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.cut {
		out[k] = v
	}
	return out
}

// TestConnectionCutAfterManyAccountStatement: the connection to MySQL is
// cut right after a many-account CREATE USER, GRANT, ALTER USER and DROP
// USER ran, before their reply arrived. The worker falls back to one
// account at a time, each looking at what the statement did: every job
// gets one result, ok; MySQL holds exactly the accounts the jobs imply,
// none half-made; every delivered password is in force.
func TestConnectionCutAfterManyAccountStatement(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	cfg, err := mysql.ParseDSN(f.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startCutProxy(t, cfg.Addr)
	cfg.Addr = proxy.ln.Addr().String()
	tg := target("cut", f)
	tg.DSN = secret.New(cfg.FormatDSN())
	e := startWorker(t, []config.Target{tg}, func(c *config.Config) { c.Retry.Budget = time.Minute })
	sub, err := e.nc.SubscribeSync(prefix + ".results.cut.>")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	plan := phasedPlan(t, []string{"cut"}, 60)
	for _, j := range plan {
		f.DropUserLater(j.user)
	}
	want := publishPlanAsync(t, e.nc, plan)
	results := collect(t, sub, want, 2*time.Minute)
	e.svcKey = workerKey(t, e.nc)
	verifyPlan(t, e, map[string]*mysqltest.Fixture{"cut": f}, plan, results)
	cuts := proxy.cuts()
	for _, k := range []string{"CREATE USER", "GRANT", "ALTER USER", "DROP USER"} {
		if cuts[k] == 0 {
			t.Errorf("no many-account %s was cut (cuts %v): the jobs did not run many accounts to a statement", k, cuts)
		}
	}
	if bytes.Contains([]byte(e.logs.String()), []byte(f.AdminPassword)) {
		t.Error("the admin password reached the log")
	}
}
