package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// A job runs alone when it cannot join a many-account statement (a
// redelivery, a list, a job beside others on its own account) or when
// its statement failed: attempts with exponential backoff within the
// retry budget (contract §5.4), each looking at the real state first.

// runAlone runs one valid job to its outcome. password is its chosen or
// already generated password (zero: generate one); with generated, the
// result already says where the vault holds it (res.Secret). A job that
// cannot finish for a reason of the worker's own (NATS away, a half-made
// account it could not drop) is held and tried again while the worker
// runs, never handed back while later jobs of its target could overtake
// it.
func (w *Worker) runAlone(j *work, password secret.Secret, generated bool, intent *jobIntent) outcome {
	if intent == nil {
		intent = w.newIntent(j.d, j.job)
	}
	if password.IsZero() && (j.job.Op == wire.OpCreate || j.job.Op == wire.OpResetPassword) {
		// Once per job, not per round of a held job: the vault keeps
		// the first round's entry, and a later round must set the same
		// password.
		pw, err := w.cfg.GeneratePassword()
		if err != nil {
			if o, ok := j.lone.stands(j); ok {
				return o
			}
			return j.finished(1, wire.Errorf(wire.CodeInternal, "generate a password: %v", err))
		}
		password, generated = pw, true
	}
	total := int(j.d.delivered) - 1
	for {
		attempts, jerr, back := w.execute(j.d, j.ops, j.job, password, generated, intent, &j.res, &j.vault, j.lone, total)
		total += attempts
		if o, ok := j.lone.stands(j); ok {
			return o
		}
		if !back {
			return j.finished(total, jerr)
		}
		if w.stopCtx.Err() != nil {
			return j.handBack("stopping or MySQL state not settled", nil)
		}
		w.jobLog(j).Warn("job held: the worker's NATS side or MySQL's state is not settled; trying again")
		pause(w.stopCtx, time.Second)
	}
}

// newIntent returns a job's view of its username's intent record.
func (w *Worker) newIntent(d *delivery, job Job) *jobIntent {
	return &jobIntent{store: w.cfg.Intents, key: job.Target + "." + job.Username, id: job.ID,
		redelivered: d.delivered != 1, unseen: w.unseen(d)}
}

// execute applies a valid job with retries. It returns the number of
// attempts, the job's error (nil on success), and handBack=true when the
// job must go back to the stream without a result (shutdown, or a create
// that may have left a half-made account it could not clean up). entry
// learns what became of a generated password's vault entry; prior is the
// attempts counted before this call (earlier deliveries, earlier rounds
// of a held job), which a failure's message counts with its own, as the
// result does.
func (w *Worker) execute(d *delivery, ops Ops, job Job, password secret.Secret, generated bool, intent *jobIntent, res *wire.Result, entry *vaultEntry, lone *loneLookup, prior int) (int, *wire.Error, bool) {
	if intent == nil {
		intent = w.newIntent(d, job)
	}
	deadline := d.received.Add(w.cfg.RetryBudget)
	if err := w.stillUnreachable(d, deadline); err != nil {
		// Counted as one attempt, as a refused job is: every result
		// says the worker handled the job at least once. (Its batch's
		// statement may have run, though.)
		return 1, toJobError(err, failure{target: job.Target, attempts: prior, changed: mayHaveChanged(job.Op, intent, entry)}), false
	}
	attempts := 0
	b := backoff.WithContext(&budgetBackOff{
		next: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(100*time.Millisecond),
			backoff.WithMaxInterval(unreachableFresh),
			backoff.WithMaxElapsedTime(0)),
		deadline: deadline,
	}, w.stopCtx)
	var lastErr error
	err := backoff.RetryNotify(func() error {
		attempts++
		entry.reached = false
		err := w.apply(ops, job, password, generated, intent, res, entry, lone)
		entry.settle(job.Op, err)
		w.noteReach(d, err)
		if err == nil {
			return nil
		}
		if errors.Is(err, errAnsweredBefore) || lone.foundNow() {
			lastErr = errAnsweredBefore
			return backoff.Permanent(errAnsweredBefore)
		}
		lastErr = err
		if ne := (natsError{}); !errors.As(err, &ne) && !isOutcome(err) {
			w.cfg.Observer.MySQLError(classify(err).String())
		}
		if classify(err) == mysqlops.Permanent {
			return backoff.Permanent(err)
		}
		return err
	}, b, func(err error, wait time.Duration) {
		_ = d.msg.InProgress()
		w.cfg.Observer.Retry(job.Op, classify(err).String())
		w.log.Warn("retrying", zap.String("job_id", job.ID), zap.String("target", job.Target),
			zap.Int("attempt", attempts), zap.String("class", classify(err).String()),
			zap.Duration("wait", wait), zap.Error(err))
	})
	if err == nil {
		return attempts, nil, false
	}
	if errors.Is(lastErr, errAnsweredBefore) {
		// Nothing ran; the caller answers with the stored result.
		return attempts, nil, false
	}
	var ne natsError
	if errors.As(lastErr, &ne) || (w.stopCtx.Err() != nil && classify(lastErr) != mysqlops.Permanent) {
		// The worker's own NATS side failed, or it is stopping: nothing
		// to tell the requester yet; another delivery finishes the job.
		return attempts, nil, true
	}
	jerr := toJobError(lastErr, failure{target: job.Target, attempts: prior + attempts, changed: mayHaveChanged(job.Op, intent, entry)})
	if job.Op == wire.OpCreate && jerr.Code != wire.CodeUserExists {
		// Never leave an account without its grant once the job has
		// ended: drop what this job may have made, or keep the job.
		ctx, cancel := context.WithTimeout(w.hardCtx, 10*time.Second)
		defer cancel()
		if aerr := ops.Abandon(ctx, job.Username, intent); aerr != nil {
			w.log.Warn("cannot drop a possibly half-made account; the job stays queued",
				zap.String("job_id", job.ID), zap.String("target", job.Target), zap.Error(aerr))
			return attempts, nil, true
		}
	}
	return attempts, jerr, false
}

