package jobs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nkeys"
)

// keys holds real keys for bodies: a curve public key that must pass, and
// keys of other kinds that must not.
type keys struct {
	curve     string // X…, valid reply_key
	curveSeed string // SX…, a seed, not a public key
	user      string // U…, a public key of the wrong kind
}

func testKeys(t testing.TB) keys {
	t.Helper()
	ck, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ck.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := ck.Seed()
	if err != nil {
		t.Fatal(err)
	}
	uk, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, err := uk.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return keys{curve: pub, curveSeed: string(seed), user: upub}
}

// jsonString encodes s as a JSON string for building bodies.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

const (
	subjCreate = "dbusers.jobs.app.user.create"
	subjReset  = "dbusers.jobs.app.user.reset_password"
	subjDelete = "dbusers.jobs.app.user.delete"
	subjList   = "dbusers.jobs.app.user.list"
)

func TestParseInvalidJob(t *testing.T) {
	k := testKeys(t)
	create := func(extra string) string {
		return `{"id":"job-1","username":"app_user","reply_key":"` + k.curve + `"` + extra + `}`
	}
	tests := []struct {
		name    string
		subject string
		header  string
		body    string
		want    string // part of the message
	}{
		{"other prefix", "other.jobs.app.user.create", "", create(""), "is not under"},
		{"no jobs token", "dbusers.job.app.user.create", "", create(""), "is not under"},
		{"prefix only as substring", "dbusersx.jobs.app.user.create", "", create(""), "is not under"},
		{"uppercase target", "dbusers.jobs.App.user.create", "", create(""), "target token \"App\""},
		{"target leading dash", "dbusers.jobs.-app.user.create", "", create(""), "target token"},
		{"target leading underscore", "dbusers.jobs._app.user.create", "", create(""), "target token"},
		{"target 64 chars", "dbusers.jobs." + strings.Repeat("a", 64) + ".user.create", "", create(""), "target token"},
		{"empty target", "dbusers.jobs..user.create", "", create(""), "target token"},
		{"unknown op", "dbusers.jobs.app.user.rename", "", create(""), `unknown op "user.rename"`},
		{"no op", "dbusers.jobs.app", "", create(""), "names no op"},
		{"not user op", "dbusers.jobs.app.group.create", "", create(""), `unknown op "group.create"`},
		{"extra token", "dbusers.jobs.app.user.create.now", "", create(""), "unknown op"},
		{"body not JSON", subjCreate, "", "hello", "not JSON"},
		{"empty body", subjCreate, "", "", "not JSON"},
		{"truncated body", subjCreate, "", `{"id":"job-1",`, "not JSON"},
		{"array body", subjCreate, "", `[{"id":"job-1"}]`, "not a JSON object"},
		{"string body", subjCreate, "", `"job-1"`, "not a JSON object"},
		{"something after the object", subjCreate, "", create("") + ` {}`, "not JSON"},
		{"invalid UTF-8", subjCreate, "", "{\"id\":\"job-1\",\"username\":\"app_us\xffer\"}", "UTF-8"},
		{"unknown field", subjCreate, "", create(`,"readonly":true`), `unknown field "readonly"`},
		{"unknown field ID", subjCreate, "", create(`,"ID":"x"`), `unknown field "ID"`},
		{"read_only as string", subjCreate, "", create(`,"read_only":"true"`), `"read_only" must be a boolean, not a string`},
		{"read_only null", subjCreate, "", create(`,"read_only":null`), `"read_only" must be a boolean, not null`},
		{"read_only number", subjCreate, "", create(`,"read_only":1`), `"read_only" must be a boolean`},
		{"duplicate read_only", subjCreate, "", create(`,"read_only":false,"read_only":true`), `duplicate field "read_only"`},
		{"duplicate id via escape", subjCreate, "", create(`,"\u0069d":"job-1"`), `duplicate field "id"`},
		{"id number", subjDelete, "", `{"id":42,"username":"app_user"}`, `"id" must be a string, not a number`},
		{"id null", subjDelete, "", `{"id":null,"username":"app_user"}`, `"id" must be a string, not null`},
		{"id missing", subjDelete, "", `{"username":"app_user"}`, `missing field "id"`},
		{"id empty", subjDelete, "", `{"id":"","username":"app_user"}`, "id \"\" does not match"},
		{"id with space", subjDelete, "", `{"id":"job 1","username":"app_user"}`, `id "job 1" does not match`},
		{"id with dot", subjDelete, "", `{"id":"job.1","username":"app_user"}`, "does not match"},
		{"id 65 chars", subjDelete, "", `{"id":"` + strings.Repeat("a", 65) + `","username":"app_user"}`, "does not match"},
		{"id differs from header", subjDelete, "job-2", `{"id":"job-1","username":"app_user"}`, "differs from the Nats-Msg-Id header"},
		{"username object", subjDelete, "", `{"id":"job-1","username":{"name":"app_user"}}`, `"username" must be a string, not an object`},
		{"username array", subjDelete, "", `{"id":"job-1","username":["app_user"]}`, `"username" must be a string, not an array`},
		{"read_only on delete", subjDelete, "", `{"id":"job-1","username":"app_user","read_only":true}`, `field "read_only" is not used by user.delete`},
		{"password on delete", subjDelete, "", `{"id":"job-1","username":"app_user","password":"c2VhbGVk"}`, `field "password" is not used by user.delete`},
		{"reply_key on delete", subjDelete, "", `{"id":"job-1","username":"app_user","reply_key":"` + k.curve + `"}`, `field "reply_key" is not used by user.delete`},
		{"read_only on reset", subjReset, "", create(`,"read_only":true`), `field "read_only" is not used by user.reset_password`},
		{"after on create", subjCreate, "", create(`,"after":"abc"`), `field "after" is not used by user.create`},
		{"limit on create", subjCreate, "", create(`,"limit":10`), `field "limit" is not used by user.create`},
		{"username on list", subjList, "", `{"id":"job-1","username":"app_user"}`, `field "username" is not used by user.list`},
		{"reply_key missing", subjCreate, "", `{"id":"job-1","username":"app_user"}`, `missing field "reply_key"`},
		{"reply_key missing on reset", subjReset, "", `{"id":"job-1","username":"app_user"}`, `missing field "reply_key"`},
		{"reply_key user key", subjCreate, "", `{"id":"job-1","username":"app_user","reply_key":"` + k.user + `"}`, "not a curve public key"},
		{"reply_key curve seed", subjCreate, "", `{"id":"job-1","username":"app_user","reply_key":"` + k.curveSeed + `"}`, "not a curve public key"},
		{"reply_key garbage", subjCreate, "", `{"id":"job-1","username":"app_user","reply_key":"Xabc"}`, "not a curve public key"},
		{"reply_key empty", subjCreate, "", `{"id":"job-1","username":"app_user","reply_key":""}`, "not a curve public key"},
		{"reply_key number", subjCreate, "", `{"id":"job-1","username":"app_user","reply_key":7}`, `"reply_key" must be a string`},
		{"password number", subjCreate, "", create(`,"password":123`), `"password" must be a string, not a number`},
		{"password null", subjCreate, "", create(`,"password":null`), `"password" must be a string, not null`},
		{"limit fraction", subjList, "", `{"id":"job-1","limit":1.5}`, `"limit" must be an integer`},
		{"limit 1.0", subjList, "", `{"id":"job-1","limit":1.0}`, `"limit" must be an integer`},
		{"limit exponent", subjList, "", `{"id":"job-1","limit":1e3}`, `"limit" must be an integer`},
		{"limit string", subjList, "", `{"id":"job-1","limit":"10"}`, `"limit" must be an integer, not a string`},
		{"limit null", subjList, "", `{"id":"job-1","limit":null}`, `"limit" must be an integer, not null`},
		{"limit zero", subjList, "", `{"id":"job-1","limit":0}`, "outside 1..5000"},
		{"limit negative", subjList, "", `{"id":"job-1","limit":-1}`, "outside 1..5000"},
		{"limit 5001", subjList, "", `{"id":"job-1","limit":5001}`, "outside 1..5000"},
		{"limit huge", subjList, "", `{"id":"job-1","limit":99999999999999999999999}`, "outside 1..5000"},
		{"after number", subjList, "", `{"id":"job-1","after":5}`, `"after" must be a string`},
		{"after with newline", subjList, "", `{"id":"job-1","after":"a\nb"}`, `after "a\nb" is not a username cursor`},
		{"after with NUL", subjList, "", `{"id":"job-1","after":"a\u0000"}`, "is not a username cursor"},
		{"after with C1 control", subjList, "", `{"id":"job-1","after":"a\u0085"}`, "is not a username cursor"},
		{"after too long", subjList, "", `{"id":"job-1","after":"` + strings.Repeat("a", 129) + `"}`, "is not a username cursor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("dbusers", tt.subject, tt.header, []byte(tt.body))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if err.Code != wire.CodeInvalidJob {
				t.Fatalf("code %s, want invalid_job (%s)", err.Code, err.Message)
			}
			if !strings.Contains(err.Message, tt.want) {
				t.Fatalf("message %q does not contain %q", err.Message, tt.want)
			}
		})
	}
}

