// Package workertest runs a stand-in for the dbusers worker on an
// in-process JetStream server, for the tests of the client and the CLI:
// the jobs and results streams and the vault bucket under a prefix, P.info
// answered with a curve key, and every job answered with what the test
// says, a generated password sealed into the vault as the worker does. It
// records each job it was given.
//
// It builds on the wire package alone, not on the client, so that the
// client's own tests can use it.
package workertest

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

// Worker is a running stand-in for the worker.
type Worker struct {
	// URL is the server's client URL (TCP), for the CLI.
	URL string
	// Conn is a connection to the server (in-process), for a client.
	Conn *nats.Conn

	t      *testing.T
	prefix string
	kp     nkeys.KeyPair
	vault  jetstream.KeyValue
	answer func(Job) Answer

	mu   sync.Mutex
	jobs []Job
}

// Job is a job as the stand-in received it.
type Job struct {
	Target string
	Op     wire.Op
	// Body is the job's JSON object, field by field.
	Body map[string]json.RawMessage
}

// Field returns the body's string field name, "" when absent.
func (j Job) Field(name string) string {
	var s string
	_ = json.Unmarshal(j.Body[name], &s)
	return s
}

// Answer is a job's outcome: Err, or success with User, Users (a list)
// and, when Generated is set, a generated password put in the vault as the
// worker does.
type Answer struct {
	Err       *wire.Error
	User      *wire.Account
	Users     []wire.Account
	Generated string
}

// info is what P.info answers, the client's Info.
type info struct {
	XKey    string `json:"xkey"`
	Version string `json:"version"`
}

// Start runs a stand-in for the worker under the subject prefix; it
// answers every job with what answer returns, and stops when the test
// ends.
func Start(t *testing.T, prefix string, answer func(Job) Answer) *Worker {
	t.Helper()
	s := natstest.Run(t, natstest.Options{})
	nc, js := natstest.Connect(t, s)
	ctx := t.Context()
	jobs, results, vault, _ := wire.Names(prefix)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: jobs, Subjects: []string{wire.JobsSubject(prefix)},
		Retention: jetstream.WorkQueuePolicy, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: results, Subjects: []string{wire.ResultsSubject(prefix)},
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
	w := &Worker{URL: s.ClientURL(), Conn: nc, t: t, prefix: prefix, kp: kp, vault: kv, answer: answer}
	infoData, _ := json.Marshal(info{XKey: pub, Version: "fake"})
	if _, err := nc.Subscribe(prefix+".info", func(m *nats.Msg) { _ = m.Respond(infoData) }); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(wire.JobsSubject(prefix), w.take); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// take answers one job, as the worker would.
func (w *Worker) take(m *nats.Msg) {
	tokens := strings.Split(m.Subject, ".") // P.jobs.<target>.user.<op>
	job := Job{Target: tokens[2], Op: wire.Op(strings.Join(tokens[3:], "."))}
	if err := json.Unmarshal(m.Data, &job.Body); err != nil {
		w.t.Errorf("job on %s is not a JSON object: %v", m.Subject, err)
		return
	}
	w.mu.Lock()
	w.jobs = append(w.jobs, job)
	w.mu.Unlock()
	id := job.Field("id")
	ans := w.answer(job)
	res := wire.Result{ID: id, Target: job.Target, Op: job.Op, Status: wire.StatusOK, User: ans.User, Users: ans.Users,
		Attempts: 1, CompletedAt: time.Now().UTC()}
	if ans.Err != nil {
		res = wire.Result{ID: id, Target: job.Target, Op: job.Op, Status: wire.StatusError, Error: ans.Err, Attempts: 1, CompletedAt: res.CompletedAt}
	} else if ans.Generated != "" {
		sealed, err := wire.Seal(w.kp.Seal, id, secret.New(ans.Generated), job.Field("reply_key"))
		if err != nil {
			w.t.Errorf("seal: %v", err)
			return
		}
		key := wire.VaultKey(job.Target, id)
		if _, err := w.vault.Put(context.Background(), key, sealed); err != nil {
			w.t.Errorf("vault: %v", err)
			return
		}
		_, _, vault, _ := wire.Names(w.prefix)
		res.Secret = &wire.Secret{Bucket: vault, Key: key, ExpiresAt: time.Now().Add(time.Minute)}
	}
	data, _ := json.Marshal(res)
	// A plain publish, which the results stream stores: the test may end
	// as soon as the caller has the result, before a stream's ack came.
	if err := w.Conn.Publish(wire.ResultSubject(w.prefix, job.Target, id), data); err != nil {
		w.t.Errorf("publish the result: %v", err)
	}
}

// Taken returns the jobs the stand-in was given so far.
func (w *Worker) Taken() []Job {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Job(nil), w.jobs...)
}
