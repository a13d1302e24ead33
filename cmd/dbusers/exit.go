package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/dbusers/dbusers/client"
)

// Exit statuses, one per kind of failure a script acts on differently
// (docs/cli.md lists them).
const (
	exitOK = 0
	// exitFailed: anything else (the worker's internal error, a file that
	// cannot be written, some users of a rotation failed).
	exitFailed = 1
	// exitUsage: the command line or the settings are wrong: flags,
	// arguments, the target's name, the NATS settings (a NATS server that
	// refuses the login or the TLS handshake included).
	exitUsage = 2
	// exitRefused: refused by a rule: the username or password breaks
	// the rules, the user exists already, is protected or not managed by
	// the target, or the job is invalid.
	exitRefused = 3
	// exitNotFound: the user, the target or the job does not exist.
	exitNotFound = 4
	// exitUnavailable: nothing answered in time: the database is
	// unavailable, no worker answered, NATS cannot be reached, or the job
	// is not done within --timeout (it may still run).
	exitUnavailable = 5
	// exitPasswordUnread: the account was changed, but its generated
	// password could not be read: reset it.
	exitPasswordUnread = 6
	// exitInterrupted: interrupted (Ctrl-C), as shells count SIGINT.
	exitInterrupted = 130
)

// The codes of --json errors that the contract's codes (client.Code) do not
// cover: the CLI's own failures.
const (
	codeUsage          = "usage"
	codeTimeout        = "timeout"
	codeNoWorker       = "no_worker"
	codeNATS           = "nats_unreachable"
	codeNATSRefused    = "nats_refused"
	codePasswordUnread = "password_unread"
	codeInterrupted    = "interrupted"
	codeJobNotFound    = "job_not_found"
	codeFailed         = "failed"
)

// classify gives the exit status and the --json code of an error run
// returns: what a failure set, else what its cause is. Cobra's own errors
// (flags and arguments) are usage errors.
func classify(err error) (status int, code string) {
	f, isFailure := errors.AsType[*failure](err)
	if isFailure && f.status != 0 {
		return f.status, f.code
	}
	if ce, ok := errors.AsType[*client.Error](err); ok {
		return codeStatus(ce.Code), string(ce.Code)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return exitInterrupted, codeInterrupted
	case errors.Is(err, client.ErrNoResult):
		return exitUnavailable, codeTimeout
	case errors.Is(err, client.ErrNoWorker):
		return exitUnavailable, codeNoWorker
	case errors.Is(err, client.ErrSecretGone), errors.Is(err, client.ErrSecretUnread):
		return exitPasswordUnread, codePasswordUnread
	case !isFailure:
		return exitUsage, codeUsage
	}
	return exitFailed, codeFailed
}

// codeStatus is the exit status of a contract code.
func codeStatus(code client.Code) int {
	switch code {
	case client.CodeInvalidJob, client.CodeInvalidUsername, client.CodeInvalidPassword,
		client.CodeUserExists, client.CodeProtectedUser, client.CodeForeignUser:
		return exitRefused
	case client.CodeUserNotFound, client.CodeUnknownTarget:
		return exitNotFound
	case client.CodeUnavailable:
		return exitUnavailable
	}
	return exitFailed
}

// errorJSON is an error under --json, on stderr.
type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	// Code is the contract's code when the worker (or the client's own
	// check of the same rule) refused, else one of the CLI's codes.
	Code    string `json:"code"`
	Message string `json:"message"`
	// ExitStatus is the process's exit status.
	ExitStatus int `json:"exit_status"`
	// JobID and JobState say which job an error is about and where it is
	// (queued, taken, done, unknown), when known.
	JobID    string `json:"job_id,omitempty"`
	JobState string `json:"job_state,omitempty"`
}

// printError writes err for people, or as one JSON object under --json.
func printError(w io.Writer, asJSON bool, msg string, err error) int {
	status, code := classify(err)
	if !asJSON {
		fmt.Fprintln(w, msg)
		return status
	}
	body := errorBody{Code: code, Message: msg, ExitStatus: status}
	if f, ok := errors.AsType[*failure](err); ok {
		body.JobID, body.JobState = f.jobID, f.jobState
	}
	if body.JobID == "" {
		if ce, ok := errors.AsType[*client.Error](err); ok {
			body.JobID = ce.JobID
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(errorJSON{Error: body})
	return status
}
