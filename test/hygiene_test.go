package test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// needle is something that must be found nowhere: its name for messages
// and the byte strings that would betray it.
type needle struct {
	name  string
	forms map[string][]byte // form name → bytes
}

// secrets collects what the hygiene test searches for.
type secrets struct{ list []needle }

// password adds a clear password: raw, as JSON writes it inside a string,
// and in every base64 alphabet.
func (s *secrets) password(name, pw string) {
	q, _ := json.Marshal(pw)
	s.list = append(s.list, needle{name: name, forms: map[string][]byte{
		"clear":                []byte(pw),
		"json-escaped":         q[1 : len(q)-1],
		"base64":               []byte(base64.StdEncoding.EncodeToString([]byte(pw))),
		"base64 (unpadded)":    []byte(base64.RawStdEncoding.EncodeToString([]byte(pw))),
		"base64url":            []byte(base64.URLEncoding.EncodeToString([]byte(pw))),
		"base64url (unpadded)": []byte(base64.RawURLEncoding.EncodeToString([]byte(pw))),
	}})
}

// sealed adds a sealed blob: its raw bytes and its standard base64 (the
// form of a job's "password" field).
func (s *secrets) sealed(name string, raw []byte) {
	s.list = append(s.list, needle{name: name, forms: map[string][]byte{
		"raw":    raw,
		"base64": []byte(base64.StdEncoding.EncodeToString(raw)),
	}})
}

// find returns a description of every secret form found in data.
func (s *secrets) find(data []byte) []string {
	var found []string
	for _, sec := range s.list {
		for form, b := range sec.forms {
			if len(b) > 0 && bytes.Contains(data, b) {
				found = append(found, sec.name+" ("+form+")")
			}
		}
	}
	return found
}

// hygieneWorker runs a worker on its embedded nats-server with every path
// relative to the test's working directory, dir, which the test owns: the
// NATS store goes to dir/data/nats and the xkey seed to dir/data/worker.xk,
// the defaults of contract §6.
func hygieneWorker(t *testing.T, targets []config.Target) *env {
	t.Helper()
	cfg := config.Default()
	cfg.NATS.URL = ""
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.Retry.Budget = time.Minute // the down target's job outlives the test
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = targets
	return runWorker(t, cfg)
}