func TestParseFillsTargetAndOp(t *testing.T) {
	tests := []struct {
		name       string
		subject    string
		body       string
		wantTarget string
		wantOp     wire.Op
	}{
		{"bad target", "dbusers.jobs.A.user.create", `{}`, "", ""},
		{"bad prefix", "x.jobs.app.user.create", `{}`, "", ""},
		{"unknown op", "dbusers.jobs.app.user.rename", `{}`, "app", ""},
		{"bad body", "dbusers.jobs.app.user.delete", `nope`, "app", wire.OpDelete},
		{"bad username", "dbusers.jobs.app.user.delete", `{"id":"j","username":"root"}`, "app", wire.OpDelete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Parse("dbusers", tt.subject, "", []byte(tt.body))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			want := Job{Target: tt.wantTarget, Op: tt.wantOp}
			if j != want {
				t.Fatalf("job %+v, want %+v", j, want)
			}
		})
	}
}

func TestParsePrecedence(t *testing.T) {
	k := testKeys(t)
	tests := []struct {
		name     string
		subject  string
		header   string
		body     string
		wantCode wire.Code
	}{
		{"unknown field beats bad username", subjCreate, "", `{"id":"j1","username":"root","reply_key":"` + k.curve + `","x":1}`, wire.CodeInvalidJob},
		{"missing reply_key beats bad username", subjCreate, "", `{"id":"j1","username":"root"}`, wire.CodeInvalidJob},
		{"bad reply_key beats bad username", subjCreate, "", `{"id":"j1","username":"root","reply_key":"X"}`, wire.CodeInvalidJob},
		{"header mismatch beats bad username", subjDelete, "j2", `{"id":"j1","username":"a b"}`, wire.CodeInvalidJob},
		{"bad id beats bad username", subjDelete, "", `{"id":"j 1","username":"root"}`, wire.CodeInvalidJob},
		{"bad op beats everything", "dbusers.jobs.app.user.drop", "", `{"username":"root","password":""}`, wire.CodeInvalidJob},
		{"bad username beats empty password", subjCreate, "", `{"id":"j1","username":"root","reply_key":"` + k.curve + `","password":""}`, wire.CodeInvalidUsername},
		{"missing username", subjDelete, "", `{"id":"j1"}`, wire.CodeInvalidUsername},
		{"missing reply_key beats missing username", subjCreate, "", `{"id":"j1"}`, wire.CodeInvalidJob},
		{"empty password", subjReset, "", `{"id":"j1","username":"app_user","reply_key":"` + k.curve + `","password":""}`, wire.CodeInvalidPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("dbusers", tt.subject, tt.header, []byte(tt.body))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if err.Code != tt.wantCode {
				t.Fatalf("code %s (%s), want %s", err.Code, err.Message, tt.wantCode)
			}
		})
	}
}

