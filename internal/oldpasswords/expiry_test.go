package oldpasswords

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/internal/streams"
)

var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func TestDiscardID(t *testing.T) {
	t.Parallel()
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const w = 10 * time.Minute
	tests := []struct {
		revision uint64
		after    time.Duration
		want     string
	}{
		{7, 0, "oldpw-7-0"},
		{7, w - time.Nanosecond, "oldpw-7-0"},
		{7, w, "oldpw-7-1"},
		{7, 5*w + time.Second, "oldpw-7-5"},
		{1<<64 - 1, 100 * 365 * 24 * time.Hour, "oldpw-18446744073709551615-5256000"},
	}
	for _, tt := range tests {
		got := discardID(tt.revision, until, until.Add(tt.after), w)
		if got != tt.want || !idRe.MatchString(got) {
			t.Errorf("discardID(%d, +%s) = %q, want %q (a valid id)", tt.revision, tt.after, got, tt.want)
		}
	}
}

// startExpirer runs an Expirer on e's bucket until the returned stop is
// called or the test ends.
func (e *env) startExpirer(t *testing.T, every time.Duration) (stop func()) {
	t.Helper()
	x := NewExpirer(e.js, e.objs.OldPasswords, Settings{Prefix: e.prefix, DuplicateWindow: e.window,
		Every: every, Logger: zaptest.NewLogger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { x.Run(ctx) })
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

// storedJob is a job in the jobs stream, as a partition's worker reads it.
type storedJob struct {
	subject, msgID, until string
	body                  jobBody
	stored                time.Time
}

// jobsStored returns every job in the jobs stream, oldest first.
func (e *env) jobsStored(t *testing.T) []storedJob {
	t.Helper()
	ctx := t.Context()
	info, err := e.objs.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedJob
	for seq := info.State.FirstSeq; seq != 0 && seq <= info.State.LastSeq; seq++ {
		m, err := e.objs.Jobs.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		j := storedJob{subject: streams.OriginalSubject(e.prefix, m.Subject), msgID: m.Header.Get(nats.MsgIdHdr),
			until: m.Header.Get(jobs.ScheduledDiscardHeader), stored: m.Time}
		dec := json.NewDecoder(bytes.NewReader(m.Data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j.body); err != nil {
			t.Fatalf("job %d body %s: %v", seq, m.Data, err)
		}
		out = append(out, j)
	}
	return out
}

// waitJobs waits until the jobs stream holds at least n jobs, and returns
// them.
func (e *env) waitJobs(t *testing.T, n int, within time.Duration) []storedJob {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := e.jobsStored(t)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs after %s, want %d: %+v", len(got), within, n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// revision returns the bucket revision of an entry.
func (e *env) revision(t *testing.T, target, username string) uint64 {
	t.Helper()
	kve, err := e.objs.OldPasswords.Get(t.Context(), Key(target, username))
	if err != nil {
		t.Fatal(err)
	}
	return kve.Revision()
}

// window returns the window after until that j was stored in: the n its
// id must have.
func (e *env) windowOf(j storedJob, until time.Time) int { return int(j.stored.Sub(until) / e.window) }

// checkJob checks one published discard of username on target for the
// entry at revision ending at until, in the n-th window after it.
func (e *env) checkJob(t *testing.T, j storedJob, target, username string, until time.Time, revision uint64, n int) {
	t.Helper()
	id := fmt.Sprintf("oldpw-%d-%d", revision, n)
	if want := e.prefix + ".jobs." + target + ".user.discard_old_password"; j.subject != want {
		t.Errorf("subject %s, want %s", j.subject, want)
	}
	if j.msgID != id || j.body.ID != id || j.body.Username != username {
		t.Errorf("Nats-Msg-Id %q, body %+v, want id %s of %s", j.msgID, j.body, id, username)
	}
	if want := until.UTC().Format(time.RFC3339Nano); j.until != want {
		t.Errorf("%s header %q, want %q", jobs.ScheduledDiscardHeader, j.until, want)
	}
	if earliest := until.Add(time.Duration(n) * e.window); j.stored.Before(earliest) {
		t.Errorf("job %s stored at %s, before its time %s", id, j.stored.Format(time.RFC3339Nano), earliest.Format(time.RFC3339Nano))
	}
}

// TestExpirerOneDiscardPerWindow runs two Expirers, as two processes do:
// each due entry gets one discard job, not before its time, and one more
// in each later window while the entry stays.
func TestExpirerOneDiscardPerWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Second)
	ctx := t.Context()
	s := e.schedule()
	start := time.Now()
	until := start.Add(400 * time.Millisecond)
	if err := set(ctx, s, "app-one", "soon_user", until, "job-1"); err != nil {
		t.Fatal(err)
	}
	if err := set(ctx, s, "app-two", "later_user", start.Add(time.Hour), "job-2"); err != nil {
		t.Fatal(err)
	}
	rev := e.revision(t, "app-one", "soon_user")
	e.startExpirer(t, 50*time.Millisecond)
	e.startExpirer(t, 50*time.Millisecond)

	for time.Until(until) > 100*time.Millisecond {
		if got := e.jobsStored(t); len(got) != 0 {
			t.Fatalf("a discard before its time: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := e.waitJobs(t, 1, 3*time.Second)
	e.checkJob(t, got[0], "app-one", "soon_user", until, rev, 0)
	// The entry stays (its discard did not end it): once more after the
	// window, and never more than one per window.
	got = e.waitJobs(t, 2, 5*time.Second)
	for n, j := range got {
		e.checkJob(t, j, "app-one", "soon_user", until, rev, n)
	}
	if windows := int(time.Since(until)/e.window) + 1; len(got) > windows {
		t.Errorf("%d discards in %d windows: %+v", len(got), windows, got)
	}
}

// TestExpirerForgetsRemovedEntries: a cleared entry gets no more
// discards, and a new one for the same account gets its own.
func TestExpirerForgetsRemovedEntries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Second)
	ctx := t.Context()
	s := e.schedule()
	e.startExpirer(t, 50*time.Millisecond)
	first := time.Now().Add(-time.Minute) // due at once
	if err := set(ctx, s, "app", "some_user", first, "job-1"); err != nil {
		t.Fatal(err)
	}
	rev := e.revision(t, "app", "some_user")
	got := e.waitJobs(t, 1, 3*time.Second)
	e.checkJob(t, got[0], "app", "some_user", first, rev, e.windowOf(got[0], first))
	if err := s.Clear(ctx, "app", "some_user"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(e.window + 300*time.Millisecond)
	if got := e.jobsStored(t); len(got) != 1 {
		t.Fatalf("%d jobs after the entry was cleared, want 1: %+v", len(got), got)
	}
	second := time.Now().Add(200 * time.Millisecond)
	if err := set(ctx, s, "app", "some_user", second, "job-2"); err != nil {
		t.Fatal(err)
	}
	rev2 := e.revision(t, "app", "some_user")
	got = e.waitJobs(t, 2, 3*time.Second)
	e.checkJob(t, got[1], "app", "some_user", second, rev2, e.windowOf(got[1], second))
}

// TestExpirerAfterRestart: an entry that came due while no Expirer ran is
// ended by the next one on its first pass; one cleared meanwhile is not.
func TestExpirerAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Second)
	ctx := t.Context()
	s := e.schedule()
	stop := e.startExpirer(t, 50*time.Millisecond)
	// Far enough ahead that the first Expirer stops before the entries
	// are due, however slow the machine is.
	until := time.Now().Add(2 * time.Second)
	for _, u := range []string{"kept_user", "cleared_user"} {
		if err := set(ctx, s, "app", u, until, "job-1"); err != nil {
			t.Fatal(err)
		}
	}
	rev := e.revision(t, "app", "kept_user")
	time.Sleep(100 * time.Millisecond) // the watch has them
	stop()
	if !time.Now().Before(until) {
		t.Fatal("the first Expirer stopped only after the entries were due: the machine is too slow for this test's timing")
	}
	if err := s.Clear(ctx, "app", "cleared_user"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(until) + 200*time.Millisecond)
	if got := e.jobsStored(t); len(got) != 0 {
		t.Fatalf("jobs with no Expirer running: %+v", got)
	}
	// A pause far longer than the test: only the first pass can publish.
	e.startExpirer(t, time.Hour)
	e.waitJobs(t, 1, 3*time.Second)
	time.Sleep(200 * time.Millisecond)
	got := e.jobsStored(t)
	if len(got) != 1 {
		t.Fatalf("%d jobs, want 1 (kept_user's): %+v", len(got), got)
	}
	e.checkJob(t, got[0], "app", "kept_user", until, rev, e.windowOf(got[0], until))
}