// mayHaveChanged reports whether a job of op that ends with an error may
// have changed its account: a reset whose ALTER USER may have run, a
// delete whose DROP USER may have (its intent recorded and not known
// unsent), or either after an earlier delivery, which may have run its
// statement. A create that gives up drops what it may have made (Abandon)
// or is kept, and a list changes nothing.
func mayHaveChanged(op wire.Op, intent *jobIntent, entry *vaultEntry) bool {
	switch op {
	case wire.OpResetPassword:
		return intent.redelivered || entry.maybeSet
	case wire.OpDelete:
		return intent.redelivered || intent.recorded && (intent.maybeRan || intent.sending)
	}
	return false
}

// stillUnreachable returns the error that proved the lane's target
// unreachable moments ago, when job d may not try again: its first
// delivery (so nothing of it was ever sent, and a create has nothing to
// clean up) waited in the lane past its retry budget. Without this, each
// job queued behind a server that went dark would make one attempt, and
// an attempt can cost the whole connect timeout: thousands of queued jobs
// would take hours to be answered, and hold their partition's window all
// that time.
func (w *Worker) stillUnreachable(d *delivery, deadline time.Time) error {
	l := d.lane
	if l == nil || l.unreachable == nil || time.Since(l.unreachableAt) >= unreachableFresh || time.Now().Before(deadline) {
		return nil
	}
	if d.delivered != 1 {
		return nil
	}
	return fmt.Errorf("%w, found by the target's previous job %s ago", l.unreachable, time.Since(l.unreachableAt).Round(time.Millisecond))
}

// noteReach records on d's lane whether an attempt reached MySQL.
func (w *Worker) noteReach(d *delivery, err error) {
	l := d.lane
	switch {
	case l == nil:
	case err != nil && mysqlops.NothingSent(err) && classify(err) != mysqlops.Permanent:
		l.unreachable, l.unreachableAt = err, time.Now()
	case err == nil || !errors.As(err, new(natsError)):
		l.unreachable = nil
	}
}

// budgetBackOff retries until the budget's deadline and makes the last
// attempt at the deadline itself, so that "unavailable" means MySQL stayed
// unreachable through the whole budget.
type budgetBackOff struct {
	next     backoff.BackOff
	deadline time.Time
}

func (b *budgetBackOff) NextBackOff() time.Duration {
	left := time.Until(b.deadline)
	if left <= 0 {
		return backoff.Stop
	}
	return min(b.next.NextBackOff(), left)
}

func (b *budgetBackOff) Reset() { b.next.Reset() }

// apply runs one attempt of a job.
func (w *Worker) apply(ops Ops, job Job, password secret.Secret, generated bool, intent *jobIntent, res *wire.Result, entry *vaultEntry, lone *loneLookup) error {
	ctx := w.hardCtx
	var ready mysqlops.Ready
	switch {
	case generated && res.Secret == nil:
		// The sealed password goes to the vault before MySQL changes:
		// an account must never have a password nobody can read. The
		// write runs while MySQL checks the account, and the password
		// statement waits for it (ready). The entry of a job that then
		// fails with no statement that may have set the password is
		// purged by the completer (vaultentry.go).
		stored := w.storeSecret(ctx, job, password, entry, lone)
		ready = func(ctx context.Context) error {
			select {
			case s := <-stored:
				if s.err != nil {
					return s.err
				}
				res.Secret = s.secret
				entry.reached = true
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	default:
		// A chosen password, or one stored by an earlier attempt or by
		// the job's batch: ready only notes that the statement that
		// sets the password follows.
		ready = func(ctx context.Context) error {
			if err := lone.wait(ctx); err != nil {
				return err
			}
			entry.reached = true
			return nil
		}
	}
	switch job.Op {
	case wire.OpCreate:
		if err := ops.Create(ctx, job.Username, password, job.ReadOnly, intent, ready); err != nil {
			return err
		}
		if err := mustHaveWaited(ctx, generated, ready, res); err != nil {
			return err
		}
		res.User = &wire.Account{Username: job.Username, ReadOnly: job.ReadOnly}
	case wire.OpResetPassword:
		if job.KeepOldFor > 0 {
			if err := w.keepOld(ctx, ops, job, password, intent, ready, res, entry); err != nil {
				return err
			}
			return mustHaveWaited(ctx, generated, ready, res)
		}
		acct, err := ops.ResetPassword(ctx, job.Username, password, ready)
		if err != nil {
			return err
		}
		if err := mustHaveWaited(ctx, generated, ready, res); err != nil {
			return err
		}
		res.User = &wire.Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected}
	case wire.OpDelete:
		acct, err := ops.Delete(ctx, job.Username, intent)
		if err != nil {
			return err
		}
		res.User = &wire.Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected}
	case wire.OpDiscardOldPassword:
		return w.discardOld(ctx, ops, job, res)
	case wire.OpList:
		accts, next, err := ops.List(ctx, job.After, job.Limit)
		if err != nil {
			return err
		}
		res.Users = make([]wire.Account, len(accts))
		old := make([]bool, len(accts))
		for i, a := range accts {
			res.Users[i] = wire.Account{Username: a.Username, ReadOnly: a.ReadOnly, Protected: a.Protected}
			old[i] = a.OldPassword
		}
		if err := w.oldPasswordEnds(ctx, job.Target, res.Users, old); err != nil {
			return err
		}
		res.Next = next
	}
	return nil
}

