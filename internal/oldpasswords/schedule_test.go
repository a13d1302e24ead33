package oldpasswords

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/internal/streams"
)

// env is one test's server and JetStream objects, as the worker creates
// them (streams.Ensure), with a short duplicate window.
type env struct {
	js     jetstream.JetStream
	objs   *streams.Objects
	prefix string
	window time.Duration
}

func newEnv(t *testing.T, window time.Duration) *env {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	e := &env{js: js, prefix: "dbusers", window: window}
	objs, err := streams.Ensure(t.Context(), js, streams.Settings{
		Prefix: e.prefix, Replicas: 1, DuplicateWindow: window, ResultsMaxAge: time.Hour,
		VaultTTL: time.Minute, Partitions: 2, AckWait: 30 * time.Second, LeaseTTL: 15 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.objs = objs
	return e
}

func (e *env) schedule() *Schedule { return NewSchedule(e.js, e.objs.OldPasswords) }

func TestScheduleRoundTrip(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	base := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	tests := []struct {
		name  string
		users int // every third has no entry, every fifth is cleared
	}{
		{"one", 1},
		{"few", 7},
		// More than one batched get holds.
		{"many", 2030},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := e.schedule()
			target := "app-" + tt.name
			want := map[string]time.Time{}
			var asked []string
			for i := range tt.users {
				u := fmt.Sprintf("user_%05d", i)
				asked = append(asked, u)
				if tt.users > 1 && i%3 == 2 {
					continue
				}
				until := base.Add(time.Duration(i) * time.Second)
				if err := set(ctx, s, target, u, until.Add(-time.Hour), "job-a"); err != nil {
					t.Fatal(err)
				}
				// A second Set replaces the first.
				if err := set(ctx, s, target, u, until, fmt.Sprintf("job-%d", i)); err != nil {
					t.Fatal(err)
				}
				if tt.users > 1 && i%5 == 4 {
					if err := s.Clear(ctx, target, u); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want[u] = until
			}
			// The same usernames on another target are not these.
			if err := set(ctx, s, target+"-other", "user_00002", base, "job-b"); err != nil {
				t.Fatal(err)
			}
			got, err := untilOf(ctx, s, target, append(asked, "user_00000", "nobody_here", "no.such*user"))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Errorf("Until: %d entries, want %d", len(got), len(want))
			}
			for u, w := range want {
				if g, ok := got[u]; !ok || !g.Equal(w) {
					t.Errorf("Until[%s] = %v (present %v), want %v", u, g, ok, w)
				}
			}
		})
	}
}

func TestScheduleRemovedReadsAbsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	ctx := t.Context()
	s := e.schedule()
	until := time.Now().Add(time.Hour)
	for _, u := range []string{"kept_user", "cleared_user", "deleted_user"} {
		if err := set(ctx, s, "app", u, until, "job-1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Clear(ctx, "app", "cleared_user"); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(ctx, "app", "never_set_user"); err != nil {
		t.Errorf("Clear of an absent entry: %v", err)
	}
	// A plain delete (a marker, not a purge) is absent too.
	if err := e.objs.OldPasswords.Delete(ctx, Key("app", "deleted_user")); err != nil {
		t.Fatal(err)
	}
	for _, asked := range [][]string{
		{"kept_user", "cleared_user", "deleted_user"}, // batched
		{"cleared_user"}, {"deleted_user"}, // one get each
	} {
		got, err := untilOf(ctx, s, "app", asked)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]time.Time{}
		if asked[0] == "kept_user" {
			want["kept_user"] = until
		}
		if !maps.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("Until(%v) = %v, want %v", asked, got, want)
		}
	}
}

func TestScheduleValue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	ctx := t.Context()
	until := time.Date(2030, 5, 6, 7, 8, 9, 10, time.FixedZone("y", -7200))
	if err := e.schedule().SetMany(ctx, "my-app", []string{"app_user"}, []jobs.OldPasswordEnd{{Until: until, JobID: "job-42", Kept: "mysql_native_password c2VhbGVk"}})[0]; err != nil {
		t.Fatal(err)
	}
	kve, err := e.objs.OldPasswords.Get(ctx, "my-app.app_user")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(kve.Value(), &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"until": "2030-05-06T09:08:09.00000001Z", "job_id": "job-42", "kept": "mysql_native_password c2VhbGVk"}
	if !maps.Equal(v, want) {
		t.Errorf("value = %s, want %v", kve.Value(), want)
	}
}

func TestScheduleRefusesKeysOfOtherShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	ctx := t.Context()
	s := e.schedule()
	for _, k := range [][2]string{{"a.b", "user_name"}, {"app", "user.*"}, {"", "user_name"}, {"app", ">"}} {
		if err := set(ctx, s, k[0], k[1], time.Now(), "job-1"); err == nil {
			t.Errorf("SetMany(%q, %q) succeeded", k[0], k[1])
		}
		if err := s.Clear(ctx, k[0], k[1]); err == nil {
			t.Errorf("Clear(%q, %q) succeeded", k[0], k[1])
		}
	}
	if _, err := untilOf(ctx, s, "app.*", []string{"user_name"}); err == nil {
		t.Error("Entries of a wildcard target succeeded")
	}
}

// TestScheduleSetMany: many entries set in one round read back as set,
// and a bad key fails alone.
func TestScheduleSetMany(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Minute)
	s := e.schedule()
	base := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	names := []string{"user_a", "user_b", "bad.name", "user_c"}
	until := []time.Time{base, base.Add(time.Minute), base, base.Add(2 * time.Minute)}
	ends := make([]jobs.OldPasswordEnd, len(names))
	for i := range names {
		ends[i] = jobs.OldPasswordEnd{Until: until[i], JobID: fmt.Sprintf("j%d", i+1), Kept: "p sealed-" + names[i]}
	}
	errs := s.SetMany(t.Context(), "app", names, ends)
	for i, err := range errs {
		if (err != nil) != (names[i] == "bad.name") {
			t.Fatalf("SetMany %s: %v", names[i], err)
		}
	}
	got, err := s.Entries(t.Context(), "app", []string{"user_a", "user_b", "user_c"})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []string{"user_a", "user_b", "user_c"} {
		want := ends[[]int{0, 1, 3}[i]]
		if e := got[n]; !e.Until.Equal(want.Until) || e.JobID != want.JobID || e.Kept != want.Kept {
			t.Errorf("%s: entry %+v, want %+v", n, e, want)
		}
	}
}

// set writes one entry without a credential.
func set(ctx context.Context, s *Schedule, target, username string, until time.Time, jobID string) error {
	return s.SetMany(ctx, target, []string{username}, []jobs.OldPasswordEnd{{Until: until, JobID: jobID}})[0]
}

// untilOf returns the ends of the entries of usernames.
func untilOf(ctx context.Context, s *Schedule, target string, usernames []string) (map[string]time.Time, error) {
	entries, err := s.Entries(ctx, target, usernames)
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(entries))
	for u, e := range entries {
		out[u] = e.Until
	}
	return out, nil
}
