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
// password. So the credential is read from MySQL and recorded, sealed to
// the worker's own key, in the intents bucket before the statement, and
// every delivery looks for its job's record first: after a partition
// changed hands, the re-created consumer delivers an earlier delivery's
// jobs as first deliveries.

// keptKey is the intents-bucket key of the credential a keep-old reset of
// username keeps; usernames hold no '.', so it never meets an intent key.
func keptKey(target, username string) string { return target + "." + username + ".kept" }

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

// keptCredentials returns the credential each job keeps, recording those
// read now, all in one MySQL round trip and one round of writes. An error
// for a job is its account's outcome (not found, protected, foreign) or
// why its credential could not be had or recorded.
func (w *Worker) keptCredentials(ctx context.Context, ops OldPasswordOps, js []*work, intents []*jobIntent) ([]mysqlops.Credential, []error) {
	creds := make([]mysqlops.Credential, len(js))
	errs := make([]error, len(js))
	var unknown []int
	for i := range js {
		if intents[i].keptKnown {
			creds[i] = intents[i].kept
		} else {
			unknown = append(unknown, i)
		}
	}
	var read []int
	for k, err := range w.recordedCredentials(ctx, js, intents, unknown) {
		i := unknown[k]
		switch {
		case err != nil:
			errs[i] = err
		case intents[i].keptKnown:
			creds[i] = intents[i].kept
		default:
			read = append(read, i)
		}
	}
	if len(read) == 0 {
		return creds, errs
	}
	names := make([]string, len(read))
	for k, i := range read {
		names[k] = js[i].job.Username
	}
	current, cerrs := ops.Credentials(ctx, names)
	var record []int
	var got []mysqlops.Credential
	for k, i := range read {
		if cerrs[k] != nil {
			errs[i] = cerrs[k]
			continue
		}
		creds[i] = current[k]
		record, got = append(record, i), append(got, current[k])
	}
	for k, err := range w.recordKept(ctx, js, intents, record, got) {
		errs[record[k]] = err
	}
	return creds, errs
}

// recordKept records the credential creds[k] that job js[idx[k]] keeps,
// all in one round of writes, and notes it in the job's intent.
func (w *Worker) recordKept(ctx context.Context, js []*work, intents []*jobIntent, idx []int, creds []mysqlops.Credential) []error {
	keys, values := make([]string, len(idx)), make([]string, len(idx))
	errs := make([]error, len(idx))
	for k, i := range idx {
		keys[k] = keptKey(js[i].job.Target, js[i].job.Username)
		values[k], errs[k] = w.credentialRecord(js[i].job, creds[k])
	}
	for k, err := range w.putIntents(ctx, keys, values) {
		switch {
		case errs[k] != nil:
		case err != nil:
			errs[k] = natsError{fmt.Errorf("record the credential to keep: %w", err)}
		default:
			intents[idx[k]].kept, intents[idx[k]].keptKnown = creds[k], true
		}
	}
	return errs
}

// credentialRecord is what the job's kept key records: "<job id>
// <plugin> <sealed hash>", the hash sealed to the worker's own key and the
// job id.
func (w *Worker) credentialRecord(job Job, c mysqlops.Credential) (string, error) {
	sealed, err := w.cfg.Keys.SealPassword(job.ID, c.Hash, w.cfg.Keys.PublicKey())
	if err != nil {
		return "", fmt.Errorf("seal the credential to keep: %w", err)
	}
	return job.ID + " " + c.Plugin + " " + base64.StdEncoding.EncodeToString(sealed), nil
}

