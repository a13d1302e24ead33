package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// TestGeneratedPasswordNeedsTheVault: the vault write runs beside MySQL's
// account check, but no password statement is sent until it succeeded, and
// a job whose password could not be stored gets no result and goes back.
func TestGeneratedPasswordNeedsTheVault(t *testing.T) {
	key := replyKey(t)
	for _, op := range []string{"reset_password", "create"} {
		t.Run(op, func(t *testing.T) {
			h := newHarness(t, time.Second)
			h.secrets.fail = true
			go func() { time.Sleep(300 * time.Millisecond); h.w.stopNow() }() // end natsRetry's retries
			m, res := h.run(t, op, "v-"+op, `{"id":"v-`+op+`","username":"good_user","reply_key":"`+key+`"}`)
			if calls := h.ops.Calls(); len(calls) != 0 {
				t.Fatalf("MySQL was sent %q before the password was in the vault", calls)
			}
			if res.Status != "" || m.acked || !m.naked {
				t.Fatalf("result %+v, acked %v, handed back %v; want no result and the job handed back", res, m.acked, m.naked)
			}

			h2 := newHarness(t, time.Second)
			_, res = h2.run(t, op, "w-"+op, `{"id":"w-`+op+`","username":"good_user","reply_key":"`+key+`"}`)
			if res.Status != wire.StatusOK || res.Secret == nil || res.Secret.Key != "app.w-"+op {
				t.Fatalf("result %+v, want ok with its vault key", res)
			}
			if h2.secrets.puts != 1 {
				t.Fatalf("%d vault writes, want 1", h2.secrets.puts)
			}
		})
	}
}

func TestHostileUsernamesNeverReachMySQL(t *testing.T) {
	h := newHarness(t, time.Second)
	key := replyKey(t)
	names := []string{"o'brien_x", "back`tick", "pct%user", "a\nnewline", "ünïcode_u", "аdmin_user",
		"'; DROP USER root; --", strings.Repeat("a", 33), "root", "mysql_admin", "mariadb_x1",
		"debian_sys_maint", "Upper_case", "", "x"}
	for i, name := range names {
		for _, op := range []string{"create", "reset_password", "delete"} {
			body, _ := json.Marshal(map[string]any{"id": "j" + string(rune('a'+i)) + op[:1], "username": name, "reply_key": key})
			if op == "delete" {
				body, _ = json.Marshal(map[string]any{"id": "j" + string(rune('a'+i)) + op[:1], "username": name})
			}
			m, res := h.run(t, op, "", string(body))
			if res.Status != wire.StatusError || res.Error == nil || (res.Error.Code != wire.CodeInvalidUsername && res.Error.Code != wire.CodeInvalidJob) {
				t.Errorf("%s %q: result %+v, want invalid_username", op, name, res)
			}
			if name != "" && res.Error != nil && res.Error.Code != wire.CodeInvalidUsername {
				t.Errorf("%s %q: code %s, want invalid_username", op, name, res.Error.Code)
			}
			if !m.acked {
				t.Errorf("%s %q: job not acked", op, name)
			}
		}
	}
	if calls := h.ops.Calls(); len(calls) != 0 {
		t.Fatalf("hostile usernames reached MySQL: %q", calls)
	}
}

func TestJobOnlyErrorsComeBeforeTarget(t *testing.T) {
	h := newHarness(t, time.Second)
	key := replyKey(t)
	tests := []struct {
		name, subject, body string
		want                wire.Code
	}{
		{"unknown target, bad password", "dbusers.jobs.other.user.create",
			`{"id":"a1","username":"good_user","reply_key":"` + key + `","password":"bad"}`, wire.CodeInvalidPassword},
		{"unknown target, short password", "dbusers.jobs.other.user.create",
			`{"id":"a2","username":"good_user","reply_key":"` + key + `","password":"short"}`, wire.CodeInvalidPassword},
		{"unknown target", "dbusers.jobs.other.user.delete", `{"id":"a3","username":"good_user"}`, wire.CodeUnknownTarget},
		{"bad target token", "dbusers.jobs.Bad!.user.delete", `{"id":"a4","username":"good_user"}`, wire.CodeInvalidJob},
		{"unknown op", "dbusers.jobs.app.user.rename", `{"id":"a5","username":"good_user"}`, wire.CodeInvalidJob},
		{"not json", "dbusers.jobs.app.user.list", `{"id":"a6"`, wire.CodeInvalidJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMsg{subject: stored(tt.subject), header: nats.Header{}, data: []byte(tt.body), seq: 9}
			h.w.process(&delivery{msg: m, received: time.Now()})
			subj := wire.ResultSubject("dbusers", targetToken("dbusers", tt.subject), ResultID("", m.data, 9))
			var res wire.Result
			if err := json.Unmarshal(h.results.stored[subj], &res); err != nil {
				t.Fatalf("no result on %s: %v", subj, err)
			}
			if res.Error == nil || res.Error.Code != tt.want || res.Error.Message == "" {
				t.Fatalf("result %+v, want %s with a message", res, tt.want)
			}
			if !m.acked {
				t.Error("job not acked")
			}
		})
	}
	if calls := h.ops.Calls(); len(calls) != 0 {
		t.Fatalf("invalid jobs reached MySQL: %q", calls)
	}
}

