package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/wire"
)

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