// recordedCredentials looks for the credential an earlier delivery of
// each job js[idx[k]] recorded, in one round of reads, and notes each
// found in the job's intent; errs[k] is job k's read error.
func (w *Worker) recordedCredentials(ctx context.Context, js []*work, intents []*jobIntent, idx []int) []error {
	errs := make([]error, len(idx))
	values := make([]string, len(idx))
	keys := make([]string, len(idx))
	for k, i := range idx {
		keys[k] = keptKey(js[i].job.Target, js[i].job.Username)
	}
	if b, ok := w.cfg.Intents.(BatchIntents); ok && len(idx) > 1 {
		got, err := b.GetMany(ctx, keys)
		for k := range idx {
			values[k], errs[k] = got[keys[k]], err
		}
	} else {
		errs = concurrently(len(idx), func(k int) error {
			var err error
			values[k], err = w.cfg.Intents.Get(ctx, keys[k])
			return err
		})
	}
	for k, i := range idx {
		if errs[k] != nil {
			errs[k] = natsError{fmt.Errorf("read the recorded credential: %w", errs[k])}
			continue
		}
		c, ok, err := w.parseRecord(js[i].job, values[k])
		if errs[k] = err; ok {
			intents[i].kept, intents[i].keptKnown = c, true
		}
	}
	return errs
}

// parseRecord reads a kept record; ok is false when it is another job's
// or absent.
func (w *Worker) parseRecord(job Job, v string) (mysqlops.Credential, bool, error) {
	id, rest, _ := strings.Cut(v, " ")
	plugin, sealed, ok := strings.Cut(rest, " ")
	if id != job.ID || !ok {
		return mysqlops.Credential{}, false, nil
	}
	hash, err := w.cfg.Keys.OpenPassword(secret.New(sealed), w.cfg.Keys.PublicKey(), job.ID)
	if err != nil {
		return mysqlops.Credential{}, false, fmt.Errorf("open the recorded credential: %w", err)
	}
	return mysqlops.Credential{Plugin: plugin, Hash: hash}, true, nil
}

// keepOld runs a keep-old reset alone: the credential it keeps, the
// statement, then the old password's end in the schedule, before the
// result says it.
func (w *Worker) keepOld(ctx context.Context, ops Ops, job Job, password secret.Secret, intent *jobIntent, ready mysqlops.Ready, res *wire.Result, entry *vaultEntry) error {
	kops, err := w.oldPasswordOps(ops)
	if err != nil {
		return err
	}
	creds, errs := w.keptCredentials(ctx, kops, []*work{{job: job}}, []*jobIntent{intent})
	if errs[0] != nil {
		return errs[0]
	}
	acct, err := kops.ResetPasswordKeepOld(ctx, job.Username, password, creds[0], ready)
	if err != nil {
		if entry.reached && mayHaveSet(wire.OpResetPassword, err) {
			// The statement may have run and the job may yet fail: the
			// old password it may have kept still gets its end, or it
			// would work for good. A later attempt that succeeds sets
			// the end again.
			if _, serr := w.scheduleEnd(ctx, job); serr != nil {
				w.log.Warn("schedule the end of an old password a failed attempt may have kept",
					zap.String("job_id", job.ID), zap.String("target", job.Target), zap.Error(serr))
			}
		}
		return err
	}
	until, err := w.scheduleEnd(ctx, job)
	if err != nil {
		return err
	}
	res.User = &wire.Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected, OldPasswordUntil: &until}
	return nil
}

// scheduleEnd records when the old password job kept ends: keep_old_for
// from now, the job's completion.
func (w *Worker) scheduleEnd(ctx context.Context, job Job) (time.Time, error) {
	until := endOf(job)
	if err := w.cfg.OldPasswords.Set(ctx, job.Target, job.Username, until, job.ID); err != nil {
		return time.Time{}, natsError{fmt.Errorf("schedule the end of the old password: %w", err)}
	}
	return until, nil
}