func TestStoredResultIsRepublishedWithoutEffect(t *testing.T) {
	h := newHarness(t, time.Second)
	_, first := h.run(t, "delete", "del-1", `{"id":"del-1","username":"good_user"}`)
	if first.Status != wire.StatusOK {
		t.Fatalf("first run: %+v", first)
	}
	m, again := h.run(t, "delete", "del-1", `{"id":"del-1","username":"good_user"}`)
	if !m.acked || again.CompletedAt != first.CompletedAt {
		t.Fatalf("second run: acked %v, result %+v, want the stored one", m.acked, again)
	}
	if calls := h.ops.Calls(); len(calls) != 1 {
		t.Fatalf("calls = %q, want one delete", calls)
	}
}

var (
	errRefused = &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	errLost    = mysql.ErrInvalidConn
	errDenied  = &mysql.MySQLError{Number: 1227, Message: "Access denied; you need the CREATE USER privilege"}
	errLock    = &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}
	errFile    = &mysqlops.PasswordSourceError{Err: errors.New("targets[0].password_file: /run/secrets/adm is readable by group")}
	// errLogin: the admin's password, read from its file, is refused.
	errLogin = &mysqlops.LoginRefusedError{Err: &mysql.MySQLError{Number: 1045, Message: "Access denied for user 'adm'@'h'"}}
)

// always is an error for every attempt a 300 ms budget makes.
func always(err error) []error { return slices.Repeat([]error{err}, 8) }

