package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured. It is embedded as JSON in the
// markdown it renders, so that a later run can show it as "before".
type Report struct {
	Started  time.Time  `json:"started"`
	Duration string     `json:"duration"`
	Command  string     `json:"command"`
	Commit   string     `json:"commit,omitempty"`
	Scale    float64    `json:"scale"`
	Machine  Machine    `json:"machine"`
	Figures  []Figure   `json:"figures"`
	Runs     []Run      `json:"runs"`
	Scaling  []Scaling  `json:"scaling,omitempty"`
	Profile  string     `json:"profile,omitempty"`
	GoBench  []GoBench  `json:"go_bench,omitempty"`
	Checks   []string   `json:"checks,omitempty"`
	Notes    []string   `json:"notes,omitempty"`
	Accounts int        `json:"accounts_on_server,omitempty"`
	Before   *Report    `json:"before,omitempty"`
	Limits   []string   `json:"limits,omitempty"`
	Failures []string   `json:"failures,omitempty"`
	Settings []KeyValue `json:"settings,omitempty"`
	Window   int        `json:"window,omitempty"` // -window of the run
	Verify   int        `json:"verify,omitempty"` // -verify of the run
}

// KeyValue is one line of a two-column table.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Figure is one figure of the issue with its goal.
type Figure struct {
	ID     string  `json:"id"`
	Name   string  `json:"name"`
	Unit   string  `json:"unit"`
	Worker float64 `json:"worker"`
	Direct float64 `json:"direct"` // 0 when there is no direct counterpart
	Ratio  float64 `json:"ratio"`  // worker ÷ direct, 0 when none
	Goal   string  `json:"goal"`
	Met    *bool   `json:"met,omitempty"`
	// AimMet says whether the figure reached the aim its goal names
	// ("(aim 2.0×)"); nil when the goal has no aim.
	AimMet *bool  `json:"aim_met,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Run is one timed run with its CPU per job.
type Run struct {
	Name   string  `json:"name"`
	Jobs   int     `json:"jobs"`
	WallMS float64 `json:"wall_ms"`
	Rate   float64 `json:"rate"` // jobs or statements per second
	CPU    CPU     `json:"cpu_us_per_job"`
	// Others names the busiest processes outside the benchmark during
	// the run, when they used any CPU worth naming.
	Others string `json:"others,omitempty"`
	// SQL is the statements MariaDB received per job, SQLKinds those of
	// the kinds jobs send ("SELECT 3.00, ALTER USER 1.00").
	SQL      float64 `json:"sql_per_job,omitempty"`
	SQLKinds string  `json:"sql_kinds,omitempty"`
	// Deliveries is how many times the jobs stream delivered a job to a
	// worker, per job: 1 when nothing was handed back or redelivered.
	Deliveries float64 `json:"deliveries_per_job,omitempty"`
}

// Scaling is one configuration of the limits measurement.
type Scaling struct {
	Targets      int     `json:"targets"`
	Workers      int     `json:"workers"`
	Jobs         int     `json:"jobs"`
	WorkerRate   float64 `json:"worker_rate"`
	DirectRate   float64 `json:"direct_rate"`
	Ratio        float64 `json:"ratio"`
	WorkerCPU    float64 `json:"worker_cpu_us"`
	NATSCPU      float64 `json:"nats_cpu_us"`
	MariaDBCPU   float64 `json:"mariadb_cpu_us"`
	DirectMaria  float64 `json:"direct_mariadb_cpu_us"`
	OtherCPU     float64 `json:"other_cpu_us"`
	TotalCPU     float64 `json:"total_cpu_us"`
	DirectTotal  float64 `json:"direct_total_cpu_us"`
	WorkerWallMS float64 `json:"worker_wall_ms"`
}

// GoBench is one testing.B result.
type GoBench struct {
	Package  string  `json:"package"`
	Name     string  `json:"name"`
	NsPerOp  float64 `json:"ns_per_op"`
	BPerOp   float64 `json:"b_per_op"`
	Allocs   float64 `json:"allocs_per_op"`
	MBPerSec float64 `json:"mb_per_s,omitempty"`
}

func boolPtr(b bool) *bool { return &b }

// status is the figure's last column: its goal, then its aim if any.
func (f Figure) status() string {
	s := metText(f.Met)
	switch {
	case f.AimMet == nil:
	case *f.AimMet:
		s += ", aim met"
	default:
		s += ", aim missed"
	}
	return s
}

func metText(m *bool) string {
	switch {
	case m == nil:
		return "—"
	case *m:
		return "met"
	default:
		return "NOT met"
	}
}

// num formats a figure compactly.
func num(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func ratio(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// printTable writes the figures and the CPU per job to w as plain text.
func (r *Report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tfigure\tworker\tdirect SQL\tratio\tgoal\t")
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s: %s\t\n", f.ID, f.Name, num(f.Worker), f.Unit, num(f.Direct), ratio(f.Ratio), f.Goal, f.status())
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tjobs\twall ms\tper s\tCPU µs/job: bench\tnats\tworker\tmariadb\ttotal\tother\tdeliveries/job\t")
	for _, run := range r.Runs {
		c := run.CPU
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t\n", run.Name, run.Jobs, run.WallMS, run.Rate,
			c.Bench, c.NATS, c.Worker, c.MariaDB, c.Total(), c.Other, num(run.Deliveries))
	}
	_ = tw.Flush()
	if len(r.Scaling) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "targets\tworkers\tjobs\tworker/s\tdirect/s\tratio\tworker µs\tnats µs\tmariadb µs\ttotal µs\tdirect total µs\t")
		for _, s := range r.Scaling {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%.0f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", s.Targets, s.Workers, s.Jobs,
				s.WorkerRate, s.DirectRate, s.Ratio, s.WorkerCPU, s.NATSCPU, s.MariaDBCPU, s.TotalCPU, s.DirectTotal)
		}
		_ = tw.Flush()
	}
	for _, c := range r.Checks {
		fmt.Fprintln(w, "check:", c)
	}
	for _, f := range r.Failures {
		fmt.Fprintln(w, "FAILED:", f)
	}
}

const dataMarker = "<!-- bench-data "

// markdown renders the report as docs/benchmarks.md.
func (r *Report) markdown() []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Benchmarks\n\n")
	p("Generated by `make bench` ([cmd/dbusers-bench](../cmd/dbusers-bench)); do not edit by hand, run it again.\n")
	p("Last run: %s, %s", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration)
	if r.Commit != "" {
		p(", at commit `%s`", r.Commit)
	}
	p(".\n\n```sh\n%s\n```\n\n", r.Command)
	if r.Scale != 1 {
		p("**Scaled run (-scale %g)**: counts are %g× the issue's; the ratios hold, the absolute times do not.\n\n", r.Scale, r.Scale)
	}

	p("## Machine\n\n| | |\n|---|---|\n")
	m := r.Machine
	p("| cores | %d |\n| CPU | %s |\n| memory | %d MiB |\n| kernel | %s |\n| MariaDB | %s |\n| Go | %s |\n| load average at start | %s |\n",
		m.Cores, m.CPUModel, m.MemoryMiB, m.Kernel, m.MariaDB, m.Go, m.LoadAvg)
	if r.Accounts > 0 {
		p("| accounts on the server during the rotation runs | %d |\n", r.Accounts)
	}
	for _, s := range r.Settings {
		p("| %s | %s |\n", s.Key, s.Value)
	}

	p("\n## Figures and goals\n\n")
	p("Every figure next to its direct-SQL baseline, run in the same invocation against the same server; ratio = worker ÷ direct.\n\n")
	p("| # | figure | worker | direct SQL | ratio | goal | |\n|---|---|---:|---:|---:|---|---|\n")
	for _, f := range r.Figures {
		p("| %s | %s | %s %s | %s | %s | %s | **%s** |\n", f.ID, f.Name, num(f.Worker), f.Unit, num(f.Direct), ratio(f.Ratio), f.Goal, f.status())
	}
	for _, f := range r.Figures {
		if f.Note != "" {
			p("\n- **%s** %s", f.ID, f.Note)
		}
	}
	p("\n")
	if len(r.Failures) > 0 {
		p("\n**Failures in this run:**\n\n")
		for _, f := range r.Failures {
			p("- %s\n", f)
		}
	}
	if len(r.Checks) > 0 {
		p("\n**Correctness checks:**\n\n")
		for _, c := range r.Checks {
			p("- %s\n", c)
		}
	}

	p("\n## CPU per job, by process\n\n")
	p("CPU time (user + system, from `/proc/<pid>/stat`) each process spent during the run, divided by its jobs or statements, in µs. ")
	p("*bench* is this program (the orchestrator publishing jobs and reading results, or the direct-SQL client), *nats* the nats-server process, ")
	p("*worker* the worker process(es), *mariadb* the server; *other* is the rest of the machine meanwhile (other processes, kernel work charged to none): ")
	p("when it is large, something else disturbed the run. The two cores give 2,000,000 µs of CPU per second: a run whose *total* per job is T µs cannot exceed 2,000,000 ÷ T jobs/s.\n\n")
	p("*deliveries* is how often the jobs stream delivered a job to a worker, per job (the consumers' delivered sequences): 1.00 when no job was handed back or redelivered. ")
	p("The last column counts the statements MariaDB received per job (`Questions`, all clients, so a concurrent test run shows up there too) and those of the kinds jobs send.\n\n")
	p("| run | jobs | wall ms | per s | bench | nats | worker | mariadb | total | other | deliveries | SQL statements per job |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, run := range r.Runs {
		c := run.CPU
		sql := "—"
		if run.SQL > 0 {
			sql = fmt.Sprintf("%.2f: %s", run.SQL, run.SQLKinds)
		}
		p("| %s | %d | %.0f | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %s |\n", run.Name, run.Jobs, run.WallMS, num(run.Rate),
			c.Bench, c.NATS, c.Worker, c.MariaDB, c.Total(), c.Other, num(run.Deliveries), sql)
	}

	var disturbed []string
	for _, run := range r.Runs {
		if run.Others != "" && run.CPU.Other > 0.1*run.CPU.Total() {
			disturbed = append(disturbed, fmt.Sprintf("%s: %s", run.Name, run.Others))
		}
	}
	if len(disturbed) > 0 {
		p("\nRuns where other processes took more than a tenth of the CPU the run itself used (process name, CPU during the run):\n\n")
		for _, d := range disturbed {
			p("- %s\n", d)
		}
	}

	if bounds := r.goalBounds(); len(bounds) > 0 {
		p("\n## Goals not met: what bounds them\n\n")
		for _, l := range bounds {
			p("- %s\n", l)
		}
	}

	if bounds := r.aimBounds(); len(bounds) > 0 {
		p("\n## Aims missed: what bounds them\n\n")
		for _, l := range bounds {
			p("- %s\n", l)
		}
	}

	if r.Before != nil {
		r.beforeAfter(&b)
	}

	p("\n## Limits: more targets, more MySQL servers, more worker processes\n\n")
	if len(r.Scaling) > 0 {
		p("Rotation jobs spread round-robin over N targets (each its own database and admin on the same MariaDB), ")
		p("against N direct connections, one per target, each issuing its share of ALTER USER. CPU in µs per job.\n\n")
		p("| targets | worker processes | jobs | worker jobs/s | direct ALTER/s | ratio | worker | nats | mariadb | total | direct total |\n")
		p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.Scaling {
			p("| %d | %d | %d | %.0f | %.0f | %.2f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", s.Targets, s.Workers, s.Jobs,
				s.WorkerRate, s.DirectRate, s.Ratio, s.WorkerCPU, s.NATSCPU, s.MariaDBCPU, s.TotalCPU, s.DirectTotal)
		}
		p("\n")
	}
	for _, l := range r.Limits {
		p("- %s\n", l)
	}

	if r.Profile != "" {
		p("\n## Worker CPU profile during the bulk rotation\n\n")
		p("`go tool pprof -top -cum` of the worker process over run 1, as µs of CPU per rotation job, keeping the entries of the worker's code and its libraries ")
		p("(the runtime's scheduler, futex and syscall entries are left out: the syscalls are mostly the socket writes of the NATS and MySQL round trips). ")
		p("Sampling at 100 Hz sees less than `/proc` does (kernel time of the socket I/O), so the column adds up below the run's worker CPU per job. ")
		p("The raw profile is `bin/worker-rotation.pprof`.\n\n")
		p("```\n%s\n```\n", strings.TrimSpace(r.Profile))
	}

	if len(r.GoBench) > 0 {
		p("\n## Go benchmarks: the hot path without MySQL\n\n")
		p("`go test -run '^$' -bench . -benchmem ./internal/jobs/ ./internal/vault/ ./wire/`\n\n")
		p("| package | benchmark | ns/op | B/op | allocs/op |\n|---|---|---:|---:|---:|\n")
		for _, g := range r.GoBench {
			p("| %s | %s | %.0f | %.0f | %.0f |\n", g.Package, g.Name, g.NsPerOp, g.BPerOp, g.Allocs)
		}
	}

	if len(r.Notes) > 0 {
		p("\n## How it is measured\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
	}

	data, err := json.Marshal(r)
	if err == nil {
		p("\n%s%s -->\n", dataMarker, data)
	}
	return b.Bytes()
}

// beforeAfter renders the comparison with an earlier run.
func (r *Report) beforeAfter(b *bytes.Buffer) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	before := r.Before
	p("\n## Before and after\n\n")
	p("Before: the run of %s", before.Started.UTC().Format("2006-01-02 15:04 MST"))
	if before.Commit != "" {
		p(" at commit `%s`", before.Commit)
	}
	p(" (scale %g). After: this run.\n\n", before.Scale)
	p("| # | figure | before | ratio before | after | ratio after |\n|---|---|---:|---:|---:|---:|\n")
	old := map[string]Figure{}
	for _, f := range before.Figures {
		old[f.ID] = f
	}
	for _, f := range r.Figures {
		o, ok := old[f.ID]
		if !ok {
			continue
		}
		p("| %s | %s | %s %s | %s | %s %s | %s |\n", f.ID, f.Name, num(o.Worker), o.Unit, ratio(o.Ratio), num(f.Worker), f.Unit, ratio(f.Ratio))
	}
	oldRuns := map[string]Run{}
	for _, run := range before.Runs {
		oldRuns[run.Name] = run
	}
	p("\n| run | worker µs/job before | after | nats µs/job before | after | mariadb µs/job before | after |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range r.Runs {
		o, ok := oldRuns[run.Name]
		if !ok || run.CPU.Worker == 0 && o.CPU.Worker == 0 {
			continue
		}
		p("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n", run.Name, o.CPU.Worker, run.CPU.Worker, o.CPU.NATS, run.CPU.NATS, o.CPU.MariaDB, run.CPU.MariaDB)
	}
}

// readReport reads the report embedded in a markdown file written earlier;
// nil when the file is absent or holds none.
func readReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	i := bytes.LastIndex(data, []byte(dataMarker))
	if i < 0 {
		return nil, nil
	}
	rest := data[i+len(dataMarker):]
	j := bytes.Index(rest, []byte(" -->"))
	if j < 0 {
		return nil, fmt.Errorf("%s: unterminated bench data", path)
	}
	var r Report
	if err := json.Unmarshal(rest[:j], &r); err != nil {
		return nil, fmt.Errorf("%s: bench data: %w", path, err)
	}
	return &r, nil
}

// writeMarkdown writes the report to path, creating its directory.
func (r *Report) writeMarkdown(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, r.markdown(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
