package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// fakeMsg is a jetstream.Msg that records what the worker did with it.
type fakeMsg struct {
	subject string
	header  nats.Header
	data    []byte
	seq     uint64
	// delivered is the delivery count; 1 when zero.
	delivered uint64

	mu         sync.Mutex
	acked      bool
	naked      bool
	inProgress int
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, NumDelivered: max(m.delivered, 1)}, nil
}
func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Headers() nats.Header { return m.header }

// releaseHeaders lets go of the headers, as a pulled message does once
// its delivery has read them: anything reading them later reads none.
func (m *fakeMsg) releaseHeaders() { m.header = nil }

var _ headerReleaser = (*fakeMsg)(nil)

func (m *fakeMsg) Subject() string { return m.subject }
func (m *fakeMsg) Reply() string   { return "" }
func (m *fakeMsg) Ack() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked = true
	return nil
}
func (m *fakeMsg) DoubleAck(context.Context) error { return m.Ack() }
func (m *fakeMsg) Nak() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.naked = true
	return nil
}
func (m *fakeMsg) NakWithDelay(time.Duration) error { return m.Nak() }
func (m *fakeMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inProgress++
	return nil
}
func (m *fakeMsg) Term() error                 { return m.Ack() }
func (m *fakeMsg) TermWithReason(string) error { return m.Ack() }

// fakeOps records every call that would reach MySQL. Its errs are returned
// by successive Create/Reset/Delete calls. It follows the real Target's
// shape: an error that proves nothing was sent, or (with exists) a failed
// read of the account, returns before the intent is consulted; otherwise
// the intent is recorded before the statement's error is returned.
type fakeOps struct {
	mu         sync.Mutex
	calls      []string
	errs       []error
	abandonErr error
	// exists makes Create find an existing account (and Delete find none).
	exists bool
}

func (f *fakeOps) next(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	if len(f.errs) == 0 {
		return nil
	}
	err := f.errs[0]
	f.errs = f.errs[1:]
	return err
}
func (f *fakeOps) Create(ctx context.Context, u string, _ secret.Secret, _ bool, intent mysqlops.Intent, ready mysqlops.Ready) error {
	if ready != nil {
		if err := ready(ctx); err != nil {
			return err // before any statement, like the real Target's wait
		}
	}
	err := f.next("create " + u)
	if err != nil && mysqlops.NothingSent(err) {
		return err
	}
	if f.exists {
		if err != nil {
			return err // the state could not be read
		}
		mine, ierr := intent.Mine(ctx)
		if ierr != nil {
			return ierr
		}
		if !mine {
			return mysqlops.ErrUserExists
		}
		f.record("adopt " + u)
		return nil
	}
	if _, rerr := intent.Record(ctx); rerr != nil {
		return rerr
	}
	return err
}
func (f *fakeOps) ResetPassword(ctx context.Context, u string, _ secret.Secret, ready mysqlops.Ready) (mysqlops.Account, error) {
	if ready != nil {
		if err := ready(ctx); err != nil {
			return mysqlops.Account{Username: u}, err
		}
	}
	return mysqlops.Account{Username: u}, f.next("reset " + u)
}
func (f *fakeOps) Delete(ctx context.Context, u string, intent mysqlops.Intent) (mysqlops.Account, error) {
	err := f.next("delete " + u)
	if err != nil && mysqlops.NothingSent(err) {
		return mysqlops.Account{Username: u}, err
	}
	if f.exists { // already gone
		if err != nil {
			return mysqlops.Account{Username: u}, err
		}
		mine, ierr := intent.Mine(ctx)
		if ierr != nil || !mine {
			return mysqlops.Account{Username: u}, errors.Join(ierr, mysqlops.ErrUserNotFound)
		}
		return mysqlops.Account{Username: u}, err
	}
	if _, rerr := intent.Record(ctx); rerr != nil {
		return mysqlops.Account{Username: u}, rerr
	}
	return mysqlops.Account{Username: u}, err
}
func (f *fakeOps) List(context.Context, string, int) ([]mysqlops.Account, string, error) {
	return nil, "", f.next("list")
}
func (f *fakeOps) Abandon(ctx context.Context, u string, intent mysqlops.Intent) error {
	mine, err := intent.Mine(ctx)
	if err != nil || !mine {
		return err
	}
	f.record("abandon " + u)
	return f.abandonErr
}
func (f *fakeOps) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}
func (f *fakeOps) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type fakeResults struct {
	mu     sync.Mutex
	stored map[string][]byte
	pubs   int
}