// storeFirst writes a lone job's entry while its stored-result lookup is in
// flight, where the vault holds nothing under the job's key: that takes
// the lookup's round trip off the job's latency. ok=false (and no error)
// when the store cannot, or an entry is there already (an earlier
// delivery's, or an answered job's): the caller then waits for the lookup
// and writes as before. An entry written for a job the lookup then finds
// answered long ago (its own entry expired) is purged at once: it holds a
// password that is never set.
func (w *Worker) storeFirst(ctx context.Context, job Job, sealed []byte, lone *loneLookup) (*wire.Secret, bool, error) {
	ns, can := w.cfg.Secrets.(NewSecrets)
	if lone == nil || !can {
		return nil, false, nil
	}
	key, expires, created, err := ns.PutNew(ctx, job.Target, job.ID, sealed)
	if err != nil {
		return nil, false, natsError{fmt.Errorf("store the sealed password in the vault: %w", err)}
	}
	if !created {
		return nil, false, nil
	}
	if err := lone.wait(ctx); err != nil {
		if errors.Is(err, errAnsweredBefore) {
			// Bounded: the job's answer waits for this purge (stands).
			pctx, cancel := context.WithTimeout(w.hardCtx, 10*time.Second)
			perr := w.cfg.Secrets.Purge(pctx, job.Target, job.ID)
			cancel()
			if perr != nil {
				w.log.Warn("cannot purge the vault entry of a job answered before; it expires with the bucket's TTL",
					zap.String("job_id", job.ID), zap.String("target", job.Target), zap.Error(perr))
			}
		}
		return nil, false, err
	}
	return &wire.Secret{Bucket: w.cfg.Secrets.Bucket(), Key: key, ExpiresAt: expires}, true, nil
}

// mustHaveWaited makes sure a job with a generated password reports where
// the password waits, even from an Ops that succeeded without calling ready.
func mustHaveWaited(ctx context.Context, generated bool, ready mysqlops.Ready, res *wire.Result) error {
	if !generated || res.Secret != nil {
		return nil
	}
	return ready(ctx)
}

// storedSecret is the outcome of storeSecret.
type storedSecret struct {
	secret *wire.Secret
	err    error
}

// storeSecret seals a generated password to the job's reply key and writes
// it to the vault in the background; the channel gets the outcome, and
// entry.writes is done once the write is.
func (w *Worker) storeSecret(ctx context.Context, job Job, password secret.Secret, entry *vaultEntry, lone *loneLookup) <-chan storedSecret {
	out := make(chan storedSecret, 1) // never blocks: an operation that stops early does not read it
	entry.written = true
	entry.writes.Add(1)
	go func() {
		defer entry.writes.Done()
		// Sealed here too, beside MySQL's account check: a fresh
		// reply_key costs an X25519 key agreement (about 40 µs).
		sealed, err := w.cfg.Keys.SealPassword(job.ID, password, job.ReplyKey)
		if err != nil {
			out <- storedSecret{err: fmt.Errorf("seal the generated password: %w", err)}
			return
		}
		if s, ok, err := w.storeFirst(ctx, job, sealed, lone); ok || err != nil {
			out <- storedSecret{secret: s, err: err}
			return
		}
		// A lone job's entry waits for its stored-result lookup: a job
		// answered before keeps the entry its first run wrote.
		if err := lone.wait(ctx); err != nil {
			out <- storedSecret{err: err}
			return
		}
		key, expires, err := w.cfg.Secrets.Put(ctx, job.Target, job.ID, sealed)
		if err != nil {
			out <- storedSecret{err: natsError{fmt.Errorf("store the sealed password in the vault: %w", err)}}
			return
		}
		out <- storedSecret{secret: &wire.Secret{Bucket: w.cfg.Secrets.Bucket(), Key: key, ExpiresAt: expires}}
	}()
	return out
}
