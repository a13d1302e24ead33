package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/wire"
)

// prefix is the subject prefix of the worker the benchmark runs.
const prefix = "dbusers"

// warmJobs are run before the timed jobs of the latency figures.
const warmJobs = 20

// bench is one benchmark run: the processes it started, the databases and
// accounts it made, and the report it fills.
type bench struct {
	s        settings
	out      io.Writer // the table
	progress io.Writer // what the run is doing
	started  time.Time

	self     string // this binary, for the child roles
	dir      string // work directory: NATS store, logs, worker config
	my       *mysqlSide
	main     *benchTarget
	extra    []*benchTarget // the targets of the limits measurement
	natsProc *child
	ns       *natsSide
	workers  []*child
	nStarted int
	cfgPath  string
	// workerEnv is the workers' environment beside the config: the admin
	// DSNs the config names as ${DBB_ADMIN_DSN_<n>}.
	workerEnv []string
	procs     procSet

	workerPub string
	requester nkeys.KeyPair // the batch's reply key (contract: fresh per job, or per batch)
	reqPub    string
	rotUsers  []string
	jobPrefix string // job ids are <jobPrefix>-<phase>-<n>

	directRotation Run // the baseline figures 5a and 5c compare with
	workerRotation Run // figure 1's worker run, which 5d compares with
	serverLimit    Run // the direct rotation of many accounts per statement
	report         Report
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// record turns a timed run into a Run and adds it to the report.
func (b *bench) record(name string, n int, wall time.Duration, before, after cpuSnap) Run {
	r := Run{Name: name, Jobs: n, WallMS: float64(wall.Microseconds()) / 1000, CPU: perJob(before, after, n), Others: others(before, after)}
	r.SQL, r.SQLKinds = sqlPerJob(before, after, n)
	if before.deliveriesOK && after.deliveriesOK && after.deliveries > before.deliveries && n > 0 {
		r.Deliveries = float64(after.deliveries-before.deliveries) / float64(n)
	}
	if wall > 0 {
		r.Rate = float64(n) / wall.Seconds()
	}
	b.report.Runs = append(b.report.Runs, r)
	b.logf("  %s: %d in %.0f ms = %.0f/s; CPU µs per job: bench %.0f, nats %.0f, worker %.0f, mariadb %.0f, other %.0f %s; SQL per job %.2f (%s); deliveries per job %.2f",
		name, n, r.WallMS, r.Rate, r.CPU.Bench, r.CPU.NATS, r.CPU.Worker, r.CPU.MariaDB, r.CPU.Other, r.Others, r.SQL, r.SQLKinds, r.Deliveries)
	return r
}

// begin reads the counters at the start of a timed run: the processes'
// CPU and MariaDB's statement counters.
func (b *bench) begin() cpuSnap {
	sql := b.my.status(context.Background())
	deliveries, ok := b.ns.deliveries(context.Background())
	s := b.procs.snap()
	s.sql, s.deliveries, s.deliveriesOK = sql, deliveries, ok
	return s
}

// end reads the counters at the end of a timed run.
func (b *bench) end() cpuSnap {
	s := b.procs.end()
	s.sql = b.my.status(context.Background())
	s.deliveries, s.deliveriesOK = b.ns.deliveries(context.Background())
	return s
}

// sqlPerJob returns the statements MariaDB received per job between a and b
// (all clients; the counter reads themselves excluded) and the kinds.
func sqlPerJob(a, b cpuSnap, jobs int) (float64, string) {
	if a.sql == nil || b.sql == nil || jobs == 0 {
		return 0, ""
	}
	per := func(k string) float64 { return float64(b.sql[k]-a.sql[k]) / float64(jobs) }
	total := float64(b.sql["Questions"]-a.sql["Questions"]-1) / float64(jobs)
	var parts []string
	for _, k := range sqlCounters[1:] {
		if v := per(k); v >= 0.01 {
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(k, "Com_"), "_", " ")), v))
		}
	}
	return total, strings.Join(parts, ", ")
}

// quiet waits, up to -quiet, until the processes outside the benchmark use
// less than a tenth of a core, so that a concurrent build or test run does
// not land in a measurement.
func (b *bench) quiet(ctx context.Context) {
	deadline := time.Now().Add(b.s.quiet)
	for {
		cores, top := b.procs.quietFor(300 * time.Millisecond)
		if cores < 0.1 || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			b.logf("  the machine is not quiet (%.2f cores used by others: %s); measuring anyway", cores, top)
			return
		}
		b.logf("  waiting for the machine to be quiet: others use %.2f cores (%s)", cores, top)
		time.Sleep(time.Second)
	}
}

