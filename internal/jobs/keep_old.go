package jobs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
	"go.uber.org/zap"
)

// A reset with keep_old_for keeps the credential in force before the job:
// exactly once means a job delivered again, whose earlier delivery may
// have run its statement, keeps that same credential, never its own new
// password. So the credential is read from MySQL and written, sealed to
// the worker's own key, into the account's schedule entry beside the old
// password's end, before the statement: one write records both. A job
// that may have been delivered before reads its account's entry first
// (after a partition changed hands, the re-created consumer delivers an
// earlier delivery's jobs as first deliveries); one that no process was
// delivered before (Config.FreshFrom) does not, unless the account holds
// an old password whose entry the write replaces: that entry is put back
// when the job fails without its statement having run.

// keptMargin is added to an end written before the statement, so that it
// is still keep_old_for from the job's completion; an end the statement's
// time left short is written again after it.
const keptMargin = time.Second

// errKeptEarlier sends a batch member alone: an earlier delivery of its
// job recorded the credential it keeps.
var errKeptEarlier = errors.New("an earlier delivery recorded the credential the job keeps")

// errCannotKeepOld refuses keep_old_for and discards on a target or a
// worker set up without them.
var errCannotKeepOld = errors.New("this worker keeps no old passwords for the target")

// oldPasswordOps returns the target's keep-old operations, or an error
// for the job.
func (w *Worker) oldPasswordOps(ops Ops) (OldPasswordOps, error) {
	k, ok := ops.(OldPasswordOps)
	if !ok || w.cfg.OldPasswords == nil {
		return nil, errCannotKeepOld
	}
	return k, nil
}

// readKept reads the schedule entries of the jobs js[i] at idx (of one
// target) in one round of reads, and notes each in its job's intent: the
// job's own entry gives the credential it keeps; another's is the prior
// entry that its write replaces. errs[k] is job idx[k]'s read error.
func (w *Worker) readKept(ctx context.Context, js []Job, intents []*jobIntent, idx []int) []error {
	errs := make([]error, len(idx))
	if len(idx) == 0 {
		return errs
	}
	names := make([]string, len(idx))
	for k, i := range idx {
		names[k] = js[i].Username
	}
	entries, err := w.cfg.OldPasswords.Entries(ctx, js[idx[0]].Target, names)
	if err != nil {
		return fill(errs, natsError{fmt.Errorf("read the old password's schedule entry: %w", err)})
	}
	for k, i := range idx {
		e, ok := entries[js[i].Username]
		keep := &intents[i].keep
		switch {
		case !ok:
			keep.prior, keep.priorKnown = nil, true
		case e.JobID == js[i].ID && e.Kept != "":
			c, err := w.openKept(js[i], e.Kept)
			if errs[k] = err; err == nil {
				// Once this delivery knew the entry before, its job's
				// entry is its own write (one that reported an error).
				keep.known, keep.cred, keep.until = true, c, e.Until
				keep.written = keep.written || keep.priorKnown
			}
		default:
			keep.prior, keep.priorKnown = &e, true
		}
	}
	return errs
}

// writeKept writes the schedule entry of each job js[i] at idx, which
// keeps creds[k], in one round of writes: its end keep_old_for (and
// keptMargin) from now, and the credential. errs[k] is job idx[k]'s.
func (w *Worker) writeKept(ctx context.Context, js []Job, intents []*jobIntent, idx []int, creds []mysqlops.Credential) []error {
	return w.putKept(ctx, js, intents, idx, creds, keptMargin, false)
}

