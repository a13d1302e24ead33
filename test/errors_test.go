package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/wire"
)

// TestEveryErrorCode drives each contract error code through a real worker
// and checks that nothing changed on the server.
func TestEveryErrorCode(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	// An admin without GRANT OPTION: CREATE USER works, GRANT fails for good.
	weak := mysqltest.NewFixture(t, mysqltest.Options{AdminGrants: []string{
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s",
		"GRANT SELECT ON mysql.* TO %s",
	}})
	// A closed port: MySQL never answers.
	dead := deadTarget(t, "dead")

	e := startWorker(t, []config.Target{target("app", f), target("other", other), target("weak", weak), dead},
		func(c *config.Config) { c.Retry.Budget = 2 * time.Second })

	existing := mysqltest.Username("exists_")
	f.DropUserLater(existing)
	wantOK(t, first(e.create("app", existing, false, "")))
	otherUser := mysqltest.Username("oth_")
	other.DropUserLater(otherUser)
	wantOK(t, first(e.create("other", otherUser, false, "")))

	r := newRequester(t)
	tests := []struct {
		name   string
		target string
		op     string
		fields map[string]any
		want   wire.Code
	}{
		{"typo field readonly", "app", "create", map[string]any{"username": "typo_user1", "readonly": true, "reply_key": r.pub}, wire.CodeInvalidJob},
		{"missing reply_key", "app", "create", map[string]any{"username": "norep_user"}, wire.CodeInvalidJob},
		{"reply_key not a curve key", "app", "reset_password", map[string]any{"username": existing, "reply_key": "UABC"}, wire.CodeInvalidJob},
		{"mistyped read_only", "app", "create", map[string]any{"username": "typed_user", "read_only": "yes", "reply_key": r.pub}, wire.CodeInvalidJob},
		{"limit too large", "app", "list", map[string]any{"limit": 5001}, wire.CodeInvalidJob},
		{"bad username", "app", "create", map[string]any{"username": "Bad-Name", "reply_key": r.pub}, wire.CodeInvalidUsername},
		{"reserved username", "app", "delete", map[string]any{"username": "mysql_backup"}, wire.CodeInvalidUsername},
		{"seal does not open", "app", "create", map[string]any{"username": "seal_user1", "reply_key": r.pub, "password": "bm90IGEgc2VhbA=="}, wire.CodeInvalidPassword},
		{"unknown target", "nowhere", "delete", map[string]any{"username": "some_user"}, wire.CodeUnknownTarget},
		{"user exists", "app", "create", map[string]any{"username": existing, "reply_key": r.pub}, wire.CodeUserExists},
		{"user exists on another target", "app", "create", map[string]any{"username": otherUser, "reply_key": r.pub}, wire.CodeUserExists},
		{"protected user exists", "app", "create", map[string]any{"username": f.Protected, "reply_key": r.pub}, wire.CodeUserExists},
		{"user not found (reset)", "app", "reset_password", map[string]any{"username": "ghost_user", "reply_key": r.pub}, wire.CodeUserNotFound},
		{"user not found (delete)", "app", "delete", map[string]any{"username": "ghost_user"}, wire.CodeUserNotFound},
		{"protected reset", "app", "reset_password", map[string]any{"username": f.Protected, "reply_key": r.pub}, wire.CodeProtectedUser},
		{"protected delete", "app", "delete", map[string]any{"username": f.Protected}, wire.CodeProtectedUser},
		{"another target's account", "app", "delete", map[string]any{"username": otherUser}, wire.CodeForeignUser},
		{"another target's protected user", "app", "reset_password", map[string]any{"username": other.Protected, "reply_key": r.pub}, wire.CodeForeignUser},
		{"the worker's own admin", "app", "delete", map[string]any{"username": f.Admin}, wire.CodeForeignUser},
		{"unavailable", "dead", "delete", map[string]any{"username": "some_user"}, wire.CodeUnavailable},
		{"internal: grant refused", "weak", "create", map[string]any{"username": "weak_user1", "reply_key": r.pub}, wire.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.job(tt.target, tt.op, tt.fields)
			wantCode(t, res, tt.want)
			if res.Target != tt.target || res.Op != wire.Op("user."+tt.op) || res.User != nil || res.Secret != nil || res.Attempts < 1 {
				t.Errorf("error result fields: %+v", res)
			}
		})
	}

	// Nothing changed: the accounts that were there are there with their
	// grants, the ones refused were not made.
	for _, u := range []string{existing, f.Protected, f.Admin} {
		if !f.AccountExists(u) {
			t.Errorf("%s disappeared", u)
		}
	}
	if !other.AccountExists(otherUser) || !other.AccountExists(other.Protected) {
		t.Error("another target's account disappeared")
	}
	for _, u := range []string{"typo_user1", "typed_user", "seal_user1", "weak_user1"} {
		if f.AccountExists(u) {
			f.DropUserLater(u)
			t.Errorf("refused job left account %s", u)
		}
	}
}

