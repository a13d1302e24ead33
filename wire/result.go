package wire

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Result statuses.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// Account is one database account as results show it.
type Account struct {
	Username  string `json:"username"`
	ReadOnly  bool   `json:"read_only"`
	Protected bool   `json:"protected"`
	// OldPasswordUntil is when the old password a reset kept (keep_old_for)
	// stops working; nil while the account has none.
	OldPasswordUntil *time.Time `json:"old_password_until,omitempty"`
}

// Secret tells where a generated password waits, sealed.
type Secret struct {
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Result is a job's one terminal result (contract §3).
//
// Op is "" when the job's subject named no usable op; the result then says
// "op": "". The encoder writes what the fields hold: the worker sets Status
// (StatusOK or StatusError) and Error together.
type Result struct {
	ID          string
	Target      string
	Op          Op
	Status      string    // StatusOK or StatusError
	Error       *Error    // only on StatusError
	User        *Account  // create, reset_password, delete
	Users       []Account // list, sorted by username; encoded only on a successful list
	Next        string    // list cursor, "" on the last page; encoded only on a successful list
	Secret      *Secret   // only when the worker generated the password
	Attempts    int
	CompletedAt time.Time
}

// MarshalJSON encodes r in the shape of contract §3. It has a value receiver
// so that encoding a Result value, not only a pointer, gets this shape.
func (r Result) MarshalJSON() ([]byte, error) {
	return r.AppendJSON(make([]byte, 0, 256)), nil
}

// AppendJSON appends r's JSON encoding (as MarshalJSON) to dst. It is the
// allocation-free form for the publishing hot path.
//
// Keys: id, target, op, status; error {code, message} when Error is set (an
// empty message is written as the code, since the contract wants one); user
// when set; users (an array, [] when empty) and next on a successful list;
// secret when set; attempts; completed_at. Times are RFC 3339 UTC to the
// second.
func (r *Result) AppendJSON(dst []byte) []byte {
	b := append(dst, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"target":`...)
	b = appendString(b, r.Target)
	b = append(b, `,"op":`...)
	b = appendString(b, string(r.Op))
	b = append(b, `,"status":`...)
	b = appendString(b, r.Status)
	if r.Error != nil {
		msg := r.Error.Message
		if msg == "" {
			msg = string(r.Error.Code)
		}
		b = append(b, `,"error":{"code":`...)
		b = appendString(b, string(r.Error.Code))
		b = append(b, `,"message":`...)
		b = appendString(b, msg)
		b = append(b, '}')
	}
	if r.User != nil {
		b = append(b, `,"user":`...)
		b = appendAccount(b, r.User)
	}
	if r.Op == OpList && r.Status == StatusOK {
		b = append(b, `,"users":[`...)
		for i := range r.Users {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAccount(b, &r.Users[i])
		}
		b = append(b, `],"next":`...)
		b = appendString(b, r.Next)
	}
	if r.Secret != nil {
		b = append(b, `,"secret":{"bucket":`...)
		b = appendString(b, r.Secret.Bucket)
		b = append(b, `,"key":`...)
		b = appendString(b, r.Secret.Key)
		b = append(b, `,"expires_at":`...)
		b = appendTime(b, r.Secret.ExpiresAt)
		b = append(b, '}')
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(r.Attempts), 10)
	b = append(b, `,"completed_at":`...)
	b = appendTime(b, r.CompletedAt)
	return append(b, '}')
}

// resultJSON mirrors Result with JSON tags; the field lists must stay
// identical so that one converts to the other.
type resultJSON struct {
	ID          string    `json:"id"`
	Target      string    `json:"target"`
	Op          Op        `json:"op"`
	Status      string    `json:"status"`
	Error       *Error    `json:"error"`
	User        *Account  `json:"user"`
	Users       []Account `json:"users"`
	Next        string    `json:"next"`
	Secret      *Secret   `json:"secret"`
	Attempts    int       `json:"attempts"`
	CompletedAt time.Time `json:"completed_at"`
}

// UnmarshalJSON decodes a result in the shape of contract §3, for tests and
// clients; it is not on the hot path.
func (r *Result) UnmarshalJSON(data []byte) error {
	var w resultJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*r = Result(w)
	return nil
}

func appendAccount(b []byte, a *Account) []byte {
	b = append(b, `{"username":`...)
	b = appendString(b, a.Username)
	b = append(b, `,"read_only":`...)
	b = strconv.AppendBool(b, a.ReadOnly)
	b = append(b, `,"protected":`...)
	b = strconv.AppendBool(b, a.Protected)
	if a.OldPasswordUntil != nil {
		b = append(b, `,"old_password_until":`...)
		b = appendTime(b, *a.OldPasswordUntil)
	}
	return append(b, '}')
}

// appendTime writes t as a quoted RFC 3339 UTC time to the second, e.g.
// "2026-11-27T13:00:00Z".
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05Z")
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Go's strconv quoting is not JSON
// (\x.., \U........), so this escapes by the JSON rules: ", \ and control
// characters; invalid UTF-8 becomes U+FFFD and U+2028/U+2029 are escaped,
// as encoding/json does, so that the output is valid UTF-8 and safe in
// JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