// putKept writes, in one round, the schedule entry of each job js[i] at
// idx keeping creds[k] until margin and keep_old_for from now; with
// pushBack, only those whose entry says an earlier end. Each written is
// noted in its job's intent. errs[k] is job idx[k]'s.
func (w *Worker) putKept(ctx context.Context, js []Job, intents []*jobIntent, idx []int, creds []mysqlops.Credential, margin time.Duration, pushBack bool) []error {
	errs := make([]error, len(idx))
	names := make([]string, 0, len(idx))
	ends := make([]OldPasswordEnd, 0, len(idx))
	var at []int
	for k, i := range idx {
		until := endOf(js[i], margin)
		if pushBack && !until.After(intents[i].keep.until) {
			continue
		}
		e, err := w.keptEntry(js[i], creds[k], until)
		if err != nil {
			errs[k] = err
			continue
		}
		names, ends, at = append(names, js[i].Username), append(ends, e), append(at, k)
	}
	if len(at) == 0 {
		return errs
	}
	for n, err := range w.cfg.OldPasswords.SetMany(ctx, js[idx[0]].Target, names, ends) {
		k := at[n]
		if err != nil {
			errs[k] = natsError{fmt.Errorf("schedule the old password's end and the credential kept: %w", err)}
			continue
		}
		keep := &intents[idx[k]].keep
		keep.known, keep.cred, keep.until, keep.written = true, creds[k], ends[n].Until, true
	}
	return errs
}

// keptEntry is the schedule entry of job, which keeps c until.
func (w *Worker) keptEntry(job Job, c mysqlops.Credential, until time.Time) (OldPasswordEnd, error) {
	sealed, err := w.cfg.Keys.SealPassword(job.ID, c.Hash, w.cfg.Keys.PublicKey())
	if err != nil {
		return OldPasswordEnd{}, fmt.Errorf("seal the credential to keep: %w", err)
	}
	return OldPasswordEnd{Until: until, JobID: job.ID, Kept: c.Plugin + " " + base64.StdEncoding.EncodeToString(sealed)}, nil
}

// openKept opens the credential that job's schedule entry records.
func (w *Worker) openKept(job Job, kept string) (mysqlops.Credential, error) {
	plugin, sealed, ok := strings.Cut(kept, " ")
	if !ok {
		return mysqlops.Credential{}, errors.New("the schedule entry's credential is not \"<plugin> <sealed>\"")
	}
	hash, err := w.cfg.Keys.OpenPassword(secret.New(sealed), w.cfg.Keys.PublicKey(), job.ID)
	if err != nil {
		return mysqlops.Credential{}, fmt.Errorf("open the recorded credential: %w", err)
	}
	return mysqlops.Credential{Plugin: plugin, Hash: hash}, nil
}

// restoreKept puts back the entry a keep-old reset's write replaced, after
// an attempt that failed without running its statement when no attempt of
// its delivery may have run it: an old password the account still holds
// keeps the end it had. The next attempt reads and records afresh.
func (w *Worker) restoreKept(ctx context.Context, job Job, intent *jobIntent) {
	k := &intent.keep
	if !k.written || k.maybeSet {
		return
	}
	var err error
	if k.prior != nil {
		err = w.cfg.OldPasswords.SetMany(ctx, job.Target, []string{job.Username}, []OldPasswordEnd{*k.prior})[0]
	} else {
		err = w.cfg.OldPasswords.Clear(ctx, job.Target, job.Username)
	}
	if err != nil {
		// The write may have landed or not: the next attempt reads the
		// entry again, and finds its job's (still its own write, kept
		// then) or the one put back (and records afresh).
		w.log.Warn("put back the old password's schedule entry a failed reset replaced",
			zap.String("job_id", job.ID), zap.String("target", job.Target), zap.Error(err))
		k.known = false
		return
	}
	*k = keptRecord{}
}

