// Command dbusers-bench measures the worker against MySQL itself:
// bulk rotation, bulk create, single-job latency, listing and a 100,000-job
// backlog through the worker, each next to the same statements issued
// directly on one connection in the same invocation, plus how throughput
// scales with targets and worker processes. It prints a table and writes
// docs/benchmarks.md.
//
// It needs the local MariaDB (root without password by default, -mysql-dsn)
// and nothing else: the nats-server (the library the worker embeds) and the
// worker (internal/service, as cmd/worker runs it) are started as child
// processes of this binary, so that the CPU time
// and memory of the benchmark's client, nats-server, worker and MariaDB are
// each read from their own /proc entry. Every database and account it
// creates is named dbb<6 hex>_… and dropped at the end, also on Ctrl-C;
// -drop-stale removes those left by a run that was killed.
//
// Usage:
//
//	dbusers-bench [-scale 0.1] [-out docs/benchmarks.md] [-cpuprofile FILE] [-before OLD.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == roleNATS:
		err = runNATS(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == roleWorker:
		err = runWorker(os.Args[2:])
	default:
		err = runBench(os.Args[1:], os.Stdout, os.Stderr)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbusers-bench:", err)
		os.Exit(1)
	}
}

// settings are the command-line flags of a benchmark run.
type settings struct {
	scale           float64
	rotations       int
	creates         int
	latency         int
	listRuns        int
	page            int
	backlog         int
	scalingJobs     int
	scalingAccounts int
	scalingTargets  int
	scaling         bool
	window          int
	verify          int
	stall           time.Duration
	quiet           time.Duration
	budget          time.Duration
	mysqlDSN        string
	out             string
	cpuprofile      string
	natsProfPort    int
	workerBin       string
	before          string
	keep            bool
	goBench         bool
	dropStale       bool
	rerender        bool
}

func parseSettings(args []string, stderr io.Writer) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("dbusers-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Float64Var(&s.scale, "scale", 1, "multiply every count (rotations, creates, latency jobs, list accounts and page size, backlog, scaling) by this; 0.1 is a quick run")
	fs.IntVar(&s.rotations, "rotations", 10000, "bulk rotation: reset_password jobs (and accounts; listing uses the same accounts)")
	fs.IntVar(&s.creates, "creates", 2000, "bulk create: create jobs")
	fs.IntVar(&s.latency, "latency", 1000, "single-job latency: sequential jobs (after 20 untimed)")
	fs.IntVar(&s.listRuns, "list-runs", 5, "listing: how many times to page through all accounts (median reported)")
	fs.IntVar(&s.page, "page", 5000, "listing: page size")
	fs.IntVar(&s.backlog, "backlog", 100000, "backlog: reset_password jobs queued before the worker starts")
	fs.IntVar(&s.scalingJobs, "scaling-jobs", 4000, "limits: rotation jobs per configuration")
	fs.IntVar(&s.scalingAccounts, "scaling-accounts", 250, "limits: accounts per extra target")
	fs.IntVar(&s.scalingTargets, "scaling-targets", 8, "limits: most targets measured (1, 2, 4, … up to this)")
	fs.BoolVar(&s.scaling, "scaling", true, "measure the limits (targets, worker processes)")
	fs.IntVar(&s.window, "window", 4096, "async publish window: unacknowledged jobs in flight")
	fs.IntVar(&s.verify, "verify", 20, "generated passwords read from the vault and tried as logins, per bulk run")
	fs.DurationVar(&s.stall, "stall", time.Minute, "give up when no result arrives for this long")
	fs.DurationVar(&s.budget, "budget", 9*time.Minute+30*time.Second, "cut the backlog when working it off at the measured rate would make the whole run longer than this; 0: never")
	fs.DurationVar(&s.quiet, "quiet", 10*time.Second, "before each timed run, wait up to this long for other processes to leave the CPU alone")
	fs.StringVar(&s.mysqlDSN, "mysql-dsn", defaultRootDSN(), "root DSN of the MariaDB under test (env DBUSERS_TEST_MYSQL_DSN)")
	fs.StringVar(&s.out, "out", "docs/benchmarks.md", "markdown report to write; empty: none")
	fs.StringVar(&s.cpuprofile, "cpuprofile", "", "write the worker's CPU profile of the bulk rotation here")
	fs.IntVar(&s.natsProfPort, "nats-prof-port", 0, "serve the nats-server's pprof on 127.0.0.1 at this port while the benchmark runs (e.g. go tool pprof http://127.0.0.1:PORT/debug/pprof/profile?seconds=30); 0: off")
	fs.StringVar(&s.workerBin, "worker-bin", "", "run this worker binary (e.g. bin/worker) instead of this program's built-in worker role; no profile then")
	fs.StringVar(&s.before, "before", "", "an earlier docs/benchmarks.md to compare with (default: keep the 'before' of -out)")
	fs.BoolVar(&s.keep, "keep", false, "keep the work directory (NATS store, logs, worker config)")
	fs.BoolVar(&s.goBench, "gobench", true, "also run the Go benchmarks of internal/jobs and internal/vault (needs the go tool and the module source)")
	fs.BoolVar(&s.rerender, "rerender", false, "write -out again from the figures it holds (after a change to the report's text), measuring nothing")
	fs.BoolVar(&s.dropStale, "drop-stale", false, "drop every dbb<hex>_ database and account left by killed runs, and exit")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if s.scale <= 0 || s.scale > 10 {
		return s, fmt.Errorf("-scale %g: want a factor in (0, 10]", s.scale)
	}
	sc := func(n, least int) int { return max(least, int(math.Round(float64(n)*s.scale))) }
	s.rotations = sc(s.rotations, 50)
	s.creates = sc(s.creates, 20)
	s.latency = sc(s.latency, 50)
	s.page = min(sc(s.page, 10), 5000)
	s.backlog = sc(s.backlog, 100)
	s.scalingJobs = sc(s.scalingJobs, 80)
	s.scalingAccounts = sc(s.scalingAccounts, 10)
	if s.window < 1 || s.listRuns < 1 || s.verify < 0 {
		return s, errors.New("-window and -list-runs must be at least 1, -verify at least 0")
	}
	return s, nil
}

