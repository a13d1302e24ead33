package jobs

import (
	"context"
	"time"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
)

// Rotation without downtime: a reset with keep_old_for keeps the password
// in force before it working beside the new one until a time, which lives
// in NATS (OldPasswordSchedule), or until a discard_old_password job. The
// discard that ends it at its time is an ordinary job of the target,
// published by every process's expiry watcher (internal/oldpasswords) and
// run in order with the target's other jobs.

// OldPasswordOps is what the worker needs from a target for keep-old
// resets and discards (mysqlops.Target).
type OldPasswordOps interface {
	// Credentials returns the stored credential in force for each
	// username (its plugin and hash), in one round trip for all.
	Credentials(ctx context.Context, usernames []string) ([]mysqlops.Credential, []error)
	ResetPasswordKeepOld(ctx context.Context, username string, password secret.Secret, old mysqlops.Credential, ready mysqlops.Ready) (mysqlops.Account, error)
	ResetPasswordsKeepOld(ctx context.Context, changes []mysqlops.Change, old []mysqlops.Credential) ([]mysqlops.Account, []error)
	// ResetPasswordsKeepingCurrent keeps each account's credential in
	// force, read in the ownership check's pass; record hears them
	// right before the statement.
	ResetPasswordsKeepingCurrent(ctx context.Context, changes []mysqlops.Change, record mysqlops.KeepRecord) ([]mysqlops.Account, []error)
	DiscardOldPassword(ctx context.Context, username string) (mysqlops.Account, error)
	DiscardOldPasswords(ctx context.Context, changes []mysqlops.Change) ([]mysqlops.Account, []error)
}

var _ OldPasswordOps = (*mysqlops.Target)(nil)

// OldPasswordSchedule keeps when each retained old password ends
// (internal/oldpasswords keeps it in a key-value bucket, one key per
// target and username), and the credential the reset that kept it keeps.
type OldPasswordSchedule interface {
	// SetMany records ends[i] as usernames[i]'s entry on target, replacing
	// any earlier one, all with one wait.
	SetMany(ctx context.Context, target string, usernames []string, ends []OldPasswordEnd) []error
	// Entries returns the entry of each of usernames that has one.
	Entries(ctx context.Context, target string, usernames []string) (map[string]OldPasswordEnd, error)
	// Clear removes username's entry (its old password ended).
	Clear(ctx context.Context, target, username string) error
}

// OldPasswordEnd is an account's entry in the schedule.
type OldPasswordEnd struct {
	Until time.Time // when the old password ends
	JobID string    // the reset that kept it
	// Kept is the credential that reset keeps, sealed to the worker's own
	// key ("<plugin> <base64>"): written before its statement, so that a
	// delivery of the job after a crash keeps the same one. Empty in an
	// entry that only says an end.
	Kept string
}

// ScheduledDiscardHeader marks a discard_old_password job that the expiry
// watcher published for the entry whose end time it holds (RFC 3339, to
// the nanosecond): such a job discards only while the entry still says
// that time or none, so that it never ends an old password a later reset
// kept until later.
const ScheduledDiscardHeader = "Dbusers-Old-Password-Until"