// keepOld runs a keep-old reset alone: the credential it keeps (its
// entry's, or the one in force, recorded), the statement, then the old
// password's end pushed back if the statement took longer than
// keptMargin, before the result says it.
func (w *Worker) keepOld(ctx context.Context, ops Ops, job Job, password secret.Secret, intent *jobIntent, ready mysqlops.Ready, res *wire.Result, entry *vaultEntry) error {
	kops, err := w.oldPasswordOps(ops)
	if err != nil {
		return err
	}
	one, intents := []Job{job}, []*jobIntent{intent}
	k := &intent.keep
	if !k.known {
		if errs := w.readKept(ctx, one, intents, []int{0}); errs[0] != nil {
			return errs[0]
		}
	}
	if !k.known {
		creds, errs := kops.Credentials(ctx, []string{job.Username})
		if errs[0] != nil {
			return errs[0]
		}
		if errs := w.writeKept(ctx, one, intents, []int{0}, creds); errs[0] != nil {
			return errs[0]
		}
	}
	acct, err := kops.ResetPasswordKeepOld(ctx, job.Username, password, k.cred, ready)
	if err != nil {
		if entry.maybeSet || entry.reached && mayHaveSet(wire.OpResetPassword, err) {
			// The entry, written before, ends the old password the
			// statement may have kept, even if the job fails.
			k.maybeSet = true
		} else {
			w.restoreKept(ctx, job, intent)
		}
		return err
	}
	errs := w.pushBackEnds(ctx, one, intents, []int{0})
	if errs[0] != nil {
		return errs[0]
	}
	until := k.until
	res.User = &wire.Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected, OldPasswordUntil: &until}
	return nil
}

// pushBackEnds writes again, in one round, the entries of the jobs js[i]
// at idx whose end falls short of keep_old_for from now, their
// completion. errs[k] is job idx[k]'s.
func (w *Worker) pushBackEnds(ctx context.Context, js []Job, intents []*jobIntent, idx []int) []error {
	creds := make([]mysqlops.Credential, len(idx))
	for k, i := range idx {
		creds[k] = intents[i].keep.cred
	}
	return w.putKept(ctx, js, intents, idx, creds, 0, true)
}

// endOf is when the old password job keeps ends if it completes margin
// from now. Results give times to the second: rounded up, so the old
// password works at least keep_old_for, and the schedule says what
// results say.
func endOf(job Job, margin time.Duration) time.Time {
	until := time.Now().Add(job.KeepOldFor + margin).UTC()
	if t := until.Truncate(time.Second); !t.Equal(until) {
		until = t.Add(time.Second)
	}
	return until
}

// discardOld runs a discard_old_password job. One the expiry watcher sent
// discards only while the schedule still says its time (or nothing): a
// reset since then may have kept another old password until later.
func (w *Worker) discardOld(ctx context.Context, ops Ops, job Job, res *wire.Result) error {
	kops, err := w.oldPasswordOps(ops)
	if err != nil {
		return err
	}
	if !job.ScheduledUntil.IsZero() {
		ends, err := w.cfg.OldPasswords.Entries(ctx, job.Target, []string{job.Username})
		if err != nil {
			return natsError{fmt.Errorf("read the old password's end: %w", err)}
		}
		if e, ok := ends[job.Username]; ok && e.Until.After(job.ScheduledUntil) {
			res.User = &wire.Account{Username: job.Username, OldPasswordUntil: &e.Until}
			return nil
		}
	}
	acct, err := kops.DiscardOldPassword(ctx, job.Username)
	if err != nil {
		if !job.ScheduledUntil.IsZero() && isOutcome(err) {
			// The account is gone, or no longer the target's: no later
			// discard can end anything, so its entry goes, or the watcher
			// would send one every duplicate window for good.
			if cerr := w.cfg.OldPasswords.Clear(ctx, job.Target, job.Username); cerr != nil {
				return natsError{fmt.Errorf("clear the old password's end: %w", cerr)}
			}
		}
		return err
	}
	if err := w.cfg.OldPasswords.Clear(ctx, job.Target, job.Username); err != nil {
		return natsError{fmt.Errorf("clear the old password's end: %w", err)}
	}
	res.User = &wire.Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected}
	return nil
}

// oldPasswordEnds fills the end of each listed account's old password.
func (w *Worker) oldPasswordEnds(ctx context.Context, target string, accts []wire.Account, old []bool) error {
	var names []string
	for i, a := range accts {
		if old[i] {
			names = append(names, a.Username)
		}
	}
	if len(names) == 0 || w.cfg.OldPasswords == nil {
		return nil
	}
	ends, err := w.cfg.OldPasswords.Entries(ctx, target, names)
	if err != nil {
		return natsError{fmt.Errorf("read the old passwords' ends: %w", err)}
	}
	for i := range accts {
		if e, ok := ends[accts[i].Username]; ok && old[i] {
			accts[i].OldPasswordUntil = &e.Until
		}
	}
	return nil
}

