package jobs

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// A many-account batch: consecutive jobs of a lane with the same op on
// distinct accounts (executor.group) run as one statement (BatchOps). The
// generated passwords of the batch are written to the vault, and the
// stream has acknowledged every entry, before the statement runs; intents
// are written in one round right before it. A job the batch cannot
// decide (its statement failed, its account is not in the common case)
// runs alone afterwards with the same password and intent, so the
// one-account rules hold for each.

// member is one job of a many-account batch.
type member struct {
	j         *work
	password  secret.Secret
	generated bool
	intent    *jobIntent
	// jerr is the outcome the batch decided (nil: ok).
	jerr *wire.Error
	// alone: the batch did not decide it; err is why (logged).
	alone bool
	err   error
	// until is when the old password a keep-old reset kept ends.
	until *time.Time
}

// runMany runs jobs as one many-account batch and gives the completer an
// outcome for each, in order.
func (w *Worker) runMany(c *completer, jobs []*work) {
	ctx := w.hardCtx
	ops := jobs[0].ops.(BatchOps)
	members := make([]*member, len(jobs))
	for i, j := range jobs {
		members[i] = &member{j: j, password: j.password, intent: w.newIntent(j.d, j.job)}
	}
	keepOld := jobs[0].job.Op == wire.OpResetPassword && jobs[0].job.KeepOldFor > 0
	if op := jobs[0].job.Op; op == wire.OpCreate || op == wire.OpResetPassword {
		put := w.generatePasswords(members)
		if !keepOld {
			// (A keep-old batch writes them beside its kept credentials.)
			w.writeSecrets(ctx, put)
		}
	}
	var send []*member
	for _, m := range members {
		if !m.alone {
			send = append(send, m)
		}
	}
	changes := make([]mysqlops.Change, len(send))
	for i, m := range send {
		changes[i] = mysqlops.Change{Username: m.j.job.Username, Password: m.password, ReadOnly: m.j.job.ReadOnly, Intent: m.intent}
	}
	record := func(ctx context.Context, idx []int) error {
		keys, ids := make([]string, len(idx)), make([]string, len(idx))
		for k, i := range idx {
			keys[k], ids[k] = send[i].intent.key, send[i].intent.id
		}
		errs := w.putIntents(ctx, keys, ids)
		for _, err := range errs {
			if err != nil {
				return natsError{fmt.Errorf("write the intent records: %w", err)}
			}
		}
		for _, i := range idx {
			send[i].intent.markRecorded()
		}
		return nil
	}
	var accts []mysqlops.Account
	var errs []error
	if len(send) > 0 {
		switch {
		case keepOld:
			accts, errs = w.keepOldMany(ctx, jobs[0].ops, send, changes)
		case jobs[0].job.Op == wire.OpResetPassword:
			accts, errs = ops.ResetPasswords(ctx, changes)
		case jobs[0].job.Op == wire.OpCreate:
			errs = ops.CreateMany(ctx, changes, record)
		case jobs[0].job.Op == wire.OpDelete:
			accts, errs = ops.DeleteMany(ctx, changes, record)
		}
	}
	for i, m := range send {
		err := errs[i]
		if err == nil || mysqlops.PasswordMaybeSet(err) {
			// The statement set the password, or may have: the vault
			// entry stays, and so does a keep-old reset's schedule entry.
			m.j.vault.maybeSet, m.intent.keep.maybeSet = true, true
		}
		switch {
		case err == nil:
			setUser(&m.j.res, m.j.job, accts, i)
			m.j.res.User.OldPasswordUntil = m.until
			w.noteReach(m.j.d, nil)
		case isOutcome(err):
			m.jerr = toJobError(err, failure{target: m.j.job.Target})
			w.noteReach(m.j.d, nil)
		default:
			m.alone, m.err = true, err
		}
	}
	for _, m := range members {
		switch {
		case c.handingBack:
			// None after a handed-back job may be acked, even one whose
			// statement ran: its next delivery finds its own work.
			c.add(m.j.handBack("stopping: an earlier job of the target was handed back", nil))
		case !m.alone:
			c.add(m.j.finished(1, m.jerr))
		default:
			c.flush() // the batch's answers go out before a job that may retry for long
			w.jobLog(m.j).Debug("job runs alone after its batch", zap.Error(m.err))
			c.add(w.runAlone(m.j, m.password, m.generated, m.intent))
		}
	}
}

// setUser fills the result's account of a job that succeeded in a batch.
func setUser(res *wire.Result, job Job, accts []mysqlops.Account, i int) {
	if job.Op == wire.OpCreate {
		res.User = &wire.Account{Username: job.Username, ReadOnly: job.ReadOnly}
		return
	}
	a := accts[i]
	res.User = &wire.Account{Username: a.Username, ReadOnly: a.ReadOnly, Protected: a.Protected}
}

