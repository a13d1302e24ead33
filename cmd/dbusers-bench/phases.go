package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/wire"
)

// sample returns up to k indexes spread evenly over [0, n).
func sample(n, k int) []int {
	k = min(k, n)
	out := make([]int, k)
	for i := range out {
		out[i] = i * n / k
	}
	return out
}

// verify reads the generated passwords of jobs ids[i] (for accounts
// users[i]) from the vault, opens them as the requester, and logs in with
// each: the bulk runs do not read the vault, so this proves on a sample
// that the results they counted stand for working passwords.
func (b *bench) verify(ctx context.Context, what string, t *benchTarget, ids, users []string, idx []int) {
	good := 0
	for _, i := range idx {
		pw, err := b.ns.openSecret(ctx, t.name, ids[i], b.requester, b.workerPub)
		if err == nil {
			err = b.my.canLogin(ctx, t, users[i], pw.Reveal())
		}
		if err != nil {
			b.fail("%s: account %s: %v", what, users[i], err)
			continue
		}
		good++
	}
	b.report.Checks = append(b.report.Checks, fmt.Sprintf("%s: %d of %d sampled generated passwords read from the vault, opened with the requester's key and used to log in",
		what, good, len(idx)))
}

// checkOutcome records failed results of a bulk run.
func (b *bench) checkOutcome(what string, out bulkOutcome) {
	if out.failed > 0 {
		b.fail("%s: %d of %d jobs answered with an error; first: %v", what, out.failed, out.ok+out.failed, out.failures)
	}
}

// phaseCreate is figure 2: 2,000 creates through the worker against 2,000
// CREATE USER + GRANT on one connection. It runs first, while the server
// holds few accounts (account statements slow down as accounts pile up), and
// both sides see the same number of accounts: the direct run's accounts are
// dropped before the worker's run.
func (b *bench) phaseCreate(ctx context.Context) error {
	n := b.s.creates
	before, err := b.my.accountCount(ctx)
	if err != nil {
		return err
	}
	b.logf("bulk create: %d accounts, direct then through the worker (server holds %d accounts)", n, before)
	d, err := openDirect(ctx, b.main)
	if err != nil {
		return err
	}
	defer d.close()
	users := b.users("c", n)
	pws, err := b.passwords(n)
	if err != nil {
		return err
	}
	b.quiet(ctx)
	a := b.begin()
	start := time.Now()
	if err := d.create(ctx, users, pws); err != nil {
		return err
	}
	wall := time.Since(start)
	direct := b.record("create: direct CREATE USER + GRANT, one connection", n, wall, a, b.end())
	b.quiet(ctx)
	a = b.begin()
	start = time.Now()
	if err := d.drop(ctx, users); err != nil {
		return err
	}
	directDrop := b.record("delete: direct DROP USER, one connection", n, time.Since(start), a, b.end())

	users = b.users("w", n)
	ids := make([]string, n)
	js := make([]job, n)
	for i := range js {
		ids[i] = b.jobID("cr", i)
		js[i] = b.ns.createJob(b.main.name, ids[i], users[i], b.reqPub)
	}
	var a2 cpuSnap
	b.quiet(ctx)
	out, err := b.ns.runBulk(ctx, js, []string{b.main.name}, b.s.stall, bulkHooks{started: func() { a2 = b.begin() }})
	if err != nil {
		return err
	}
	worker := b.record("create: worker, generated passwords", n, out.wall, a2, b.end())
	b.checkOutcome("bulk create", out)
	b.verify(ctx, "bulk create", b.main, ids, users, sample(n, b.s.verify))

	// Delete the worker's accounts through the worker.
	for i := range js {
		ids[i] = b.jobID("del", i)
		js[i] = b.ns.deleteJob(b.main.name, ids[i], users[i])
	}
	b.quiet(ctx)
	out, err = b.ns.runBulk(ctx, js, []string{b.main.name}, b.s.stall, bulkHooks{started: func() { a2 = b.begin() }})
	if err != nil {
		return err
	}
	deleted := b.record("delete: worker", n, out.wall, a2, b.end())
	b.checkOutcome("bulk delete", out)
	left := 0
	for _, u := range users {
		if err := b.main.db.QueryRowContext(ctx, "SELECT 1 FROM mysql.global_priv WHERE User = ? AND Host = '%'", u).Scan(new(int)); err == nil {
			left++
		}
	}
	if left > 0 {
		b.fail("bulk delete: %d of %d accounts still exist after their ok result", left, n)
	} else {
		b.report.Checks = append(b.report.Checks, fmt.Sprintf("bulk delete: none of the %d deleted accounts is left on the server", n))
	}
	if err := b.my.dropAccounts(ctx, users); err != nil {
		return err
	}
	r := worker.Rate / direct.Rate
	rd := deleted.Rate / directDrop.Rate
	b.report.Figures = append(b.report.Figures, Figure{
		ID: "2", Name: fmt.Sprintf("bulk create, %d accounts", n), Unit: "/s",
		Worker: worker.Rate, Direct: direct.Rate, Ratio: r, Goal: "≥ 1.0× (aim 1.5×)", Met: boolPtr(r >= 1.0), AimMet: boolPtr(r >= 1.5),
		Note: fmt.Sprintf("with %d accounts on the server; generated passwords, each sealed and written to the vault; direct = CREATE USER + GRANT ALL on the escaped database, one connection, the same admin account.", before),
	}, Figure{
		ID: "2b", Name: "bulk create: worker CPU per job", Unit: "µs", Worker: worker.CPU.Worker, Direct: direct.CPU.Bench,
		Ratio: worker.CPU.Worker / direct.CPU.Bench, Goal: "—",
		Note: "worker process CPU (user + system) over the run ÷ jobs; direct = CPU of the client issuing the direct statements.",
	}, Figure{
		ID: "2c", Name: fmt.Sprintf("bulk delete, %d accounts", n), Unit: "/s",
		Worker: deleted.Rate, Direct: directDrop.Rate, Ratio: rd, Goal: "≥ 1.0× (aim 1.5×)", Met: boolPtr(rd >= 1.0), AimMet: boolPtr(rd >= 1.5),
		Note: "the accounts the bulk create made, deleted by delete jobs (each also ends the account's sessions); direct = DROP USER of the accounts the direct create made, one connection.",
	}, Figure{
		ID: "2d", Name: "bulk delete: worker CPU per job", Unit: "µs", Worker: deleted.CPU.Worker, Direct: directDrop.CPU.Bench,
		Ratio: deleted.CPU.Worker / directDrop.CPU.Bench, Goal: "—",
	})
	return nil
}

