package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// gatedResults holds every lookup until release is closed.
type gatedResults struct {
	*fakeResults
	release chan struct{}
}

func (g *gatedResults) Lookup(ctx context.Context, subject string) ([]byte, bool, error) {
	<-g.release
	return g.fakeResults.Lookup(ctx, subject)
}

// checkingOps is a fakeOps whose reset tells checked when its account
// check runs, and fails that check with checkErr when set (before the
// password statement's wait, as the real check does).
type checkingOps struct {
	*fakeOps
	checked  chan struct{}
	once     sync.Once
	checkErr error
}

func (c *checkingOps) ResetPassword(ctx context.Context, u string, pw secret.Secret, ready mysqlops.Ready) (mysqlops.Account, error) {
	c.once.Do(func() { close(c.checked) })
	if c.checkErr != nil {
		return mysqlops.Account{Username: u}, c.checkErr
	}
	return c.fakeOps.ResetPassword(ctx, u, pw, ready)
}

// firstSecrets is a fakeSecrets that can also write an entry only where
// its key never held one (vault.Store's PutNew): a purged key keeps its
// marker, as in the bucket.
type firstSecrets struct {
	*fakeSecrets
	touched map[string]bool
	news    int
}

// Purge takes its time, as a NATS round trip does: an answer that does
// not wait for it finds the entry still there.
func (f *firstSecrets) Purge(ctx context.Context, target, id string) error {
	time.Sleep(20 * time.Millisecond)
	return f.fakeSecrets.Purge(ctx, target, id)
}

func (f *firstSecrets) PutNew(ctx context.Context, target, id string, sealed []byte) (string, time.Time, bool, error) {
	f.mu.Lock()
	key := target + "." + id
	if f.touched[key] {
		f.mu.Unlock()
		return key, time.Time{}, false, nil
	}
	f.touched[key] = true
	f.news++
	f.mu.Unlock()
	k, exp, err := f.Put(ctx, target, id, sealed)
	return k, exp, err == nil, err
}

func (f *firstSecrets) Put(ctx context.Context, target, id string, sealed []byte) (string, time.Time, error) {
	f.mu.Lock()
	f.touched[target+"."+id] = true
	f.mu.Unlock()
	return f.fakeSecrets.Put(ctx, target, id, sealed)
}

var _ NewSecrets = (*firstSecrets)(nil)

// loneHarness runs lone resets whose lookups wait for release, against a
// vault that can write new entries (putNew) or cannot.
func loneHarness(t *testing.T, checkErr error, putNew bool) (*harness, *gatedResults, *checkingOps, *firstSecrets) {
	h := newHarness(t, time.Second)
	g := &gatedResults{fakeResults: h.results, release: make(chan struct{})}
	ops := &checkingOps{fakeOps: h.ops, checked: make(chan struct{}), checkErr: checkErr}
	h.w.cfg.Results, h.w.cfg.Targets = g, map[string]Ops{"app": ops}
	fs := &firstSecrets{fakeSecrets: h.secrets, touched: map[string]bool{}}
	if putNew {
		h.w.cfg.Secrets = fs
	}
	return h, g, ops, fs
}

