// Package test holds the integration tests: a real worker (through
// internal/service) against the local MariaDB and an in-process
// nats-server, driven the way an orchestrator drives it.
package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

const prefix = "dbusers"

// startNATS runs an in-process JetStream server on a random port.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return natstest.Run(t, natstest.Options{})
}

// logBuffer collects the worker's log output for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *logBuffer) Sync() error { return nil }
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a running worker and an orchestrator's connection to it.
type env struct {
	t    *testing.T
	cfg  *config.Config
	svc  *service.Service
	nc   *nats.Conn
	js   jetstream.JetStream
	logs *logBuffer
	seq  int
	mu   sync.Mutex
	// svcKey is the worker's xkey when the worker is another process.
	svcKey string
}

// workerPub is the worker's curve public key.
func (e *env) workerPub() string {
	if e.svcKey != "" {
		return e.svcKey
	}
	return e.svc.PublicKey()
}

// workerKey asks the info endpoint for the worker's xkey.
func workerKey(t *testing.T, nc *nats.Conn) string {
	t.Helper()
	msg, err := nc.Request(prefix+".info", nil, 10*time.Second)
	if err != nil {
		t.Fatalf("info endpoint: %v", err)
	}
	var info struct{ XKey string }
	if err := json.Unmarshal(msg.Data, &info); err != nil || info.XKey == "" {
		t.Fatalf("info answer %s: %v", msg.Data, err)
	}
	return info.XKey
}

// storedResults polls the results stream until every id in want has a
// result there.
func storedResults(t *testing.T, e *env, want map[string]bool, timeout time.Duration) map[string]wire.Result {
	t.Helper()
	stream, err := e.js.Stream(t.Context(), "DBUSERS_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]wire.Result{}
	deadline := time.Now().Add(timeout)
	for len(got) < len(want) {
		for id := range want {
			if _, ok := got[id]; ok {
				continue
			}
			target, _, _ := strings.Cut(id, "-")
			msg, err := stream.GetLastMsgForSubject(t.Context(), prefix+".results."+target+"."+id)
			if err != nil {
				continue
			}
			var res wire.Result
			if err := json.Unmarshal(msg.Data, &res); err != nil {
				t.Fatal(err)
			}
			got[id] = res
		}
		if len(got) < len(want) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d results stored after %v", len(got), len(want), timeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return got
}

// target is one configured target for startWorker.
func target(name string, f *mysqltest.Fixture) config.Target {
	return config.Target{Name: name, DSN: secret.New(f.AdminDSN), Database: f.Database, ProtectedUsers: []string{f.Protected}}
}

// startWorker runs a worker on a fresh in-process nats-server with the
// given targets; edit may change the config before it starts.
func startWorker(t *testing.T, targets []config.Target, edit func(*config.Config)) *env {
	t.Helper()
	return startWorkerOn(t, startNATS(t), targets, edit)
}

// startWorkerOn is startWorker on a nats-server of the test's own.
func startWorkerOn(t *testing.T, ns *server.Server, targets []config.Target, edit func(*config.Config)) *env {
	t.Helper()
	return startWorkerOnWith(t, ns, targets, edit, service.Options{})
}

// startWorkerWith is startWorker with service options.
func startWorkerWith(t *testing.T, targets []config.Target, edit func(*config.Config), opts service.Options) *env {
	t.Helper()
	return startWorkerOnWith(t, startNATS(t), targets, edit, opts)
}

// startWorkerOnWith is startWorkerOn with service options.
func startWorkerOnWith(t *testing.T, ns *server.Server, targets []config.Target, edit func(*config.Config), opts service.Options) *env {
	t.Helper()
	cfg := config.Default()
	cfg.NATS.URL = ns.ClientURL()
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "worker.xk")
	cfg.Retry.Budget = 10 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = targets
	if edit != nil {
		edit(&cfg)
	}
	return runWorkerWith(t, cfg, opts)
}

// runWorker starts a worker with cfg, stopped when the test ends, and an
// orchestrator's connection to its NATS.
func runWorker(t *testing.T, cfg config.Config) *env {
	t.Helper()
	return runWorkerWith(t, cfg, service.Options{})
}

// runWorkerWith is runWorker with service options (the logger is the
// test's).
func runWorkerWith(t *testing.T, cfg config.Config, opts service.Options) *env {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &logBuffer{}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts.Logger = zap.New(zapcoreFor(logs))
	svc, err := service.Start(ctx, &cfg, opts)
	if err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() {
		if err := svc.Stop(); err != nil {
			t.Errorf("stop worker: %v", err)
		}
	})
	nc := connect(t, svc.ClientURL())
	return &env{t: t, cfg: &cfg, svc: svc, nc: nc, js: jetstreamFor(t, nc), logs: logs}
}

// deadTarget is a target whose MySQL address answers nothing.
func deadTarget(t *testing.T, name string) config.Target {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	return config.Target{Name: name, DSN: secret.New("adm:pw@tcp(" + addr + ")/"), Database: "gone_db"}
}

