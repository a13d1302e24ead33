package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/dbusers/dbusers/internal/mysqlops"
)

// jobIntent is a job's view of the intent record of its username.
type jobIntent struct {
	store    Intents
	key, id  string
	recorded bool // this delivery recorded it
	// redelivered: an earlier delivery of the job may have recorded it,
	// and sent its statement.
	redelivered bool
	// unseen: no process was ever delivered the job before, so it has
	// recorded nothing yet (Config.FreshFrom).
	unseen bool
	// maybeRan: an earlier attempt's statement may have run (recorded,
	// and not known to have failed); sending: this attempt's may.
	maybeRan, sending bool
	// keep is what a keep-old reset knows of the credential it keeps.
	keep keptRecord
}

// keptRecord is what a keep-old reset knows of its account's schedule
// entry, which records the credential it keeps (keep_old.go).
type keptRecord struct {
	// known: cred is the credential the job keeps, read from its entry
	// or written to it, so that every attempt keeps the same one; until
	// is the end the entry says.
	known bool
	cred  mysqlops.Credential
	until time.Time
	// written: this delivery wrote the entry, replacing prior (nil: none,
	// or one that ended nothing the account still held), which it knew
	// before (priorKnown: then an entry of its own job is its own write).
	written, priorKnown bool
	prior               *OldPasswordEnd
	// maybeSet: an attempt of this delivery may have run the statement.
	maybeSet bool
}

// Mine reports whether an attempt of this job, in this delivery or an
// earlier one, may have run its statement: recorded it, and did not learn
// that it failed to run.
func (i *jobIntent) Mine(ctx context.Context) (bool, error) {
	if i.recorded {
		return i.maybeRan || i.sending, nil
	}
	prev, err := i.store.Get(ctx, i.key)
	if err != nil {
		return false, natsError{fmt.Errorf("read the intent record: %w", err)}
	}
	return prev == i.id, nil
}

// Record notes that this job is about to create or drop the account, and
// reports whether an earlier attempt or delivery of the job may have run
// its statement. A delivery knows its own attempts (Unsent clears one);
// a redelivery takes an earlier delivery's record as one that may have
// run, reading it first (redeliveries are rare; a first delivery's first
// attempt costs one write).
func (i *jobIntent) Record(ctx context.Context) (bool, error) {
	if i.recorded {
		i.maybeRan = i.maybeRan || i.sending
		i.sending = true
		return i.maybeRan, nil
	}
	earlier := false
	if i.redelivered {
		prev, err := i.store.Get(ctx, i.key)
		if err != nil {
			return false, natsError{fmt.Errorf("read the intent record: %w", err)}
		}
		earlier = prev == i.id
	}
	if err := i.store.Put(ctx, i.key, i.id); err != nil {
		return false, natsError{fmt.Errorf("write the intent record: %w", err)}
	}
	i.recorded, i.maybeRan, i.sending = true, earlier, true
	return earlier, nil
}

// Unsent notes that this attempt's statement did not run.
func (i *jobIntent) Unsent() { i.sending = false }

// recorded notes that the intent was written, in a batch's one round of
// writes, right before a many-account statement that may run it.
func (i *jobIntent) markRecorded() {
	i.recorded, i.maybeRan, i.sending = true, false, true
}
