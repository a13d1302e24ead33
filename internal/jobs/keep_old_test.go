package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// keepOps is a fakeOps that keeps old passwords: every account's current
// credential is "*CUR-<username>".
type keepOps struct {
	*fakeOps
	mu       sync.Mutex
	read     [][]string               // usernames of each Credentials call
	kept     map[string]string        // username → hash the last keep-old reset kept
	many     [][]string               // usernames of each ResetPasswordsKeepOld call
	discards []string                 // usernames discarded
	missing  map[string]bool          // accounts Credentials does not find
	creds    map[string]secret.Secret // overrides of the current credential
	holdsOld map[string]bool          // accounts that hold an old password before the job
	// lose: a keep-old batch's statement runs (each account then has
	// its new password), and the connection is lost before its answer:
	// every member gets a MaybeSetError.
	lose bool
}

func newKeepOps(f *fakeOps) *keepOps {
	return &keepOps{fakeOps: f, kept: map[string]string{}, missing: map[string]bool{}, creds: map[string]secret.Secret{}, holdsOld: map[string]bool{}}
}

func (k *keepOps) Credentials(_ context.Context, names []string) ([]mysqlops.Credential, []error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.read = append(k.read, names)
	creds, errs := make([]mysqlops.Credential, len(names)), make([]error, len(names))
	for i, n := range names {
		if k.missing[n] {
			errs[i] = mysqlops.ErrUserNotFound
			continue
		}
		h, ok := k.creds[n]
		if !ok {
			h = secret.New("*CUR-" + n)
		}
		creds[i] = mysqlops.Credential{Plugin: "mysql_native_password", Hash: h}
	}
	return creds, errs
}

func (k *keepOps) ResetPasswordKeepOld(ctx context.Context, u string, pw secret.Secret, old mysqlops.Credential, ready mysqlops.Ready) (mysqlops.Account, error) {
	acct, err := k.fakeOps.ResetPassword(ctx, u, pw, ready)
	if err == nil {
		k.mu.Lock()
		k.kept[u] = old.Hash.Reveal()
		k.mu.Unlock()
	}
	acct.OldPassword = err == nil
	return acct, err
}

func (k *keepOps) ResetPasswordsKeepOld(_ context.Context, changes []mysqlops.Change, old []mysqlops.Credential) ([]mysqlops.Account, []error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var names []string
	accts := make([]mysqlops.Account, len(changes))
	for i, c := range changes {
		names = append(names, c.Username)
		k.kept[c.Username] = old[i].Hash.Reveal()
		accts[i] = mysqlops.Account{Username: c.Username, OldPassword: true}
	}
	k.many = append(k.many, names)
	return accts, make([]error, len(changes))
}

func (k *keepOps) ResetPasswordsKeepingCurrent(ctx context.Context, changes []mysqlops.Change, record mysqlops.KeepRecord) ([]mysqlops.Account, []error) {
	names := make([]string, len(changes))
	idx := make([]int, len(changes))
	for i, c := range changes {
		names[i], idx[i] = c.Username, i
	}
	creds, _ := k.Credentials(ctx, names)
	holdsOld := make([]bool, len(names))
	k.mu.Lock()
	for i, n := range names {
		holdsOld[i] = k.holdsOld[n]
	}
	k.mu.Unlock()
	errs := record(ctx, idx, creds, holdsOld)
	var send []mysqlops.Change
	var old []mysqlops.Credential
	for i, err := range errs {
		if err == nil {
			send, old = append(send, changes[i]), append(old, creds[i])
		}
	}
	accts, _ := k.ResetPasswordsKeepOld(ctx, send, old)
	out := make([]mysqlops.Account, len(changes))
	n := 0
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, err := range errs {
		if err == nil {
			out[i] = accts[n]
			n++
			if k.lose {
				k.creds[names[i]] = secret.New("*NEW-" + names[i])
				errs[i] = &mysqlops.MaybeSetError{Err: errLost}
			}
		}
	}
	return out, errs
}

