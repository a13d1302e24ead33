package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/wire"
)

// TestJobStatus follows one job through the states JobStatus reports, on
// the worker's JetStream objects with no worker: queued once published,
// taken once its partition's consumer delivered it (as a worker that is
// retrying holds it), done with its stored result once answered; an id
// the streams do not hold is unknown.
func TestJobStatus(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	ctx := t.Context()
	objs, err := streams.Ensure(ctx, js, streams.Settings{
		Prefix: DefaultPrefix, Replicas: 1, DuplicateWindow: time.Minute, ResultsMaxAge: time.Hour,
		VaultTTL: time.Minute, Partitions: 4, AckWait: time.Minute, LeaseTTL: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(nc)
	if err != nil {
		t.Fatal(err)
	}
	status := func(id string) JobStatus {
		t.Helper()
		st, err := c.JobStatus(ctx, "my-app", id)
		if err != nil {
			t.Fatalf("JobStatus(%s): %v", id, err)
		}
		return st
	}

	// Jobs of the target before and after it, so that the lookup must
	// pick this one among others.
	for _, id := range []string{"job-before", "job-of-interest", "job-after"} {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := c.DeleteUser(short, "my-app", DeleteUserRequest{Username: "some_user", JobID: id})
		cancel()
		if !errors.Is(err, ErrNoResult) {
			t.Fatalf("delete with no worker: %v, want ErrNoResult", err)
		}
	}
	if st := status("job-of-interest"); st.State != JobQueued || st.Op != "user.delete" || st.Result != nil {
		t.Fatalf("published, no worker: %+v, want queued user.delete", st)
	}
	// While a partition has no consumer (a worker taking it over deletes
	// and re-creates it), its jobs are queued.
	if err := js.DeleteConsumer(ctx, objs.Jobs.CachedInfo().Config.Name, wire.PartitionConsumer(partitionOf(t, objs, 3))); err != nil {
		t.Fatal(err)
	}
	if st := status("job-of-interest"); st.State != JobQueued {
		t.Fatalf("no consumer: %+v, want queued", st)
	}
	objs, err = streams.Ensure(ctx, js, streams.Settings{
		Prefix: DefaultPrefix, Replicas: 1, DuplicateWindow: time.Minute, ResultsMaxAge: time.Hour,
		VaultTTL: time.Minute, Partitions: 4, AckWait: time.Minute, LeaseTTL: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}

	// A worker takes the target's jobs and holds them without an answer,
	// as it does while it retries.
	partition := partitionOf(t, objs, 3)
	batch, err := objs.Partitions[partition].Fetch(2, jetstream.FetchMaxWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var taken []jetstream.Msg
	for m := range batch.Messages() {
		taken = append(taken, m)
	}
	if len(taken) != 2 {
		t.Fatalf("fetched %d jobs, want 2", len(taken))
	}
	if st := status("job-of-interest"); st.State != JobTaken {
		t.Fatalf("delivered, not answered: %+v, want taken", st)
	}
	if st := status("job-after"); st.State != JobQueued {
		t.Fatalf("not delivered yet: %+v, want queued", st)
	}

	// The worker answers: the result is stored, the job acknowledged.
	result := `{"id":"job-of-interest","target":"my-app","op":"user.create","status":"error",` +
		`"error":{"code":"user_not_found","message":"no such user"},"attempts":2,"completed_at":"2026-01-02T03:04:05Z"}`
	if _, err := js.Publish(ctx, wire.ResultSubject(DefaultPrefix, "my-app", "job-of-interest"), []byte(result)); err != nil {
		t.Fatal(err)
	}
	if err := taken[1].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	st := status("job-of-interest")
	if st.State != JobDone || st.Result == nil || st.Result.Err == nil || st.Result.Err.Code != CodeUserNotFound ||
		st.Result.Err.Message != "no such user" || st.Result.Attempts != 2 || st.Result.GeneratedPassword {
		t.Fatalf("answered: %+v (result %+v), want done with user_not_found after 2 attempts", st, st.Result)
	}

	okResult := `{"id":"job-generated","target":"my-app","op":"user.create","status":"ok",` +
		`"user":{"username":"some_user","read_only":false,"protected":false},` +
		`"secret":{"bucket":"DBUSERS_VAULT","key":"my-app.job-generated","expires_at":"2026-01-02T03:09:05Z"},"attempts":1,"completed_at":"2026-01-02T03:04:05Z"}`
	if _, err := js.Publish(ctx, wire.ResultSubject(DefaultPrefix, "my-app", "job-generated"), []byte(okResult)); err != nil {
		t.Fatal(err)
	}
	st = status("job-generated")
	if st.State != JobDone || st.Result.Err != nil || !st.Result.GeneratedPassword || st.Result.Account == nil || st.Result.Account.Username != "some_user" {
		t.Fatalf("ok with a generated password: %+v (result %+v)", st, st.Result)
	}

	if st := status("job-never-sent"); st.State != JobUnknown {
		t.Fatalf("never sent: %+v, want unknown", st)
	}
	if _, err := c.JobStatus(ctx, "my-app", "bad id"); !errors.Is(err, ErrInvalidJob) {
		t.Fatalf("bad id: %v, want ErrInvalidJob", err)
	}
}

// partitionOf returns the partition whose consumer has pending jobs.
func partitionOf(t *testing.T, objs *streams.Objects, pending uint64) int {
	t.Helper()
	for n, cons := range objs.Partitions {
		info, err := cons.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == pending {
			return n
		}
	}
	t.Fatalf("no partition holds %d jobs", pending)
	return -1
}