// defaultRootDSN is the test MariaDB of the repository (DBUSERS_TEST_MYSQL_DSN
// or root on 127.0.0.1:3306).
func defaultRootDSN() string {
	if dsn := os.Getenv("DBUSERS_TEST_MYSQL_DSN"); dsn != "" {
		return dsn
	}
	return "root@tcp(127.0.0.1:3306)/"
}

func runBench(args []string, stdout, stderr io.Writer) error {
	s, err := parseSettings(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if s.dropStale {
		m, err := connectMySQL(ctx, s.mysqlDSN, "000000")
		if err != nil {
			return err
		}
		defer m.root.Close()
		accounts, dbs, err := m.dropMatching(ctx, staleRegexp)
		fmt.Fprintf(stdout, "dropped %d accounts and %d databases\n", accounts, dbs)
		return err
	}
	if s.rerender {
		return rerender(s, stdout)
	}
	b := &bench{s: s, out: stdout, progress: stderr, started: time.Now()}
	runErr := b.run(ctx)
	interrupted := ctx.Err() != nil
	// A second Ctrl-C during the clean-up ends the program at once.
	stop()
	b.cleanup()
	if runErr != nil && interrupted {
		return fmt.Errorf("interrupted; everything the run created is dropped: %w", runErr)
	}
	if runErr != nil {
		return runErr
	}
	return b.finish()
}

// rerender rewrites the markdown report at s.out from the figures embedded
// in it, with this program's current text.
func rerender(s settings, stdout io.Writer) error {
	r, err := readReport(s.out)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("-rerender: %s holds no benchmark data", s.out)
	}
	b := &bench{s: s, report: *r}
	if s.before != "" {
		if err := b.attachBefore(); err != nil {
			return err
		}
	}
	if r.Window > 0 {
		b.s.window, b.s.verify = r.Window, r.Verify
	}
	// The notes this program writes come first; keep those the run added.
	std, extra := b.notes(), r.Notes
	if len(extra) >= len(std) {
		extra = extra[len(std):]
	}
	b.report.Limits = b.limits()
	b.report.Notes = append(std, extra...)
	if err := b.report.writeMarkdown(s.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rewrote %s from its data of %s\n", s.out, r.Started.UTC().Format(time.RFC3339))
	return nil
}