func (k *keepOps) DiscardOldPassword(_ context.Context, u string) (mysqlops.Account, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.missing[u] {
		return mysqlops.Account{Username: u}, mysqlops.ErrUserNotFound
	}
	k.discards = append(k.discards, u)
	return mysqlops.Account{Username: u}, nil
}

func (k *keepOps) DiscardOldPasswords(ctx context.Context, changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	accts := make([]mysqlops.Account, len(changes))
	for i, c := range changes {
		accts[i], _ = k.DiscardOldPassword(ctx, c.Username)
	}
	return accts, make([]error, len(changes))
}

func (k *keepOps) ResetPasswords(ctx context.Context, changes []mysqlops.Change) ([]mysqlops.Account, []error) {
	return (&batchOps{fakeOps: k.fakeOps}).ResetPasswords(ctx, changes)
}
func (k *keepOps) CreateMany(ctx context.Context, changes []mysqlops.Change, r mysqlops.Record) []error {
	return (&batchOps{fakeOps: k.fakeOps}).CreateMany(ctx, changes, r)
}
func (k *keepOps) DeleteMany(ctx context.Context, changes []mysqlops.Change, r mysqlops.Record) ([]mysqlops.Account, []error) {
	return (&batchOps{fakeOps: k.fakeOps}).DeleteMany(ctx, changes, r)
}

// fakeSchedule is the old passwords' schedule; reads holds the usernames
// of each Entries call.
type fakeSchedule struct {
	mu      sync.Mutex
	entries map[string]OldPasswordEnd
	reads   [][]string
	cleared []string
	// lost: the next SetMany stores its entries but reports an error;
	// lostClear: the next Clear removes the entry but reports an error.
	lost, lostClear bool
}

func (s *fakeSchedule) SetMany(_ context.Context, target string, names []string, ends []OldPasswordEnd) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(names))
	for i, n := range names {
		s.entries[target+"."+n] = ends[i]
		if s.lost {
			errs[i] = errLost
		}
	}
	s.lost = false
	return errs
}
func (s *fakeSchedule) Entries(_ context.Context, target string, names []string) (map[string]OldPasswordEnd, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads = append(s.reads, names)
	out := map[string]OldPasswordEnd{}
	for _, n := range names {
		if e, ok := s.entries[target+"."+n]; ok {
			out[n] = e
		}
	}
	return out, nil
}
func (s *fakeSchedule) Clear(_ context.Context, target, u string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, target+"."+u)
	s.cleared = append(s.cleared, u)
	if s.lostClear {
		s.lostClear = false
		return errLost
	}
	return nil
}

// recorded checks that the entry of user records job's credential, sealed
// (never the hash itself), and returns it.
func (s *fakeSchedule) recorded(t *testing.T, user, job string) OldPasswordEnd {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries["app."+user]
	if e.JobID != job || !strings.HasPrefix(e.Kept, "mysql_native_password ") || strings.Contains(e.Kept, "*CUR-") {
		t.Errorf("%s: entry %+v: want job %s's, with the plugin and the sealed hash, never the hash itself", user, e, job)
	}
	return e
}

func keepHarness(t *testing.T) (*harness, *keepOps, *fakeSchedule) {
	h := newHarness(t, time.Second)
	k := newKeepOps(h.ops)
	s := &fakeSchedule{entries: map[string]OldPasswordEnd{}}
	h.w.cfg.Targets, h.w.cfg.OldPasswords = map[string]Ops{"app": k}, s
	return h, k, s
}

func resetBody(t *testing.T, id, user, keep string) string {
	return `{"id":"` + id + `","username":"` + user + `","reply_key":"` + replyKey(t) + `","keep_old_for":"` + keep + `"}`
}