// phaseAccounts makes the accounts the rotation, latency, listing, limits
// and backlog runs work on, directly and in batches.
func (b *bench) phaseAccounts(ctx context.Context) error {
	start := time.Now()
	b.rotUsers = b.users("r", b.s.rotations)
	if err := b.my.createAccounts(ctx, b.main, b.rotUsers); err != nil {
		return err
	}
	total := len(b.rotUsers)
	for i, t := range b.extra {
		t.accounts = b.users(fmt.Sprintf("s%d_", i), b.s.scalingAccounts)
		if err := b.my.createAccounts(ctx, t, t.accounts); err != nil {
			return err
		}
		total += len(t.accounts)
	}
	n, err := b.my.accountCount(ctx)
	if err != nil {
		return err
	}
	b.report.Accounts = n
	b.logf("made %d accounts in %.1fs; the server holds %d", total, time.Since(start).Seconds(), n)
	return nil
}

// phaseRotation is figure 1: reset_password jobs with generated passwords
// against ALTER USER on one connection, over the same accounts. The worker's
// CPU profile is taken over this run.
func (b *bench) phaseRotation(ctx context.Context) error {
	users := b.rotUsers
	n := len(users)
	b.logf("bulk rotation: %d accounts, direct then through the worker", n)
	d, err := openDirect(ctx, b.main)
	if err != nil {
		return err
	}
	defer d.close()
	pws, err := b.passwords(n)
	if err != nil {
		return err
	}
	b.quiet(ctx)
	a := b.begin()
	start := time.Now()
	if err := d.alter(ctx, users, pws, nil); err != nil {
		return err
	}
	wall := time.Since(start)
	direct := b.record("rotation: direct ALTER USER, one connection", n, wall, a, b.end())
	b.directRotation = direct
	if pws, err = b.passwords(n); err != nil {
		return err
	}
	b.quiet(ctx)
	a = b.begin()
	start = time.Now()
	if err := d.alterMany(ctx, users, pws, accountsPerStatement); err != nil {
		return err
	}
	limit := b.record(fmt.Sprintf("rotation: direct ALTER USER, %d accounts per statement (the server's limit)", accountsPerStatement),
		n, time.Since(start), a, b.end())

	ids := make([]string, n)
	js := make([]job, n)
	for i := range js {
		ids[i] = b.jobID("rot", i)
		js[i] = b.ns.resetJob(b.main.name, ids[i], users[i], b.reqPub)
	}
	profiling := b.s.cpuprofile != "" && b.s.workerBin == ""
	var a2 cpuSnap
	b.quiet(ctx)
	out, err := b.ns.runBulk(ctx, js, []string{b.main.name}, b.s.stall, bulkHooks{started: func() {
		if profiling {
			b.signalWorkers(syscall.SIGUSR1)
		}
		a2 = b.begin()
	}})
	z := b.end()
	if profiling {
		b.signalWorkers(syscall.SIGUSR2)
		if _, perr := b.workers[0].waitLine(ctx, lineProfiled, 30*time.Second); perr != nil {
			b.logf("profile: %v", perr)
		}
	}
	if err != nil {
		return err
	}
	worker := b.record("rotation: worker, generated passwords", n, out.wall, a2, z)
	b.checkOutcome("bulk rotation", out)
	b.verify(ctx, "bulk rotation", b.main, ids, users, sample(n, b.s.verify))

	// rotate runs the same rotation again through the worker (each reset
	// keeping the password it replaces working for keep, when set), then
	// gives every account one password again, as the later runs and
	// phases expect.
	rotate := func(name, what, phase, keep string) (Run, error) {
		ids := make([]string, n)
		for i := range js {
			ids[i] = b.jobID(phase, i)
			if keep == "" {
				js[i] = b.ns.resetJob(b.main.name, ids[i], users[i], b.reqPub)
			} else {
				js[i] = b.ns.resetKeepOldJob(b.main.name, ids[i], users[i], b.reqPub, keep)
			}
		}
		var a cpuSnap
		b.quiet(ctx)
		out, err := b.ns.runBulk(ctx, js, []string{b.main.name}, b.s.stall, bulkHooks{started: func() { a = b.begin() }})
		z := b.end()
		if err != nil {
			return Run{}, err
		}
		r := b.record(name, n, out.wall, a, z)
		b.checkOutcome(what, out)
		b.verify(ctx, what, b.main, ids, users, sample(n, b.s.verify))
		if keep == "" {
			return r, nil
		}
		// A plain ALTER USER drops the old passwords.
		if pws, err = b.passwords(n); err != nil {
			return Run{}, err
		}
		return r, d.alterMany(ctx, users, pws, accountsPerStatement)
	}
	// Rotation without downtime, then a second pair of runs: figure 1d
	// compares the better rate of each kind, so that a burst of another
	// process's CPU during one run (two cores shared by everything here)
	// skews neither side.
	keep, err := rotate("rotation: worker, keeping the old passwords", "keep-old rotation", "keep", "15m")
	if err != nil {
		return err
	}
	worker2, err := rotate("rotation: worker, generated passwords (second run)", "bulk rotation, second run", "rot2", "")
	if err != nil {
		return err
	}
	keep2, err := rotate("rotation: worker, keeping the old passwords (second run)", "keep-old rotation, second run", "keep2", "15m")
	if err != nil {
		return err
	}
	keepBest, plainBest := max(keep.Rate, keep2.Rate), max(worker.Rate, worker2.Rate)
	b.workerRotation = worker
	b.serverLimit = limit
	r := worker.Rate / direct.Rate
	b.report.Figures = append(b.report.Figures, Figure{
		ID: "1", Name: fmt.Sprintf("bulk rotation, %d reset_password", n), Unit: "/s",
		Worker: worker.Rate, Direct: direct.Rate, Ratio: r, Goal: "≥ 1.0× (aim 2.0×)", Met: boolPtr(r >= 1.0), AimMet: boolPtr(r >= 2.0),
		Note: fmt.Sprintf("first publish to last result, %d jobs published asynchronously (window %d), results read on one subscription of %s; every password generated, sealed and written to the vault (the run does not read the vault: see the checks); one reply_key for the batch. Direct = ALTER USER … IDENTIFIED BY with pre-generated 64-character passwords, one connection, the same admin account.",
			n, b.s.window, b.ns.resultsSubject(b.main.name)),
	}, Figure{
		ID: "1b", Name: "bulk rotation: worker as a fraction of the server's limit", Unit: "/s",
		Worker: worker.Rate, Direct: limit.Rate, Ratio: worker.Rate / limit.Rate, Goal: "—",
		Note: fmt.Sprintf("direct = ALTER USER of %d accounts per statement over the same accounts, one connection: what the server itself can do.", accountsPerStatement),
	}, Figure{
		ID: "1c", Name: "bulk rotation: worker CPU per job", Unit: "µs", Worker: worker.CPU.Worker, Direct: direct.CPU.Bench,
		Ratio: worker.CPU.Worker / direct.CPU.Bench, Goal: "≤ 100 µs (aim 50 µs)", Met: boolPtr(worker.CPU.Worker <= 100), AimMet: boolPtr(worker.CPU.Worker <= 50),
		Note: "worker process CPU (user + system) over the run ÷ jobs; direct = CPU of the client issuing the one-account ALTER USER statements.",
	}, Figure{
		ID: "1d", Name: fmt.Sprintf("keep-old bulk rotation, %d reset_password with keep_old_for", n), Unit: "/s",
		Worker: keepBest, Direct: plainBest, Ratio: keepBest / plainBest, Goal: "≥ 0.8×", Met: boolPtr(keepBest >= 0.8*plainBest),
		Note: fmt.Sprintf("the same accounts and jobs as figure 1, each reset keeping the password it replaces working for 15 minutes (its credential read and recorded, its end scheduled); direct = the plain worker rotation, figure 1's run or a second one. Runs in the order plain (figure 1), keep-old, plain, keep-old; each side is the better of its two runs (keep-old %.0f and %.0f/s, plain %.0f and %.0f/s).",
			keep.Rate, keep2.Rate, worker.Rate, worker2.Rate),
	})
	return nil
}

