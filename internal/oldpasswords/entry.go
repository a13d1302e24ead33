package oldpasswords

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dbusers/dbusers/internal/jobs"
)

// Key returns the bucket key of username's entry on target:
// "<target>.<username>". Both are tokens of the contract's grammars, which
// use only characters a key allows and never a '.'.
func Key(target, username string) string { return target + "." + username }

// splitKey undoes Key; ok is false for a key of any other shape.
func splitKey(key string) (target, username string, ok bool) {
	target, username, ok = strings.Cut(key, ".")
	return target, username, ok && validToken(target) && validToken(username)
}

// validToken reports whether s is a non-empty key token without a '.' or a
// wildcard: letters, digits, '_' and '-'. Targets and usernames are
// checked against the contract's stricter grammars before they come here;
// this keeps a stray one from naming several keys.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// value is an entry's value: when the old password ends, the reset that
// kept it, and the credential that reset keeps (sealed to the worker's
// key; see jobs.OldPasswordEnd).
type value struct {
	Until string `json:"until"` // RFC 3339, to the nanosecond, UTC
	JobID string `json:"job_id"`
	Kept  string `json:"kept,omitempty"`
}

// encodeValue returns the JSON value of an entry.
func encodeValue(e jobs.OldPasswordEnd) ([]byte, error) {
	return json.Marshal(value{Until: e.Until.UTC().Format(time.RFC3339Nano), JobID: e.JobID, Kept: e.Kept})
}

// decodeValue reads an entry's value.
func decodeValue(data []byte) (jobs.OldPasswordEnd, error) {
	var v value
	if err := json.Unmarshal(data, &v); err != nil {
		return jobs.OldPasswordEnd{}, fmt.Errorf("old password entry: %w", err)
	}
	if v.Until == "" {
		return jobs.OldPasswordEnd{}, errors.New("old password entry: no until")
	}
	until, err := time.Parse(time.RFC3339Nano, v.Until)
	if err != nil {
		return jobs.OldPasswordEnd{}, fmt.Errorf("old password entry: until: %w", err)
	}
	return jobs.OldPasswordEnd{Until: until, JobID: v.JobID, Kept: v.Kept}, nil
}