// TestKeepOldResetKeepsTheCredentialInForce: a keep-old reset records the
// credential in force before it (sealed, under its job id) in its
// account's schedule entry before the statement, keeps it, and reports
// the end that entry says.
func TestKeepOldResetKeepsTheCredentialInForce(t *testing.T) {
	h, k, s := keepHarness(t)
	before := time.Now()
	_, res := h.run(t, "reset_password", "k-1", resetBody(t, "k-1", "good_user", "15m"))
	if res.Status != wire.StatusOK || res.User == nil || res.User.OldPasswordUntil == nil {
		t.Fatalf("result %+v: want ok with old_password_until", res)
	}
	until := *res.User.OldPasswordUntil
	if d := until.Sub(before); d < 15*time.Minute-time.Second || d > 15*time.Minute+5*time.Second {
		t.Fatalf("old password ends %v after the job began, want 15m", d)
	}
	if got := s.recorded(t, "good_user", "k-1").Until; !got.Equal(until) {
		t.Fatalf("schedule says %v, result says %v", got, until)
	}
	if k.kept["good_user"] != "*CUR-good_user" {
		t.Fatalf("kept %q, want the credential in force before the job", k.kept["good_user"])
	}
}

// TestRedeliveredKeepOldResetKeepsWhatItsFirstDeliveryRecorded: after a
// crash between statement and result, the account's current credential is
// the job's own new password; the redelivery keeps the one recorded
// before the first statement.
func TestRedeliveredKeepOldResetKeepsWhatItsFirstDeliveryRecorded(t *testing.T) {
	h, k, s := keepHarness(t)
	// fakeKeys opens a "seal" as itself: the record holds the hash as is.
	// The first delivery wrote its end 30 seconds ago.
	s.entries["app.good_user"] = OldPasswordEnd{Until: time.Now().Add(15*time.Minute - 30*time.Second), JobID: "k-2", Kept: "mysql_native_password *BEFORE"}
	k.creds["good_user"] = secret.New("*NEW-FROM-FIRST-DELIVERY")
	m := &fakeMsg{subject: stored("dbusers.jobs.app.user.reset_password"), header: nats.Header{},
		data: []byte(resetBody(t, "k-2", "good_user", "15m")), seq: 7, delivered: 2}
	m.header.Set("Nats-Msg-Id", "k-2")
	h.w.process(&delivery{msg: m, received: time.Now()})
	var res wire.Result
	if err := json.Unmarshal(h.results.stored[wire.ResultSubject("dbusers", "app", "k-2")], &res); err != nil || res.Status != wire.StatusOK {
		t.Fatalf("result %+v (%v), want ok", res, err)
	}
	if k.kept["good_user"] != "*BEFORE" {
		t.Fatalf("kept %q, want the credential recorded before the first delivery's statement", k.kept["good_user"])
	}
	if len(k.read) != 0 {
		t.Fatalf("read the current credentials %q: a redelivery must not", k.read)
	}
	// Its end is keep_old_for from its completion, in the result and in
	// the entry, which still records the job's credential.
	e := s.recorded(t, "good_user", "k-2")
	if res.User == nil || res.User.OldPasswordUntil == nil || !res.User.OldPasswordUntil.Equal(e.Until) ||
		time.Until(e.Until) < 15*time.Minute-time.Second {
		t.Fatalf("result %+v, entry %+v: want the end pushed back to 15m from now", res.User, e)
	}
}

