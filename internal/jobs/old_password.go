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
// target and username).
type OldPasswordSchedule interface {
	// Set records that username's old password on target ends at until;
	// jobID is the reset that kept it.
	Set(ctx context.Context, target, username string, until time.Time, jobID string) error
	// SetMany is Set for many usernames of target, with one wait.
	SetMany(ctx context.Context, target string, usernames []string, until []time.Time, jobIDs []string) []error
	// Until returns the end of the old password of each of usernames that
	// has an entry.
	Until(ctx context.Context, target string, usernames []string) (map[string]time.Time, error)
	// Clear removes username's entry (its old password ended).
	Clear(ctx context.Context, target, username string) error
}

// ScheduledDiscardHeader marks a discard_old_password job that the expiry
// watcher published for the entry whose end time it holds (RFC 3339, to
// the nanosecond): such a job discards only while the entry still says
// that time or none, so that it never ends an old password a later reset
// kept until later.
const ScheduledDiscardHeader = "Dbusers-Old-Password-Until"
