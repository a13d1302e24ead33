package jobs

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/wire"
)

// A generated password is sealed into the vault before the statement that
// sets it runs, so a job that then ends with an error can leave an entry
// behind that nobody will read: an error result names no entry. The
// completer purges such an entry once the job's error result is published,
// unless a statement may have set the password (then it may be in force,
// and the entry stays, for the bucket's TTL, like any unread one).

// vaultEntry is what a delivery did with its job's vault entry. Only the
// lane's goroutine reads or writes its fields; writes waits for the
// background writes.
type vaultEntry struct {
	// written: this delivery wrote the entry, or tried to (a write that
	// failed may still have been stored).
	written bool
	// writes are the entry's writes still in flight: the vault write runs
	// beside MySQL's account check, and an operation whose check answers
	// ends without waiting for it.
	writes sync.WaitGroup
	// reached: the current attempt waited for the entry (ready) and went
	// on to the statement that sets the password.
	reached bool
	// maybeSet: a statement may have set this delivery's password (or
	// did), generated or chosen: the entry must stay, and a reset that
	// fails may have taken effect.
	maybeSet bool
}

// settle notes the end of an attempt of op: once it went on to the
// password statement, the password may be set unless err proves that
// statement did not run.
func (e *vaultEntry) settle(op wire.Op, err error) {
	if e.reached && mayHaveSet(op, err) {
		e.maybeSet = true
	}
}

// mayHaveSet reports whether an attempt of op that went on to its password
// statement and ended with err may have set the password.
func mayHaveSet(op wire.Op, err error) bool {
	switch {
	case err == nil:
		return true
	case isOutcome(err), mysqlops.NothingSent(err):
		// 1396 (the account is gone, or someone else's), or nothing
		// reached the server.
		return false
	case op == wire.OpResetPassword && mysqlops.FromServer(err):
		// The server refused ALTER USER, the one statement after the
		// wait. (A create's error can come after its CREATE USER ran.)
		return false
	}
	return true
}

// unused reports whether the entry is one to purge: written by this
// delivery, and no statement may have set its password.
func (e *vaultEntry) unused() bool { return e.written && !e.maybeSet }

// purgeUnused starts purging the vault entries of the jobs in outs whose
// published result is an error and whose entry is unused, all at once;
// the returned func waits for them. A purge that fails leaves the entry
// sealed until the bucket's TTL, as before.
func (w *Worker) purgeUnused(outs []outcome) (wait func()) {
	var unused []*work
	for _, o := range outs {
		if o.verdict == answer && o.j.res.Status == wire.StatusError && o.j.vault.unused() {
			unused = append(unused, o.j)
		}
	}
	if len(unused) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(w.hardCtx, 10*time.Second)
		defer cancel()
		errs := concurrently(len(unused), func(k int) error {
			j := unused[k]
			j.vault.writes.Wait() // a write still in flight would bring the entry back
			return w.cfg.Secrets.Purge(ctx, j.job.Target, j.job.ID)
		})
		for k, err := range errs {
			if err != nil {
				w.jobLog(unused[k]).Warn("purge the unused vault entry of a failed job; it stays sealed until the bucket's TTL", zap.Error(err))
			}
		}
	}()
	return func() { <-done }
}