// hygieneWorkload drives e like an orchestrator: creates and resets with
// chosen and generated passwords (one chosen password under a "password"
// key spelled with a JSON escape), lists, deletes, and jobs whose password
// is refused. Every password and sealed blob it makes is added to s.
func hygieneWorkload(t *testing.T, e *env, tgt string, f *mysqltest.Fixture, s *secrets) {
	t.Helper()
	// withPassword runs op for username with a chosen password (pw != "")
	// or a generated one, and returns the result and the password in force.
	withPassword := func(op, username string, readOnly *bool, pw string) (wire.Result, string) {
		t.Helper()
		r := newRequester(t)
		id := e.nextID()
		fields := map[string]any{"id": id, "username": username, "reply_key": r.pub}
		if readOnly != nil {
			fields["read_only"] = *readOnly
		}
		if pw != "" {
			sealed := e.sealFor(r, id, pw)
			raw, err := base64.StdEncoding.DecodeString(sealed)
			if err != nil {
				t.Fatal(err)
			}
			s.sealed("chosen password of "+id+" sealed", raw)
			fields["password"] = sealed
		}
		res := e.job(tgt, op, fields)
		if res.Status != wire.StatusOK || pw != "" {
			return res, pw
		}
		kv, err := e.js.KeyValue(t.Context(), res.Secret.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		entry, err := kv.Get(t.Context(), res.Secret.Key)
		if err != nil {
			t.Fatalf("vault get %s: %v", res.Secret.Key, err)
		}
		s.sealed("generated password of "+id+" sealed", entry.Value())
		gen, err := wire.OpenGeneratedPassword(r.kp, e.workerPub(), entry.Value(), id)
		if err != nil {
			t.Fatal(err)
		}
		s.password("generated password of "+id, gen.Reveal())
		if err := kv.Purge(t.Context(), res.Secret.Key); err != nil {
			t.Fatal(err)
		}
		return res, gen.Reveal()
	}
	rw, ro := false, true
	alice, bob := mysqltest.Username("hyg_"), mysqltest.Username("hyg_")
	f.DropUserLater(alice)
	f.DropUserLater(bob)

	chosen := []string{
		"Chosen-" + mysqltest.Token(24),
		`back\slash$and-other!chars#` + mysqltest.Token(12),
		"Reset-" + mysqltest.Token(30),
	}
	for i, pw := range chosen {
		s.password(fmt.Sprintf("chosen password %d", i), pw)
	}

	steps := []struct {
		name string
		run  func() (wire.Result, string)
		code wire.Code // "" for success
	}{
		{"create with a chosen password", func() (wire.Result, string) { return withPassword("create", alice, &rw, chosen[0]) }, ""},
		{"create with a generated password", func() (wire.Result, string) { return withPassword("create", bob, &ro, "") }, ""},
		{"reset to a chosen password", func() (wire.Result, string) { return withPassword("reset_password", bob, nil, chosen[1]) }, ""},
		{"reset to a generated password", func() (wire.Result, string) { return withPassword("reset_password", alice, nil, "") }, ""},
		{"reset to another chosen password", func() (wire.Result, string) { return withPassword("reset_password", alice, nil, chosen[2]) }, ""},
		{"list", func() (wire.Result, string) { return e.job(tgt, "list", map[string]any{}), "" }, ""},
	}
	for _, st := range steps {
		res, pw := st.run()
		if st.code == "" {
			wantOK(t, res)
		}
		if pw != "" && res.User != nil {
			if err := f.CanLogin(res.User.Username, pw); err != nil {
				t.Fatalf("%s: the password in force does not log in: %v", st.name, err)
			}
		}
	}

	// A chosen password under a key spelled with an escape, as a JSON
	// encoder may write it: the worker reads it as "password" all the same.
	escaped := "Escaped-" + mysqltest.Token(24)
	s.password("chosen password under an escaped key", escaped)
	{
		r := newRequester(t)
		id := e.nextID()
		seal := e.sealFor(r, id, escaped)
		raw, _ := base64.StdEncoding.DecodeString(seal)
		s.sealed("chosen password of "+id+" sealed, under an escaped key", raw)
		body := fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q,"pass\u0077ord":%q}`, id, bob, r.pub, seal)
		wantOK(t, e.publish(prefix+".jobs."+tgt+".user.reset_password", id, id, body))
		if err := f.CanLogin(bob, escaped); err != nil {
			t.Fatalf("the password under an escaped key does not log in: %v", err)
		}
	}

	// Refused passwords: they were meant to be secret too.
	short, quoted := "short-secret-"+mysqltest.Token(6), "it's-a-secret-with-a-quote-"+mysqltest.Token(8)
	s.password("refused short password", short)
	s.password("refused password with a quote", quoted)
	for _, pw := range []string{short, quoted} {
		res, _ := withPassword("reset_password", alice, nil, pw)
		wantCode(t, res, wire.CodeInvalidPassword)
	}
	// A seal replayed from another job: its password must not leak either.
	replayed := "Replayed-" + mysqltest.Token(24)
	s.password("replayed password", replayed)
	r := newRequester(t)
	seal := e.sealFor(r, "job-other", replayed)
	raw, _ := base64.StdEncoding.DecodeString(seal)
	s.sealed("replayed seal", raw)
	wantCode(t, e.job(tgt, "reset_password", map[string]any{"username": alice, "reply_key": r.pub, "password": seal}),
		wire.CodeInvalidPassword)

	for _, u := range []string{alice, bob} {
		wantOK(t, e.job(tgt, "delete", map[string]any{"username": u}))
	}
	wantOK(t, e.job(tgt, "list", map[string]any{}))
}

// streamMessages returns every message still in every stream of the
// server, KV buckets included, as one byte string per message (subject,
// headers and data).
func streamMessages(t *testing.T, js jetstream.JetStream) map[string][]byte {
	t.Helper()
	ctx := t.Context()
	out := map[string][]byte{}
	names := js.StreamNames(ctx)
	var streams []string
	for name := range names.Name() {
		streams = append(streams, name)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	if len(streams) < 5 {
		t.Fatalf("only streams %v", streams)
	}
	for _, name := range streams {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq != 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", name, seq, err)
			}
			var b bytes.Buffer
			b.WriteString(m.Subject + "\n")
			for k, vs := range m.Header {
				b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
			}
			b.Write(m.Data)
			out[fmt.Sprintf("%s #%d (%s)", name, seq, m.Subject)] = b.Bytes()
		}
	}
	return out
}

// TestSecretHygiene runs a full workload through a worker whose NATS store
// and working files all live in a directory the test owns (its working
// directory), then searches for every password used (chosen, generated,
// refused), every sealed blob and the admin DSN passwords in the worker's
// log (the embedded nats-server's included), in every message of every
// stream (the raw KV streams too) and in every file of that directory,
// read raw. It finds none: the generated passwords were all read and
// purged, so no vault entry may hold a sealed blob any more.
func TestSecretHygiene(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	down, downPassword := downTarget()
	e := hygieneWorker(t, []config.Target{target("hygiene", f), down})

	s := &secrets{}
	s.password("admin DSN password", f.AdminPassword)
	s.password("admin DSN password of the down target", downPassword)
	control := publishPending(t, e)
	hygieneWorkload(t, e, "hygiene", f, s)
	waitOnlyPendingLeft(t, e)

	t.Run("log", func(t *testing.T) {
		if found := s.find([]byte(e.logs.String())); len(found) > 0 {
			t.Errorf("the worker's log holds: %s", strings.Join(found, ", "))
		}
		if len(control.find([]byte(e.logs.String()))) == 0 {
			t.Fatal("the log does not show the pending job either: the search proves nothing")
		}
	})

	t.Run("streams", func(t *testing.T) {
		controls := 0
		for where, data := range streamMessages(t, e.js) {
			if found := s.find(data); len(found) > 0 {
				t.Errorf("%s holds: %s", where, strings.Join(found, ", "))
			}
			controls += len(control.find(data))
		}
		if controls == 0 {
			t.Fatal("no stream message shows the pending job either: the search proves nothing")
		}
	})

	// The store is read after the server is stopped (the down target's job
	// handed back), so that everything it keeps is on disk.
	e.nc.Close()
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Run("files", func(t *testing.T) {
		// The embedded store is encrypted at rest, so not even the pending
		// job's id is readable in it; a file of the test's own with the
		// control in clear proves the search reads and matches files.
		if err := os.WriteFile(filepath.Join(dir, "control.txt"), []byte("pending-list"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "data", "nats", "jetstream")); err != nil {
			t.Fatalf("the NATS store is not where the test looks: %v", err)
		}
		files, controls := searchFiles(t, dir, s, control)
		if files < 10 || controls != 1 {
			t.Fatalf("%d files under %s, %d showing the control (want only control.txt): the search proves nothing, or the store is not encrypted", files, dir, controls)
		}
	})
}

// TestPasswordJobsErasedFromStoreInClear: on an outside NATS whose store
// is not encrypted at rest (nats.store_encrypted false), a job that
// carried a password is overwritten in the store before it is
// acknowledged, so the jobs stream's files hold none of the workload's
// passwords or seals, while a job still pending is readable there in
// clear. (With an encrypted store the worker only deletes such jobs;
// TestSecretHygiene covers that.)
func TestPasswordJobsErasedFromStoreInClear(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	ns := natstest.Run(t, natstest.Options{StoreDir: storeDir})
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	down, _ := downTarget()
	cfg := config.Default()
	cfg.NATS.URL = ns.ClientURL()
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "worker.xk")
	cfg.Retry.Budget = time.Minute // the down target's job outlives the test
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Targets = []config.Target{target("inclear", f), down}
	e := runWorker(t, cfg)

	s := &secrets{}
	control := publishPending(t, e)
	hygieneWorkload(t, e, "inclear", f, s)
	waitOnlyPendingLeft(t, e)

	e.nc.Close()
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	jobsDir := filepath.Join(storeDir, "jetstream", "$G", "streams", "DBUSERS_JOBS")
	files, controls := searchFiles(t, jobsDir, s, control)
	if files == 0 || controls == 0 {
		t.Fatalf("%d files under %s, %d showing the pending job: the search proves nothing", files, jobsDir, controls)
	}
}

// downTarget is a target whose MySQL is down, and its admin password: its
// job stays pending (retried) all along, as on a busy worker the jobs
// stream is rarely empty.
func downTarget() (config.Target, string) {
	pw := mysqltest.Password()
	return config.Target{Name: "down", DSN: secret.New("dbusers_admin:" + pw + "@tcp(127.0.0.1:1)/"),
		Database: "down_db", ProtectedUsers: []string{"down_owner"}}, pw
}

// publishPending publishes a list job for the down target, and returns
// its id as the control of a search: a search that does not find it where
// the pending job is kept is broken.
func publishPending(t *testing.T, e *env) *secrets {
	t.Helper()
	control := &secrets{}
	control.password("control", "pending-list")
	pending := nats.NewMsg(prefix + ".jobs.down.user.list")
	pending.Data = []byte(`{"id":"pending-list"}`)
	if _, err := e.js.PublishMsg(t.Context(), pending); err != nil {
		t.Fatal(err)
	}
	return control
}

// waitOnlyPendingLeft waits until everything else the worker was asked is
// answered and acknowledged: only the down target's job is left in the
// jobs stream.
func waitOnlyPendingLeft(t *testing.T, e *env) {
	t.Helper()
	jobsStream, err := e.js.Stream(t.Context(), "DBUSERS_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, err := jobsStream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d jobs in the jobs stream, want the down target's one", info.State.Msgs)
		}
	}
}

// searchFiles reads every regular file under dir raw, reports each that
// holds one of s, and returns how many files it read and how many showed
// the control.
func searchFiles(t *testing.T, dir string, s, control *secrets) (files, controls int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if len(control.find(data)) > 0 {
			controls++
		}
		if found := s.find(data); len(found) > 0 {
			rel, _ := filepath.Rel(dir, path)
			t.Errorf("%s holds: %s", rel, strings.Join(found, ", "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, controls
}
