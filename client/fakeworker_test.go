package client

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// fakeWorker stands in for the worker on an in-process JetStream server:
// the jobs and results streams and the vault bucket under the default
// prefix, P.info answered with its curve key, and every job answered with
// what answer returns. It records each job it was given.
type fakeWorker struct {
	t      *testing.T
	nc     *nats.Conn
	kp     nkeys.KeyPair
	pub    string
	vault  jetstream.KeyValue
	answer func(fakeJob) fakeAnswer

	mu   sync.Mutex
	jobs []fakeJob
}

// fakeJob is a job as the fake worker received it.
type fakeJob struct {
	Target string
	Op     wire.Op
	// Body is the job's JSON object, field by field.
	Body map[string]json.RawMessage
}

// field returns the body's string field name, "" when absent.
func (j fakeJob) field(name string) string {
	var s string
	_ = json.Unmarshal(j.Body[name], &s)
	return s
}

// fakeAnswer is what the fake worker answers a job: an error, or success
// with an account and, when Generated is set, a generated password put in
// the vault as the worker does.
type fakeAnswer struct {
	Err       *wire.Error
	User      *wire.Account
	Generated string
}

func startFakeWorker(t *testing.T, answer func(fakeJob) fakeAnswer) (*fakeWorker, *Client) {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	ctx := t.Context()
	jobs, results, vault, _ := wire.Names(DefaultPrefix)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: jobs, Subjects: []string{wire.JobsSubject(DefaultPrefix)},
		Retention: jetstream.WorkQueuePolicy, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: results, Subjects: []string{wire.ResultsSubject(DefaultPrefix)},
		MaxMsgsPerSubject: 1, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: vault, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{t: t, nc: nc, kp: kp, pub: pub, vault: kv, answer: answer}
	info, _ := json.Marshal(Info{XKey: pub, Version: "fake"})
	if _, err := nc.Subscribe(DefaultPrefix+".info", func(m *nats.Msg) { _ = m.Respond(info) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(wire.JobsSubject(DefaultPrefix), w.take); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c, err := New(nc, WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return w, c
}

// take answers one job, as the worker would.
func (w *fakeWorker) take(m *nats.Msg) {
	tokens := strings.Split(m.Subject, ".") // P.jobs.<target>.user.<op>
	job := fakeJob{Target: tokens[2], Op: wire.Op(strings.Join(tokens[3:], "."))}
	if err := json.Unmarshal(m.Data, &job.Body); err != nil {
		w.t.Errorf("job on %s is not a JSON object: %v", m.Subject, err)
		return
	}
	w.mu.Lock()
	w.jobs = append(w.jobs, job)
	w.mu.Unlock()
	id := job.field("id")
	ans := w.answer(job)
	res := wire.Result{ID: id, Target: job.Target, Op: job.Op, Status: wire.StatusOK, User: ans.User,
		Attempts: 1, CompletedAt: time.Now().UTC()}
	if ans.Err != nil {
		res.Status, res.Error, res.User = wire.StatusError, ans.Err, nil
	}
	if ans.Generated != "" && ans.Err == nil {
		sealed, err := wire.Seal(w.kp.Seal, id, secret.New(ans.Generated), job.field("reply_key"))
		if err != nil {
			w.t.Errorf("seal: %v", err)
			return
		}
		key := wire.VaultKey(job.Target, id)
		if _, err := w.vault.Put(context.Background(), key, sealed); err != nil {
			w.t.Errorf("vault: %v", err)
			return
		}
		_, _, vault, _ := wire.Names(DefaultPrefix)
		res.Secret = &wire.Secret{Bucket: vault, Key: key, ExpiresAt: time.Now().Add(time.Minute)}
	}
	data, _ := json.Marshal(res)
	// A plain publish, which the results stream stores: the test may end
	// as soon as the client has the result, before a stream's ack came.
	if err := w.nc.Publish(wire.ResultSubject(DefaultPrefix, job.Target, id), data); err != nil {
		w.t.Errorf("publish the result: %v", err)
	}
}

// taken returns the jobs the fake worker was given so far.
func (w *fakeWorker) taken() []fakeJob {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]fakeJob(nil), w.jobs...)
}
