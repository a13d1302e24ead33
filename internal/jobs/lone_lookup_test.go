package jobs

import (
	"context"
	"errors"
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

func loneHarness(t *testing.T, checkErr error) (*harness, *gatedResults, *checkingOps) {
	h := newHarness(t, time.Second)
	g := &gatedResults{fakeResults: h.results, release: make(chan struct{})}
	ops := &checkingOps{fakeOps: h.ops, checked: make(chan struct{}), checkErr: checkErr}
	h.w.cfg.Results, h.w.cfg.Targets = g, map[string]Ops{"app": ops}
	return h, g, ops
}

// TestLoneResetChecksTheAccountBesideTheLookup: a lone reset's account
// check runs while its stored-result lookup is still out, and neither the
// vault write nor the ALTER USER goes before the lookup has answered.
func TestLoneResetChecksTheAccountBesideTheLookup(t *testing.T) {
	h, g, ops := loneHarness(t, nil)
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
	puts := h.secrets.puts
	h.secrets.mu.Unlock()
	if calls := h.ops.Calls(); len(calls) != 0 || puts != 0 {
		t.Fatalf("before the lookup answered: MySQL calls %q, vault writes %d; want none", calls, puts)
	}
	close(g.release)
	res := <-done
	if res.Status != wire.StatusOK || res.Secret == nil || !h.secrets.has("r-1") {
		t.Fatalf("result %+v, vault entry %v: want ok with its entry", res, h.secrets.has("r-1"))
	}
	if calls := h.ops.Calls(); len(calls) != 1 || calls[0] != "reset good_user" {
		t.Fatalf("MySQL calls %q, want the one reset", calls)
	}
}

// TestLoneResetAnsweredBeforeChangesNothing: a lone reset whose id has a
// stored result is answered with it, whatever its account check found,
// and neither writes the vault nor sets a password.
func TestLoneResetAnsweredBeforeChangesNothing(t *testing.T) {
	cases := []struct {
		name     string
		checkErr error
	}{
		{"check passes", nil},
		{"check finds no account", mysqlops.ErrUserNotFound},
		{"check cannot reach MySQL", errRefused},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, g, _ := loneHarness(t, tc.checkErr)
			earlier := []byte(`{"id":"r-2","target":"app","op":"user.reset_password","status":"ok"}`)
			h.results.stored[wire.ResultSubject("dbusers", "app", "r-2")] = earlier
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
			if h.secrets.puts != 0 {
				t.Fatalf("%d vault writes, want none", h.secrets.puts)
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