// TestKeepOldResetsShareOneStatement: consecutive keep-old resets of
// distinct accounts run as one statement, each keeping its own credential
// recorded in its entry, and each result reports its end. Jobs no process
// was delivered before read no entry, unless their account holds an old
// password whose entry the write replaces.
func TestKeepOldResetsShareOneStatement(t *testing.T) {
	users := []string{"user_one", "user_two", "user_three"}
	cases := []struct {
		name      string
		freshFrom uint64 // the batch's jobs are at 10, 11, 12
		holdsOld  string
		reads     string // the usernames of each entries read
	}{
		{"maybe delivered before", 0, "", "[user_one user_two user_three]"},
		{"stored before the consumer", 13, "", "[user_one user_two user_three]"},
		{"never delivered before", 10, "", ""},
		{"never delivered, one holds an old password", 10, "user_two", "[user_two]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, k, s := keepHarness(t)
			h.w.cfg.FreshFrom = tc.freshFrom
			k.holdsOld[tc.holdsOld] = true
			var batch []*delivery
			for i, u := range users {
				id := "b-" + u
				m := &fakeMsg{subject: stored("dbusers.jobs.app.user.reset_password"), header: nats.Header{},
					data: []byte(resetBody(t, id, u, "2m")), seq: uint64(10 + i)}
				m.header.Set("Nats-Msg-Id", id)
				batch = append(batch, newDelivery(m, time.Now()))
			}
			h.w.runBatch(batch)
			if len(k.many) != 1 || strings.Join(k.many[0], ",") != "user_one,user_two,user_three" {
				t.Fatalf("keep-old statements %q, want one for the three", k.many)
			}
			if len(k.read) != 1 || len(k.read[0]) != 3 {
				t.Fatalf("credential reads %q, want one round trip for the three", k.read)
			}
			var reads []string
			for _, r := range s.reads {
				reads = append(reads, fmt.Sprint(r))
			}
			if got := strings.Join(reads, " "); got != tc.reads {
				t.Fatalf("schedule entries read %q, want %q", got, tc.reads)
			}
			for _, u := range users {
				if k.kept[u] != "*CUR-"+u {
					t.Errorf("%s kept %q", u, k.kept[u])
				}
				e := s.recorded(t, u, "b-"+u)
				var res wire.Result
				_ = json.Unmarshal(h.results.stored[wire.ResultSubject("dbusers", "app", "b-"+u)], &res)
				if res.Status != wire.StatusOK || res.User == nil || res.User.OldPasswordUntil == nil || !res.User.OldPasswordUntil.Equal(e.Until) {
					t.Errorf("%s: result %+v, schedule %v", u, res, e.Until)
				}
			}
		})
	}
}

// TestScheduledDiscardEndsOnlyWhatIsDue: a discard the expiry watcher
// sent ends the old password when the schedule still says its time, and
// leaves a later reset's old password alone.
func TestScheduledDiscardEndsOnlyWhatIsDue(t *testing.T) {
	due := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		entry     time.Time // zero: none
		gone      bool      // the account was deleted meanwhile
		discarded bool
	}{
		{"entry at its time", due, false, true},
		{"no entry any more", time.Time{}, false, true},
		{"a later reset kept another until later", due.Add(10 * time.Minute), false, false},
		// Its entry goes too: else a discard every duplicate window.
		{"account deleted meanwhile", due, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, k, s := keepHarness(t)
			if !tc.entry.IsZero() {
				s.entries["app.good_user"] = OldPasswordEnd{Until: tc.entry, JobID: "k-0"}
			}
			k.missing["good_user"] = tc.gone
			m := &fakeMsg{subject: stored("dbusers.jobs.app.user.discard_old_password"), header: nats.Header{},
				data: []byte(`{"id":"d-1","username":"good_user"}`), seq: 7}
			m.header.Set("Nats-Msg-Id", "d-1")
			m.header.Set(ScheduledDiscardHeader, due.Format(time.RFC3339Nano))
			h.w.process(&delivery{msg: m, received: time.Now()})
			var res wire.Result
			_ = json.Unmarshal(h.results.stored[wire.ResultSubject("dbusers", "app", "d-1")], &res)
			if want := map[bool]string{false: wire.StatusOK, true: wire.StatusError}[tc.gone]; res.Status != want {
				t.Fatalf("result %+v, want %s", res, want)
			}
			if got := len(k.discards) == 1; got != tc.discarded {
				t.Fatalf("discarded %v, want %v", k.discards, tc.discarded)
			}
			if _, still := s.entries["app.good_user"]; still != (!tc.discarded && !tc.gone) {
				t.Fatalf("schedule entry still there: %v", still)
			}
		})
	}
}