func TestRetriesAndFailures(t *testing.T) {
	tests := []struct {
		name       string
		op, body   string
		errs       []error
		abandonErr error
		budget     time.Duration
		wantCode   wire.Code // "" for ok
		wantCalls  []string
		held       bool
		noAbandon  bool
		exists     bool
		wantMsg    string // in the error's message; fragments split by " | "
	}{
		{name: "transient then ok", op: "delete", body: `{"id":"r1","username":"good_user"}`,
			errs: []error{errRefused, &mysql.MySQLError{Number: 1213}}, budget: 10 * time.Second,
			wantCalls: []string{"delete good_user", "delete good_user", "delete good_user"}},
		{name: "budget spent", op: "delete", body: `{"id":"r2","username":"good_user"}`,
			errs:   always(errRefused),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable},
		{name: "permanent", op: "create", body: `{"id":"r3","username":"good_user","reply_key":"KEY"}`,
			errs: []error{errDenied}, budget: 10 * time.Second, wantCode: wire.CodeInternal,
			wantCalls: []string{"create good_user", "abandon good_user"}},
		{name: "create never sent: no abandon", op: "create", body: `{"id":"r4","username":"good_user","reply_key":"KEY"}`,
			errs:   always(errRefused),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable, noAbandon: true},
		// Held, never handed back while the partition is worked: its
		// target's later jobs would overtake it.
		{name: "create lost, cleanup impossible: held until it can", op: "create", body: `{"id":"r5","username":"good_user","reply_key":"KEY"}`,
			errs:       []error{errLost, errRefused, errRefused, errRefused, errRefused, errRefused, errRefused, errRefused},
			abandonErr: errRefused, budget: 300 * time.Millisecond, held: true},
		{name: "user exists is final", op: "create", body: `{"id":"r6","username":"good_user","reply_key":"KEY"}`,
			errs: []error{mysqlops.ErrUserExists}, budget: time.Second, wantCode: wire.CodeUserExists,
			wantCalls: []string{"create good_user"}},
		{name: "protected", op: "reset_password", body: `{"id":"r7","username":"good_user","reply_key":"KEY"}`,
			errs: []error{mysqlops.ErrProtected}, budget: time.Second, wantCode: wire.CodeProtectedUser},
		{name: "foreign", op: "delete", body: `{"id":"r8","username":"good_user"}`,
			errs: []error{mysqlops.ErrForeign}, budget: time.Second, wantCode: wire.CodeForeignUser},
		{name: "not found", op: "delete", body: `{"id":"r9","username":"good_user"}`,
			errs: []error{mysqlops.ErrUserNotFound}, budget: time.Second, wantCode: wire.CodeUserNotFound},
		// A retried create must not take over an account that existed
		// before it, nor drop it when it gives up.
		{name: "existing account after a lost reply stays someone else's", op: "create",
			body: `{"id":"r10","username":"good_user","reply_key":"KEY"}`, exists: true,
			errs: []error{errLost}, budget: 10 * time.Second, wantCode: wire.CodeUserExists, noAbandon: true},
		{name: "existing account, MySQL flapping: not dropped", op: "create",
			body: `{"id":"r11","username":"good_user","reply_key":"KEY"}`, exists: true,
			errs:   always(errLost),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable, noAbandon: true},
		// A password file half way through a rotation.
		{name: "login refused, then the file is replaced", op: "delete", body: `{"id":"r13","username":"good_user"}`,
			errs: []error{errLogin, errLogin}, budget: 10 * time.Second,
			wantCalls: []string{"delete good_user", "delete good_user", "delete good_user"}},
		{name: "login refused through the budget", op: "create", body: `{"id":"r14","username":"good_user","reply_key":"KEY"}`,
			errs:   always(errLogin),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable, noAbandon: true,
			wantMsg: "for target app after | attempts: the target's password file does not hold the admin's password"},
		{name: "password file unreadable through the budget", op: "delete", body: `{"id":"r15","username":"good_user"}`,
			errs:   always(errFile),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "could not read the admin password file of target app after | attempts; the job made no change."},
		{name: "DSN password refused", op: "delete", body: `{"id":"r16","username":"good_user"}`,
			errs: []error{&mysql.MySQLError{Number: 1045}}, budget: 10 * time.Second, wantCode: wire.CodeInternal,
			wantMsg: "the password in its DSN is wrong"},
		{name: "missing privilege", op: "delete", body: `{"id":"r17","username":"good_user"}`,
			errs: []error{errDenied}, budget: 10 * time.Second, wantCode: wire.CodeInternal,
			wantMsg: "must grant what contract §5.7 lists"},
		{name: "busy through the budget", op: "delete", body: `{"id":"r18","username":"good_user"}`,
			errs:   always(errLock),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "MySQL server of target app answered but kept failing the job after | attempts"},
		{name: "unreachable through the budget", op: "delete", body: `{"id":"r19","username":"good_user"}`,
			errs:   always(errRefused),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "MySQL server of target app did not answer after | attempts; the job made no change. Send it again once the server is up."},
		// An unavailable job says whether it may have taken effect: a
		// statement cut off may have run, unless the job is a create,
		// which drops what it may have made.
		{name: "reset cut off, then unreachable", op: "reset_password", body: `{"id":"r20","username":"good_user","reply_key":"KEY"}`,
			errs:   append([]error{errLost}, always(errRefused)...),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "; the job may or may not have taken effect. Send it again once the server is up."},
		{name: "delete cut off, then unreachable", op: "delete", body: `{"id":"r21","username":"good_user"}`,
			errs:   append([]error{errLost}, always(errRefused)...),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "; the job may or may not have taken effect. Send it again once the server is up."},
		{name: "create cut off, then unreachable: dropped again", op: "create", body: `{"id":"r22","username":"good_user","reply_key":"KEY"}`,
			errs:   append([]error{errLost}, always(errRefused)...),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "; the job made no change. Send it again once the server is up."},
		{name: "reset refused by a busy server", op: "reset_password", body: `{"id":"r23","username":"good_user","reply_key":"KEY"}`,
			errs:   always(errLock),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable,
			wantMsg: "; the job made no change. Send it again later."},
		{name: "missing account after a lost reply is not found", op: "delete",
			body: `{"id":"r12","username":"good_user"}`, exists: true,
			errs: []error{errLost}, budget: 10 * time.Second, wantCode: wire.CodeUserNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.budget)
			h.ops.errs = tt.errs
			h.ops.abandonErr = tt.abandonErr
			h.ops.exists = tt.exists
			body := strings.ReplaceAll(tt.body, "KEY", replyKey(t))
			var id struct{ ID string }
			_ = json.Unmarshal([]byte(body), &id)
			m, res := h.run(t, tt.op, id.ID, body)
			if tt.held {
				if m.naked || !m.acked || h.results.pubs != 1 || !slices.Contains(h.ops.Calls(), "abandon good_user") {
					t.Fatalf("naked %v acked %v results %d calls %q: want held (an abandon tried), then answered once",
						m.naked, m.acked, h.results.pubs, h.ops.Calls())
				}
				return
			}
			if !m.acked {
				t.Fatal("job not acked")
			}
			if tt.wantCode == "" {
				if res.Status != wire.StatusOK || res.Attempts != len(tt.errs)+1 {
					t.Fatalf("result %+v, want ok after %d attempts", res, len(tt.errs)+1)
				}
			} else if res.Error == nil || res.Error.Code != tt.wantCode {
				t.Fatalf("result %+v (error %+v), want %s", res, res.Error, tt.wantCode)
			} else {
				for _, want := range strings.Split(tt.wantMsg, " | ") {
					if !strings.Contains(res.Error.Message, want) {
						t.Fatalf("message %q, want it to say %q", res.Error.Message, want)
					}
				}
			}
			if tt.wantCalls != nil && strings.Join(h.ops.Calls(), ",") != strings.Join(tt.wantCalls, ",") {
				t.Fatalf("calls %q, want %q", h.ops.Calls(), tt.wantCalls)
			}
			for _, c := range h.ops.Calls() {
				if tt.noAbandon && strings.HasPrefix(c, "abandon") {
					t.Fatalf("calls %q: abandoned an account no statement could have made", h.ops.Calls())
				}
			}
			if res.Error != nil && strings.Contains(res.Error.Message, "gggggggg") {
				t.Fatal("the generated password leaked into the error message")
			}
			if res.Error != nil && strings.Contains(res.Error.Message, "/run/secrets") {
				t.Fatalf("the worker's file path reached the requester: %s", res.Error.Message)
			}
			if res.Error != nil && !strings.HasSuffix(res.Error.Message, ".") {
				t.Fatalf("message %q does not end with a full stop", res.Error.Message)
			}
			if res.Error != nil && res.Error.Code == wire.CodeUnavailable {
				if !strings.Contains(res.Error.Message, fmt.Sprintf(" after %d attempts", res.Attempts)) {
					t.Fatalf("message %q does not count the result's %d attempts", res.Error.Message, res.Attempts)
				}
				// The driver's words stay in the worker's log.
				for _, raw := range []string{"connection refused", "Lock wait timeout", "Access denied", "invalid connection", "dial"} {
					if strings.Contains(res.Error.Message, raw) {
						t.Fatalf("message %q quotes the driver (%q)", res.Error.Message, raw)
					}
				}
			}
		})
	}
}

