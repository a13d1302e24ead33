package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/natstest"
)

// fakeWorker is a NATS server on which something answers P.info as a
// worker does and records the subjects of the jobs published under P.
type fakeWorker struct {
	url  string
	jobs chan string
}

func startFakeWorker(t *testing.T, prefix string) *fakeWorker {
	t.Helper()
	s := natstest.Run(t, natstest.Options{})
	nc, _ := natstest.Connect(t, s)
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]string{"xkey": pub, "version": "test"})
	if _, err := nc.Subscribe(prefix+".info", func(m *nats.Msg) { _ = m.Respond(info) }); err != nil {
		t.Fatal(err)
	}
	w := &fakeWorker{url: s.ClientURL(), jobs: make(chan string, 10)}
	if _, err := nc.Subscribe(prefix+".jobs.>", func(m *nats.Msg) { w.jobs <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// job returns the subject of the first job published on w, or "" when
// none came.
func (w *fakeWorker) job() string {
	select {
	case s := <-w.jobs:
		return s
	case <-time.After(50 * time.Millisecond):
		return ""
	}
}

func writeContext(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cli-context.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestContextOfMakeRun: with the context that make run writes and no flag
// or variable, a command goes to the context's NATS, prefix and target; a
// flag or a variable wins over each; without a context the defaults hold.
func TestContextOfMakeRun(t *testing.T) {
	t.Parallel()
	ctxWorker := startFakeWorker(t, "ctxp")
	envWorker := startFakeWorker(t, "ctxp")
	envPrefixWorker := startFakeWorker(t, "envp")
	ctxFile := writeContext(t, `{"nats_url":"`+ctxWorker.url+`","target":"demo","prefix":"ctxp"}`)

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		worker *fakeWorker
		want   string // the job's subject
	}{
		{"context alone", nil, nil, ctxWorker, "ctxp.jobs.demo.user.list"},
		{"--target wins", []string{"--target", "flagged"}, nil, ctxWorker, "ctxp.jobs.flagged.user.list"},
		{"DBUSERS_TARGET wins", nil, map[string]string{"DBUSERS_TARGET": "envt"}, ctxWorker, "ctxp.jobs.envt.user.list"},
		{"--nats-url wins", []string{"--nats-url", envWorker.url}, nil, envWorker, "ctxp.jobs.demo.user.list"},
		{"DBUSERS_NATS_URL wins", nil, map[string]string{"DBUSERS_NATS_URL": envWorker.url}, envWorker, "ctxp.jobs.demo.user.list"},
		{"DBUSERS_PREFIX wins", nil, map[string]string{"DBUSERS_PREFIX": "envp", "DBUSERS_NATS_URL": envPrefixWorker.url}, envPrefixWorker, "envp.jobs.demo.user.list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the workers' job channels are shared.
			var out, errOut bytes.Buffer
			args := append([]string{"--timeout", "300ms"}, tt.args...)
			run(t.Context(), append(args, "database-users-list"), func(k string) string { return tt.env[k] },
				stdio{in: strings.NewReader(""), out: &out, err: &errOut, contextPath: ctxFile})
			if got := tt.worker.job(); got != tt.want {
				t.Errorf("job on %q, want %q; stderr:\n%s", got, tt.want, errOut.String())
			}
			for _, w := range []*fakeWorker{ctxWorker, envWorker, envPrefixWorker} {
				if got := w.job(); got != "" {
					t.Errorf("a second job, on %q", got)
				}
			}
		})
	}
}

// TestContextErrors: a context that does not parse is named with what to
// do, unless the flags make it moot; a context's NATS that does not answer
// points at the make run that wrote it; no context keeps the defaults.
func TestContextErrors(t *testing.T) {
	t.Parallel()
	down := writeContext(t, `{"nats_url":"nats://127.0.0.1:1","target":"demo","prefix":"dbusers"}`)
	broken := writeContext(t, `{"nats_url":`)
	tests := []struct {
		name    string
		context string
		args    []string
		want    []string
	}{
		{"broken", broken, nil, []string{broken, "is not a dbusers CLI context", "run make run again"}},
		{"broken but moot", broken, []string{"--nats-url", "nats://127.0.0.1:1", "--target", "x"}, []string{"Cannot connect to NATS at nats://127.0.0.1:1", "Is the worker running, and is --nats-url"}},
		{"context's NATS down", down, nil, []string{"Cannot connect to NATS at nats://127.0.0.1:1", "comes from " + down, "make run still running"}},
		{"no context", filepath.Join(t.TempDir(), "absent.json"), nil, []string{"No target: give --target or set DBUSERS_TARGET"}},
		{"no context: the default URL", "", []string{"--help"}, []string{`(default "nats://127.0.0.1:4222")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			args := append([]string{"--timeout", "1s"}, tt.args...)
			run(t.Context(), append(args, "database-users-list"), func(string) string { return "" },
				stdio{in: strings.NewReader(""), out: &out, err: &errOut, contextPath: tt.context})
			got := out.String() + errOut.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
		})
	}
}
