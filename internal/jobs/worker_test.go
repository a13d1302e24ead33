package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// fakeMsg is a jetstream.Msg that records what the worker did with it.
type fakeMsg struct {
	subject string
	header  nats.Header
	data    []byte
	seq     uint64
	// delivered is the delivery count; 1 when zero.
	delivered uint64

	mu         sync.Mutex
	acked      bool
	naked      bool
	inProgress int
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: max(m.delivered, 1)}, nil
}
func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Headers() nats.Header { return m.header }
func (m *fakeMsg) Subject() string      { return m.subject }
func (m *fakeMsg) Reply() string        { return "" }
func (m *fakeMsg) Ack() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked = true
	return nil
}
func (m *fakeMsg) DoubleAck(context.Context) error { return m.Ack() }
func (m *fakeMsg) Nak() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.naked = true
	return nil
}
func (m *fakeMsg) NakWithDelay(time.Duration) error { return m.Nak() }
func (m *fakeMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inProgress++
	return nil
}
func (m *fakeMsg) Term() error                 { return m.Ack() }
func (m *fakeMsg) TermWithReason(string) error { return m.Ack() }

// fakeOps records every call that would reach MySQL. Its errs are returned
// by successive Create/Reset/Delete calls. It follows the real Target's
// shape: an error that proves nothing was sent, or (with exists) a failed
// read of the account, returns before the intent is consulted; otherwise
// the intent is recorded before the statement's error is returned.
type fakeOps struct {
	mu         sync.Mutex
	calls      []string
	errs       []error
	abandonErr error
	// exists makes Create find an existing account (and Delete find none).
	exists bool
}

func (f *fakeOps) next(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}
func (f *fakeOps) Create(ctx context.Context, u string, _ secret.Secret, _ bool, intent mysqlops.Intent, ready mysqlops.Ready) error {
	if ready != nil {
		if err := ready(ctx); err != nil {
			return err // before any statement, like the real Target's wait
		}
	}
	err := f.next("create " + u)
	if err != nil && mysqlops.NothingSent(err) {
		return err
	}
	if f.exists {
		if err != nil {
			return err // the state could not be read
		}
		mine, ierr := intent.Mine(ctx)
		if ierr != nil {
			return ierr
		}
		if !mine {
			return mysqlops.ErrUserExists
		}
		f.record("adopt " + u)
		return nil
	}
	if _, rerr := intent.Record(ctx); rerr != nil {
		return rerr
	}
	return err
}
func (f *fakeOps) ResetPassword(ctx context.Context, u string, _ secret.Secret, ready mysqlops.Ready) (mysqlops.Account, error) {
	if ready != nil {
		if err := ready(ctx); err != nil {
			return mysqlops.Account{Username: u}, err
		}
	}
	return mysqlops.Account{Username: u}, f.next("reset " + u)
}
func (f *fakeOps) Delete(ctx context.Context, u string, intent mysqlops.Intent) (mysqlops.Account, error) {
	err := f.next("delete " + u)
	if err != nil && mysqlops.NothingSent(err) {
		return mysqlops.Account{Username: u}, err
	}
	if f.exists { // already gone
		if err != nil {
			return mysqlops.Account{Username: u}, err
		}
		mine, ierr := intent.Mine(ctx)
		if ierr != nil || !mine {
			return mysqlops.Account{Username: u}, errors.Join(ierr, mysqlops.ErrUserNotFound)
		}
		return mysqlops.Account{Username: u}, err
	}
	if _, rerr := intent.Record(ctx); rerr != nil {
		return mysqlops.Account{Username: u}, rerr
	}
	return mysqlops.Account{Username: u}, err
}
func (f *fakeOps) List(context.Context, string, int) ([]mysqlops.Account, string, error) {
	return nil, "", f.next("list")
}
func (f *fakeOps) Abandon(ctx context.Context, u string, intent mysqlops.Intent) error {
	mine, err := intent.Mine(ctx)
	if err != nil || !mine {
		return err
	}
	f.record("abandon " + u)
	return f.abandonErr
}
func (f *fakeOps) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}
func (f *fakeOps) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type fakeResults struct {
	mu     sync.Mutex
	stored map[string][]byte
	pubs   int
}