// TestKeepOldNeedsItsSchedule: a worker without a schedule refuses
// keep_old_for, before any statement.
func TestKeepOldNeedsItsSchedule(t *testing.T) {
	h, k, _ := keepHarness(t)
	h.w.cfg.OldPasswords = nil
	_, res := h.run(t, "reset_password", "k-3", resetBody(t, "k-3", "good_user", "15m"))
	if res.Status != wire.StatusError || res.Error.Code != wire.CodeInternal {
		t.Fatalf("result %+v, want internal", res)
	}
	if calls := h.ops.Calls(); len(calls) != 0 || len(k.read) != 0 {
		t.Fatalf("MySQL calls %q, reads %q: want none", calls, k.read)
	}
}

// TestTakenOverKeepOldResetKeepsItsRecord: after a partition changed
// hands, the re-created consumer delivers a job whose statement may have
// run as a first delivery; alone or in a batch, it keeps the credential
// its earlier delivery recorded, not the one now in force (its own new
// password).
func TestTakenOverKeepOldResetKeepsItsRecord(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("batch of %d", n), func(t *testing.T) {
			h, k, s := keepHarness(t)
			// The jobs were stored before the consumer was created.
			h.w.cfg.FreshFrom = 100
			s.entries["app.user_one"] = OldPasswordEnd{Until: time.Now().Add(4 * time.Minute), JobID: "t-user_one", Kept: "mysql_native_password *BEFORE"}
			k.creds["user_one"] = secret.New("*NEW-FROM-THE-EARLIER-DELIVERY")
			var batch []*delivery
			for i, u := range []string{"user_one", "user_two", "user_three"}[:n] {
				m := &fakeMsg{subject: stored("dbusers.jobs.app.user.reset_password"), header: nats.Header{},
					data: []byte(resetBody(t, "t-"+u, u, "5m")), seq: uint64(20 + i)}
				m.header.Set("Nats-Msg-Id", "t-"+u)
				batch = append(batch, newDelivery(m, time.Now()))
			}
			h.w.runBatch(batch)
			if k.kept["user_one"] != "*BEFORE" {
				t.Fatalf("user_one kept %q, want the recorded credential", k.kept["user_one"])
			}
			for _, u := range []string{"user_two", "user_three"}[:n-1] {
				if k.kept[u] != "*CUR-"+u {
					t.Errorf("%s kept %q, want its credential in force", u, k.kept[u])
				}
			}
		})
	}
}

// TestFailedKeepOldResetStillEndsWhatItMayHaveKept: a keep-old reset whose
// statement may have run but whose job fails (unavailable) schedules the
// end of the old password it may have kept, which would otherwise work for
// good.
func TestFailedKeepOldResetStillEndsWhatItMayHaveKept(t *testing.T) {
	h, _, s := keepHarness(t)
	h.w.cfg.RetryBudget = 300 * time.Millisecond
	h.ops.errs = always(errLost)
	_, res := h.run(t, "reset_password", "f-1", resetBody(t, "f-1", "good_user", "15m"))
	if res.Status != wire.StatusError || res.Error.Code != wire.CodeUnavailable {
		t.Fatalf("result %+v, want unavailable", res)
	}
	if _, ok := s.entries["app.good_user"]; !ok {
		t.Fatal("no end scheduled for the old password the failed job may have kept")
	}
}

