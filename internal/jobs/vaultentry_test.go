package jobs

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// earlyOps answers create and reset from its account check, before the
// password statement's wait, as the real Target does for a protected,
// foreign, missing or existing account: the job can end while its vault
// write is still in flight.
type earlyOps struct{ *fakeOps }

func (o earlyOps) Create(ctx context.Context, u string, _ secret.Secret, _ bool, _ mysqlops.Intent, ready mysqlops.Ready) error {
	if err := o.next("create " + u); err != nil {
		return err
	}
	return ready(ctx)
}

func (o earlyOps) ResetPassword(ctx context.Context, u string, _ secret.Secret, ready mysqlops.Ready) (mysqlops.Account, error) {
	if err := o.next("reset " + u); err != nil {
		return mysqlops.Account{Username: u}, err
	}
	return mysqlops.Account{Username: u}, ready(ctx)
}

// answeringBatch runs many-account statements that answer each account
// with errs[username] (nil: done).
type answeringBatch struct {
	*fakeOps
	errs map[string]error
}

func (b answeringBatch) answer(changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	accts, errs := make([]mysqlops.Account, len(changes)), make([]error, len(changes))
	for i, c := range changes {
		accts[i], errs[i] = mysqlops.Account{Username: c.Username}, b.errs[c.Username]
	}
	return accts, errs
}

func (b answeringBatch) ResetPasswords(_ context.Context, changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	return b.answer(changes)
}
func (b answeringBatch) CreateMany(_ context.Context, changes []mysqlops.Change, _ mysqlops.Record) []error {
	_, errs := b.answer(changes)
	return errs
}
func (b answeringBatch) DeleteMany(_ context.Context, changes []mysqlops.Change, _ mysqlops.Record) ([]mysqlops.Account, []error) {
	return b.answer(changes)
}

// result returns the stored result of job id of target app.
func (h *harness) result(t *testing.T, id string) wire.Result {
	t.Helper()
	h.results.mu.Lock()
	data, ok := h.results.stored[wire.ResultSubject("dbusers", "app", id)]
	h.results.mu.Unlock()
	var res wire.Result
	if !ok {
		t.Fatalf("no result for %s", id)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestFailedJobsPurgeTheirVaultEntry: a job with a generated password
// refused by MySQL's side (protected_user, user_not_found, user_exists,
// foreign_user) leaves no entry in the vault, whether it ran alone (its
// answer coming after the vault write, or while the write was still in
// flight) or in a many-account batch; the entry of a job that succeeded
// beside it stays, and so does the entry of a job whose batch statement
// may have set its password before its account was answered.
func TestFailedJobsPurgeTheirVaultEntry(t *testing.T) {
	tests := []struct {
		code wire.Code
		op   string
		err  error
	}{
		{wire.CodeProtectedUser, "reset_password", mysqlops.ErrProtected},
		{wire.CodeUserNotFound, "reset_password", mysqlops.ErrUserNotFound},
		{wire.CodeUserExists, "create", mysqlops.ErrUserExists},
		{wire.CodeForeignUser, "reset_password", mysqlops.ErrForeign},
	}
	key := replyKey(t)
	msg := func(op, id, user string, seq uint64) *fakeMsg {
		m := &fakeMsg{subject: stored("dbusers.jobs.app.user." + op), header: nats.Header{},
			data: []byte(`{"id":"` + id + `","username":"` + user + `","reply_key":"` + key + `"}`), seq: seq}
		m.header.Set("Nats-Msg-Id", id)
		return m
	}
	wantPurged := func(t *testing.T, h *harness, m *fakeMsg, id string, code wire.Code) {
		t.Helper()
		if res := h.result(t, id); res.Error == nil || res.Error.Code != code || res.Secret != nil || !m.acked {
			t.Fatalf("job %s: result %+v (error %+v), acked %v; want %s, acked", id, res, res.Error, m.acked, code)
		}
		if h.secrets.has(id) {
			t.Fatalf("job %s ended %s, and the vault still holds its entry", id, code)
		}
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			t.Run("alone", func(t *testing.T) {
				h := newHarness(t, time.Second)
				h.ops.errs = []error{tt.err}
				m := msg(tt.op, "alone-1", "good_user", 7)
				h.w.process(&delivery{msg: m, received: time.Now()})
				if h.secrets.puts != 1 {
					t.Fatalf("%d vault writes, want 1", h.secrets.puts)
				}
				wantPurged(t, h, m, "alone-1", tt.code)
			})
			t.Run("alone, answered while the vault write is in flight", func(t *testing.T) {
				h := newHarness(t, time.Second)
				h.ops.errs = []error{tt.err}
				h.secrets.delay = 200 * time.Millisecond
				h.w.cfg.Targets = map[string]Ops{"app": earlyOps{h.ops}}
				m := msg(tt.op, "early-1", "good_user", 7)
				h.w.process(&delivery{msg: m, received: time.Now()})
				if h.secrets.puts != 1 {
					t.Fatalf("%d vault writes, want 1 (the purge must wait for it)", h.secrets.puts)
				}
				wantPurged(t, h, m, "early-1", tt.code)
			})
			t.Run("in a batch", func(t *testing.T) {
				h := newHarness(t, time.Second)
				h.w.cfg.Targets = map[string]Ops{"app": answeringBatch{fakeOps: h.ops, errs: map[string]error{
					"user_fail":  tt.err,
					"user_maybe": &mysqlops.MaybeSetError{Err: tt.err},
				}}}
				fail, ok, maybe := msg(tt.op, "b-fail", "user_fail", 7), msg(tt.op, "b-ok", "user_ok", 8), msg(tt.op, "b-maybe", "user_maybe", 9)
				h.w.runBatch([]*delivery{newDelivery(fail, time.Now()), newDelivery(ok, time.Now()), newDelivery(maybe, time.Now())})
				if h.secrets.puts != 3 {
					t.Fatalf("%d vault writes, want 3", h.secrets.puts)
				}
				wantPurged(t, h, fail, "b-fail", tt.code)
				if res := h.result(t, "b-ok"); res.Status != wire.StatusOK || res.Secret == nil || !h.secrets.has("b-ok") {
					t.Fatalf("succeeded job: result %+v, entry kept %v; want ok, its entry kept", res, h.secrets.has("b-ok"))
				}
				if res := h.result(t, "b-maybe"); res.Error == nil || res.Error.Code != tt.code || !h.secrets.has("b-maybe") {
					t.Fatalf("job whose statement may have set its password: result %+v, entry kept %v; want %s, its entry kept",
						res, h.secrets.has("b-maybe"), tt.code)
				}
			})
		})
	}
}