func (r *fakeResults) Publish(_ context.Context, subject string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stored[subject] = append([]byte(nil), data...)
	r.pubs++
	return nil
}
func (r *fakeResults) PublishNew(ctx context.Context, subject string, data []byte) (bool, error) {
	r.mu.Lock()
	_, exists := r.stored[subject]
	r.mu.Unlock()
	if exists {
		return true, nil
	}
	return false, r.Publish(ctx, subject, data)
}
func (r *fakeResults) Lookup(_ context.Context, subject string) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.stored[subject]
	return d, ok, nil
}

type fakeKeys struct{}

func (fakeKeys) OpenPassword(sealed secret.Secret, _, _ string) (secret.Secret, error) {
	if sealed.Reveal() == "bad" {
		return secret.Secret{}, errors.New("does not open")
	}
	return sealed, nil // tests pass the clear password as the "seal"
}
func (fakeKeys) PublicKey() string { return "XWORKER" }
func (fakeKeys) SealPassword(string, secret.Secret, string) ([]byte, error) {
	return []byte("sealed"), nil
}

// fakeSecrets is the vault; with fail set, every write fails; delay holds
// each write back. entries are the keys stored and not purged.
type fakeSecrets struct {
	mu      sync.Mutex
	fail    bool
	delay   time.Duration
	puts    int
	entries map[string]bool
}

func (s *fakeSecrets) Put(_ context.Context, target, id string, _ []byte) (string, time.Time, error) {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	if s.fail {
		return "", time.Time{}, errors.New("vault write refused")
	}
	if s.entries == nil {
		s.entries = map[string]bool{}
	}
	s.entries[target+"."+id] = true
	return target + "." + id, time.Now().Add(time.Minute), nil
}
func (s *fakeSecrets) Purge(_ context.Context, target, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, target+"."+id)
	return nil
}
func (s *fakeSecrets) Bucket() string { return "DBUSERS_VAULT" }

// has reports whether the vault holds the entry of job id of target app.
func (s *fakeSecrets) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries["app."+id]
}

type fakeIntents struct {
	mu sync.Mutex
	m  map[string]string
}

func (i *fakeIntents) Get(_ context.Context, k string) (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.m[k], nil
}
func (i *fakeIntents) Put(_ context.Context, k, v string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.m[k] = v
	return nil
}

// stored returns a published job subject as the jobs stream stores it, in
// partition 0.
func stored(subject string) string {
	rest := strings.TrimPrefix(subject, "dbusers.jobs.")
	if !strings.Contains(rest, ".") {
		return subject
	}
	return "dbusers.jobs.0." + rest
}

type harness struct {
	w       *Worker
	ops     *fakeOps
	results *fakeResults
	secrets *fakeSecrets
}

