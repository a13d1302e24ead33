package test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/wire"
)

// TestServerHeadersOnAJobAreRefused sends jobs that carry the stream
// metadata a direct-get answer carries (as a reflected answer does, or a
// forged job): each is invalid_job, and the target's next job runs at once.
// Before, the order check read the job's own Nats-Sequence as the stream's
// and held every later job of the target back for good.
func TestServerHeadersOnAJobAreRefused(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("hdr", f)}, nil)

	cases := []struct {
		name    string
		empty   bool // no body, as the server's status messages have none
		headers map[string]string
	}{
		{"direct-get answer", false, map[string]string{"Nats-Stream": "KV_DBUSERS_VAULT", "Nats-Sequence": "7",
			"Nats-Subject": "$KV.DBUSERS_VAULT.hdr.x", "Nats-Time-Stamp": "2026-01-01T00:00:00Z"}},
		{"sequence alone", false, map[string]string{"Nats-Sequence": "1"}},
		{"sequence that does not parse", false, map[string]string{"Nats-Sequence": "not-a-number"}},
		{"lower-case name", false, map[string]string{"nats-subject": "dbusers.jobs.hdr.user.list"}},
		// A client library takes these for the server's own status
		// messages and may drop them unseen; they are jobs all the same.
		{"empty body, no messages status", true, map[string]string{"Status": "404", "Description": "No Messages"}},
		{"empty body, heartbeat status", true, map[string]string{"Status": "100", "Description": "Idle Heartbeat"}},
		{"empty body, expired pull", true, map[string]string{"Status": "408", "Description": "Request Timeout",
			"Nats-Pending-Messages": "500"}},
		{"empty body, consumer deleted", true, map[string]string{"Status": "409", "Description": "Consumer Deleted"}},
	}
	for _, tc := range cases {
		id := e.nextID()
		msg := nats.NewMsg(prefix + ".jobs.hdr.user.list")
		if !tc.empty {
			msg.Data = []byte(`{"id":"` + id + `"}`)
		}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		for k, v := range tc.headers {
			msg.Header[k] = []string{v}
		}
		res := e.publishMsg(msg, id)
		wantCode(t, res, wire.CodeInvalidJob)
		// The next job of the same target is not held behind it.
		start := time.Now()
		wantOK(t, e.job("hdr", "list", map[string]any{}))
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: the next job of the target took %v: it waited behind the refused one", tc.name, d)
		}
	}
	// Each left the stream with its answer.
	waitJobsStreamEmpty(t, e)
}

// TestJobsOnWildcardSubjectsAreAnswered publishes jobs on subjects with
// wildcard tokens, which the stream stores without its partition rewrite,
// where no consumer reads them: each gets its invalid_job result, and the
// jobs stream ends empty.
func TestJobsOnWildcardSubjectsAreAnswered(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	ns := startNATS(t)
	cfg := config.Default()
	cfg.NATS.URL = ns.ClientURL()
	cfg.Vault.XKeySeedFile = t.TempDir() + "/worker.xk"
	cfg.Targets = []config.Target{target("wild", f)}
	e := runWorkerWith(t, cfg, service.Options{StraySweepEvery: 200 * time.Millisecond})

	cases := []struct {
		subject, resultTarget string
	}{
		{prefix + ".jobs.wild.user.*", "wild"},
		{prefix + ".jobs.wild.>", "wild"},
		{prefix + ".jobs.*.user.list", "_"},
		{prefix + ".jobs.>", "_"},
		{prefix + ".jobs.wild.user.list.*", "wild"},
		// A first token that is a partition number: read by that
		// partition's consumer, and answered under its own target.
		{prefix + ".jobs.3.user.*", "3"},
	}
	for _, tc := range cases {
		t.Run(tc.subject, func(t *testing.T) {
			id := e.nextID()
			sub, err := e.nc.SubscribeSync(prefix + ".results." + tc.resultTarget + "." + id)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			msg := nats.NewMsg(tc.subject)
			msg.Data = []byte(`{"id":"` + id + `"}`)
			msg.Header.Set(jetstream.MsgIDHeader, id)
			if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
				t.Fatalf("the stream refused %s: %v", tc.subject, err)
			}
			m, err := sub.NextMsg(20 * time.Second)
			if err != nil {
				t.Fatalf("no result for a job on %s: %v", tc.subject, err)
			}
			res := decodeResult(t, m.Data)
			wantCode(t, res, wire.CodeInvalidJob)
			if res.ID != id {
				t.Errorf("result id %q, want %q", res.ID, id)
			}
		})
	}
	waitJobsStreamEmpty(t, e)
	// And the target still works.
	wantOK(t, e.job("wild", "list", map[string]any{}))
}

// waitJobsStreamEmpty waits until the jobs stream holds no job: every job
// published was answered and acknowledged.
func waitJobsStreamEmpty(t *testing.T, e *env) {
	t.Helper()
	stream, err := e.js.Stream(t.Context(), "DBUSERS_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(prefix+".jobs.>"))
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the jobs stream still holds %d jobs: %v", info.State.Msgs, info.State.Subjects)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestJobsStreamHasASizeBound checks that nats.jobs_max_bytes reaches the
// stream, and that at the bound a new job is refused to its publisher.
func TestJobsStreamHasASizeBound(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	cfg := config.Default()
	cfg.NATS.URL = ns.ClientURL()
	cfg.Vault.XKeySeedFile = t.TempDir() + "/worker.xk"
	cfg.NATS.JobsMaxBytes = 16 << 20
	cfg.Targets = []config.Target{deadTarget(t, "full")}
	e := runWorker(t, cfg)
	stream, err := e.js.Stream(t.Context(), "DBUSERS_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config.MaxBytes; got != 16<<20 {
		t.Fatalf("jobs stream MaxBytes %d, want %d", got, 16<<20)
	}
	if got := stream.CachedInfo().Config.Discard; got != jetstream.DiscardNew {
		t.Fatalf("jobs stream discard policy %v, want DiscardNew (never drop an accepted job)", got)
	}
	// Fill it with valid jobs of a target whose MySQL never answers (they
	// stay in the stream, retried), padded with JSON white space.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	accepted := 0
	for i := 0; ; i++ {
		id := e.nextID()
		body := []byte(`{"id":"` + id + `"` + strings.Repeat(" ", 60<<10) + `}`)
		msg := nats.NewMsg(prefix + ".jobs.full.user.list")
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := e.js.PublishMsg(ctx, msg); err != nil {
			if accepted < 15<<20 {
				t.Fatalf("refused after only %d bytes: %v", accepted, err)
			}
			return // refused at the bound, as the publisher is told
		}
		if accepted += len(body); accepted > 17<<20 {
			t.Fatalf("the stream took %d bytes, over its bound", accepted)
		}
	}
}

// publishMsg publishes a job message as it is and returns the result
// published for resultID under the subject's target.
func (e *env) publishMsg(msg *nats.Msg, resultID string) wire.Result {
	e.t.Helper()
	sub, err := e.nc.SubscribeSync(prefix + ".results." + subjectTarget(msg.Subject) + "." + resultID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(e.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		e.t.Fatalf("publish job: %v", err)
	}
	m, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		e.t.Fatalf("no result for %s on %s: %v", resultID, msg.Subject, err)
	}
	return decodeResult(e.t, m.Data)
}

// decodeResult decodes a result message.
func decodeResult(t *testing.T, data []byte) wire.Result {
	t.Helper()
	var res wire.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("result does not decode: %v\n%s", err, data)
	}
	return res
}