func (r *fakeResults) Publish(_ context.Context, subject string, data []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stored[subject] = append([]byte(nil), data...)
	r.pubs++
	return nil
}
func (r *fakeResults) PublishNew(ctx context.Context, subject string, data []byte) (bool, error) {
	r.mu.Lock()
	_, exists := r.stored[subject]
	r.mu.Unlock()
	if exists {
		return true, nil
	}
	return false, r.Publish(ctx, subject, data)
}
func (r *fakeResults) Lookup(_ context.Context, subject string) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.stored[subject]
	return d, ok, nil
}

type fakeKeys struct{}

func (fakeKeys) OpenPassword(sealed secret.Secret, _, _ string) (secret.Secret, error) {
	if sealed.Reveal() == "bad" {
		return secret.Secret{}, errors.New("does not open")
	}
	return sealed, nil // tests pass the clear password as the "seal"
}
func (fakeKeys) PublicKey() string { return "XWORKER" }
func (fakeKeys) SealPassword(string, secret.Secret, string) ([]byte, error) {
	return []byte("sealed"), nil
}

// fakeSecrets is the vault; with fail set, every write fails; delay holds
// each write back. entries are the keys stored and not purged.
type fakeSecrets struct {
	mu      sync.Mutex
	fail    bool
	delay   time.Duration
	puts    int
	entries map[string]bool
}

func (s *fakeSecrets) Put(_ context.Context, target, id string, _ []byte) (string, time.Time, error) {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.puts++
	if s.fail {
		return "", time.Time{}, errors.New("vault write refused")
	}
	if s.entries == nil {
		s.entries = map[string]bool{}
	}
	s.entries[target+"."+id] = true
	return target + "." + id, time.Now().Add(time.Minute), nil
}
func (s *fakeSecrets) Purge(_ context.Context, target, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, target+"."+id)
	return nil
}
func (s *fakeSecrets) Bucket() string { return "DBUSERS_VAULT" }

// has reports whether the vault holds the entry of job id of target app.
func (s *fakeSecrets) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries["app."+id]
}

type fakeIntents struct {
	mu sync.Mutex
	m  map[string]string
}

func (i *fakeIntents) Get(_ context.Context, k string) (string, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.m[k], nil
}
func (i *fakeIntents) Put(_ context.Context, k, v string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.m[k] = v
	return nil
}

// stored returns a published job subject as the jobs stream stores it, in
// partition 0.
func stored(subject string) string {
	rest := strings.TrimPrefix(subject, "dbusers.jobs.")
	if !strings.Contains(rest, ".") {
		return subject
	}
	return "dbusers.jobs.0." + rest
}

type harness struct {
	w       *Worker
	ops     *fakeOps
	results *fakeResults
	secrets *fakeSecrets
}

func newHarness(t *testing.T, budget time.Duration) *harness {
	t.Helper()
	h := &harness{ops: &fakeOps{}, results: &fakeResults{stored: map[string][]byte{}}, secrets: &fakeSecrets{}}
	w, err := NewWorker(Config{
		Prefix:           "dbusers",
		Targets:          map[string]Ops{"app": h.ops},
		Keys:             fakeKeys{},
		Secrets:          h.secrets,
		Results:          h.results,
		Intents:          &fakeIntents{m: map[string]string{}},
		GeneratePassword: func() (secret.Secret, error) { return secret.New(strings.Repeat("g", 64)), nil },
		RetryBudget:      budget,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h
}

func replyKey(t *testing.T) string {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// run processes one job and returns its message and decoded result.
func (h *harness) run(t *testing.T, op, id, body string) (*fakeMsg, wire.Result) {
	t.Helper()
	m := &fakeMsg{subject: stored("dbusers.jobs.app.user." + op), header: nats.Header{}, data: []byte(body), seq: 7}
	if id != "" {
		m.header.Set("Nats-Msg-Id", id)
	}
	h.w.process(&delivery{msg: m, received: time.Now()})
	var res wire.Result
	if data, ok := h.results.stored[wire.ResultSubject("dbusers", "app", ResultID(id, m.data, 7))]; ok {
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatalf("result does not decode: %v", err)
		}
	}
	return m, res
}