// TestVaultEntryStaysWhileThePasswordMayBeInForce: an entry is purged for
// an error of any code when no statement may have set its password, and
// kept when one may have: a success, or an error after an attempt whose
// password statement's outcome was unknown.
func TestVaultEntryStaysWhileThePasswordMayBeInForce(t *testing.T) {
	tests := []struct {
		name     string
		errs     []error
		budget   time.Duration
		wantCode wire.Code // "" for ok
		kept     bool
	}{
		{name: "ok", kept: true, budget: time.Second},
		{name: "statement's outcome unknown, then foreign", errs: []error{errLost, mysqlops.ErrForeign},
			budget: 10 * time.Second, wantCode: wire.CodeForeignUser, kept: true},
		{name: "statement's outcome unknown, then MySQL unreachable", errs: append([]error{errLost}, always(errRefused)...),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable, kept: true},
		{name: "unreachable, nothing sent", errs: always(errRefused),
			budget: 300 * time.Millisecond, wantCode: wire.CodeUnavailable},
		{name: "ALTER USER refused for lack of a privilege", errs: []error{errDenied},
			budget: time.Second, wantCode: wire.CodeInternal},
		{name: "ALTER USER cut off by the statement time limit, then ok", errs: []error{&mysql.MySQLError{Number: 1969}},
			budget: 10 * time.Second, kept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.budget)
			h.ops.errs = tt.errs
			_, res := h.run(t, "reset_password", "k-1", `{"id":"k-1","username":"good_user","reply_key":"`+replyKey(t)+`"}`)
			if tt.wantCode == "" && res.Status != wire.StatusOK || tt.wantCode != "" && (res.Error == nil || res.Error.Code != tt.wantCode) {
				t.Fatalf("result %+v (error %+v), want %q", res, res.Error, tt.wantCode)
			}
			if h.secrets.has("k-1") != tt.kept {
				t.Fatalf("entry kept: %v, want %v", h.secrets.has("k-1"), tt.kept)
			}
		})
	}
}
