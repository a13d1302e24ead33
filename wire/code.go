package wire

import (
	"fmt"
	"strings"
)

// Code is a contract error code (the closed set of contract §3).
type Code string

// The contract's error codes. The first three are decided from the job alone,
// in this order, before any MySQL access.
const (
	CodeInvalidJob      Code = "invalid_job"
	CodeInvalidUsername Code = "invalid_username"
	CodeInvalidPassword Code = "invalid_password"
	CodeUnknownTarget   Code = "unknown_target"
	CodeUserExists      Code = "user_exists"
	CodeUserNotFound    Code = "user_not_found"
	CodeProtectedUser   Code = "protected_user"
	CodeForeignUser     Code = "foreign_user"
	CodeUnavailable     Code = "unavailable"
	CodeInternal        Code = "internal"
)

// Error is a job's terminal error: a contract code and a message that says
// what was wrong (never a password).
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Cause is the error behind a failure (a driver's), for the worker's
	// log line only: it is never encoded, and the message says what
	// happened in plain words.
	Cause error `json:"-"`
}

// Error returns "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an Error with the given code and a formatted message,
// which is made a sentence: it gets a full stop unless it ends with one
// (or "?" or "!"). It starts in lower case unless its first word is a
// name, since clients put it after words of their own ("Invalid
// username: …"). The arguments must never include a password.
func Errorf(code Code, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if msg != "" && !strings.HasSuffix(msg, ".") && !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, "!") {
		msg += "."
	}
	return &Error{Code: code, Message: msg}
}

// AllCodes returns the contract's closed set of error codes.
func AllCodes() []Code {
	return []Code{CodeInvalidJob, CodeInvalidUsername, CodeInvalidPassword, CodeUnknownTarget,
		CodeUserExists, CodeUserNotFound, CodeProtectedUser, CodeForeignUser, CodeUnavailable, CodeInternal}
}
