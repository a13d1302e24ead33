package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"

	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nkeys"
)

// The contract's grammars (§2), written out independently of envelope.go as
// the oracle of the fuzz targets.
var (
	targetRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	idRe       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	usernameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{5,31}$`)
	cursorRe   = regexp.MustCompile(`^\P{Cc}{1,128}$`) // the list cursor: no control character
)

// fuzzReplyKey is a valid curve public key for seeds.
const fuzzReplyKey = "XCRJS2YJ4KFMIJ72YM37BOTRF2Q4ZVJWT6XOYRZWHDTYFOWZU2ASUXF6"

// maxMessage bounds an error message, whatever the input: messages are
// published in results and logged.
const maxMessage = 1024

// checkMessage fails unless msg is short printable ASCII: whatever a
// hostile job holds is quoted, so it can inject no line break, terminal
// escape or lookalike letter into results and logs.
func checkMessage(t *testing.T, msg string) {
	t.Helper()
	if msg == "" {
		t.Fatal("empty error message")
	}
	if len(msg) > maxMessage {
		t.Fatalf("error message of %d bytes", len(msg))
	}
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e {
			t.Fatalf("error message %q holds byte %#x at %d", msg, c, i)
		}
	}
}

// isReserved is the contract's reserved-name rule for names that already
// match the username grammar (lowercase).
func isReserved(name string) bool {
	switch name {
	case "root", "public", "debian_sys_maint", "healthcheck":
		return true
	}
	return strings.HasPrefix(name, "mysql") || strings.HasPrefix(name, "mariadb")
}

// FuzzParseContract holds every job Parse accepts to the contract's
// grammars, checked by independent regular expressions and encoding/json,
// and every refusal to a contract code and a clean message that never
// echoes the sealed password.
func FuzzParseContract(f *testing.F) {
	for _, s := range []struct{ subject, header, body string }{
		{"dbusers.jobs.app.user.create", "job-1", `{"id":"job-1","username":"app_user","read_only":true,"reply_key":"` + fuzzReplyKey + `"}`},
		{"dbusers.jobs.app.user.reset_password", "", `{"id":"j","username":"app_user","reply_key":"` + fuzzReplyKey + `","password":"c2VhbGVk"}`},
		{"dbusers.jobs.app.user.delete", "", `{"id":"j","username":"root"}`},
		{"dbusers.jobs.app.user.list", "", `{"id":"j","after":"a.b$c","limit":5000}`},
		{"dbusers.jobs.APP.user.list", "", `{"id":"j"}`},
		{"dbusers.jobs.app.user.create", "", `{"id":"j","username":"app_user","readonly":true,"reply_key":"` + fuzzReplyKey + `"}`},
	} {
		f.Add(s.subject, s.header, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, subject, header string, body []byte) {
		j, perr := Parse("dbusers", subject, header, body)
		if perr != nil {
			switch perr.Code {
			case wire.CodeInvalidJob, wire.CodeInvalidUsername, wire.CodeInvalidPassword:
			default:
				t.Fatalf("Parse decided %s from the job alone", perr.Code)
			}
			checkMessage(t, perr.Message)
			var m map[string]any
			if json.Unmarshal(body, &m) == nil {
				// A sealed password that appears once in the input must
				// not appear in the message.
				if pw, ok := m["password"].(string); ok && len(pw) >= 12 && bytes.Count(body, []byte(pw)) == 1 &&
					!strings.Contains(subject, pw) && !strings.Contains(header, pw) && strings.Contains(perr.Message, pw) {
					t.Fatalf("message %q echoes the password field", perr.Message)
				}
			}
			return
		}
		if subject != "dbusers.jobs."+j.Target+"."+string(j.Op) || !targetRe.MatchString(j.Target) {
			t.Fatalf("accepted subject %q as target %q op %q", subject, j.Target, j.Op)
		}
		if !idRe.MatchString(j.ID) || header != "" && header != j.ID {
			t.Fatalf("accepted id %q with header %q", j.ID, header)
		}
		// encoding/json, strictly, reads the same job from the body.
		var want struct {
			ID       *string `json:"id"`
			Username *string `json:"username"`
			ReadOnly *bool   `json:"read_only"`
			ReplyKey *string `json:"reply_key"`
			Password *string `json:"password"`
			After    *string `json:"after"`
			Limit    *int    `json:"limit"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&want); err != nil || dec.More() {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		str := func(p *string) string {
			if p == nil {
				return ""
			}
			return *p
		}
		if str(want.ID) != j.ID || str(want.Username) != j.Username || str(want.ReplyKey) != j.ReplyKey ||
			str(want.Password) != j.SealedPassword.Reveal() || str(want.After) != j.After || (want.ReadOnly != nil && *want.ReadOnly) != j.ReadOnly {
			t.Fatalf("parsed %+v, encoding/json reads %s", j, body)
		}
		switch j.Op {
		case wire.OpList:
			if want.Username != nil || want.ReplyKey != nil || want.Password != nil || want.ReadOnly != nil {
				t.Fatalf("list accepted fields of other ops: %s", body)
			}
			if j.After != "" && !cursorRe.MatchString(j.After) {
				t.Fatalf("accepted cursor %q", j.After)
			}
			if wantLimit := wire.DefaultLimit; want.Limit != nil && *want.Limit != j.Limit || want.Limit == nil && j.Limit != wantLimit {
				t.Fatalf("limit %d from %s", j.Limit, body)
			}
			if j.Limit < 1 || j.Limit > wire.MaxLimit {
				t.Fatalf("accepted limit %d", j.Limit)
			}
		default:
			if !usernameRe.MatchString(j.Username) || isReserved(j.Username) {
				t.Fatalf("accepted username %q", j.Username)
			}
			if want.After != nil || want.Limit != nil {
				t.Fatalf("%s accepted list fields: %s", j.Op, body)
			}
		}
		switch j.Op {
		case wire.OpCreate, wire.OpResetPassword:
			if !nkeys.IsValidPublicCurveKey(j.ReplyKey) {
				t.Fatalf("accepted reply_key %q", j.ReplyKey)
			}
			if want.Password != nil && j.SealedPassword.IsZero() {
				t.Fatal("accepted an empty password as generate")
			}
			if j.Op == wire.OpResetPassword && want.ReadOnly != nil {
				t.Fatalf("reset accepted read_only: %s", body)
			}
		case wire.OpDelete:
			if want.ReplyKey != nil || want.Password != nil || want.ReadOnly != nil {
				t.Fatalf("delete accepted fields of other ops: %s", body)
			}
		}
	})
}