// fakePending says which sequences are still in the stream.
type erasing struct {
	erased []uint64
}

func (e *erasing) Erase(_ context.Context, seq uint64) error {
	e.erased = append(e.erased, seq)
	return nil
}

// TestPasswordJobsErasedUnlessStoreEncrypted: a job with a password field
// is overwritten in the stream before its ack when the store keeps it in
// clear, and only acked (deleted) when the store is encrypted at rest,
// where an erase would rewrite its block for nothing.
func TestPasswordJobsErasedUnlessStoreEncrypted(t *testing.T) {
	key := replyKey(t)
	withPassword := `{"id":"e1","username":"good_user","reply_key":"` + key + `","password":"in clear by mistake"}`
	without := `{"id":"e1","username":"good_user","reply_key":"` + key + `"}`
	tests := []struct {
		name       string
		body       string
		encrypted  bool
		wantErased bool
	}{
		{"password, store in clear", withPassword, false, true},
		{"password, store encrypted", withPassword, true, false},
		{"no password, store in clear", without, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, time.Second)
			jobs := &erasing{}
			h.w.cfg.Jobs, h.w.cfg.StoreEncrypted = jobs, tt.encrypted
			m, res := h.run(t, "create", "e1", tt.body)
			if !m.acked || res.Status == "" {
				t.Fatalf("acked %v, result %+v: want answered and acked", m.acked, res)
			}
			if erased := len(jobs.erased) == 1 && jobs.erased[0] == 7; erased != tt.wantErased {
				t.Fatalf("erased %v, want the job erased: %v", jobs.erased, tt.wantErased)
			}
		})
	}
}

