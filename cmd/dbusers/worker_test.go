package main

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

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// answeringWorker stands in for the worker, over TCP for the CLI: the jobs
// and results streams and the vault bucket under the default prefix,
// P.info answered, and every job answered with what answer returns (a
// generated password put in the vault as the worker does). Unlike
// fakeWorker, it answers jobs; it records each one.
type answeringWorker struct {
	t      *testing.T
	url    string
	nc     *nats.Conn
	kp     nkeys.KeyPair
	vault  jetstream.KeyValue
	answer func(workerJob) workerAnswer

	mu   sync.Mutex
	jobs []workerJob
}

// workerJob is a job as the worker received it.
type workerJob struct {
	Target string
	Op     wire.Op
	Body   map[string]json.RawMessage
}

// field returns the body's string field name, "" when absent.
func (j workerJob) field(name string) string {
	var s string
	_ = json.Unmarshal(j.Body[name], &s)
	return s
}

// workerAnswer is a job's outcome: Err, or success with User, Users (a
// list) and a Generated password.
type workerAnswer struct {
	Err       *wire.Error
	User      *wire.Account
	Users     []wire.Account
	Generated string
}

func startAnsweringWorker(t *testing.T, answer func(workerJob) workerAnswer) *answeringWorker {
	t.Helper()
	s := natstest.Run(t, natstest.Options{})
	nc, js := natstest.Connect(t, s)
	ctx := t.Context()
	jobs, results, vault, _ := wire.Names(client.DefaultPrefix)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: jobs, Subjects: []string{wire.JobsSubject(client.DefaultPrefix)},
		Retention: jetstream.WorkQueuePolicy, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: results, Subjects: []string{wire.ResultsSubject(client.DefaultPrefix)},
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
	w := &answeringWorker{t: t, url: s.ClientURL(), nc: nc, kp: kp, vault: kv, answer: answer}
	info, _ := json.Marshal(client.Info{XKey: pub, Version: "fake"})
	if _, err := nc.Subscribe(client.DefaultPrefix+".info", func(m *nats.Msg) { _ = m.Respond(info) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(wire.JobsSubject(client.DefaultPrefix), w.take); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// take answers one job.
func (w *answeringWorker) take(m *nats.Msg) {
	tokens := strings.Split(m.Subject, ".") // P.jobs.<target>.user.<op>
	job := workerJob{Target: tokens[2], Op: wire.Op(strings.Join(tokens[3:], "."))}
	if err := json.Unmarshal(m.Data, &job.Body); err != nil {
		w.t.Errorf("job on %s is not a JSON object: %v", m.Subject, err)
		return
	}
	w.mu.Lock()
	w.jobs = append(w.jobs, job)
	w.mu.Unlock()
	id := job.field("id")
	ans := w.answer(job)
	res := wire.Result{ID: id, Target: job.Target, Op: job.Op, Status: wire.StatusOK, User: ans.User, Users: ans.Users,
		Attempts: 1, CompletedAt: time.Now().UTC()}
	if ans.Err != nil {
		res = wire.Result{ID: id, Target: job.Target, Op: job.Op, Status: wire.StatusError, Error: ans.Err, Attempts: 1, CompletedAt: res.CompletedAt}
	} else if ans.Generated != "" {
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
		_, _, vault, _ := wire.Names(client.DefaultPrefix)
		res.Secret = &wire.Secret{Bucket: vault, Key: key, ExpiresAt: time.Now().Add(time.Minute)}
	}
	data, _ := json.Marshal(res)
	// A plain publish, which the results stream stores: the test may end
	// as soon as the CLI has the result.
	if err := w.nc.Publish(wire.ResultSubject(client.DefaultPrefix, job.Target, id), data); err != nil {
		w.t.Errorf("publish the result: %v", err)
	}
}

// taken returns the jobs the worker was given so far.
func (w *answeringWorker) taken() []workerJob {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]workerJob(nil), w.jobs...)
}