func (b *bench) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.report.Failures = append(b.report.Failures, msg)
	b.logf("FAILED: %s", msg)
}

// users returns n run-unique account names of a kind.
func (b *bench) users(kind string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = b.my.name(fmt.Sprintf("%s%06d", kind, i))
	}
	return out
}

// passwords generates n passwords as the worker does. The direct baseline
// sends them as SQL arguments, so they are revealed here, once.
func (b *bench) passwords(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		pw, err := jobs.GeneratePassword()
		if err != nil {
			return nil, err
		}
		out[i] = pw.Reveal()
	}
	return out, nil
}

func (b *bench) jobID(phase string, i int) string {
	return b.jobPrefix + "-" + phase + "-" + strconv.Itoa(i)
}

// run sets everything up and runs every phase. cleanup undoes it, also when
// run fails half-way.
func (b *bench) run(ctx context.Context) error {
	var err error
	if b.self, err = os.Executable(); err != nil {
		return fmt.Errorf("find this program: %w", err)
	}
	token := randomHex(6)
	b.jobPrefix = "dbb" + token
	b.report = Report{Started: b.started, Scale: b.s.scale, Command: commandLine(), Commit: gitCommit(),
		Window: b.s.window, Verify: b.s.verify}
	b.report.Settings = []KeyValue{
		{"worker", b.workerDescription()},
		{"NATS", "nats-server " + natsVersion() + " (the library the worker embeds) in a process of its own, JetStream file storage in a temporary directory"},
	}
	if b.my, err = connectMySQL(ctx, b.s.mysqlDSN, token); err != nil {
		return err
	}
	b.report.Machine = describeMachine(b.my.version)
	if pid, err := listenerPID(b.my.addr); err != nil {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("MariaDB's CPU was not measured: %v.", err))
	} else {
		b.procs.mariadb = pid
	}
	if b.dir, err = os.MkdirTemp("", "dbusers-bench-*"); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	b.logf("run dbb%s: work directory %s, MariaDB %s at %s (pid %d)", token, b.dir, b.my.version, b.my.addr, b.procs.mariadb)

	if b.requester, err = nkeys.CreateCurveKeys(); err != nil {
		return fmt.Errorf("requester key: %w", err)
	}
	if b.reqPub, err = b.requester.PublicKey(); err != nil {
		return fmt.Errorf("requester key: %w", err)
	}
	if err := b.setupTargets(ctx, token); err != nil {
		return err
	}
	if err := b.startNATS(ctx); err != nil {
		return err
	}
	if err := b.writeConfig(); err != nil {
		return err
	}
	if _, err := b.startWorker(ctx); err != nil {
		return err
	}
	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"bulk create", b.phaseCreate},
		{"accounts", b.phaseAccounts},
		{"bulk rotation", b.phaseRotation},
		{"latency", b.phaseLatency},
		{"listing", b.phaseList},
		{"limits", b.phaseScaling},
		{"backlog", b.phaseBacklog},
	}
	for _, p := range phases {
		if err := p.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	b.report.Duration = time.Since(b.started).Round(time.Second).String()
	return nil
}

// setupTargets makes the main target and the limits measurement's targets,
// whose names land in distinct partitions of the jobs stream so that two
// worker processes split them evenly.
func (b *bench) setupTargets(ctx context.Context, token string) error {
	var err error
	if b.main, err = b.my.setupTarget(ctx, "b"+token, 0); err != nil {
		return err
	}
	if !b.s.scaling {
		return nil
	}
	partitions := config.Default().NATS.Partitions
	taken := map[int]bool{}
	for k := 0; len(b.extra) < b.s.scalingTargets && k < 10000; k++ {
		name := fmt.Sprintf("s%s-%d", token, k)
		p := wire.Partition(name, partitions)
		if taken[p] && len(taken) < partitions {
			continue
		}
		taken[p] = true
		t, err := b.my.setupTarget(ctx, name, len(b.extra)+1)
		if err != nil {
			return err
		}
		b.extra = append(b.extra, t)
	}
	return nil
}

func (b *bench) startNATS(ctx context.Context) error {
	var err error
	args := []string{b.self, roleNATS, "-store", filepath.Join(b.dir, "nats")}
	if b.s.natsProfPort != 0 {
		args = append(args, "-prof-port", strconv.Itoa(b.s.natsProfPort))
	}
	b.natsProc, err = startChild("nats-server", filepath.Join(b.dir, "nats.log"), args, nil)
	if err != nil {
		return err
	}
	url, err := b.natsProc.waitLine(ctx, lineReady, 30*time.Second)
	if err != nil {
		return err
	}
	b.procs.nats = b.natsProc.pid()
	b.ns, err = connectNATS(url, prefix, b.s.window)
	return err
}