// TestLoneResetChecksTheAccountBesideTheLookup: a lone reset's account
// check runs while its stored-result lookup is still out, and the ALTER
// USER does not go before the lookup has answered. The vault write goes
// before it only where it cannot replace an entry (PutNew).
func TestLoneResetChecksTheAccountBesideTheLookup(t *testing.T) {
	for _, putNew := range []bool{false, true} {
		t.Run(fmt.Sprintf("putNew=%v", putNew), func(t *testing.T) {
			h, g, ops, fs := loneHarness(t, nil, putNew)
			body := `{"id":"r-1","username":"good_user","reply_key":"` + replyKey(t) + `"}`
			done := make(chan wire.Result)
			go func() {
				_, res := h.run(t, "reset_password", "r-1", body)
				done <- res
			}()
			select {
			case <-ops.checked:
			case <-time.After(5 * time.Second):
				t.Fatal("the account check waited for the stored-result lookup")
			}
			time.Sleep(50 * time.Millisecond) // room for a write that should not come
			h.secrets.mu.Lock()
			puts, news := h.secrets.puts, fs.news
			h.secrets.mu.Unlock()
			if calls := h.ops.Calls(); len(calls) != 0 || puts != news {
				t.Fatalf("before the lookup answered: MySQL calls %q, vault writes %d (%d only where nothing was); want no call and only such writes", calls, puts, news)
			}
			if putNew && news != 1 {
				t.Fatalf("%d new vault entries before the lookup answered, want the job's one", news)
			}
			close(g.release)
			res := <-done
			if res.Status != wire.StatusOK || res.Secret == nil || !h.secrets.has("r-1") {
				t.Fatalf("result %+v, vault entry %v: want ok with its entry", res, h.secrets.has("r-1"))
			}
			if calls := h.ops.Calls(); len(calls) != 1 || calls[0] != "reset good_user" {
				t.Fatalf("MySQL calls %q, want the one reset", calls)
			}
		})
	}
}

// TestLoneResetAnsweredBeforeChangesNothing: a lone reset whose id has a
// stored result is answered with it, whatever its account check found,
// and sets no password. An entry its first run left is never replaced; an
// entry written beside the lookup, where none was left, is purged.
func TestLoneResetAnsweredBeforeChangesNothing(t *testing.T) {
	cases := []struct {
		name     string
		checkErr error
		putNew   bool
		left     bool // the first run's entry is still in the vault
	}{
		{"check passes", nil, false, false},
		{"check finds no account", mysqlops.ErrUserNotFound, false, false},
		{"check cannot reach MySQL", errRefused, false, false},
		{"new entry beside the lookup, none left", nil, true, false},
		{"new entry beside the lookup, check finds no account", mysqlops.ErrUserNotFound, true, false},
		{"first run's entry left", nil, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, g, _, fs := loneHarness(t, tc.checkErr, tc.putNew)
			earlier := []byte(`{"id":"r-2","target":"app","op":"user.reset_password","status":"ok"}`)
			h.results.stored[wire.ResultSubject("dbusers", "app", "r-2")] = earlier
			if tc.left {
				if _, _, err := fs.Put(t.Context(), "app", "r-2", []byte("first")); err != nil {
					t.Fatal(err)
				}
			}
			putsBefore := h.secrets.puts
			close(g.release)
			body := `{"id":"r-2","username":"good_user","reply_key":"` + replyKey(t) + `"}`
			m, _ := h.run(t, "reset_password", "r-2", body)
			if !m.acked {
				t.Fatal("job not acknowledged")
			}
			got := h.results.stored[wire.ResultSubject("dbusers", "app", "r-2")]
			if string(got) != string(earlier) {
				t.Fatalf("result %s, want the stored one %s", got, earlier)
			}
			if calls := h.ops.Calls(); len(calls) != 0 {
				t.Fatalf("MySQL calls %q, want none", calls)
			}
			h.secrets.mu.Lock()
			puts := h.secrets.puts - putsBefore
			h.secrets.mu.Unlock()
			if puts != fs.news {
				t.Fatalf("%d vault writes, %d of them where nothing was: an entry was replaced", puts, fs.news)
			}
			if h.secrets.has("r-2") != tc.left {
				t.Fatalf("vault entry there: %v, want %v (a new entry for an answered job is purged)", h.secrets.has("r-2"), tc.left)
			}
		})
	}
}

// TestLoneLookupWaitStopsWithItsContext: a statement waiting for a lookup
// that never answers gives up with its context.
func TestLoneLookupWaitStopsWithItsContext(t *testing.T) {
	l := &loneLookup{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := l.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait: %v, want the context's deadline", err)
	}
	var none *loneLookup
	if err := none.wait(ctx); err != nil {
		t.Fatalf("a job whose batch looked up first waits for nothing, got %v", err)
	}
}