func TestParseValid(t *testing.T) {
	k := testKeys(t)
	tests := []struct {
		name    string
		subject string
		header  string
		body    string
		want    Job
	}{
		{
			name:    "create minimal",
			subject: subjCreate,
			body:    `{"id":"job-1","username":"app_user","reply_key":"` + k.curve + `"}`,
			want:    Job{ID: "job-1", Target: "app", Op: wire.OpCreate, Username: "app_user", ReplyKey: k.curve},
		},
		{
			name:    "create read-only with password and header",
			subject: "dbusers.jobs.my-app_2.user.create",
			header:  "Job_42",
			body:    " {\n\t\"password\" : \"c2VhbGVk\", \"read_only\": true,\"reply_key\":\"" + k.curve + "\",\"username\":\"app_user\",\"id\":\"Job_42\"}\r\n",
			want:    Job{ID: "Job_42", Target: "my-app_2", Op: wire.OpCreate, Username: "app_user", ReadOnly: true, ReplyKey: k.curve, SealedPassword: secret.New("c2VhbGVk")},
		},
		{
			name:    "create read_only false",
			subject: subjCreate,
			body:    `{"id":"job-1","username":"app_user","read_only":false,"reply_key":"` + k.curve + `"}`,
			want:    Job{ID: "job-1", Target: "app", Op: wire.OpCreate, Username: "app_user", ReplyKey: k.curve},
		},
		{
			name:    "reset_password",
			subject: subjReset,
			body:    `{"id":"job-2","username":"app_user","reply_key":"` + k.curve + `"}`,
			want:    Job{ID: "job-2", Target: "app", Op: wire.OpResetPassword, Username: "app_user", ReplyKey: k.curve},
		},
		{
			name:    "reset_password with escaped strings",
			subject: subjReset,
			body:    `{"id":"\u006aob-2","username":"app\u005fuser","reply_key":"` + k.curve + `","password":"YWJj\/ZA=="}`,
			want:    Job{ID: "job-2", Target: "app", Op: wire.OpResetPassword, Username: "app_user", ReplyKey: k.curve, SealedPassword: secret.New("YWJj/ZA==")},
		},
		{
			name:    "delete",
			subject: subjDelete,
			body:    `{"id":"job-3","username":"app_user"}`,
			want:    Job{ID: "job-3", Target: "app", Op: wire.OpDelete, Username: "app_user"},
		},
		{
			name:    "list defaults",
			subject: subjList,
			body:    `{"id":"job-4"}`,
			want:    Job{ID: "job-4", Target: "app", Op: wire.OpList, Limit: wire.DefaultLimit},
		},
		{
			name:    "list empty after",
			subject: subjList,
			body:    `{"id":"job-4","after":""}`,
			want:    Job{ID: "job-4", Target: "app", Op: wire.OpList, Limit: wire.DefaultLimit},
		},
		{
			name:    "list page",
			subject: "dbusers.jobs.0app.user.list",
			body:    `{"id":"job-5","after":"app_user","limit":5000}`,
			want:    Job{ID: "job-5", Target: "0app", Op: wire.OpList, After: "app_user", Limit: wire.MaxLimit},
		},
		{
			name:    "list limit 1 and foreign cursor",
			subject: subjList,
			body:    `{"limit":1,"after":"Old.App-Reader$1","id":"job-6"}`,
			want:    Job{ID: "job-6", Target: "app", Op: wire.OpList, After: "Old.App-Reader$1", Limit: 1},
		},
		{
			// A page may end on any name MySQL allows.
			name:    "list cursor with quote, space, backslash and percent",
			subject: subjList,
			body:    `{"id":"job-7","after":"o'brien \\x%"}`,
			want:    Job{ID: "job-7", Target: "app", Op: wire.OpList, After: `o'brien \x%`, Limit: wire.DefaultLimit},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("dbusers", tt.subject, tt.header, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseOtherPrefix(t *testing.T) {
	j, err := Parse("acme.db", "acme.db.jobs.app.user.delete", "", []byte(`{"id":"j1","username":"app_user"}`))
	if err != nil {
		t.Fatal(err)
	}
	if j.Target != "app" || j.Op != wire.OpDelete {
		t.Fatalf("job %+v", j)
	}
}

// TestParseNeverEchoesPassword: whatever is wrong, a password value sent in
// any field position does not reach the message.
func TestParseNeverEchoesPassword(t *testing.T) {
	const secret = "S3cretPassw0rdValue_abcdefgh"
	k := testKeys(t)
	tests := []struct {
		name    string
		subject string
		body    string
	}{
		{"password on delete", subjDelete, `{"id":"j1","username":"app_user","password":"` + secret + `"}`},
		{"unknown field value", subjDelete, `{"id":"j1","username":"app_user","passwd":"` + secret + `"}`},
		{"duplicate password", subjCreate, `{"id":"j1","username":"app_user","reply_key":"` + k.curve + `","password":"` + secret + `","password":"` + secret + `"}`},
		{"mistyped read_only", subjCreate, `{"id":"j1","username":"app_user","reply_key":"` + k.curve + `","password":"` + secret + `","read_only":"` + secret + `"}`},
		{"bad username", subjCreate, `{"id":"j1","username":"root","reply_key":"` + k.curve + `","password":"` + secret + `"}`},
		{"missing reply_key", subjReset, `{"id":"j1","username":"app_user","password":"` + secret + `"}`},
		{"bad op", "dbusers.jobs.app.user.x", `{"password":"` + secret + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("dbusers", tt.subject, "", []byte(tt.body))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("message %q echoes the password", err.Error())
			}
		})
	}
}

func TestResultID(t *testing.T) {
	tests := []struct {
		name   string
		header string
		body   string
		seq    uint64
		want   string
	}{
		{"valid header", "hdr-1", `{"id":"body-1"}`, 7, "hdr-1"},
		{"valid header, non-JSON body", "hdr-1", "\x00\xff", 7, "hdr-1"},
		{"invalid header, valid body id", "bad header", `{"id":"body-1"}`, 7, "body-1"},
		{"no header, valid body id", "", `{"username":"x","id":"body-1"}`, 7, "body-1"},
		{"no header, body id with escape", "", `{"id":"b\u006fdy-1"}`, 7, "body-1"},
		{"no header, body otherwise invalid", "", `{"id":"body-1","bogus":[1,{"a":"}"}]}`, 7, "body-1"},
		{"both invalid", "bad header", `{"id":"bad id"}`, 7, "seq-7"},
		{"header too long", strings.Repeat("h", 65), `{"id":"x y"}`, 8, "seq-8"},
		{"non-JSON body", "", "not json at all", 9, "seq-9"},
		{"empty body", "", "", 10, "seq-10"},
		{"truncated body", "", `{"id":"body-1"`, 11, "seq-11"},
		{"id not a string", "", `{"id":12}`, 12, "seq-12"},
		{"id null", "", `{"id":null}`, 13, "seq-13"},
		{"body is an array", "", `["body-1"]`, 14, "seq-14"},
		{"nested id only", "", `{"x":{"id":"body-1"}}`, 15, "seq-15"},
		{"ID is not id", "", `{"ID":"body-1"}`, 16, "seq-16"},
		{"conflicting ids", "", `{"id":"a1","id":"b2"}`, 17, "seq-17"},
		{"repeated equal ids", "", `{"id":"a1","id":"a1"}`, 18, "a1"},
		{"large seq", "", "", 1<<64 - 1, "seq-18446744073709551615"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResultID(tt.header, []byte(tt.body), tt.seq); got != tt.want {
				t.Fatalf("ResultID = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	base := strings.Repeat("a", 23)
	tests := []struct {
		name string
		pw   string
		want string // part of the message; "" for a valid password
	}{
		{"23 characters", base, "23 characters"},
		{"24 characters", base + "b", ""},
		{"64 characters", strings.Repeat("x", 64), ""},
		{"65 characters", strings.Repeat("x", 65), "65 characters"},
		{"empty", "", "0 characters"},
		{"one character", "x", "password has 1 character; 24 to 64"},
		{"all allowed punctuation", `!#$%&()*+,-./:;<=>?@[\]^_{|}~` + "`" + "Aa0", ""},
		{"backslash", `abcdefghijklmnopqrstuvw\`, ""},
		{"space", "abcdefghijkl mnopqrstuvwx", "position 13"},
		{"single quote", "abcdefghijklmnopqrstuvw'", "position 24"},
		{"double quote", `"abcdefghijklmnopqrstuvw`, "position 1"},
		{"non-ASCII", "abcdefghijklmnopqrstuvwé", "position 24"},
		{"control char", "abcdefghijklmnopqrstuv\x01w", "position 23"},
		{"DEL", "abcdefghijklmnopqrstuvw\x7f", "position 24"},
		{"newline", "abcdefghijklmnopqrstuvw\n", "position 24"},
		{"invalid UTF-8", "abcdefghijklmnopqrstuvw\xff", "position 24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wire.CheckPassword(tt.pw)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Code != wire.CodeInvalidPassword {
				t.Fatalf("CheckPassword = %v, want invalid_password", err)
			}
			if !strings.Contains(err.Message, tt.want) {
				t.Fatalf("message %q does not contain %q", err.Message, tt.want)
			}
			if len(tt.pw) > 0 && strings.Contains(err.Message, tt.pw) {
				t.Fatalf("message %q echoes the password", err.Message)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	err := wire.Errorf(wire.CodeUserNotFound, "no account %q", "app_user")
	if err.Code != wire.CodeUserNotFound || err.Message != `no account "app_user".` {
		t.Fatalf("%+v", err)
	}
	if got := err.Error(); got != `user_not_found: no account "app_user".` {
		t.Fatalf("Error() = %q", got)
	}
}

// FuzzParse checks that no input panics, that ResultID always yields a
// publishable token, and that an accepted body says what encoding/json reads.
func FuzzParse(f *testing.F) {
	k := testKeys(f)
	f.Add(subjCreate, "", []byte(`{"id":"job-1","username":"app_user","reply_key":"`+k.curve+`"}`))
	f.Add(subjList, "j", []byte(`{"id":"j","after":"a","limit":10}`))
	f.Add(subjDelete, "", []byte(`{"id":"j","username":"app_user","x":[{"}":"]"}]}`))
	f.Add(subjDelete, "", []byte(`{"id":"j\"","username":"app_user"}`))
	f.Add(subjDelete, "", []byte(`{`))
	f.Fuzz(func(t *testing.T, subject, header string, body []byte) {
		j, err := Parse("dbusers", subject, header, body)
		id := ResultID(header, body, 1)
		if !validID(id) && id != "seq-1" {
			t.Fatalf("ResultID = %q", id)
		}
		if err != nil {
			if err.Message == "" {
				t.Fatal("empty message")
			}
			return
		}
		if id != j.ID {
			t.Fatalf("ResultID %q, job id %q", id, j.ID)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		for key, got := range map[string]string{"id": j.ID, "username": j.Username, "password": j.SealedPassword.Reveal(), "after": j.After} {
			if v, ok := m[key]; ok && fmt.Sprint(v) != got {
				t.Fatalf("%s: parsed %q, encoding/json %q", key, got, v)
			}
		}
	})
}

func BenchmarkParse(b *testing.B) {
	k := testKeys(b)
	body := []byte(`{"id":"0f8fad5b-d9cb-469f-a165-70867728950e","username":"app_user_0042","reply_key":"` + k.curve +
		`","password":"` + strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 4) + `"}`)
	const subject = "dbusers.jobs.my-app.user.reset_password"
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := Parse("dbusers", subject, "0f8fad5b-d9cb-469f-a165-70867728950e", body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCharacterCounts: a length in a message is counted in words, one
// character or several.
func TestCharacterCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *wire.Error
		want string
	}{
		{wire.CheckPassword("x"), "password has 1 character; 24 to 64 are allowed."},
		{wire.CheckPassword("xy"), "password has 2 characters; 24 to 64 are allowed."},
		{wire.CheckUsername("a"), `username "a" has 1 character; 6 to 32 are allowed.`},
		{wire.CheckUsername("abc"), `username "abc" has 3 characters; 6 to 32 are allowed.`},
	}
	for _, tt := range tests {
		if tt.err == nil || tt.err.Message != tt.want {
			t.Errorf("message %v, want %q", tt.err, tt.want)
		}
	}
}
