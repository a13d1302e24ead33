package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/dbusers/dbusers/wire"
)

// Code is one of the worker's error codes, the closed set of the wire
// contract (§3).
type Code = wire.Code

// The contract's error codes.
const (
	// CodeInvalidJob: the job itself is malformed (for this client: a target
	// name outside the grammar ^[a-z0-9][a-z0-9_-]{0,62}$, or a bad job id).
	CodeInvalidJob = wire.CodeInvalidJob
	// CodeInvalidUsername: the username breaks ^[a-z][a-z0-9_]{5,31}$ or is
	// reserved (root, mysql…, mariadb…, debian_sys_maint, …).
	CodeInvalidUsername = wire.CodeInvalidUsername
	// CodeInvalidPassword: a chosen password breaks the rule (24 to 64
	// printable ASCII characters other than ' and "), or its seal did not open.
	CodeInvalidPassword = wire.CodeInvalidPassword
	// CodeUnknownTarget: the worker has no target of that name.
	CodeUnknownTarget = wire.CodeUnknownTarget
	// CodeUserExists: create found an account of that name on the server.
	CodeUserExists = wire.CodeUserExists
	// CodeUserNotFound: no account of that name belongs to the target.
	CodeUserNotFound = wire.CodeUserNotFound
	// CodeProtectedUser: the account is a protected user of the target.
	CodeProtectedUser = wire.CodeProtectedUser
	// CodeForeignUser: the account holds privileges outside the target's
	// database, so the worker leaves it alone.
	CodeForeignUser = wire.CodeForeignUser
	// CodeUnavailable: MySQL stayed unreachable through the worker's retry
	// budget.
	CodeUnavailable = wire.CodeUnavailable
	// CodeInternal: anything else; the message says what.
	CodeInternal = wire.CodeInternal
)

// Sentinels, one per contract code, for errors.Is. An *Error unwraps to the
// sentinel of its code, so errors.Is(err, ErrUserExists) holds for a
// user_exists answer however deeply err wraps it.
var (
	ErrInvalidJob      = errors.New("invalid job")
	ErrInvalidUsername = errors.New("invalid username")
	ErrInvalidPassword = errors.New("invalid password")
	ErrUnknownTarget   = errors.New("unknown target")
	ErrUserExists      = errors.New("user exists")
	ErrUserNotFound    = errors.New("user not found")
	ErrProtectedUser   = errors.New("protected user")
	ErrForeignUser     = errors.New("foreign user")
	ErrUnavailable     = errors.New("database unavailable")
	ErrInternal        = errors.New("internal worker error")
)

// Errors of the client's own, not answers of the worker.
var (
	// ErrNoWorker: no worker answered on the info subject P.info, or no
	// jobs stream takes the job's subject. The worker is not running, or
	// runs on another NATS server or with another prefix.
	ErrNoWorker = errors.New("no dbusers worker answered")
	// ErrNoResult: the context ended before the job's result arrived. The
	// job was accepted by the jobs stream and runs once a worker takes it;
	// repeating the call with the same job id returns its result then.
	ErrNoResult = errors.New("no result before the deadline")
	// ErrSecretGone: the job succeeded with a generated password, but its
	// vault entry had expired or was already taken. The password is in force
	// and can no longer be read: reset it again with a new job id.
	ErrSecretGone = errors.New("generated password is gone from the vault")
	// ErrSecretUnread: the job succeeded with a generated password, but
	// reading it failed (the vault could not be read, or the sealed
	// password did not open). The password is in force; whether its entry
	// can still be read depends on the cause: reset it again with a new job
	// id to be sure.
	ErrSecretUnread = errors.New("generated password could not be read")
)

// Error is an error answered by the worker (or found by the client before
// sending, for the checks it can make itself): a contract code, the
// worker's message, which never contains a password, and the job id.
type Error struct {
	Code    Code
	Message string
	// JobID is the job the worker answered; "" when the client refused the
	// request before sending it.
	JobID string
}

// Error returns "<code>: <message>".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Unwrap returns the sentinel of e's code (ErrUserExists for user_exists…),
// or nil for a code outside the contract.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeInvalidJob:
		return ErrInvalidJob
	case CodeInvalidUsername:
		return ErrInvalidUsername
	case CodeInvalidPassword:
		return ErrInvalidPassword
	case CodeUnknownTarget:
		return ErrUnknownTarget
	case CodeUserExists:
		return ErrUserExists
	case CodeUserNotFound:
		return ErrUserNotFound
	case CodeProtectedUser:
		return ErrProtectedUser
	case CodeForeignUser:
		return ErrForeignUser
	case CodeUnavailable:
		return ErrUnavailable
	case CodeInternal:
		return ErrInternal
	}
	return nil
}

// fromJobs converts the worker's error into the client's.
func fromJobs(e *wire.Error, jobID string) *Error {
	return &Error{Code: e.Code, Message: e.Message, JobID: jobID}
}

// CheckUsername applies the worker's username rule: ^[a-z][a-z0-9_]{5,31}$
// and not a reserved account. It returns nil or an *Error with code
// invalid_username whose message says which rule failed.
func CheckUsername(name string) error {
	if e := wire.CheckUsername(name); e != nil {
		return fromJobs(e, "")
	}
	return nil
}

// CheckPassword applies the worker's rule for a chosen password: 24 to 64
// characters, each printable ASCII (0x21–0x7E) other than ' and ". It
// returns nil or an *Error with code invalid_password whose message says
// which rule failed, without quoting the password.
func CheckPassword(password string) error {
	if e := wire.CheckPassword(password); e != nil {
		return fromJobs(e, "")
	}
	return nil
}

// CheckKeepOld applies the worker's range for a reset's keep_old_for
// (ResetPasswordRequest.KeepOldFor, RotateOptions.KeepOldFor): 1 minute to
// 24 hours (wire.MinKeepOld, wire.MaxKeepOld). It returns nil or an *Error
// with code invalid_job, as the worker would answer. The calls treat 0 as
// "keep no old password" and do not check it; CheckKeepOld(0) fails.
func CheckKeepOld(d time.Duration) error {
	if _, e := wire.ParseKeepOld(wire.FormatKeepOld(d)); e != nil {
		return fromJobs(e, "")
	}
	return nil
}

// CheckTarget applies the target name grammar ^[a-z0-9][a-z0-9_-]{0,62}$.
// It returns nil or an *Error with code invalid_job.
func CheckTarget(target string) error {
	ok := len(target) >= 1 && len(target) <= 63
	for i := 0; ok && i < len(target); i++ {
		c := target[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
	}
	if !ok {
		return &Error{Code: CodeInvalidJob, Message: fmt.Sprintf("target %q is outside the grammar ^[a-z0-9][a-z0-9_-]{0,62}$", target)}
	}
	return nil
}

// checkJobID applies the job id grammar ^[A-Za-z0-9_-]{1,64}$.
func checkJobID(id string) error {
	ok := len(id) >= 1 && len(id) <= 64
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	if !ok {
		return &Error{Code: CodeInvalidJob, Message: fmt.Sprintf("job id %q is outside the grammar ^[A-Za-z0-9_-]{1,64}$", id)}
	}
	return nil
}