// endOf is when the old password job keeps ends if it completes now.
// Results give times to the second: rounded up, so the old password works
// at least keep_old_for, and the schedule says what results say.
func endOf(job Job) time.Time {
	until := time.Now().Add(job.KeepOldFor).UTC()
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
		ends, err := w.cfg.OldPasswords.Until(ctx, job.Target, []string{job.Username})
		if err != nil {
			return natsError{fmt.Errorf("read the old password's end: %w", err)}
		}
		if until, ok := ends[job.Username]; ok && until.After(job.ScheduledUntil) {
			res.User = &wire.Account{Username: job.Username, OldPasswordUntil: &until}
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
	ends, err := w.cfg.OldPasswords.Until(ctx, target, names)
	if err != nil {
		return natsError{fmt.Errorf("read the old passwords' ends: %w", err)}
	}
	for i := range accts {
		if until, ok := ends[accts[i].Username]; ok && old[i] {
			accts[i].OldPasswordUntil = &until
		}
	}
	return nil
}

// keepOldMany runs the keep-old resets of a batch as one statement: the
// credentials they keep (read and recorded in one round each), the
// statement, then their old passwords' ends in the schedule. A member
// whose credential or end could not be had gets that error, and runs
// alone after the batch, where the same rules apply to it.
func (w *Worker) keepOldMany(ctx context.Context, ops Ops, send []*member, changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	accts := make([]mysqlops.Account, len(send))
	errs := make([]error, len(send))
	kops, err := w.oldPasswordOps(ops)
	if err != nil {
		return accts, fill(errs, err)
	}
	js := make([]*work, len(send))
	intents := make([]*jobIntent, len(send))
	for i, m := range send {
		js[i], intents[i] = m.j, m.intent
	}
	// A job whose record says an earlier delivery kept a credential runs
	// alone with it; every other keeps the credential in force, read
	// beside the ownership check and recorded before the statement.
	all := make([]int, len(send))
	for i := range all {
		all[i] = i
	}
	var fresh []int
	for i, err := range w.recordedCredentials(ctx, js, intents, all) {
		switch {
		case err != nil:
			errs[i] = err
		case intents[i].keptKnown:
			errs[i] = errKeptEarlier
		default:
			fresh = append(fresh, i)
		}
	}
	if len(fresh) == 0 {
		return accts, errs
	}
	freshChanges := make([]mysqlops.Change, len(fresh))
	freshWork := make([]*work, len(fresh))
	freshIntents := make([]*jobIntent, len(fresh))
	for k, i := range fresh {
		freshChanges[k], freshWork[k], freshIntents[k] = changes[i], js[i], intents[i]
	}
	ran, rerrs := kops.ResetPasswordsKeepingCurrent(ctx, freshChanges, func(ctx context.Context, idx []int, creds []mysqlops.Credential) []error {
		// The vault entries of the accounts the statement sets go out
		// beside their kept credentials: one round of writes for both.
		var put []*member
		for _, k := range idx {
			if m := send[fresh[k]]; m.generated {
				put = append(put, m)
			}
		}
		var errs []error
		var wg sync.WaitGroup
		wg.Go(func() { w.writeSecrets(ctx, put) })
		errs = w.recordKept(ctx, freshWork, freshIntents, idx, creds)
		wg.Wait()
		for k, i := range idx {
			if m := send[fresh[i]]; errs[k] == nil && m.alone {
				errs[k] = m.err // its vault entry could not be written
			}
		}
		return errs
	})
	for k, i := range fresh {
		accts[i], errs[i] = ran[k], rerrs[k]
	}
	var done []int
	for i := range send {
		if errs[i] == nil {
			done = append(done, i)
		}
	}
	ends := make([]time.Time, len(done))
	names, ids := make([]string, len(done)), make([]string, len(done))
	for k, i := range done {
		job := send[i].j.job
		ends[k], names[k], ids[k] = endOf(job), job.Username, job.ID
	}
	serrs := w.cfg.OldPasswords.SetMany(ctx, send[0].j.job.Target, names, ends, ids)
	for k, i := range done {
		if serrs[k] != nil {
			// Its password is set; alone, it sets it again with the
			// same credential kept, and schedules the end.
			errs[i] = &mysqlops.MaybeSetError{Err: serrs[k]}
			continue
		}
		send[i].until = &ends[k]
	}
	return accts, errs
}

// fill sets every entry of errs to err.
func fill(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}