// writeConfig writes the worker's configuration: every target, NATS at the
// benchmark's server, defaults otherwise. The admin DSNs, which hold their
// passwords, go to the workers' environment (b.workerEnv), not the file.
func (b *bench) writeConfig() error {
	var y strings.Builder
	fmt.Fprintf(&y, "nats:\n  url: %q\n  prefix: %s\nvault:\n  xkey_seed_file: %q\ntargets:\n",
		b.ns.nc.ConnectedUrl(), prefix, filepath.Join(b.dir, "worker.xk"))
	b.workerEnv = nil
	for i, t := range append([]*benchTarget{b.main}, b.extra...) {
		name := fmt.Sprintf("DBB_ADMIN_DSN_%d", i)
		b.workerEnv = append(b.workerEnv, name+"="+t.adminDSN)
		fmt.Fprintf(&y, "  - name: %s\n    dsn: \"${%s}\"\n    database: %s\n    protected_users: [%s]\n", t.name, name, t.database, t.protected)
	}
	b.cfgPath = filepath.Join(b.dir, "worker.yaml")
	if err := os.WriteFile(b.cfgPath, []byte(y.String()), 0o600); err != nil {
		return fmt.Errorf("write worker config: %w", err)
	}
	return nil
}

func (b *bench) workerDescription() string {
	if b.s.workerBin != "" {
		return "`" + b.s.workerBin + " -config …` (the built binary), one process"
	}
	return "internal/service.Start with cmd/worker's logger (JSON, info, a line per job, to a file), in a process of its own; default settings (8 partitions, 30 s ack wait)"
}

// startWorker starts one more worker process and waits until it answers.
func (b *bench) startWorker(ctx context.Context) (*child, error) {
	b.nStarted++
	var args []string
	if b.s.workerBin != "" {
		args = []string{b.s.workerBin, "-config", b.cfgPath}
	} else {
		args = []string{b.self, roleWorker, "-config", b.cfgPath}
		if b.s.cpuprofile != "" {
			args = append(args, "-cpuprofile", b.s.cpuprofile)
		}
	}
	c, err := startChild(fmt.Sprintf("worker %d", b.nStarted), filepath.Join(b.dir, fmt.Sprintf("worker-%d.log", b.nStarted)), args, b.workerEnv)
	if err != nil {
		return nil, err
	}
	b.workers = append(b.workers, c)
	b.procs.workers = append(b.procs.workers, c.pid())
	if b.s.workerBin == "" {
		b.workerPub, err = c.waitLine(ctx, lineReady, 90*time.Second)
	} else {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		b.workerPub, err = b.ns.workerKey(wctx)
		cancel()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// stopWorkers stops every worker process (SIGTERM, as a deployment does).
func (b *bench) stopWorkers() {
	for _, w := range b.workers {
		w.stop(30 * time.Second)
	}
	b.workers, b.procs.workers = nil, nil
}

// cleanup stops the children and drops everything the run made in MySQL.
func (b *bench) cleanup() {
	if len(b.workers) > 0 {
		b.logf("stopping the worker")
		b.stopWorkers()
	}
	if b.ns != nil {
		b.ns.close()
	}
	if b.natsProc != nil {
		b.natsProc.stop(10 * time.Second)
	}
	if b.my != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		start := time.Now()
		accounts, dbs, err := b.my.cleanup(ctx)
		cancel()
		if err != nil {
			b.logf("clean-up: %v (run dbusers-bench -drop-stale)", err)
		} else {
			b.logf("dropped %d accounts and %d databases in %.1fs", accounts, dbs, time.Since(start).Seconds())
		}
		for _, t := range append([]*benchTarget{b.main}, b.extra...) {
			if t != nil && t.db != nil {
				t.db.Close()
			}
		}
		b.my.root.Close()
	}
	if b.dir != "" {
		if b.s.keep {
			b.logf("work directory kept: %s", b.dir)
		} else {
			_ = os.RemoveAll(b.dir)
		}
	}
}

// finish runs the Go benchmarks, reads the profile, prints the table and
// writes the markdown.
func (b *bench) finish() error {
	if b.s.goBench {
		b.logf("Go benchmarks of internal/jobs and internal/vault")
		gb, err := runGoBench()
		if err != nil {
			b.report.Notes = append(b.report.Notes, fmt.Sprintf("The Go benchmarks did not run: %v.", err))
			b.logf("Go benchmarks: %v", err)
		}
		b.report.GoBench = gb
	}
	if b.s.cpuprofile != "" && b.s.workerBin == "" {
		rot, _ := b.report.findRun("rotation: worker")
		top, err := pprofTop(b.s.cpuprofile, max(rot.Jobs, 1))
		if err != nil {
			b.logf("profile: %v", err)
		}
		b.report.Profile = top
	}
	sort.SliceStable(b.report.Figures, func(i, j int) bool { return b.report.Figures[i].ID < b.report.Figures[j].ID })
	b.report.Limits = b.limits()
	b.report.Notes = append(b.notes(), b.report.Notes...)
	b.report.Duration = time.Since(b.started).Round(time.Second).String()
	if err := b.attachBefore(); err != nil {
		return err
	}
	fmt.Fprintln(b.out)
	b.report.printTable(b.out)
	if b.s.out != "" {
		if err := b.report.writeMarkdown(b.s.out); err != nil {
			return err
		}
		b.logf("wrote %s", b.s.out)
	}
	if len(b.report.Failures) > 0 {
		return fmt.Errorf("%d failures (see above)", len(b.report.Failures))
	}
	return nil
}

// attachBefore sets the report's "before": the report of -before, or the
// "before" that -out already holds.
func (b *bench) attachBefore() error {
	if b.s.before != "" {
		old, err := readReport(b.s.before)
		if err != nil {
			return err
		}
		if old == nil {
			return fmt.Errorf("-before %s holds no benchmark data", b.s.before)
		}
		old.Before = nil
		b.report.Before = old
		return nil
	}
	if b.s.out == "" {
		return nil
	}
	old, err := readReport(b.s.out)
	if err != nil || old == nil {
		return nil // an unreadable old report only loses the comparison
	}
	b.report.Before = old.Before
	return nil
}

// commandLine is how the benchmark was invoked.
func commandLine() string {
	args := append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)
	if os.Getenv("MAKELEVEL") != "" {
		return "make bench   # " + strings.Join(args, " ")
	}
	return strings.Join(args, " ")
}

