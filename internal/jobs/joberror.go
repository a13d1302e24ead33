package jobs

import (
	"errors"
	"fmt"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/wire"
)

// Errors are classified here, once: what an operation's error means for
// the job (an outcome about the account, a fault to retry, the worker's
// own NATS side) and which contract error it becomes.

// natsError marks a failure of the worker's own NATS side (vault, intents)
// inside an operation: transient, and nothing about MySQL.
type natsError struct{ err error }

func (e natsError) Error() string { return e.err.Error() }
func (e natsError) Unwrap() error { return e.err }

func classify(err error) mysqlops.Class {
	var ne natsError
	if errors.As(err, &ne) {
		return mysqlops.Transient
	}
	return mysqlops.Classify(err)
}

// isOutcome reports whether err is an answer about the account (exists,
// not found, protected, foreign) rather than a failure.
func isOutcome(err error) bool {
	return errors.Is(err, mysqlops.ErrUserExists) || errors.Is(err, mysqlops.ErrUserNotFound) ||
		errors.Is(err, mysqlops.ErrProtected) || errors.Is(err, mysqlops.ErrForeign)
}

// failure is what a failed job's message tells besides its cause.
type failure struct {
	target string
	// attempts, as the result counts them; 0 when the job was not tried
	// (its target was found unreachable moments before, see
	// stillUnreachable).
	attempts int
	// changed: a statement of the job may have run, so the job may have
	// taken effect.
	changed bool
}

// after says when the job gave up.
func (f failure) after() string {
	switch f.attempts {
	case 0:
		return "when the job before this one tried moments ago (this job's retry budget ran out while it waited)"
	case 1:
		return "after 1 attempt"
	}
	return fmt.Sprintf("after %d attempts", f.attempts)
}

// effect says what became of the account.
func (f failure) effect() string {
	if f.changed {
		return "the job may or may not have taken effect"
	}
	return "the job made no change"
}

// toJobError maps an operation's final error to a contract error. Its
// message says what happened and what to do, in plain words; the error
// itself (a driver's text) is kept as the cause, for the worker's log.
func toJobError(err error, f failure) *wire.Error {
	switch {
	case errors.Is(err, mysqlops.ErrUserExists):
		return wire.Errorf(wire.CodeUserExists, "an account of that name already exists on the server; choose another username")
	case errors.Is(err, mysqlops.ErrUserNotFound):
		return wire.Errorf(wire.CodeUserNotFound, "no account of that name belongs to this target")
	case errors.Is(err, mysqlops.ErrProtected):
		return wire.Errorf(wire.CodeProtectedUser, "the account is protected (the database's default user): it cannot be changed or deleted")
	case errors.Is(err, mysqlops.ErrForeign):
		return wire.Errorf(wire.CodeForeignUser, "the account holds privileges outside this target's database; it is not managed here and was left untouched")
	}
	jerr := failureError(err, f)
	jerr.Cause = err
	return jerr
}

// failureError words a failure that is not an outcome about the account.
func failureError(err error, f failure) *wire.Error {
	// Faults of the worker's own setup, for its operator to fix; the
	// password file's path stays in the worker's log.
	switch {
	case errors.As(err, new(*mysqlops.PasswordSourceError)):
		return wire.Errorf(wire.CodeUnavailable, "the worker could not read the admin password file of target %s %s; %s. "+
			"Send the job again once the worker's operator has fixed the file (the worker's log says why)", f.target, f.after(), f.effect())
	case errors.As(err, new(*mysqlops.LoginRefusedError)):
		return wire.Errorf(wire.CodeUnavailable, "MySQL refused the worker's admin login for target %s %s: the target's password file "+
			"does not hold the admin's password (a rotation half done?); %s. Send the job again once the worker's operator has fixed it",
			f.target, f.after(), f.effect())
	case mysqlops.LoginRefused(err):
		return wire.Errorf(wire.CodeInternal, "MySQL refused the worker's admin login for target %s (the password in its DSN is wrong); "+
			"the worker's operator must fix the DSN and restart the worker, then send the job again", f.target)
	case mysqlops.MissingPrivilege(err):
		return wire.Errorf(wire.CodeInternal, "MySQL refused a statement for lack of a privilege of the worker's admin account (%v); "+
			"the worker's operator must grant what contract §5.7 lists, then send the job again", err)
	}
	if classify(err) != mysqlops.Permanent {
		if mysqlops.FromServer(err) {
			// Reachable, but busy: a lock held by another session, a
			// statement over its time limit, a server shutting down.
			return wire.Errorf(wire.CodeUnavailable, "MySQL server of target %s answered but kept failing the job %s (a lock held by another "+
				"session, a statement over its time limit, or a server shutting down); %s. Send it again later",
				f.target, f.after(), f.effect())
		}
		return wire.Errorf(wire.CodeUnavailable, "MySQL server of target %s did not answer %s; %s. Send it again once the server is up",
			f.target, f.after(), f.effect())
	}
	return wire.Errorf(wire.CodeInternal, "%v", err)
}