// TestKeepOldResetThatDidNotRunPutsBackTheEntry: a keep-old reset whose
// statement did not run (the server refused it) puts back the entry its
// write replaced, so that the old password the account holds keeps its
// end; an account that held none is left without an entry.
func TestKeepOldResetThatDidNotRunPutsBackTheEntry(t *testing.T) {
	earlier := OldPasswordEnd{Until: time.Now().Add(3 * time.Minute).Truncate(time.Second), JobID: "k-0", Kept: "mysql_native_password *OLDER"}
	for _, tc := range []struct{ held, lost bool }{{true, false}, {false, false}, {true, true}} {
		held := tc.held
		// lost: the write of the job's entry reported an error though it
		// was stored; the next attempt finds it and knows it for its own.
		t.Run(fmt.Sprintf("held an old password: %v, write reported lost: %v", held, tc.lost), func(t *testing.T) {
			h, k, s := keepHarness(t)
			h.w.cfg.RetryBudget = 300 * time.Millisecond
			s.lost = tc.lost
			if held {
				k.holdsOld["good_user"] = true
				s.entries["app.good_user"] = earlier
			}
			h.ops.errs = always(&mysql.MySQLError{Number: 1227, Message: "Access denied"})
			_, res := h.run(t, "reset_password", "k-1", resetBody(t, "k-1", "good_user", "15m"))
			if res.Status != wire.StatusError {
				t.Fatalf("result %+v, want an error", res)
			}
			e, ok := s.entries["app.good_user"]
			if ok != held || (held && e != earlier) {
				t.Fatalf("entry %+v (present %v), want the earlier one back: %v", e, ok, held)
			}
		})
	}
}

// TestKeepOldBatchThatMayHaveRunKeepsItsEntry: members of a keep-old
// batch whose statement may have run go on alone; an attempt there that
// sends nothing must not put back the entry before theirs, or the next
// would read the credential now in force (their own new password) and
// keep it as the old one.
func TestKeepOldBatchThatMayHaveRunKeepsItsEntry(t *testing.T) {
	h, k, s := keepHarness(t)
	k.lose = true
	h.w.cfg.FreshFrom = 1
	h.ops.errs = []error{errRefused} // the first attempt alone sends nothing
	users := []string{"user_one", "user_two"}
	var batch []*delivery
	for i, u := range users {
		m := &fakeMsg{subject: stored("dbusers.jobs.app.user.reset_password"), header: nats.Header{},
			data: []byte(resetBody(t, "r-"+u, u, "5m")), seq: uint64(10 + i)}
		m.header.Set("Nats-Msg-Id", "r-"+u)
		batch = append(batch, newDelivery(m, time.Now()))
	}
	h.w.runBatch(batch)
	for _, u := range users {
		if k.kept[u] != "*CUR-"+u {
			t.Errorf("%s kept %q, want the credential in force before the job", u, k.kept[u])
		}
		s.recorded(t, u, "r-"+u)
	}
	if len(s.cleared) != 0 {
		t.Errorf("entries cleared %v, want none", s.cleared)
	}
}

// TestKeepOldResetWhosePutBackWasLostRecordsAgain: the put-back of a
// failed attempt may land though it reports an error; the next attempt
// reads the entry again, records afresh, and so the old password it keeps
// has an end in the schedule, the one its result says.
func TestKeepOldResetWhosePutBackWasLostRecordsAgain(t *testing.T) {
	h, k, s := keepHarness(t)
	s.lostClear = true
	h.ops.errs = []error{errRefused} // the first attempt sends nothing
	_, res := h.run(t, "reset_password", "k-1", resetBody(t, "k-1", "good_user", "15m"))
	if res.Status != wire.StatusOK || res.User == nil || res.User.OldPasswordUntil == nil {
		t.Fatalf("result %+v, want ok with old_password_until", res)
	}
	if len(s.cleared) != 1 {
		t.Fatalf("entries cleared %v, want the one put-back", s.cleared)
	}
	if e := s.recorded(t, "good_user", "k-1"); !e.Until.Equal(*res.User.OldPasswordUntil) {
		t.Fatalf("schedule says %v, result says %v", e.Until, *res.User.OldPasswordUntil)
	}
	if k.kept["good_user"] != "*CUR-good_user" {
		t.Fatalf("kept %q, want the credential in force before the job", k.kept["good_user"])
	}
}