// keepOldMany runs the keep-old resets of a batch as one statement: the
// credentials they keep, read beside the ownership check and written to
// their schedule entries (with their ends) in one round beside their
// vault entries, then the statement. A member whose credential or entry
// could not be had, or whose earlier delivery recorded one, gets that
// error and runs alone after the batch, where the same rules apply to it.
func (w *Worker) keepOldMany(ctx context.Context, ops Ops, send []*member, changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	accts := make([]mysqlops.Account, len(send))
	errs := make([]error, len(send))
	kops, err := w.oldPasswordOps(ops)
	if err != nil {
		return accts, fill(errs, err)
	}
	js := make([]Job, len(send))
	intents := make([]*jobIntent, len(send))
	for i, m := range send {
		js[i], intents[i] = m.j.job, m.intent
	}
	ran, rerrs := kops.ResetPasswordsKeepingCurrent(ctx, changes, func(ctx context.Context, idx []int, creds []mysqlops.Credential, holdsOld []bool) []error {
		return w.recordKeptMany(ctx, send, js, intents, idx, creds, holdsOld)
	})
	copy(accts, ran)
	copy(errs, rerrs)
	var done []int
	for i, err := range errs {
		switch {
		case err == nil:
			done = append(done, i)
		case isOutcome(err) && !mysqlops.PasswordMaybeSet(err):
			w.restoreKept(ctx, js[i], intents[i])
		}
	}
	for k, err := range w.pushBackEnds(ctx, js, intents, done) {
		i := done[k]
		if err != nil {
			// Its password is set; alone, it sets it again with the
			// same credential kept, and writes the end.
			errs[i] = &mysqlops.MaybeSetError{Err: err}
			continue
		}
		until := intents[i].keep.until
		send[i].until = &until
	}
	return accts, errs
}

// recordKeptMany is a keep-old batch's KeepRecord: for the members at idx,
// about to keep creds[k], it reads the schedule entries a member may find
// (its own earlier delivery's, or the one of an old password its account
// holds, which the write replaces), then writes their entries beside
// their vault entries, one round of each. A member whose earlier delivery
// recorded a credential gets errKeptEarlier.
func (w *Worker) recordKeptMany(ctx context.Context, send []*member, js []Job, intents []*jobIntent, idx []int, creds []mysqlops.Credential, holdsOld []bool) []error {
	out := make([]error, len(idx))
	var read, readAt []int
	for k, i := range idx {
		if !intents[i].unseen || holdsOld[k] {
			read, readAt = append(read, i), append(readAt, k)
		} else {
			// No entry of its own can exist, and any other ends nothing
			// the account holds.
			intents[i].keep.prior, intents[i].keep.priorKnown = nil, true
		}
	}
	for n, err := range w.readKept(ctx, js, intents, read) {
		switch {
		case err != nil:
			out[readAt[n]] = err
		case intents[read[n]].keep.known:
			out[readAt[n]] = errKeptEarlier
		}
	}
	var write, writeAt []int
	var wcreds []mysqlops.Credential
	var put []*member
	for k, i := range idx {
		if out[k] != nil {
			continue
		}
		write, writeAt, wcreds = append(write, i), append(writeAt, k), append(wcreds, creds[k])
		if m := send[i]; m.generated {
			put = append(put, m)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.writeSecrets(ctx, put) })
	werrs := w.writeKept(ctx, js, intents, write, wcreds)
	wg.Wait()
	for n, i := range write {
		k := writeAt[n]
		if out[k] = werrs[n]; out[k] == nil && send[i].alone {
			out[k] = send[i].err // its vault entry could not be written
		}
	}
	return out
}

// fill sets every entry of errs to err.
func fill(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}