// accountsPerStatement is the direct rotation's accounts per ALTER USER
// when it measures the server's limit (measured on MariaDB 10.11: 50 or
// more per statement run at the server's own speed).
const accountsPerStatement = 50

// phaseLatency is figure 3: sequential jobs, each published after the
// previous result arrived, against sequential ALTER USER statements.
func (b *bench) phaseLatency(ctx context.Context) error {
	n := b.s.latency
	total := n + warmJobs
	users := make([]string, total)
	for i := range users {
		users[i] = b.rotUsers[i%len(b.rotUsers)]
	}
	b.logf("latency: %d sequential jobs (+%d untimed), direct then through the worker", n, warmJobs)
	d, err := openDirect(ctx, b.main)
	if err != nil {
		return err
	}
	defer d.close()
	pws, err := b.passwords(total)
	if err != nil {
		return err
	}
	if err := d.alter(ctx, users[:warmJobs], pws[:warmJobs], nil); err != nil {
		return err
	}
	directLat := make([]time.Duration, 0, n)
	b.quiet(ctx)
	a := b.begin()
	start := time.Now()
	if err := d.alter(ctx, users[warmJobs:], pws[warmJobs:], &directLat); err != nil {
		return err
	}
	b.record("latency: direct ALTER USER, sequential", n, time.Since(start), a, b.end())

	// A fresh reply key per job, as the Go client makes one; made before
	// the clock starts.
	js := make([]job, total)
	for i := range js {
		kp, err := nkeys.CreateCurveKeys()
		if err != nil {
			return fmt.Errorf("requester key: %w", err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return fmt.Errorf("requester key: %w", err)
		}
		js[i] = b.ns.resetJob(b.main.name, b.jobID("lat", i), users[i], pub)
	}
	b.quiet(ctx)
	a = b.begin()
	start = time.Now()
	workerLat, err := b.ns.runSequential(ctx, b.main.name, js, warmJobs)
	if err != nil {
		return err
	}
	// The CPU and time cover the untimed warm-up jobs too.
	b.record("latency: worker, sequential jobs", total, time.Since(start), a, b.end())

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	w50, w99 := percentile(workerLat, 50), percentile(workerLat, 99)
	d50, d99 := percentile(directLat, 50), percentile(directLat, 99)
	b.report.Figures = append(b.report.Figures,
		Figure{ID: "3a", Name: "single-job latency p50", Unit: "ms", Worker: ms(w50), Direct: ms(d50), Ratio: ms(w50) / ms(d50),
			Goal: "≤ direct + 1 ms (aim + 0.5 ms)", Met: boolPtr(w50 <= d50+time.Millisecond), AimMet: boolPtr(w50 <= d50+time.Millisecond/2),
			Note: fmt.Sprintf("%d sequential reset_password jobs with generated passwords, publish to result received, after %d untimed; a fresh reply_key per job (as the Go client does). Direct = one ALTER USER on a warm connection. p50 is %.2f ms above direct.",
				n, warmJobs, ms(w50-d50))},
		Figure{ID: "3b", Name: "single-job latency p99", Unit: "ms", Worker: ms(w99), Direct: ms(d99), Ratio: ms(w99) / ms(d99),
			Goal: "≤ 10 ms", Met: boolPtr(w99 <= 10*time.Millisecond)},
	)
	return nil
}

// phaseList is figure 4: every account of the target, page by page, through
// the worker and with the worker's own list query on this process's
// connection. One rotation account is dropped first so that the target
// holds exactly as many accounts as the rotation had jobs (the protected
// user counts).
func (b *bench) phaseList(ctx context.Context) error {
	last := b.rotUsers[len(b.rotUsers)-1]
	if err := b.my.dropAccounts(ctx, []string{last}); err != nil {
		return err
	}
	b.rotUsers = b.rotUsers[:len(b.rotUsers)-1]
	want := len(b.rotUsers) + 1
	b.logf("listing: %d accounts at %d per page, %d times each", want, b.s.page, b.s.listRuns)
	d, err := openDirect(ctx, b.main)
	if err != nil {
		return err
	}
	defer d.close()
	var directTimes, workerTimes []time.Duration
	var directCPU, workerCPU CPU
	pages := 0
	for r := range b.s.listRuns {
		b.quiet(ctx)
		a := b.begin()
		start := time.Now()
		got, p, err := d.list(ctx, b.s.page)
		if err != nil {
			return err
		}
		directTimes = append(directTimes, time.Since(start))
		directCPU = directCPU.add(perJob(a, b.end(), 1))
		if got != want {
			b.fail("direct listing saw %d accounts, want %d", got, want)
		}
		pages = p

		a = b.begin()
		wall, got, _, err := b.ns.listAll(ctx, b.main.name, b.jobID(fmt.Sprintf("ls%d", r), 0), b.s.page)
		if err != nil {
			return err
		}
		workerCPU = workerCPU.add(perJob(a, b.end(), 1))
		workerTimes = append(workerTimes, wall)
		if got != want {
			b.fail("the worker listed %d accounts, want %d", got, want)
		}
	}
	dm, wm := median(directTimes), median(workerTimes)
	b.report.Runs = append(b.report.Runs,
		Run{Name: fmt.Sprintf("listing %d accounts: direct (per full listing)", want), Jobs: b.s.listRuns,
			WallMS: float64(dm.Microseconds()) / 1000, CPU: directCPU.div(float64(b.s.listRuns))},
		Run{Name: fmt.Sprintf("listing %d accounts: worker (per full listing)", want), Jobs: b.s.listRuns,
			WallMS: float64(wm.Microseconds()) / 1000, CPU: workerCPU.div(float64(b.s.listRuns))})
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.logf("  listing: worker median %.1f ms, direct median %.1f ms (%d pages)", ms(wm), ms(dm), pages)
	b.report.Figures = append(b.report.Figures, Figure{
		ID: "4", Name: fmt.Sprintf("listing %d accounts, %d per page", want, b.s.page), Unit: "ms",
		Worker: ms(wm), Direct: ms(dm), Ratio: ms(wm) / ms(dm), Goal: "≤ 100 ms", Met: boolPtr(wm <= 100*time.Millisecond),
		Note: fmt.Sprintf("median of %d full listings of %d pages, each page a list job published after the previous page's result (the time includes decoding each page's JSON, as a client must to find the cursor). Direct = the worker's own list query (mysqlops.Target.List) run by this process. Wall (ms) in the CPU table is the median; CPU is per full listing.",
			b.s.listRuns, pages),
	})
	return nil
}

// phaseScaling measures item 3: rotation throughput with 1, 2, 4, … targets
// on one worker process, then the most targets on two worker processes.
func (b *bench) phaseScaling(ctx context.Context) error {
	if !b.s.scaling || len(b.extra) == 0 {
		return nil
	}
	n := b.s.scalingJobs
	var counts []int
	for t := 1; t <= len(b.extra); t *= 2 {
		counts = append(counts, t)
	}
	if last := counts[len(counts)-1]; last != len(b.extra) {
		counts = append(counts, len(b.extra))
	}
	directRates := map[int]Scaling{}
	for _, tn := range counts {
		targets := b.extra[:tn]
		b.logf("limits: %d rotation jobs over %d targets, direct (%d connections) then through 1 worker", n, tn, tn)
		row, err := b.scalingDirect(ctx, targets, n)
		if err != nil {
			return err
		}
		if err := b.scalingWorker(ctx, targets, n, fmt.Sprintf("t%dw1", tn), &row); err != nil {
			return err
		}
		row.Workers = 1
		directRates[tn] = row
		b.report.Scaling = append(b.report.Scaling, row)
	}

	tn := len(b.extra)
	b.logf("limits: a second worker process; waiting until the two share the partitions")
	if _, err := b.startWorker(ctx); err != nil {
		return err
	}
	split, err := b.waitBalanced(ctx, 90*time.Second)
	if err != nil {
		b.fail("limits: %v", err)
		return nil
	}
	b.logf("limits: %d rotation jobs over %d targets through 2 workers (%s)", n, tn, split)
	row := directRates[tn]
	row.Workers = 2
	if err := b.scalingWorker(ctx, b.extra, n, fmt.Sprintf("t%dw2", tn), &row); err != nil {
		return err
	}
	b.report.Scaling = append(b.report.Scaling, row)
	b.report.Checks = append(b.report.Checks, fmt.Sprintf("limits, two worker processes: the %d targets were split %s", tn, split))
	return nil
}

// scalingJob returns the target and account of job i of a run over targets.
func scalingJob(targets []*benchTarget, i int) (*benchTarget, string) {
	t := targets[i%len(targets)]
	return t, t.accounts[(i/len(targets))%len(t.accounts)]
}

// scalingDirect runs n ALTER USER spread over targets, one connection per
// target, all at once.
func (b *bench) scalingDirect(ctx context.Context, targets []*benchTarget, n int) (Scaling, error) {
	row := Scaling{Targets: len(targets), Jobs: n}
	pws, err := b.passwords(n)
	if err != nil {
		return row, err
	}
	users := make([][]string, len(targets))
	passwords := make([][]string, len(targets))
	for i := range n {
		_, u := scalingJob(targets, i)
		k := i % len(targets)
		users[k] = append(users[k], u)
		passwords[k] = append(passwords[k], pws[i])
	}
	conns := make([]*direct, len(targets))
	for i, t := range targets {
		if conns[i], err = openDirect(ctx, t); err != nil {
			return row, err
		}
		defer conns[i].close()
	}
	errs := make([]error, len(targets))
	b.quiet(ctx)
	a := b.begin()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range targets {
		wg.Go(func() { errs[i] = conns[i].alter(ctx, users[i], passwords[i], nil) })
	}
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return row, err
	}
	run := b.record(fmt.Sprintf("limits: direct ALTER USER, %d targets, %d connections", len(targets), len(targets)), n, wall, a, b.end())
	row.DirectRate, row.DirectMaria, row.DirectTotal = run.Rate, run.CPU.MariaDB, run.CPU.Total()
	return row, nil
}

