package platformapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dbusers/dbusers/client"
)

// maxBody bounds a request body: the largest valid one is well under 1 KiB.
const maxBody = 64 << 10

// userJSON is a database user as go-scalingo v11 reads it
// (scalingo.DatabaseUser). Password is set only in the one response that
// hands out a generated password.
type userJSON struct {
	Name      string `json:"name"`
	ReadOnly  bool   `json:"read_only"`
	Protected bool   `json:"protected"`
	Password  string `json:"password,omitempty"`
}

func toUserJSON(a client.Account) userJSON {
	return userJSON{Name: a.Username, ReadOnly: a.ReadOnly, Protected: a.Protected}
}

// userResponse is {"database_user": …}.
type userResponse struct {
	DatabaseUser userJSON `json:"database_user"`
}

// usersResponse is {"database-users": […]} (the dash is go-scalingo's).
type usersResponse struct {
	DatabaseUsers []userJSON `json:"database-users"`
}

// createBody is what go-scalingo's DatabaseCreateUser sends. Pointers tell
// an absent field from an empty one.
type createBody struct {
	DatabaseUser *struct {
		DatabaseID           *string `json:"database_id"`
		Name                 *string `json:"name"`
		ReadOnly             *bool   `json:"read_only"`
		Password             *string `json:"password"`
		PasswordConfirmation *string `json:"password_confirmation"`
	} `json:"database_user"`
}

// updateBody is what go-scalingo's DatabaseUpdateUser sends.
type updateBody struct {
	DatabaseUser *struct {
		DatabaseID           *string `json:"database_id"`
		Password             *string `json:"password"`
		PasswordConfirmation *string `json:"password_confirmation"`
	} `json:"database_user"`
}

// resetBody is the body of reset_password: none, or {} as the platform's
// CLI sends it.
type resetBody struct{}

// badRequest is a body that is not the JSON an endpoint takes (HTTP 400).
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// decodeBody decodes r's body into v, strictly: one JSON object, no
// unknown field (a misspelt "readonly" must never make a read-write user),
// nothing after it. An empty body is allowed only when emptyOK.
func decodeBody(r *http.Request, v any, emptyOK bool) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &badRequest{fmt.Sprintf("the body is larger than %d bytes", maxBody)}
		}
		return &badRequest{"the body could not be read"}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if emptyOK {
			return nil
		}
		return &badRequest{"the body is empty; send the JSON object {\"database_user\": {…}}"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// encoding/json's messages name fields and types, never values:
		// a password stays out of the answer.
		return &badRequest{"the body is not the expected JSON: " + jsonProblem(err)}
	}
	if dec.More() {
		return &badRequest{"the body holds more than one JSON value"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &badRequest{"the body holds more than one JSON value"}
	}
	return nil
}

// jsonProblem words a decoding error without quoting the input.
func jsonProblem(err error) string {
	if e, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Sprintf("field %s must be %s, not %s", e.Field, jsonKind(e.Type.Kind().String()), e.Value)
	}
	if _, ok := errors.AsType[*json.SyntaxError](err); ok {
		return "it is not valid JSON"
	}
	// DisallowUnknownFields: `json: unknown field "x"` names the field only.
	return err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "bool":
		return "true or false"
	case "ptr", "struct":
		return "an object"
	}
	return "a " + k
}
