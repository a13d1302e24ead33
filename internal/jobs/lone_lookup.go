package jobs

import (
	"context"
	"errors"

	"github.com/dbusers/dbusers/wire"
)

// A batch of one reset_password (the single job an orchestrator or the
// dashboard sends) looks up its stored result beside MySQL's account
// check instead of before it: the vault write and the ALTER USER wait for
// the lookup, and a job answered before is answered from its stored
// result whatever the check found. That takes one NATS round trip off a
// lone job's latency; in a bigger batch one lookup serves every job and
// costs next to nothing per job.

// errAnsweredBefore stops an attempt at its vault write or password
// statement: the job has a stored result, which stands.
var errAnsweredBefore = errors.New("the job was answered before")

// loneLookup is the stored-result lookup of a lone job, in flight.
type loneLookup struct {
	done  chan struct{}
	data  []byte
	found bool
	ok    bool // false: the worker stopped before the lookup answered
}

// overlapsLookup reports whether the lone job j looks up its stored result
// beside its account check.
func overlapsLookup(j *work) bool {
	return j.jerr == nil && j.keyed && j.job.Op == wire.OpResetPassword
}

// lookUpAlongside starts j's stored-result lookup.
func (w *Worker) lookUpAlongside(j *work) *loneLookup {
	l := &loneLookup{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var stored map[string][]byte
		stored, l.ok = w.lookupStored([]*work{j})
		l.data, l.found = stored[j.subject]
	}()
	return l
}

// wait blocks until the lookup has answered: nil when the job has no
// stored result, errAnsweredBefore when it has, or ctx's error. A nil
// lookup (the job's batch looked up beforehand) never waits.
func (l *loneLookup) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	switch {
	case !l.ok:
		return context.Canceled
	case l.found:
		return errAnsweredBefore
	}
	return nil
}

// foundNow reports, without waiting, whether the lookup has answered that
// the job has a stored result: an attempt that failed need not be tried
// again.
func (l *loneLookup) foundNow() bool {
	if l == nil {
		return false
	}
	select {
	case <-l.done:
		return l.ok && l.found
	default:
		return false
	}
}

// stands waits for the lookup and returns the outcome it decides for j,
// whatever j's run found (its statement waited for the lookup): the stored
// result, or a hand-back when the worker stopped first. ok is false when
// the job has no stored result, or looked it up beforehand (nil lookup).
func (l *loneLookup) stands(j *work) (o outcome, ok bool) {
	if l == nil {
		return outcome{}, false
	}
	<-l.done
	switch {
	case !l.ok:
		return j.handBack("look up an earlier result", nil), true
	case l.found:
		// A vault entry written beside the lookup is purged before the
		// answer goes (storeFirst): it must not outlive the job.
		j.vault.writes.Wait()
		return j.answerStored(l.data), true
	}
	return outcome{}, false
}