func TestMayHoldPassword(t *testing.T) {
	tests := map[string]bool{
		`{"id":"a","username":"x","password":"c2VhbGVk"}`:      true,
		`{"id":"a","username":"x","pass\u0077ord":"c2VhbGVk"}`: true,
		`{"id":"a","username":"x"}`:                            false,
		`{"id":"a","after":"user_a","limit":10}`:               false,
		`not json but mentions password`:                       true,
	}
	for body, want := range tests {
		if got := mayHoldPassword([]byte(body)); got != want {
			t.Errorf("mayHoldPassword(%s) = %v, want %v", body, got, want)
		}
	}
}

// TestReplayWithInvalidBodyKeepsStoredResult: a job id answered before and
// republished with a body that is now invalid (or for a target no longer
// configured) is answered with the stored result, which stays as it was.
func TestReplayWithInvalidBodyKeepsStoredResult(t *testing.T) {
	h := newHarness(t, time.Second)
	_, first := h.run(t, "delete", "rep-1", `{"id":"rep-1","username":"good_user"}`)
	if first.Status != wire.StatusOK {
		t.Fatalf("first run: %+v", first)
	}
	subject := wire.ResultSubject("dbusers", "app", "rep-1")
	before := string(h.results.stored[subject])
	m, again := h.run(t, "delete", "rep-1", `{"id":"rep-1","username":"Bad Name!","extra":1}`)
	if !m.acked || again.Status != wire.StatusOK || string(h.results.stored[subject]) != before {
		t.Fatalf("replay with an invalid body: acked %v, result %+v; the stored result must stay", m.acked, again)
	}
	if calls := h.ops.Calls(); len(calls) != 1 {
		t.Fatalf("calls = %q, want the first delete only", calls)
	}
}

// TestKeepAliveTellsOnlyJobsNearTheirDeadline: a held job is told "in
// progress" once two thirds of an ack wait have passed since the server
// last heard of it, not at every tick, so a bulk run's thousands of held jobs do not
// each cost a message per tick.
func TestKeepAliveTellsOnlyJobsNearTheirDeadline(t *testing.T) {
	w, err := NewWorker(Config{Prefix: "dbusers", Keys: fakeKeys{}, Secrets: &fakeSecrets{}, Results: &fakeResults{},
		Intents: &fakeIntents{}, AckWait: time.Minute,
		GeneratePassword: func() (secret.Secret, error) { return secret.New(strings.Repeat("g", 64)), nil }})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fresh := &delivery{msg: &fakeMsg{}, seq: 2, extended: now.Add(-35 * time.Second)}
	old := &delivery{msg: &fakeMsg{}, seq: 3, extended: now.Add(-41 * time.Second)}
	running := &delivery{msg: &fakeMsg{}, seq: 1, extended: now.Add(-45 * time.Second)}
	w.lanes["app"] = &lane{key: "app", queue: []*delivery{fresh, old},
		seqs: map[uint64]*delivery{1: running, 2: fresh, 3: old}}

	told := func(d *delivery) int {
		m := d.msg.(*fakeMsg)
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.inProgress
	}
	w.keepAlive()
	if told(fresh) != 0 || told(old) != 1 || told(running) != 1 {
		t.Fatalf("told fresh %d, old %d, running %d times; want 0, 1, 1", told(fresh), told(old), told(running))
	}
	w.keepAlive() // the next tick: everything was heard of just now
	if told(fresh) != 0 || told(old) != 1 || told(running) != 1 {
		t.Fatalf("second tick told fresh %d, old %d, running %d times; want 0, 1, 1", told(fresh), told(old), told(running))
	}
}
