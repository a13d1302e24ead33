package jobs

import (
	"errors"

	"github.com/dbusers/dbusers/internal/mysqlops"
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

// toJobError maps an operation's final error to a contract error.
func toJobError(err error) *Error {
	switch {
	case errors.Is(err, mysqlops.ErrUserExists):
		return Errorf(CodeUserExists, "an account of that name already exists on the server; choose another username")
	case errors.Is(err, mysqlops.ErrUserNotFound):
		return Errorf(CodeUserNotFound, "no account of that name belongs to this target")
	case errors.Is(err, mysqlops.ErrProtected):
		return Errorf(CodeProtectedUser, "the account is protected (the database's default user): it cannot be changed or deleted")
	case errors.Is(err, mysqlops.ErrForeign):
		return Errorf(CodeForeignUser, "the account holds privileges outside this target's database; it is not managed here and was left untouched")
	}
	// Faults of the worker's own setup, for its operator to fix; the
	// password file's path stays in the worker's log.
	switch {
	case errors.As(err, new(*mysqlops.PasswordSourceError)):
		return Errorf(CodeUnavailable, "the worker could not read this target's admin password file through the retry budget; "+
			"retry the job once the worker's operator has fixed it (the worker's log says why)")
	case errors.As(err, new(*mysqlops.LoginRefusedError)):
		return Errorf(CodeUnavailable, "MySQL refused the worker's admin login through the retry budget: this target's password file "+
			"does not hold the admin's password (a rotation half done?); retry the job once the worker's operator has fixed it")
	case mysqlops.LoginRefused(err):
		return Errorf(CodeInternal, "MySQL refused the worker's admin login for this target (the password in its DSN is wrong); "+
			"the worker's operator must fix the DSN and restart the worker, then retry the job")
	case mysqlops.MissingPrivilege(err):
		return Errorf(CodeInternal, "MySQL refused a statement for lack of a privilege of the worker's admin account (%v); "+
			"the worker's operator must grant what contract §5.7 lists, then retry the job", err)
	}
	if classify(err) != mysqlops.Permanent {
		if mysqlops.FromServer(err) {
			// Reachable, but busy: a lock held by another session, a
			// statement over its time limit, a server shutting down.
			return Errorf(CodeUnavailable, "MySQL answered but kept failing the job through the retry budget (last error: %v); retry the job later", err)
		}
		return Errorf(CodeUnavailable, "MySQL stayed unreachable through the retry budget (last error: %v); retry the job once the server is back", err)
	}
	return Errorf(CodeInternal, "%v", err)
}
