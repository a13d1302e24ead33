package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/wire"
)

// TestLogsCarryNoSecrets: after creates and resets with chosen and
// generated passwords, the log has one line per job with its fields, and
// no password or DSN password anywhere.
func TestLogsCarryNoSecrets(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	var secrets []string
	user := mysqltest.Username("log_")
	f.DropUserLater(user)
	res, pw := e.create("app", user, false, "")
	wantOK(t, res)
	secrets = append(secrets, pw)
	chosen := "Chosen-secret-" + mysqltest.Token(16)
	r := newRequester(t)
	id := e.nextID()
	sealed := e.sealFor(r, id, chosen)
	res = e.job("app", "reset_password", map[string]any{"id": id, "username": user, "reply_key": r.pub, "password": sealed})
	wantOK(t, res)
	secrets = append(secrets, chosen, sealed)
	res, pw = e.reset("app", user, "")
	wantOK(t, res)
	secrets = append(secrets, pw)
	bad := "Bad'quote-secret-" + mysqltest.Token(16)
	res, _ = e.reset("app", user, bad)
	wantCode(t, res, wire.CodeInvalidPassword)
	secrets = append(secrets, bad, f.AdminPassword)

	// The job line is written after the result is published: wait for it.
	var logs string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logs = e.logs.String()
		if strings.Count(logs, `"msg":"job"`) >= 4 || time.Now().After(deadline) {
			break
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Fatalf("a secret reached the log")
		}
	}
	jobLines := 0
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if entry["msg"] != "job" {
			continue
		}
		jobLines++
		for _, k := range []string{"job_id", "target", "op", "username", "attempt", "duration", "outcome"} {
			if _, ok := entry[k]; !ok {
				t.Errorf("job log line without %q: %s", k, line)
			}
		}
	}
	if jobLines != 4 {
		t.Errorf("%d job log lines for 4 jobs", jobLines)
	}
}

// TestWorkerBinaryStopsOnSIGTERM runs cmd/worker as a process: it loads a
// YAML config with a ${VAR} secret, serves the embedded NATS, runs a job,
// and exits 0 on SIGTERM.
func TestWorkerBinaryStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the worker binary")
	}
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	dir := t.TempDir()
	bin, err := workerBinary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dsn := strings.Replace(f.AdminDSN, ":"+f.AdminPassword+"@", ":${TEST_ADMIN_PASSWORD}@", 1)
	cfgFile := filepath.Join(dir, "worker.yaml")
	yaml := fmt.Sprintf(`nats:
  embedded:
    listen: %s
    store_dir: %s
vault:
  xkey_seed_file: %s
targets:
  - name: app
    dsn: "%s"
    database: %s
    protected_users: [%s]
`, addr, filepath.Join(dir, "nats"), filepath.Join(dir, "worker.xk"), dsn, f.Database, f.Protected)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = append(os.Environ(), "TEST_ADMIN_PASSWORD="+f.AdminPassword)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var logMu sync.Mutex
	var logs strings.Builder
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), "worker ready") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("worker not ready in 30s:\n%s", logs.String())
	}
	e := &env{t: t}
	e.nc = connect(t, "nats://"+addr)
	e.js = jetstreamFor(t, e.nc)
	wantOK(t, e.job("app", "list", map[string]any{}))

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("worker exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit within 30s of SIGTERM")
	}
	logMu.Lock()
	defer logMu.Unlock()
	if strings.Contains(logs.String(), f.AdminPassword) {
		t.Fatal("the admin password reached the log")
	}
	info, err := os.Stat(filepath.Join(dir, "worker.xk"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("xkey seed file mode %v, want 0600", info.Mode().Perm())
	}
}
