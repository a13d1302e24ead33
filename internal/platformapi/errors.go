package platformapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/client"
)

// apiError is an HTTP error answer: a status and the JSON body go-scalingo
// reads for it (its http/errors.go): {"error"} for most, {"errors": {field:
// [...]}} for 422, {"resource", "error"} for 404, plus "job_id" on 504.
type apiError struct {
	Status   int                 `json:"-"`
	Resource string              `json:"resource,omitempty"`
	Message  string              `json:"error,omitempty"`
	Fields   map[string][]string `json:"errors,omitempty"`
	JobID    string              `json:"job_id,omitempty"`
	// code is what the log line says caused it: a contract code or one of
	// the API's own (bad_request, unauthorized, timeout, …).
	code string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.code) }

func simple(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Message: fmt.Sprintf(format, args...), code: code}
}

func fieldError(field, code, msg string) *apiError {
	return &apiError{Status: http.StatusUnprocessableEntity, Fields: map[string][]string{field: {msg}}, code: code}
}

// op is what a request asked the worker to do, for the words of an error.
type op struct {
	kind      string // "list", "create", "reset", "update", "delete"
	name      string // the username; "" for list
	generated bool   // the worker generates the password
	jobID     string
	timeout   time.Duration
}

// fromWorker maps what a client call returned to the API's answer. The
// worker's messages never hold a password (contract §3), and neither do
// the client's.
func fromWorker(err error, o op) *apiError {
	if e, ok := errors.AsType[*client.Error](err); ok {
		return fromCode(e, o)
	}
	switch {
	case errors.Is(err, client.ErrNoResult):
		return timeoutError(o)
	case errors.Is(err, client.ErrSecretGone), errors.Is(err, client.ErrSecretUnread):
		// The job succeeded: the account has a password that no one can
		// read any more. Only a new reset gives a usable one.
		what := fmt.Sprintf("User %q was created", o.name)
		if o.kind == "reset" {
			what = fmt.Sprintf("The password of user %q was reset", o.name)
		}
		return simple(http.StatusInternalServerError, "secret_unread",
			"%s, but the password generated for it could not be read from the worker's vault: reset the password to get a new one (job %s)", what, o.jobID)
	case errors.Is(err, client.ErrNoWorker):
		return simple(http.StatusServiceUnavailable, "no_worker",
			"No dbusers worker is answering, so nothing was done: try again later")
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrNoServers):
		return simple(http.StatusServiceUnavailable, "nats_down",
			"The API has lost its connection to the worker's NATS: try again later")
	}
	return simple(http.StatusInternalServerError, "internal", "The request failed inside the API: %s", strings.TrimPrefix(err.Error(), "client: "))
}

// fromCode maps one of the worker's contract codes (contract §8's table).
func fromCode(e *client.Error, o op) *apiError {
	switch e.Code {
	case client.CodeInvalidUsername:
		return fieldError("name", string(e.Code), capitalize(e.Message))
	case client.CodeInvalidPassword:
		return fieldError("password", string(e.Code), capitalize(e.Message))
	case client.CodeUserNotFound:
		return &apiError{Status: http.StatusNotFound, Resource: "database_user", code: string(e.Code),
			Message: fmt.Sprintf("User %q does not exist in this database", o.name)}
	case client.CodeProtectedUser:
		return simple(http.StatusForbidden, string(e.Code),
			"User %q is protected: the platform manages it, so it cannot be changed or deleted here", o.name)
	case client.CodeForeignUser:
		return simple(http.StatusForbidden, string(e.Code),
			"User %q holds privileges outside this database, so it is not managed here and was left unchanged", o.name)
	case client.CodeUserExists:
		return simple(http.StatusConflict, string(e.Code), "User %q already exists", o.name)
	case client.CodeUnavailable:
		return simple(http.StatusServiceUnavailable, string(e.Code),
			"The database server could not be reached: try again later (%s)", e.Message)
	case client.CodeUnknownTarget:
		return simple(http.StatusInternalServerError, string(e.Code),
			"This database is not configured on the worker: the API's and the worker's configurations disagree")
	}
	return simple(http.StatusInternalServerError, string(e.Code), "The worker failed: %s", e.Message)
}

// timeoutError is the 504 of a job whose result did not come in time. The
// job was accepted and still runs: the words say what that means for the
// caller, above all that a generated password will be unreadable.
func timeoutError(o op) *apiError {
	lead := fmt.Sprintf("The worker did not answer within %s. Job %s was accepted and will still run: ", o.timeout, o.jobID)
	var rest string
	switch o.kind {
	case "list":
		lead = fmt.Sprintf("The worker did not answer within %s (job %s). ", o.timeout, o.jobID)
		rest = "Listing changes nothing: try again."
	case "create":
		if o.generated {
			rest = fmt.Sprintf("if it creates user %q, the password generated for it cannot be read later; reset the password to get one.", o.name)
		} else {
			rest = fmt.Sprintf("if it creates user %q, its password is the one you chose.", o.name)
		}
	case "reset":
		rest = fmt.Sprintf("if it resets the password of user %q, the new generated password cannot be read later; reset it again.", o.name)
	case "update":
		rest = fmt.Sprintf("if it succeeds, user %q has the password you chose.", o.name)
	case "delete":
		rest = fmt.Sprintf("it may still delete user %q; list the users to see.", o.name)
	}
	return &apiError{Status: http.StatusGatewayTimeout, Message: lead + rest, JobID: o.jobID, code: "timeout"}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
