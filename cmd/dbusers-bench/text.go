package main

import (
	"fmt"
	"strings"
)

// findRun returns the run whose name starts with prefix.
// bestRun returns the fastest of the runs whose names start with prefix.
func (r *Report) bestRun(prefix string) (Run, bool) {
	var best Run
	found := false
	for _, run := range r.Runs {
		if strings.HasPrefix(run.Name, prefix) && (!found || run.Rate > best.Rate) {
			best, found = run, true
		}
	}
	return best, found
}

func (r *Report) findRun(prefix string) (Run, bool) {
	for _, run := range r.Runs {
		if strings.HasPrefix(run.Name, prefix) {
			return run, true
		}
	}
	return Run{}, false
}

// limits writes item 3 of the issue from the measured figures: what bounds
// throughput with more targets, servers and worker processes.
func (b *bench) limits() []string {
	r := &b.report
	var out []string
	cores := float64(r.Machine.Cores)
	w, okW := r.findRun("rotation: worker")
	d, okD := r.findRun("rotation: direct")
	if okW && okD {
		out = append(out, fmt.Sprintf("**What bounds one target here.** A rotation job through the worker cost %.0f µs of CPU in all "+
			"(worker %.0f, nats-server %.0f, MariaDB %.0f, the benchmark's client %.0f); a direct ALTER USER cost %.0f µs "+
			"(MariaDB %.0f, client %.0f). With %d cores shared by all of them, CPU alone caps the worker path at about "+
			"%.0f jobs/s and the direct path at %.0f/s; measured: %.0f and %.0f. A target's jobs run one at a time, so the "+
			"rest of the gap is waiting: each job's round trips to NATS and MySQL in series (%.0f µs of wall time per job "+
			"against %.0f µs per direct statement).",
			w.CPU.Total(), w.CPU.Worker, w.CPU.NATS, w.CPU.MariaDB, w.CPU.Bench, d.CPU.Total(), d.CPU.MariaDB, d.CPU.Bench,
			r.Machine.Cores, cores*1e6/w.CPU.Total(), cores*1e6/d.CPU.Total(), w.Rate, d.Rate,
			1e6/w.Rate, 1e6/d.Rate))
		if extra := w.SQL - d.SQL; extra > 0.5 && w.CPU.MariaDB > d.CPU.MariaDB {
			out = append(out, fmt.Sprintf("**MariaDB's share.** The worker sends %.2f statements per rotation job (%s) where the direct path sends %.2f; "+
				"MariaDB spent %.0f µs per job on them against %.0f µs per direct ALTER USER, so the %.2f extra statements cost about %.0f µs each "+
				"with %d accounts on the server. Statements whose cost grows with the number of accounts (a scan of a privilege table) make "+
				"every rotation slower as the server fills.",
				w.SQL, w.SQLKinds, d.SQL, w.CPU.MariaDB, d.CPU.MariaDB, extra, (w.CPU.MariaDB-d.CPU.MariaDB)/extra, r.Accounts))
		}
	}
	if len(r.Scaling) > 1 {
		first := r.Scaling[0]
		var bestOne Scaling
		var two *Scaling
		for i, s := range r.Scaling {
			if s.Workers == 1 && s.WorkerRate > bestOne.WorkerRate {
				bestOne = s
			}
			if s.Workers == 2 {
				two = &r.Scaling[i]
			}
		}
		out = append(out, fmt.Sprintf("**More targets (measured).** Targets run in parallel, one lane each, so more targets overlap one "+
			"job's waiting with another's work: 1 target gave %.0f jobs/s (%.2f× its direct baseline), the best was %.0f jobs/s "+
			"with %d targets (%.2f× %d direct connections at %.0f/s). MariaDB serializes account statements internally, so "+
			"direct connections barely add up (%.0f/s on 1, %.0f/s on %d), and the machine's CPU is the ceiling for both: "+
			"at %d targets the worker path spent %.0f µs of CPU per job against %.0f µs direct.",
			first.WorkerRate, first.Ratio, bestOne.WorkerRate, bestOne.Targets, bestOne.Ratio, bestOne.Targets, bestOne.DirectRate,
			first.DirectRate, bestOne.DirectRate, bestOne.Targets, bestOne.Targets, bestOne.TotalCPU, bestOne.DirectTotal))
		if two != nil {
			one := Scaling{}
			for _, s := range r.Scaling {
				if s.Workers == 1 && s.Targets == two.Targets {
					one = s
				}
			}
			gain := safeDiv(two.WorkerRate, one.WorkerRate)
			verdict := "Two did about as much as one: on cores shared with NATS and MariaDB a second process finds no idle CPU"
			switch {
			case gain > 1.1:
				verdict = "Two did more than one: one process's lanes leave CPU idle while they wait on round trips, and the second process's lanes use some of it"
			case gain < 0.9:
				verdict = "Two did less than one: here the second process only added contention"
			}
			out = append(out, fmt.Sprintf("**More worker processes (measured, same machine).** Two worker processes sharing the %d targets "+
				"by partition gave %.0f jobs/s against %.0f with one (%.2f×), at %.0f µs of worker CPU per job against %.0f. %s. "+
				"Processes pay off most on machines of their own, where the worker's CPU is what bounds a target set. A target lives "+
				"in one partition, worked by one process at a time, so a single target never goes faster with more processes; and "+
				"all processes share the NATS server, whose %.0f µs per job then becomes the shared cost (about %.0f jobs/s per "+
				"nats-server core).",
				two.Targets, two.WorkerRate, one.WorkerRate, gain, two.WorkerCPU, one.WorkerCPU, verdict,
				two.NATSCPU, safeDiv(1e6, two.NATSCPU)))
		}
	}
	if okW && okD {
		out = append(out, fmt.Sprintf("**More MySQL servers (reasoned: this machine has %d cores for everything).** Each server applies its "+
			"account statements one at a time (here %.0f µs of MariaDB CPU per direct ALTER USER, %.0f/s on one connection), so "+
			"servers on their own hosts each bring their own ceiling, and targets on different servers do not slow each other. "+
			"What they share is the worker and NATS: at the measured %.0f µs of worker CPU and %.0f µs of nats-server CPU per job, "+
			"one worker core keeps up with about %.0f jobs/s, %.2f× one server's direct ALTER USER rate; beyond that add worker "+
			"processes (the partitions spread the targets) and NATS capacity. Below that, per-target order means each target "+
			"still needs the latency of one job at a time: a server's throughput is reached only with several targets on it.",
			r.Machine.Cores, d.CPU.MariaDB, d.Rate, w.CPU.Worker, w.CPU.NATS, safeDiv(1e6, w.CPU.Worker), safeDiv(safeDiv(1e6, w.CPU.Worker), d.Rate)))
	}
	return out
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// notes says how the figures are made, for the markdown.
func (b *bench) notes() []string {
	s := b.s
	return []string{
		"Processes: this program (the orchestrator and the direct-SQL client), a nats-server process (the nats-server library the worker " +
			"embeds, run by this binary with JetStream file storage), the worker process (see Machine), and the local MariaDB. Each one's CPU is read " +
			"from /proc/<pid>/stat before and after a run (10 ms resolution); MariaDB's process is the one listening on the DSN's port.",
		"Bulk runs publish every job with `PublishMsgAsync` (window " + fmt.Sprint(s.window) + " unacknowledged, `Nats-Msg-Id` = job id) " +
			"and count results on one subscription of `dbusers.results.<target>.>`; the time runs from the first publish to the last result. " +
			"The throughput runs do not read the vault (a client would, at its own cost); instead a sample of " + fmt.Sprint(s.verify) +
			" jobs per run has its sealed password read from `DBUSERS_VAULT`, opened with the requester's key and used to log in to MariaDB.",
		"Direct baselines run on one connection of the same least-privilege admin account the worker uses (contract §5.7), with " +
			"client-side interpolation, as the worker connects; passwords are generated before the clock starts.",
		"Order: creates first (while the server holds few accounts; the direct run's accounts are dropped before the worker's run, so both " +
			"see the same server), then the rotation accounts are made in batches, then rotation, latency, listing, limits and backlog. " +
			"The backlog's jobs are reset_password jobs (the goal is stated per rotation job) over the rotation accounts, each several times; " +
			"the sampled check logs in with the password of each account's last job, which also shows the per-target order held.",
		"Every database and account is named `dbb<6 hex>_…` and dropped at the end, also on Ctrl-C; `dbusers-bench -drop-stale` removes " +
			"those of a killed run. `-scale 0.1` runs every count at a tenth (the list page too, so the page count stays).",
		"Before/after: `-before OLD.md` puts an earlier run's figures next to this run's; without it, the before section of the existing " +
			"output file is kept.",
	}
}

// findFigure returns the figure with id.
func (r *Report) findFigure(id string) (Figure, bool) {
	for _, f := range r.Figures {
		if f.ID == id {
			return f, true
		}
	}
	return Figure{}, false
}

// unmet reports whether figure id exists and missed its goal.
func (r *Report) unmet(id string) (Figure, bool) {
	f, ok := r.findFigure(id)
	return f, ok && f.Met != nil && !*f.Met
}

// goalBounds says, for each goal this run missed, what bounds it, from
// the run's own figures: the issue asks for that whenever a goal is not met.
func (r *Report) goalBounds() []string {
	var out []string
	cores := float64(r.Machine.Cores)
	// A throughput goal of 1.0× direct on these cores needs the whole path
	// (every process) within cores/direct rate of CPU per job.
	throughput := func(id, workerRun, directRun, what string) {
		f, miss := r.unmet(id)
		w, okW := r.findRun(workerRun)
		d, okD := r.findRun(directRun)
		if !miss || !okW || !okD || d.Rate == 0 {
			return
		}
		budget := cores * 1e6 / d.Rate
		out = append(out, fmt.Sprintf("**%s (%s, %.2f×).** 1.0× the direct %.0f/s is %.0f jobs/s; on %d cores that leaves %.0f µs of CPU "+
			"per job for every process together. Measured per job: nats-server %.0f µs, worker %.0f, MariaDB %.0f (direct: %.0f), "+
			"the benchmark's client %.0f. Per job, a delivery and its ack, a vault entry and a result go to JetStream (batched: "+
			"docs/architecture.md). CPU caps this path at "+
			"%.0f jobs/s here; the rest of the gap to the measured %.0f/s is the wait of one target's batches in series.",
			id, what, f.Ratio, d.Rate, d.Rate, r.Machine.Cores, budget, w.CPU.NATS, w.CPU.Worker, w.CPU.MariaDB, d.CPU.MariaDB,
			w.CPU.Bench, cores*1e6/w.CPU.Total(), w.Rate))
	}
	throughput("1", "rotation: worker", "rotation: direct", "bulk rotation")
	throughput("2", "create: worker", "create: direct", "bulk create")

	if f, miss := r.unmet("3a"); miss {
		if w, ok := r.findRun("latency: worker"); ok {
			out = append(out, fmt.Sprintf("**3a (latency p50 %.2f ms against %.2f + 1 ms).** One sequential job made the processes spend "+
				"%.0f µs of CPU (nats-server %.0f, worker %.0f, MariaDB %.0f, client %.0f): spread perfectly over %d cores that is already "+
				"%.2f ms of wall time, before any waiting. In series a lone job waits for its delivery, one NATS round trip (the "+
				"stored-result lookup), the vault write beside the account check (SHOW GRANTS), the ALTER USER, and the result "+
				"write; each wakes a goroutine of the worker and of nats-server on a machine whose two cores MariaDB shares.",
				f.Worker, f.Direct, w.CPU.Total(), w.CPU.NATS, w.CPU.Worker, w.CPU.MariaDB, w.CPU.Bench, r.Machine.Cores,
				w.CPU.Total()/cores/1000))
		}
	}
	if f, miss := r.unmet("1d"); miss {
		// The runs figure 1d compares: the better of each kind.
		k, okK := r.bestRun("rotation: worker, keeping")
		p, okP := r.bestRun("rotation: worker, generated")
		if okK && okP {
			out = append(out, fmt.Sprintf("**1d (keep-old rotation %.2f× the plain one, goal 0.8×).** A keep-old job cost %.0f µs of CPU in all "+
				"(worker %.0f, nats-server %.0f, MariaDB %.0f) against %.0f (worker %.0f, nats-server %.0f, MariaDB %.0f) for a plain one. "+
				"Per job it adds one JetStream write (its schedule entry: the old password's end and the credential it keeps, written "+
				"before the statement), which every process's expiry watcher is sent; the credential in force comes from the grants "+
				"the ownership check reads anyway; the statement itself carries both methods of every account.",
				f.Ratio, k.CPU.Total(), k.CPU.Worker, k.CPU.NATS, k.CPU.MariaDB, p.CPU.Total(), p.CPU.Worker, p.CPU.NATS, p.CPU.MariaDB))
		}
	}
	if f, miss := r.unmet("5d"); miss {
		bl, okB := r.findRun("backlog: worker")
		rot, okR := r.findRun("rotation: worker, generated")
		if okB && okR && bl.CPU.Total() > 0 && rot.CPU.Total() > 0 {
			cpuRatio := rot.CPU.Total() / bl.CPU.Total()
			rest := "CPU per job accounts for all of it"
			if f.Ratio < cpuRatio {
				rest = fmt.Sprintf("the rest of the gap to the measured %.2f is waiting", f.Ratio)
			}
			out = append(out, fmt.Sprintf("**5d (backlog %.2f× the bulk rotation's rate, goal 0.90×).** A backlog job cost %.0f µs of CPU in all "+
				"(worker %.0f, nats-server %.0f, MariaDB %.0f) against %.0f (worker %.0f, nats-server %.0f, MariaDB %.0f) for a job of the "+
				"bulk rotation. On %d cores CPU alone caps the two at %.0f and %.0f jobs/s, a ratio of %.2f: %s. The rotation's %d jobs "+
				"took %.1f s and the backlog's %d took %.1f s: a disturbance of the machine for a second moves the shorter run's rate most.",
				f.Ratio, bl.CPU.Total(), bl.CPU.Worker, bl.CPU.NATS, bl.CPU.MariaDB, rot.CPU.Total(), rot.CPU.Worker, rot.CPU.NATS, rot.CPU.MariaDB,
				r.Machine.Cores, cores*1e6/bl.CPU.Total(), cores*1e6/rot.CPU.Total(), cpuRatio, rest,
				rot.Jobs, rot.WallMS/1000, bl.Jobs, bl.WallMS/1000))
		}
	}
	if f, miss := r.unmet("4"); miss {
		n := listedAccounts(f.Name)
		dw, _ := r.findRun(fmt.Sprintf("listing %d accounts: direct", n))
		ww, _ := r.findRun(fmt.Sprintf("listing %d accounts: worker", n))
		out = append(out, fmt.Sprintf("**4 (listing %.0f ms).** The same queries run directly by this program take %.0f ms; MariaDB "+
			"spent %.0f µs of CPU per full listing through the worker. The queries read the target's rows of mysql.db in key "+
			"order and the outsiders of each page's range; at about %.0f µs of MariaDB CPU per account listed, the server's "+
			"evaluation of the privilege tables (Aria tables, read row by row) is what bounds it, not the worker (%.0f µs per listing).",
			f.Worker, dw.WallMS, ww.CPU.MariaDB, safeDiv(ww.CPU.MariaDB, float64(n)), ww.CPU.Worker))
	}
	if f, miss := r.unmet("5c"); miss {
		if d, ok := r.findRun("rotation: direct"); ok {
			out = append(out, fmt.Sprintf("**5c (worker CPU %.0f µs per rotation job).** The direct client spent %.0f µs of CPU per ALTER USER: "+
				"that is what one MySQL round trip from Go costs on this machine (database/sql, the driver, the socket calls). A rotation "+
				"job's statements are shared by its batch, but its delivery, ack, vault entry and result are its own JetStream "+
				"messages, each a socket write and read of the same kind; the profile below shows where the rest goes.",
				f.Worker, d.CPU.Bench))
		}
	}
	return out
}

// listedAccounts reads the account count from a listing figure's name
// ("listing 10000 accounts, …").
func listedAccounts(name string) int {
	var n int
	_, _ = fmt.Sscanf(name, "listing %d accounts", &n)
	return n
}

// aimMissed reports whether figure id exists and missed its aim.
func (r *Report) aimMissed(id string) (Figure, bool) {
	f, ok := r.findFigure(id)
	return f, ok && f.AimMet != nil && !*f.AimMet
}

// aimBounds says, for each aim this run missed, what bounds it, from the
// run's own figures, as goalBounds does for goals.
func (r *Report) aimBounds() []string {
	var out []string
	cores := float64(r.Machine.Cores)
	throughput := func(id string, aim float64, workerRun, directRun, what string) {
		f, miss := r.aimMissed(id)
		w, okW := r.findRun(workerRun)
		d, okD := r.findRun(directRun)
		if !miss || !okW || !okD || d.Rate == 0 || w.CPU.Total() == 0 {
			return
		}
		ceiling := cores * 1e6 / w.CPU.Total()
		busy := w.Rate * w.CPU.Total() / (cores * 1e6)
		line := fmt.Sprintf("**%s (%s, %.2f× against the aim's %.1f×).** The aim is %.0f jobs/s. The path spent %.0f µs of CPU per job "+
			"(worker %.0f, nats-server %.0f, MariaDB %.0f, the benchmark's client %.0f), which caps it at %.0f jobs/s (%.2f×) on %d cores; ",
			id, what, f.Ratio, aim, aim*d.Rate, w.CPU.Total(), w.CPU.Worker, w.CPU.NATS, w.CPU.MariaDB, w.CPU.Bench,
			ceiling, ceiling/d.Rate, r.Machine.Cores)
		if ceiling < aim*d.Rate {
			line += "CPU alone rules the aim out here: every process would have to spend less per job."
		} else {
			line += fmt.Sprintf("the measured %.0f/s kept the cores %.0f%% busy. The rest is waiting: one target's batches run one after "+
				"another, and each waits in series for its stored-result lookup, its vault writes, its statements and its results "+
				"(docs/architecture.md), during which the target's next jobs queue.", w.Rate, 100*busy)
		}
		out = append(out, line)
	}
	throughput("1", 2.0, "rotation: worker", "rotation: direct", "bulk rotation")
	throughput("2", 1.5, "create: worker", "create: direct", "bulk create")
	throughput("2c", 1.5, "delete: worker", "delete: direct", "bulk delete")

	if f, miss := r.aimMissed("1c"); miss {
		line := fmt.Sprintf("**1c (worker CPU %.0f µs per rotation job against the aim's 50).** ", f.Worker)
		if d, ok := r.findRun("rotation: direct"); ok {
			line += fmt.Sprintf("The direct client spent %.0f µs per one-account ALTER USER: a MySQL round trip from Go costs about that "+
				"here, and a rotation job, whose statement its batch shares, still has its own delivery, ack, vault entry and result "+
				"on NATS. ", d.CPU.Bench)
		}
		if top := profileTop(r.Profile, 6); top != "" {
			line += "Largest cumulative costs in this run's profile (µs per job): " + top + "."
		}
		out = append(out, line)
	}
	if f, miss := r.aimMissed("3a"); miss {
		if w, ok := r.findRun("latency: worker"); ok {
			out = append(out, fmt.Sprintf("**3a (latency p50 %.2f ms, %.2f ms above direct against the aim's 0.5).** A lone job waits, in "+
				"series, for its delivery, the stored-result lookup, its vault write (beside the account check, SHOW GRANTS), the "+
				"ALTER USER and its result: three NATS round trips and two MySQL ones, each waking a goroutine in the worker and in "+
				"nats-server. Idle processes pay for each wake-up: one sequential job cost %.0f µs of CPU (nats-server %.0f, worker %.0f, "+
				"MariaDB %.0f, client %.0f), against %.0f µs per job for the worker in the bulk rotation.",
				f.Worker, f.Worker-f.Direct, w.CPU.Total(), w.CPU.NATS, w.CPU.Worker, w.CPU.MariaDB, w.CPU.Bench, r.rotationWorkerCPU()))
		}
	}
	return out
}

// rotationWorkerCPU is the worker's CPU per job in the bulk rotation.
func (r *Report) rotationWorkerCPU() float64 {
	run, _ := r.findRun("rotation: worker")
	return run.CPU.Worker
}

// profileTop returns the first n entries of the profile's table that are
// not the lane's own loop or the runtime, as "function µs, …".
func profileTop(profile string, n int) string {
	var parts []string
	for _, line := range strings.Split(profile, "\n") {
		fields := strings.Fields(line)
		if len(fields) != 3 || !strings.HasSuffix(fields[1], "%") {
			continue
		}
		fn := fields[2]
		if strings.HasPrefix(fn, "runtime.") || strings.HasSuffix(fn, ".runLane") || strings.HasSuffix(fn, ".runBatch") {
			continue
		}
		fn = fn[strings.LastIndex(fn, "/")+1:]
		parts = append(parts, fmt.Sprintf("%s %s", fn, fields[0]))
		if len(parts) == n {
			break
		}
	}
	return strings.Join(parts, ", ")
}