// nextID returns a unique job id.
func (e *env) nextID() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	return "job-" + mysqltest.Token(8) + "-" + string(rune('a'+e.seq%26))
}

// requester is an orchestrator's fresh curve key for a job.
type requester struct {
	kp  nkeys.KeyPair
	pub string
}

func newRequester(t *testing.T) requester {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return requester{kp: kp, pub: pub}
}

// publish sends a raw job body on the target's op subject with msgID as
// Nats-Msg-Id ("" for none) and returns the result published for resultID.
func (e *env) publish(subject, msgID, resultID string, body []byte) wire.Result {
	e.t.Helper()
	raw := e.publishRaw(subject, msgID, resultID, body)
	var res wire.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		e.t.Fatalf("result does not decode: %v\n%s", err, raw)
	}
	return res
}

// publishRaw is publish returning the result's bytes.
func (e *env) publishRaw(subject, msgID, resultID string, body []byte) []byte {
	e.t.Helper()
	target := subjectTarget(subject)
	sub, err := e.nc.SubscribeSync(prefix + ".results." + target + "." + resultID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer sub.Unsubscribe()
	msg := nats.NewMsg(subject)
	msg.Data = body
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		e.t.Fatalf("publish job: %v", err)
	}
	res, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		e.t.Fatalf("no result for %s on %s: %v", resultID, subject, err)
	}
	return res.Data
}

// subjectTarget returns the target token of a job subject.
func subjectTarget(subject string) string {
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) < 3 {
		return "_"
	}
	return parts[2]
}

// job sends op with fields for target, with a matching Nats-Msg-Id.
func (e *env) job(target, op string, fields map[string]any) wire.Result {
	e.t.Helper()
	id, _ := fields["id"].(string)
	if id == "" {
		id = e.nextID()
		fields["id"] = id
	}
	body, err := json.Marshal(fields)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.publish(prefix+".jobs."+target+".user."+op, id, id, body)
}

// sealFor seals a chosen password for the worker.
func (e *env) sealFor(r requester, jobID, password string) string {
	e.t.Helper()
	s, err := wire.SealChosenPassword(r.kp, e.workerPub(), jobID, secret.New(password))
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// create runs a create job; password "" lets the worker generate one. It
// returns the result and the password in force (read from the vault when
// generated).
func (e *env) create(target, username string, readOnly bool, password string) (wire.Result, string) {
	e.t.Helper()
	return e.withPassword(target, "create", map[string]any{"username": username, "read_only": readOnly}, password)
}

// reset runs a reset_password job, like create.
func (e *env) reset(target, username, password string) (wire.Result, string) {
	e.t.Helper()
	return e.withPassword(target, "reset_password", map[string]any{"username": username}, password)
}

func (e *env) withPassword(target, op string, fields map[string]any, password string) (wire.Result, string) {
	e.t.Helper()
	r := newRequester(e.t)
	id := e.nextID()
	fields["id"] = id
	fields["reply_key"] = r.pub
	if password != "" {
		fields["password"] = e.sealFor(r, id, password)
	}
	res := e.job(target, op, fields)
	if res.Status != wire.StatusOK || password != "" {
		if res.Secret != nil {
			e.t.Errorf("a result for a chosen password carries a secret: %+v", res.Secret)
		}
		return res, password
	}
	if res.Secret == nil {
		e.t.Fatalf("generated password but no secret in the result: %+v", res)
	}
	return res, e.readSecret(r, id, res.Secret)
}

// readSecret gets, opens, checks and purges a generated password, as a
// requester does.
func (e *env) readSecret(r requester, jobID string, s *wire.Secret) string {
	e.t.Helper()
	kv, err := e.js.KeyValue(e.t.Context(), s.Bucket)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(e.t.Context(), s.Key)
	if err != nil {
		e.t.Fatalf("vault get %s: %v", s.Key, err)
	}
	pw, err := wire.OpenGeneratedPassword(r.kp, e.workerPub(), entry.Value(), jobID)
	if err != nil {
		e.t.Fatalf("open the generated password: %v", err)
	}
	if err := kv.Purge(e.t.Context(), s.Key); err != nil {
		e.t.Fatalf("purge: %v", err)
	}
	return pw.Reveal()
}

// wantOK fails the test unless res succeeded.
func wantOK(t *testing.T, res wire.Result) {
	t.Helper()
	if res.Status != wire.StatusOK {
		t.Fatalf("job failed: %+v", res.Error)
	}
}

// wantCode fails the test unless res failed with code.
func wantCode(t *testing.T, res wire.Result, code wire.Code) {
	t.Helper()
	if res.Status != wire.StatusError || res.Error == nil || res.Error.Code != code {
		t.Fatalf("result %+v (error %+v), want %s", res, res.Error, code)
	}
	if res.Error.Message == "" {
		t.Fatalf("error %s without a message", code)
	}
}

// isKeyGone reports whether a vault key reads as gone.
func isKeyGone(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func jetstreamFor(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// zapcoreFor writes JSON log lines into w.
func zapcoreFor(w *logBuffer) zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), w, zap.DebugLevel)
}