func first(r wire.Result, _ string) wire.Result { return r }

// TestChosenPasswordErrors: the seal is checked against the job id and the
// opened password against the rule; the message never shows the password.
func TestChosenPasswordErrors(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	tests := []struct {
		name, password, sealID string
	}{
		{"too short", "short-" + mysqltest.Token(6), ""},
		{"too long", strings.Repeat("L", 65), ""},
		{"single quote", "quote'in-the-middle-" + mysqltest.Token(8), ""},
		{"double quote", `dq"in-the-middle-` + mysqltest.Token(8), ""},
		{"space", "space in-the-middle-" + mysqltest.Token(8), ""},
		{"sealed for another job", "Right-shape-password-" + mysqltest.Token(8), "other-job"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequester(t)
			id := e.nextID()
			sealID := id
			if tt.sealID != "" {
				sealID = tt.sealID
			}
			user := mysqltest.Username("cp_")
			f.DropUserLater(user)
			res := e.job("app", "create", map[string]any{"id": id, "username": user, "reply_key": r.pub,
				"password": e.sealFor(r, sealID, tt.password)})
			wantCode(t, res, wire.CodeInvalidPassword)
			if strings.Contains(res.Error.Message, tt.password) {
				t.Fatal("the error message shows the password")
			}
			if f.AccountExists(user) {
				t.Fatal("an account was made")
			}
		})
	}
	// Sealed by someone other than reply_key: does not open.
	r, impostor := newRequester(t), newRequester(t)
	id := e.nextID()
	res := e.job("app", "create", map[string]any{"id": id, "username": "imp_user1", "reply_key": r.pub,
		"password": e.sealFor(impostor, id, "Right-shape-password-"+mysqltest.Token(8))})
	wantCode(t, res, wire.CodeInvalidPassword)
}

// TestUnreadableJobsGetResults: a job whose body or subject is unusable still
// gets one result, under the id rules of contract §3.
func TestUnreadableJobsGetResults(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	tests := []struct {
		name, subject, msgID, resultID, body string
	}{
		{"not json, header id", prefix + ".jobs.app.user.create", "hdr-1", "hdr-1", "not json"},
		{"bad header, body id", prefix + ".jobs.app.user.delete", "", "body-1", `{"id":"body-1","username":"x","extra":1}`},
		{"header differs from body", prefix + ".jobs.app.user.delete", "hdr-2", "hdr-2", `{"id":"body-2","username":"some_user"}`},
		{"unknown op", prefix + ".jobs.app.user.rename", "hdr-3", "hdr-3", `{"id":"hdr-3"}`},
		{"bad target token", prefix + ".jobs.App_UPPER.user.list", "hdr-4", "hdr-4", `{"id":"hdr-4"}`},
		{"array body", prefix + ".jobs.app.user.list", "hdr-5", "hdr-5", `[1,2]`},
		{"short subject", prefix + ".jobs.app", "hdr-6", "hdr-6", `{"id":"hdr-6"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.publish(tt.subject, tt.msgID, tt.resultID, []byte(tt.body))
			wantCode(t, res, wire.CodeInvalidJob)
			if res.ID != tt.resultID {
				t.Errorf("result id %q, want %q", res.ID, tt.resultID)
			}
		})
	}
	// No valid id anywhere: the result is keyed by the stream sequence.
	sub, err := e.nc.SubscribeSync(prefix + ".results.app.*")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ack, err := e.js.Publish(t.Context(), prefix+".jobs.app.user.list", []byte(`{"id":"bad id!"}`))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s.results.app.seq-%d", prefix, ack.Sequence); msg.Subject != want {
		t.Fatalf("result on %s, want %s", msg.Subject, want)
	}
	var res wire.Result
	if err := json.Unmarshal(msg.Data, &res); err != nil || res.Error == nil || res.Error.Code != wire.CodeInvalidJob {
		t.Fatalf("result %s: %v", msg.Data, err)
	}
}