// scalingWorker runs n reset_password jobs spread over targets through the
// running workers and fills row's worker columns.
func (b *bench) scalingWorker(ctx context.Context, targets []*benchTarget, n int, phase string, row *Scaling) error {
	js := make([]job, n)
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	for i := range js {
		t, u := scalingJob(targets, i)
		js[i] = b.ns.resetJob(t.name, b.jobID(phase, i), u, b.reqPub)
	}
	var a cpuSnap
	b.quiet(ctx)
	out, err := b.ns.runBulk(ctx, js, names, b.s.stall, bulkHooks{started: func() { a = b.begin() }})
	if err != nil {
		return err
	}
	run := b.record(fmt.Sprintf("limits: worker, %d targets, %d worker process(es)", len(targets), len(b.workers)), n, out.wall, a, b.end())
	b.checkOutcome("limits "+phase, out)
	row.WorkerRate, row.WorkerCPU, row.NATSCPU, row.MariaDBCPU = run.Rate, run.CPU.Worker, run.CPU.NATS, run.CPU.MariaDB
	row.OtherCPU, row.TotalCPU, row.WorkerWallMS = run.CPU.Other, run.CPU.Total(), run.WallMS
	if row.DirectRate > 0 {
		row.Ratio = row.WorkerRate / row.DirectRate
	}
	return nil
}