// gitCommit returns the short commit of the working tree, with "+dirty" when
// it has changes; "" outside a git checkout.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+dirty"
	}
	return commit
}

// natsVersion is the nats-server module version built into this binary.
func natsVersion() string {
	return server.VERSION
}

// profileCode selects the profile entries of the worker's own code and its
// libraries; the runtime, scheduler and syscall entries are left out.
var profileCode = []string{"github.com/", "golang.org/x/", "go.uber.org/", "database/sql", "crypto/", "encoding/json"}

// pprofTop renders the top of a CPU profile by cumulative time, in µs per
// job: the profile's summary, then the entries of the worker's code and
// libraries.
func pprofTop(path string, jobs int) (string, error) {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=1000", path).Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %w", path, err)
	}
	var b strings.Builder
	rows := 0
	inTable := false
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case !inTable && len(f) > 0 && f[0] == "flat":
			inTable = true
			fmt.Fprintf(&b, "%10s %6s  %s\n", "µs/job", "cum%", "function (cumulative)")
		case !inTable:
			if strings.HasPrefix(line, "Duration:") || strings.HasPrefix(line, "Type:") {
				fmt.Fprintln(&b, line)
			}
		case len(f) >= 6 && rows < 40:
			name := strings.Join(f[5:], " ")
			keep := false
			for _, p := range profileCode {
				keep = keep || strings.HasPrefix(name, p)
			}
			cum, err := parseSeconds(f[3])
			if !keep || err != nil {
				continue
			}
			fmt.Fprintf(&b, "%10.1f %6s  %s\n", cum*1e6/float64(jobs), f[4], name)
			rows++
		}
	}
	return b.String(), nil
}

// parseSeconds reads a pprof duration such as "4.61s" or "460ms".
func parseSeconds(s string) (float64, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("pprof duration %q: %w", s, err)
	}
	return d.Seconds(), nil
}

// runGoBench runs the hot-path benchmarks and parses their lines.
func runGoBench() ([]GoBench, error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "500ms",
		"./internal/jobs/", "./internal/vault/", "./wire/")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("go test: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("go test: %w", err)
	}
	var res []GoBench
	pkg := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(rest, "github.com/dbusers/dbusers/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		g := GoBench{Package: pkg, Name: f[0]}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				g.NsPerOp = v
			case "B/op":
				g.BPerOp = v
			case "allocs/op":
				g.Allocs = v
			case "MB/s":
				g.MBPerSec = v
			}
		}
		res = append(res, g)
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("go test: %w", err)
	}
	return res, nil
}

// signalWorkers sends sig to every running worker.
func (b *bench) signalWorkers(sig syscall.Signal) {
	for _, w := range b.workers {
		_ = w.signal(sig)
	}
}