// FuzzListCursor holds the list cursor ("after") to its rule: a list job
// is accepted exactly when the cursor, as JSON decodes it, is empty or 1 to
// 128 characters with no control character, and then the job carries that
// cursor unchanged (quotes and backslashes included: any username a page
// can end on). escape writes every character of the cursor as a \u
// escape.
func FuzzListCursor(f *testing.F) {
	for _, s := range []struct {
		after  string
		escape bool
	}{
		{"app_user", false},
		{"", false},
		{"legacy.account$1-x", false},
		{strings.Repeat("a", 128), false},
		{strings.Repeat("a", 129), false},
		{"a' OR '1'='1", false},
		{`a\`, false},
		{"a%", false},
		{"app_user", true},
		{"\u00e9", false},
		{"o'brien \\x", false},
		{"tab\there", false},
		{strings.Repeat("\u00e9", 128), false},
		{strings.Repeat("\u00e9", 129), true},
	} {
		f.Add(s.after, s.escape)
	}
	f.Fuzz(func(t *testing.T, after string, escape bool) {
		var b strings.Builder
		b.WriteString(`{"id":"job-1","after":"`)
		if escape {
			for _, r := range after {
				if r1, r2 := utf16.EncodeRune(r); r1 != unicode.ReplacementChar {
					fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
				} else {
					fmt.Fprintf(&b, `\u%04x`, r)
				}
			}
		} else {
			enc, _ := json.Marshal(after)
			b.Write(enc[1 : len(enc)-1])
		}
		b.WriteString(`"}`)
		body := []byte(b.String())
		var decoded struct{ After string }
		if err := json.Unmarshal(body, &decoded); err != nil {
			t.Fatalf("the test built a body encoding/json refuses: %v", err)
		}
		j, perr := Parse("dbusers", "dbusers.jobs.app.user.list", "", body)
		valid := decoded.After == "" || cursorRe.MatchString(decoded.After)
		if perr != nil {
			if valid {
				t.Fatalf("cursor %q refused: %v", decoded.After, perr)
			}
			if perr.Code != wire.CodeInvalidJob {
				t.Fatalf("cursor %q: code %s, want invalid_job", decoded.After, perr.Code)
			}
			checkMessage(t, perr.Message)
			return
		}
		if !valid {
			t.Fatalf("cursor %q accepted", decoded.After)
		}
		if j.After != decoded.After {
			t.Fatalf("cursor %q parsed as %q", decoded.After, j.After)
		}
	})
}