// waitBalanced waits until every partition is leased and the running
// workers each hold a share, and says how the limits targets are split.
func (b *bench) waitBalanced(ctx context.Context, timeout time.Duration) (string, error) {
	kv, err := b.ns.js.KeyValue(ctx, streams.LeasesName(prefix))
	if err != nil {
		return "", fmt.Errorf("leases bucket: %w", err)
	}
	partitions := 8
	deadline := time.Now().Add(timeout)
	for {
		holders := map[int]string{}
		for p := range partitions {
			if e, err := kv.Get(ctx, fmt.Sprintf("partition.%d", p)); err == nil {
				holders[p] = string(e.Value())
			}
		}
		perHolder := map[string]int{}
		for _, h := range holders {
			perHolder[h]++
		}
		if len(holders) == partitions && len(perHolder) == len(b.workers) {
			targetsPer := map[string]int{}
			for _, t := range b.extra {
				targetsPer[holders[wire.Partition(t.name, partitions)]]++
			}
			var split []int
			for _, n := range targetsPer {
				split = append(split, n)
			}
			return fmt.Sprintf("%v targets per process", split), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the workers did not share the partitions within %s (%d leased by %d processes)", timeout, len(holders), len(perHolder))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// phaseBacklog is figure 5: the workers stop, the backlog is queued, one
// worker starts and works it off. Its peak RSS and CPU per job are read from
// /proc. The jobs are reset_password jobs over the rotation accounts, each
// account several times, since the goal is stated per rotation job.
func (b *bench) phaseBacklog(ctx context.Context) error {
	b.stopWorkers()
	n := b.fitBacklog()
	users := b.rotUsers
	ids := make([]string, n)
	js := make([]job, n)
	for i := range js {
		ids[i] = b.jobID("bl", i)
		js[i] = b.ns.resetJob(b.main.name, ids[i], users[i%len(users)], b.reqPub)
	}
	b.logf("backlog: queueing %d reset_password jobs over %d accounts with no worker running", n, len(users))
	var a cpuSnap
	var spawned time.Time
	var readyAfter time.Duration
	var worker *child
	queued := time.Now()
	out, err := b.ns.runBulk(ctx, js, []string{b.main.name}, b.s.stall, bulkHooks{
		deadline: b.budgetEnd(),
		published: func() error {
			b.logf("backlog: %d jobs queued in %.1fs; starting a fresh worker process", n, time.Since(queued).Seconds())
			b.quiet(ctx)
			a = b.begin()
			spawned = time.Now()
			w, err := b.startWorker(ctx)
			worker, readyAfter = w, time.Since(spawned)
			return err
		}})
	partial := errors.Is(err, errDeadline)
	if err != nil && !partial {
		return err
	}
	done := n
	if partial {
		done = out.ok + out.failed
		b.logf("backlog: the -budget ran out after %d of %d results; measuring those", done, n)
		if done == 0 {
			b.fail("backlog: no result within -budget %s", b.s.budget)
			return nil
		}
	}
	rss, rssErr := peakRSS(worker.pid())
	wall := out.lastResult.Sub(spawned)
	run := b.record(fmt.Sprintf("backlog: worker, %d queued reset_password", n), done, wall, a, b.end())
	b.checkOutcome("backlog", out)
	if !partial {
		// The last job of each sampled account holds the password in force.
		var idx []int
		for _, k := range sample(min(len(users), n), b.s.verify) {
			last := k + (n-1-k)/len(users)*len(users)
			if last < n && last >= 0 {
				idx = append(idx, last)
			}
		}
		backlogUsers := make([]string, n)
		for i := range backlogUsers {
			backlogUsers[i] = users[i%len(users)]
		}
		b.verify(ctx, "backlog (each sampled account's last job)", b.main, ids, backlogUsers, idx)
	}

	direct := b.directRotation
	r := run.Rate / direct.Rate
	each := fmt.Sprintf("%.0f each", float64(n)/float64(len(users)))
	if n <= len(users) {
		each = "at most one each"
	}
	note := fmt.Sprintf("worker process start to last result (start-up, ready after %.2fs, included); %d reset_password jobs with generated passwords over %d accounts, %s, queued while no worker ran; direct = run 1's ALTER USER rate.",
		readyAfter.Seconds(), n, len(users), each)
	if n < b.s.backlog {
		note += fmt.Sprintf(" **Cut from %d to %d jobs** so that the whole run stays within -budget %s at the worker's measured rotation rate.",
			b.s.backlog, n, b.s.budget)
	}
	if partial {
		note += fmt.Sprintf(" **Stopped at the -budget (%s) after %d of the %d queued jobs**: the figures are over the jobs done; the sampled login check is skipped.",
			b.s.budget, done, n)
	}
	b.report.Figures = append(b.report.Figures, Figure{
		ID: "5a", Name: fmt.Sprintf("backlog of %d, throughput", n), Unit: "/s", Worker: run.Rate, Direct: direct.Rate, Ratio: r,
		Goal: "—", Note: note,
	})
	if w := b.workerRotation.Rate; w > 0 {
		rb := run.Rate / w
		b.report.Figures = append(b.report.Figures, Figure{
			ID: "5d", Name: "backlog rate vs the bulk rotation's", Unit: "/s", Worker: run.Rate, Direct: w, Ratio: rb,
			Goal: "≥ 0.90×", Met: boolPtr(rb >= 0.90),
			Note: fmt.Sprintf("direct = the worker's own bulk rotation rate (figure 1, %d jobs); the server's limit was %.0f/s, the backlog ran at %.2f of it.",
				b.s.rotations, b.serverLimit.Rate, run.Rate/b.serverLimit.Rate),
		})
	}
	rssFig := Figure{ID: "5b", Name: "backlog: worker peak RSS", Unit: "MiB", Goal: "≤ 64 MiB"}
	if rssErr != nil {
		b.fail("backlog: peak RSS: %v", rssErr)
	} else {
		rssFig.Worker = float64(rss) / (1 << 20)
		rssFig.Met = boolPtr(rss <= 64<<20)
		rssFig.Note = "VmHWM of the worker process, read from /proc before it stopped; no direct counterpart."
	}
	b.report.Figures = append(b.report.Figures, rssFig,
		Figure{ID: "5c", Name: "backlog: worker CPU per rotation job", Unit: "µs", Worker: run.CPU.Worker, Direct: direct.CPU.Bench,
			Ratio: run.CPU.Worker / direct.CPU.Bench, Goal: "≤ 100 µs", Met: boolPtr(run.CPU.Worker <= 100),
			Note: fmt.Sprintf("worker process CPU (user + system) over the backlog run ÷ jobs; direct = CPU of the client issuing run 1's ALTER USER statements (MariaDB spent %.0f µs per ALTER there, the worker's run made it spend %.0f µs per job).",
				direct.CPU.MariaDB, run.CPU.MariaDB)},
	)
	return nil
}

// fitBacklog returns the backlog size: -backlog, or fewer when working it
// off at the worker's measured rotation rate would overrun -budget (the
// clean-up and the Go benchmarks still need their time after it).
func (b *bench) fitBacklog() int {
	n := b.s.backlog
	rot, ok := b.report.findRun("rotation: worker")
	if b.s.budget <= 0 || !ok || rot.Rate <= 0 {
		return n
	}
	const after = 90 * time.Second // clean-up of the accounts, Go benchmarks, report
	left := b.s.budget - time.Since(b.started) - after
	fit := int(left.Seconds() * rot.Rate * 0.9)
	if fit >= n {
		return n
	}
	fit = max(fit, min(n, 1000))
	b.logf("backlog: %d jobs at the measured %.0f jobs/s would overrun -budget %s; queueing %d instead", n, rot.Rate, b.s.budget, fit)
	return fit
}

// budgetEnd is when the backlog must stop for the run to end within
// -budget; zero when there is no budget.
func (b *bench) budgetEnd() time.Time {
	if b.s.budget <= 0 {
		return time.Time{}
	}
	return b.started.Add(b.s.budget - 75*time.Second)
}