// generatePasswords generates the batch's missing passwords and returns
// the members that have one to write to the vault. A member whose password
// could not be generated runs alone.
func (w *Worker) generatePasswords(members []*member) []*member {
	var put []*member
	for _, m := range members {
		if !m.password.IsZero() {
			continue
		}
		pw, err := w.cfg.GeneratePassword()
		if err != nil {
			m.alone, m.err = true, fmt.Errorf("generate a password: %w", err)
			continue
		}
		m.password, m.generated = pw, true
		put = append(put, m)
	}
	return put
}

// writeSecrets seals put's generated passwords to their requesters and
// writes them to the vault, all writes at once with one wait. A member
// whose entry could not be written runs alone (and writes it there).
func (w *Worker) writeSecrets(ctx context.Context, put []*member) {
	for _, m := range put {
		m.j.vault.written = true // even a write that fails may have been stored
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	secrets := make([]*wire.Secret, len(put))
	var errs []error
	if b, ok := w.cfg.Secrets.(BatchSecrets); ok && len(put) > 1 {
		errs = w.putSecrets(ctx, b, put, secrets)
	} else {
		errs = concurrently(len(put), func(k int) error {
			m := put[k]
			// Sealed beside the other writes: a fresh reply_key costs an
			// X25519 key agreement.
			sealed, err := w.cfg.Keys.SealPassword(m.j.job.ID, m.password, m.j.job.ReplyKey)
			if err != nil {
				return fmt.Errorf("seal the generated password: %w", err)
			}
			key, expires, err := w.cfg.Secrets.Put(ctx, m.j.job.Target, m.j.job.ID, sealed)
			if err != nil {
				return natsError{fmt.Errorf("store the sealed password in the vault: %w", err)}
			}
			secrets[k] = &wire.Secret{Bucket: w.cfg.Secrets.Bucket(), Key: key, ExpiresAt: expires}
			return nil
		})
	}
	for k, err := range errs {
		if err != nil {
			put[k].alone, put[k].err = true, err
			continue
		}
		put[k].j.res.Secret = secrets[k]
	}
}

// putSecrets seals put's passwords (on every core: a fresh reply_key costs
// an X25519 key agreement) and writes them in one round, with one wait.
func (w *Worker) putSecrets(ctx context.Context, b BatchSecrets, put []*member, secrets []*wire.Secret) []error {
	sealed := make([][]byte, len(put))
	errs := concurrently(len(put), func(k int) error {
		var err error
		if sealed[k], err = w.cfg.Keys.SealPassword(put[k].j.job.ID, put[k].password, put[k].j.job.ReplyKey); err != nil {
			return fmt.Errorf("seal the generated password: %w", err)
		}
		return nil
	})
	var ids []string
	var data [][]byte
	var idx []int
	for k, m := range put {
		if errs[k] == nil {
			ids, data, idx = append(ids, m.j.job.ID), append(data, sealed[k]), append(idx, k)
		}
	}
	if len(idx) == 0 {
		return errs
	}
	keys, expires, perrs := b.PutMany(ctx, put[0].j.job.Target, ids, data)
	for n, k := range idx {
		if perrs[n] != nil {
			errs[k] = natsError{fmt.Errorf("store the sealed password in the vault: %w", perrs[n])}
			continue
		}
		secrets[k] = &wire.Secret{Bucket: w.cfg.Secrets.Bucket(), Key: keys[n], ExpiresAt: expires}
	}
	return errs
}

// putIntents writes intent records, with one wait when the store can
// (BatchIntents), else one Put per key, concurrently.
func (w *Worker) putIntents(ctx context.Context, keys, values []string) []error {
	if b, ok := w.cfg.Intents.(BatchIntents); ok {
		return b.PutMany(ctx, keys, values)
	}
	return concurrently(len(keys), func(k int) error { return w.cfg.Intents.Put(ctx, keys[k], values[k]) })
}

// concurrently runs f(0..n-1), up to maxInFlight at a time, and returns
// their errors: NATS requests of a batch wait for their replies together.
func concurrently(n int, f func(i int) error) []error {
	errs := make([]error, n)
	if n == 1 {
		errs[0] = f(0)
		return errs
	}
	var wg sync.WaitGroup
	for w := range min(n, maxInFlight) {
		wg.Go(func() {
			for i := w; i < n; i += maxInFlight {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	return errs
}

// maxInFlight bounds the requests a batch has waiting at once (and the
// goroutines that wait for them).
const maxInFlight = 64
