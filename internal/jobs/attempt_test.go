package jobs

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// passwordOps is a fakeOps that notes the password of every create.
type passwordOps struct {
	*fakeOps
	mu  sync.Mutex
	pws []string
}

func (p *passwordOps) Create(ctx context.Context, u string, pw secret.Secret, ro bool, intent mysqlops.Intent, ready mysqlops.Ready) error {
	p.mu.Lock()
	p.pws = append(p.pws, pw.Reveal())
	p.mu.Unlock()
	return p.fakeOps.Create(ctx, u, pw, ro, intent, ready)
}

// TestHeldJobKeepsItsGeneratedPassword: a create held after a lost reply
// whose half-made account could not be dropped tries again, later, with
// the password its vault entry holds, not a new one.
func TestHeldJobKeepsItsGeneratedPassword(t *testing.T) {
	h := newHarness(t, 300*time.Millisecond)
	ops := &passwordOps{fakeOps: h.ops}
	h.w.cfg.Targets = map[string]Ops{"app": ops}
	generated := 0
	h.w.cfg.GeneratePassword = func() (secret.Secret, error) {
		generated++
		return secret.New(strings.Repeat(strconv.Itoa(generated), 64)), nil
	}
	h.ops.errs = []error{errLost, errRefused, errRefused, errRefused, errRefused, errRefused, errRefused, errRefused}
	h.ops.abandonErr = errRefused
	body := `{"id":"h-1","username":"good_user","reply_key":"` + replyKey(t) + `"}`
	m, res := h.run(t, "create", "h-1", body)
	if !m.acked || !slices.Contains(h.ops.Calls(), "abandon good_user") {
		t.Fatalf("acked %v, calls %q: want a held job (an abandon tried), answered in the end", m.acked, h.ops.Calls())
	}
	if generated != 1 {
		t.Fatalf("%d passwords generated for one job, want 1", generated)
	}
	for i, pw := range ops.pws {
		if pw != ops.pws[0] {
			t.Fatalf("create %d sent another password than the first (the vault holds the first)", i+1)
		}
	}
	if res.Status == wire.StatusOK && res.Secret == nil {
		t.Fatal("ok without the vault entry of its password")
	}
}
