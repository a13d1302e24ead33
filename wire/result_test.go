package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestResultJSON(t *testing.T) {
	done := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	expires := time.Date(2026, 11, 27, 13, 5, 0, 0, time.UTC)
	tests := []struct {
		name      string
		r         Result
		want      string // expected JSON; compared as parsed values
		roundTrip bool   // UnmarshalJSON gives r back
	}{
		{
			name: "create with generated password (contract example)",
			r: Result{
				ID: "job-42", Target: "my-app", Op: OpCreate, Status: StatusOK,
				User:     &Account{Username: "my_user"},
				Secret:   &Secret{Bucket: "DBUSERS_VAULT", Key: "my-app.job-42", ExpiresAt: expires},
				Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"job-42","target":"my-app","op":"user.create","status":"ok",
				"user":{"username":"my_user","read_only":false,"protected":false},
				"secret":{"bucket":"DBUSERS_VAULT","key":"my-app.job-42","expires_at":"2026-11-27T13:05:00Z"},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "create read-only with chosen password",
			r: Result{
				ID: "j1", Target: "app", Op: OpCreate, Status: StatusOK,
				User: &Account{Username: "ro_user", ReadOnly: true}, Attempts: 2, CompletedAt: done,
			},
			want: `{"id":"j1","target":"app","op":"user.create","status":"ok",
				"user":{"username":"ro_user","read_only":true,"protected":false},
				"attempts":2,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "reset keeping the old password",
			r: Result{
				ID: "j9", Target: "app", Op: OpResetPassword, Status: StatusOK,
				User:     &Account{Username: "app_user", OldPasswordUntil: &expires},
				Secret:   &Secret{Bucket: "DBUSERS_VAULT", Key: "app.j9", ExpiresAt: expires},
				Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"j9","target":"app","op":"user.reset_password","status":"ok",
				"user":{"username":"app_user","read_only":false,"protected":false,"old_password_until":"2026-11-27T13:05:00Z"},
				"secret":{"bucket":"DBUSERS_VAULT","key":"app.j9","expires_at":"2026-11-27T13:05:00Z"},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "delete",
			r: Result{
				ID: "j2", Target: "app", Op: OpDelete, Status: StatusOK,
				User: &Account{Username: "app_user"}, Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"j2","target":"app","op":"user.delete","status":"ok",
				"user":{"username":"app_user","read_only":false,"protected":false},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "error",
			r: Result{
				ID: "j3", Target: "app", Op: OpResetPassword, Status: StatusError,
				Error:    Errorf(CodeProtectedUser, "user %q is protected", "my_app_4553"),
				Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"j3","target":"app","op":"user.reset_password","status":"error",
				"error":{"code":"protected_user","message":"user \"my_app_4553\" is protected."},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "error with unusable subject",
			r: Result{
				ID: "seq-9", Status: StatusError,
				Error:    Errorf(CodeInvalidJob, "target token %s is outside the grammar", Quote("A\n")),
				Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"seq-9","target":"","op":"","status":"error",
				"error":{"code":"invalid_job","message":"target token \"A\\n\" is outside the grammar."},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "error with empty message",
			r: Result{
				ID: "j4", Target: "app", Op: OpDelete, Status: StatusError,
				Error: &Error{Code: CodeInternal}, Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"j4","target":"app","op":"user.delete","status":"error",
				"error":{"code":"internal","message":"internal"},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
		},
		{
			name: "list page",
			r: Result{
				ID: "j5", Target: "app", Op: OpList, Status: StatusOK,
				Users: []Account{
					{Username: "app_user", ReadOnly: false, Protected: false},
					{Username: "my_app_4553", Protected: true},
					{Username: "reader", ReadOnly: true},
				},
				Next: "reader", Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"j5","target":"app","op":"user.list","status":"ok",
				"users":[{"username":"app_user","read_only":false,"protected":false},
					{"username":"my_app_4553","read_only":false,"protected":true},
					{"username":"reader","read_only":true,"protected":false}],
				"next":"reader","attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "empty list",
			r:    Result{ID: "j6", Target: "app", Op: OpList, Status: StatusOK, Attempts: 1, CompletedAt: done},
			want: `{"id":"j6","target":"app","op":"user.list","status":"ok","users":[],"next":"",
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
		},
		{
			name: "failed list has no users",
			r: Result{
				ID: "j7", Target: "app", Op: OpList, Status: StatusError,
				Error: Errorf(CodeUnavailable, "MySQL unreachable for 5m0s"), Attempts: 3, CompletedAt: done,
			},
			want: `{"id":"j7","target":"app","op":"user.list","status":"error",
				"error":{"code":"unavailable","message":"MySQL unreachable for 5m0s."},
				"attempts":3,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "times in another zone, with fractions",
			r: Result{
				ID: "j8", Target: "app", Op: OpCreate, Status: StatusOK,
				User:        &Account{Username: "app_user"},
				Secret:      &Secret{Bucket: "B", Key: "app.j8", ExpiresAt: expires.Add(987 * time.Millisecond).In(time.FixedZone("X", 3600))},
				CompletedAt: done.Add(999 * time.Millisecond).In(time.FixedZone("Y", -7200)),
			},
			want: `{"id":"j8","target":"app","op":"user.create","status":"ok",
				"user":{"username":"app_user","read_only":false,"protected":false},
				"secret":{"bucket":"B","key":"app.j8","expires_at":"2026-11-27T13:05:00Z"},
				"attempts":0,"completed_at":"2026-11-27T13:00:00Z"}`,
		},
		{
			name: "strings that need escaping",
			r: Result{
				ID: `q"b\s`, Target: "t\x00\x1f\x7f", Op: OpDelete, Status: StatusError,
				Error:    &Error{Code: CodeInternal, Message: "line1\nline2\r\ttab </script> & é 日本 \u2028\u2029 😀"},
				Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"q\"b\\s","target":"t\u0000\u001f` + "\x7f" + `","op":"user.delete","status":"error",
				"error":{"code":"internal","message":"line1\nline2\r\ttab </script> & é 日本 \u2028\u2029 😀"},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
			roundTrip: true,
		},
		{
			name: "invalid UTF-8 becomes U+FFFD",
			r: Result{
				ID: "j9", Target: "app", Op: OpDelete, Status: StatusError,
				Error:    &Error{Code: CodeInternal, Message: "bad \xff\xfe byte"},
				Attempts: 1, CompletedAt: done,
			},
			want: `{"id":"j9","target":"app","op":"user.delete","status":"error",
				"error":{"code":"internal","message":"bad \ufffd\ufffd byte"},
				"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.r.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			var got, want any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatalf("bad want: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %s\nwant %s", out, tt.want)
			}

			// encoding/json on a Result value or pointer goes through the
			// same encoder (HTML escaping off: it is encoding/json's own
			// rewrite of a Marshaler's output).
			for _, v := range []any{tt.r, &tt.r} {
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				if err := enc.Encode(v); err != nil {
					t.Fatal(err)
				}
				viaJSON := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
				if string(viaJSON) != string(out) {
					t.Fatalf("json.Marshal(%T) = %s\nMarshalJSON   = %s", v, viaJSON, out)
				}
			}

			if tt.roundTrip {
				var back Result
				if err := json.Unmarshal(out, &back); err != nil {
					t.Fatal(err)
				}
				want := tt.r
				if want.Op == OpList && want.Status == StatusOK && want.Users == nil {
					want.Users = []Account{}
				}
				if !reflect.DeepEqual(back, want) {
					t.Fatalf("round trip\n got %+v\nwant %+v", back, want)
				}
			}
		})
	}
}

// TestResultJSONExact pins the key order of the contract example, for
// readers of raw results.
func TestResultJSONExact(t *testing.T) {
	r := Result{
		ID: "job-42", Target: "my-app", Op: OpCreate, Status: StatusOK,
		User:     &Account{Username: "my_user"},
		Secret:   &Secret{Bucket: "DBUSERS_VAULT", Key: "my-app.job-42", ExpiresAt: time.Date(2026, 11, 27, 13, 5, 0, 0, time.UTC)},
		Attempts: 1, CompletedAt: time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC),
	}
	want := `{"id":"job-42","target":"my-app","op":"user.create","status":"ok",` +
		`"user":{"username":"my_user","read_only":false,"protected":false},` +
		`"secret":{"bucket":"DBUSERS_VAULT","key":"my-app.job-42","expires_at":"2026-11-27T13:05:00Z"},` +
		`"attempts":1,"completed_at":"2026-11-27T13:00:00Z"}`
	if got := string(r.AppendJSON(nil)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestAppendString(t *testing.T) {
	var all strings.Builder
	for c := 0; c < 0x80; c++ {
		all.WriteByte(byte(c))
	}
	tests := []struct {
		name string
		in   string
		want string // what encoding/json decodes the output to
	}{
		{"empty", "", ""},
		{"plain", "hello", "hello"},
		{"every ASCII byte", all.String(), all.String()},
		{"quotes and backslashes", `"\"\\`, `"\"\\`},
		{"Go escapes are not JSON", `\x41\U0001F600`, `\x41\U0001F600`},
		{"multibyte", "é日本😀", "é日本😀"},
		{"line separators", "a\u2028b\u2029c", "a\u2028b\u2029c"},
		{"invalid UTF-8", "a\xffb\xc3", "a\ufffdb\ufffd"},
		{"surrogate half encoded", "\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := appendString(nil, tt.in)
			var got string
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if got != tt.want {
				t.Fatalf("decoded %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendJSONAllocs(t *testing.T) {
	r := Result{
		ID: "job-42", Target: "my-app", Op: OpList, Status: StatusOK,
		Users:    []Account{{Username: "a_user"}, {Username: "b_user", ReadOnly: true}},
		Attempts: 1, CompletedAt: time.Now(),
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = r.AppendJSON(buf[:0]) }); n != 0 {
		t.Fatalf("AppendJSON allocates %v times", n)
	}
}

func BenchmarkResultAppendJSON(b *testing.B) {
	r := Result{
		ID: "0f8fad5b-d9cb-469f-a165-70867728950e", Target: "my-app", Op: OpResetPassword, Status: StatusOK,
		User:     &Account{Username: "app_user_0042"},
		Secret:   &Secret{Bucket: "DBUSERS_VAULT", Key: "my-app.0f8fad5b-d9cb-469f-a165-70867728950e", ExpiresAt: time.Now()},
		Attempts: 1, CompletedAt: time.Now(),
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}