func newHarness(t *testing.T, budget time.Duration) *harness {
	t.Helper()
	h := &harness{ops: &fakeOps{}, results: &fakeResults{stored: map[string][]byte{}}, secrets: &fakeSecrets{}}
	w, err := NewWorker(Config{
		Prefix:           "dbusers",
		Targets:          map[string]Ops{"app": h.ops},
		Keys:             fakeKeys{},
		Secrets:          h.secrets,
		Results:          h.results,
		Intents:          &fakeIntents{m: map[string]string{}},
		GeneratePassword: func() (secret.Secret, error) { return secret.New(strings.Repeat("g", 64)), nil },
		RetryBudget:      budget,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h
}

func replyKey(t *testing.T) string {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// run processes one job and returns its message and decoded result.
func (h *harness) run(t *testing.T, op, id, body string) (*fakeMsg, wire.Result) {
	t.Helper()
	m := &fakeMsg{subject: stored("dbusers.jobs.app.user." + op), header: nats.Header{}, data: []byte(body), seq: 7}
	if id != "" {
		m.header.Set("Nats-Msg-Id", id)
	}
	h.w.process(&delivery{msg: m, received: time.Now()})
	var res wire.Result
	if data, ok := h.results.stored[wire.ResultSubject("dbusers", "app", ResultID(id, m.data, 7))]; ok {
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatalf("result does not decode: %v", err)
		}
	}
	return m, res
}

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

func deleteMsg(id, user string, seq uint64) *fakeMsg {
	m := &fakeMsg{subject: stored("dbusers.jobs.app.user.delete"), header: nats.Header{},
		data: []byte(`{"id":"` + id + `","username":"` + user + `"}`), seq: seq}
	m.header.Set("Nats-Msg-Id", id)
	return m
}

// runQueued hands msgs to the fetcher, as the consumer does, and waits
// until the lanes are done.
func (h *harness) runQueued(msgs ...*fakeMsg) {
	for _, m := range msgs {
		h.w.dispatch(m)
	}
	h.w.running.Wait()
}

// TestLaneAnswersARepublishedIDOnce: a job republished with the id of the
// job just ahead of it in its lane gets that job's result and changes
// nothing, although both were queued together.
func TestLaneAnswersARepublishedIDOnce(t *testing.T) {
	h := newHarness(t, time.Second)
	first, again, other := deleteMsg("same", "user_one", 7), deleteMsg("same", "user_one", 8), deleteMsg("next", "user_two", 9)
	h.runQueued(first, again, other)
	if calls := h.ops.Calls(); !slices.Equal(calls, []string{"delete user_one", "delete user_two"}) {
		t.Fatalf("MySQL calls %q, want user_one once, then user_two", calls)
	}
	for _, m := range []*fakeMsg{first, again, other} {
		if !m.acked {
			t.Fatalf("job %d not acknowledged", m.seq)
		}
	}
}

// TestDeliveredAgainWhileHeldRunsOnce: a job delivered again while its
// lane still holds it (its ack wait ran out during a stall) is not queued
// twice; both deliveries are acked when it ends.
func TestDeliveredAgainWhileHeldRunsOnce(t *testing.T) {
	h := newHarness(t, time.Second)
	m := deleteMsg("twice", "user_one", 7)
	again := deleteMsg("twice", "user_one", 7)
	again.delivered = 2
	// Held: the lane is busy with an earlier job while both arrive.
	block := deleteMsg("first", "user_zero", 6)
	h.ops.mu.Lock()
	h.ops.errs = []error{errLock}
	h.ops.mu.Unlock()
	h.runQueued(block, m, again)
	if calls := h.ops.Calls(); !slices.Equal(calls, []string{"delete user_zero", "delete user_zero", "delete user_one"}) {
		t.Fatalf("MySQL calls %q, want user_zero's two attempts, then one delete of user_one", calls)
	}
	if !m.acked || !again.acked {
		t.Fatalf("acked %v and %v, want both deliveries acked", m.acked, again.acked)
	}
}

// TestQueuedJobsFailFastBehindAnUnreachableTarget: a job whose retry
// budget ran out while it waited in its lane, right after an attempt of
// the lane found MySQL unreachable, fails as unavailable without calling
// MySQL itself; any other job still tries: one with budget left, a
// redelivered one, one after the finding is older than the longest retry
// wait, one after an attempt reached MySQL.
func TestQueuedJobsFailFastBehindAnUnreachableTarget(t *testing.T) {
	h := newHarness(t, 50*time.Millisecond)
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	l := &lane{key: "app"}
	longAgo := time.Now().Add(-time.Minute) // the budget ran out while it waited
	n := 0
	run := func(received time.Time, delivered uint64, errs ...error) (tried bool, res wire.Result) {
		t.Helper()
		n++
		id := fmt.Sprintf("q%d", n)
		h.ops.mu.Lock()
		h.ops.errs = errs
		h.ops.mu.Unlock()
		before := len(h.ops.Calls())
		m := &fakeMsg{subject: stored("dbusers.jobs.app.user.delete"), header: nats.Header{"Nats-Msg-Id": []string{id}},
			data: []byte(`{"id":"` + id + `","username":"gone_user"}`), seq: uint64(n), delivered: delivered}
		h.w.process(&delivery{msg: m, received: received, lane: l})
		if !m.acked {
			t.Fatalf("job %s was not answered", id)
		}
		if err := json.Unmarshal(h.results.stored[wire.ResultSubject("dbusers", "app", id)], &res); err != nil {
			t.Fatal(err)
		}
		return len(h.ops.Calls()) > before, res
	}
	wantUnavailable := func(res wire.Result, attempts int) {
		t.Helper()
		if res.Error == nil || res.Error.Code != wire.CodeUnavailable || res.Attempts != attempts {
			t.Fatalf("result %+v (error %+v), want unavailable after %d attempts", res, res.Error, attempts)
		}
	}

	tried, res := run(longAgo, 1, dial)
	if !tried {
		t.Fatal("the first job found nothing known about the target, yet did not try")
	}
	wantUnavailable(res, 1)

	tried, res = run(longAgo, 1, dial)
	if tried {
		t.Fatal("a job past its budget tried a target found unreachable a moment ago")
	}
	wantUnavailable(res, 1) // counted as handled once, like a refused job
	if want := "MySQL server of target app did not answer when the job before this one tried moments ago " +
		"(this job's retry budget ran out while it waited); the job made no change."; !strings.Contains(res.Error.Message, want) ||
		strings.Contains(res.Error.Message, "connection refused") {
		t.Errorf("message %q does not say, in plain words, that the job before it found MySQL unreachable", res.Error.Message)
	}

	if tried, _ = run(time.Now(), 1, dial, dial, dial, dial, dial, dial, dial, dial); !tried {
		t.Fatal("a job with budget left did not try")
	}
	if tried, _ = run(longAgo, 2, dial); !tried {
		t.Fatal("a redelivered job (an earlier delivery may have sent something) did not try")
	}
	l.unreachableAt = time.Now().Add(-unreachableFresh)
	if tried, res = run(longAgo, 1, nil); !tried || res.Status != wire.StatusOK {
		t.Fatalf("tried %v, result %+v: want a try, the target last found unreachable a retry wait ago", tried, res)
	}
	if tried, _ = run(longAgo, 1, dial); !tried {
		t.Fatal("a job did not try although the last attempt reached MySQL")
	}
}

// TestIntentRecordSaysWhetherAnEarlierAttemptDid: Record reports an
// earlier record of the same job (which may have sent its statement) from
// this delivery's own attempts, or, on a redelivery, from the stored
// record; a first delivery's first attempt never reads it.
func TestIntentRecordSaysWhetherAnEarlierAttemptDid(t *testing.T) {
	tests := []struct {
		name        string
		stored      string // the record before the attempt
		redelivered bool
		want        bool
	}{
		{"first delivery", "job-1", false, false},
		{"redelivery, recorded by an earlier delivery", "job-1", true, true},
		{"redelivery, another job's record", "job-0", true, false},
		{"redelivery, no record", "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &fakeIntents{m: map[string]string{}}
			if tt.stored != "" {
				store.m["app.good_user"] = tt.stored
			}
			i := &jobIntent{store: store, key: "app.good_user", id: "job-1", redelivered: tt.redelivered}
			earlier, err := i.Record(t.Context())
			if err != nil || earlier != tt.want {
				t.Fatalf("first Record = %v, %v; want %v", earlier, err, tt.want)
			}
			if store.m["app.good_user"] != "job-1" {
				t.Fatalf("record %q after Record, want job-1", store.m["app.good_user"])
			}
			// The next attempt of the same delivery: the first one's
			// statement may have run.
			if earlier, err := i.Record(t.Context()); err != nil || !earlier {
				t.Fatalf("second Record = %v, %v; want true", earlier, err)
			}
		})
	}
}

// TestIntentForgetsStatementsThatDidNotRun: an attempt whose statement
// never ran (Unsent: refused before reaching MySQL, or by it) does not make
// a later attempt take an existing account for this job's own, unless an
// earlier attempt's statement may have run.
func TestIntentForgetsStatementsThatDidNotRun(t *testing.T) {
	ctx := t.Context()
	i := &jobIntent{store: &fakeIntents{m: map[string]string{}}, key: "app.good_user", id: "job-1"}
	if mine, _ := i.Mine(ctx); mine {
		t.Fatal("mine before any attempt")
	}
	// Attempt 1: recorded, then the server refused the connection.
	if earlier, _ := i.Record(ctx); earlier {
		t.Fatal("attempt 1: earlier")
	}
	i.Unsent()
	if mine, _ := i.Mine(ctx); mine {
		t.Fatal("mine after attempt 1's statement did not run: an account someone else makes now would be taken")
	}
	// Attempt 2: recorded, then its outcome is unknown (a lost connection).
	if earlier, _ := i.Record(ctx); earlier {
		t.Fatal("attempt 2: earlier, though attempt 1's statement did not run")
	}
	if mine, _ := i.Mine(ctx); !mine {
		t.Fatal("not mine while attempt 2's statement may have run")
	}
	// Attempt 3: attempt 2's statement may have run, whatever 3's does.
	if earlier, _ := i.Record(ctx); !earlier {
		t.Fatal("attempt 3: not earlier, though attempt 2's statement may have run")
	}
	i.Unsent()
	if mine, _ := i.Mine(ctx); !mine {
		t.Fatal("not mine after attempt 3, though attempt 2's statement may have run")
	}
}

// batchOps is a fakeOps that runs many-account statements, and notes how
// many results were stored when each ran.
type batchOps struct {
	*fakeOps
	results *fakeResults
	// storedAt is the number of stored results at each statement.
	storedAt []int
}

func (b *batchOps) many(op string, changes []mysqlops.Change) []error {
	b.results.mu.Lock()
	b.storedAt = append(b.storedAt, len(b.results.stored))
	b.results.mu.Unlock()
	names := make([]string, len(changes))
	for i, c := range changes {
		names[i] = c.Username
	}
	b.record(op + " " + strings.Join(names, ","))
	return make([]error, len(changes))
}

func (b *batchOps) accounts(changes []mysqlops.Change) []mysqlops.Account {
	accts := make([]mysqlops.Account, len(changes))
	for i, c := range changes {
		accts[i] = mysqlops.Account{Username: c.Username}
	}
	return accts
}

func (b *batchOps) ResetPasswords(_ context.Context, changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	return b.accounts(changes), b.many("resets", changes)
}
func (b *batchOps) CreateMany(_ context.Context, changes []mysqlops.Change, _ mysqlops.Record) []error {
	return b.many("creates", changes)
}
func (b *batchOps) DeleteMany(_ context.Context, changes []mysqlops.Change, _ mysqlops.Record) ([]mysqlops.Account, []error) {
	return b.accounts(changes), b.many("deletes", changes)
}

// TestManyAccountStatementWaitsForEarlierResults: in one lane batch, the
// resets of two accounts and then their deletes run as two statements; the
// resets' results are stored before the deletes run. Otherwise a crash
// between the two statements redelivers the resets without their results,
// and they run again after the deletes: user_not_found.
func TestManyAccountStatementWaitsForEarlierResults(t *testing.T) {
	h := newHarness(t, time.Second)
	ops := &batchOps{fakeOps: h.ops, results: h.results}
	h.w.cfg.Targets = map[string]Ops{"app": ops}
	key := replyKey(t)
	reset := func(id, user string, seq uint64) *fakeMsg {
		m := &fakeMsg{subject: stored("dbusers.jobs.app.user.reset_password"), header: nats.Header{},
			data: []byte(`{"id":"` + id + `","username":"` + user + `","reply_key":"` + key + `"}`), seq: seq}
		m.header.Set("Nats-Msg-Id", id)
		return m
	}
	msgs := []*fakeMsg{reset("r1", "user_one", 7), reset("r2", "user_two", 8),
		deleteMsg("d1", "user_one", 9), deleteMsg("d2", "user_two", 10)}
	var batch []*delivery
	for _, m := range msgs {
		batch = append(batch, newDelivery(m, time.Now()))
	}
	h.w.runBatch(batch)
	if calls := ops.Calls(); !slices.Equal(calls, []string{"resets user_one,user_two", "deletes user_one,user_two"}) {
		t.Fatalf("MySQL calls %q, want one statement of resets, then one of deletes", calls)
	}
	if !slices.Equal(ops.storedAt, []int{0, 2}) {
		t.Fatalf("stored results when each statement ran: %v, want [0 2]", ops.storedAt)
	}
	for _, m := range msgs {
		if !m.acked {
			t.Fatalf("job %d not acknowledged", m.seq)
		}
	}
}
