package jobs

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/internal/mysqlops"
)

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
