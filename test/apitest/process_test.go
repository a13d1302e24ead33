package apitest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// apiBinary builds cmd/dbusers-api once for the package's tests.
func apiBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dbusers-api-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dbusers-api")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/dbusers/dbusers/cmd/dbusers-api")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/dbusers-api: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

// writeFile writes a file of the test's with mode perm.
func writeFile(t *testing.T, dir, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStartRefusals: the process refuses to start on a key file open to
// others, a short key and a config key it does not know, saying which.
func TestStartRefusals(t *testing.T) {
	t.Parallel()
	bin := apiBinary(t)
	dir := t.TempDir()
	longKey := strings.Repeat("k", 32)
	tests := []struct {
		name, key, extra string
		perm             os.FileMode
		says             string
	}{
		{name: "key file readable by others", key: longKey + "\n", perm: 0o644, says: "chmod 600"},
		{name: "key of 31 bytes and newlines", key: longKey[:31] + "\n\n", perm: 0o600, says: "31 bytes"},
		{name: "unknown config key", key: longKey, perm: 0o600, extra: "timeot: 5s\n", says: "timeot: line"},
		{name: "unset environment variable", key: longKey, perm: 0o600, extra: "listen: ${DBUSERS_TEST_UNSET_VAR}\n", says: "DBUSERS_TEST_UNSET_VAR is not set"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyFile := writeFile(t, dir, fmt.Sprintf("key%d", i), tt.key, tt.perm)
			cfg := writeFile(t, dir, fmt.Sprintf("cfg%d.yaml", i), fmt.Sprintf(
				"auth:\n  token_key_file: %s\n%sdatabases:\n  - id: ad-1\n    target: app\n", keyFile, tt.extra), 0o600)
			out, err := exec.Command(bin, "-config", cfg).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want status 1; output %s", err, out)
			}
			if !strings.Contains(string(out), tt.says) {
				t.Errorf("output %q does not say %q", out, tt.says)
			}
			if strings.Contains(string(out), longKey[:20]) {
				t.Errorf("the output shows the key")
			}
		})
	}
}

// TestSIGTERM: the process serves, and on SIGTERM lets the request in
// flight get its answer before it exits 0.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	bin := apiBinary(t)
	e := newEnv(t, envOptions{noWorker: true, timeout: time.Second})
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "api.key", string(e.key)+"\n", 0o600)
	port := freePort(t)
	cfg := writeFile(t, dir, "api.yaml", fmt.Sprintf(`listen: 127.0.0.1:%d
nats:
  url: ${TEST_NATS_URL}
  worker_xkey: %s
auth:
  token_key_file: %s
timeout: 3s
databases:
  - id: %s
    target: app
`, port, e.wKey, keyFile, dbID), 0o600)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Env = append(os.Environ(), "TEST_NATS_URL="+e.ns.ClientURL())
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	token := e.token(dbID)
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultClient.Do(req)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if res, err := http.Get(base + "/"); err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbusers-api does not answer; output:\n%s", logs.String())
		}
	}
	// A list with no worker waits the whole timeout: SIGTERM lands while
	// it is in flight.
	answered := make(chan int, 1)
	go func() {
		res, err := get(users(dbID))
		if err != nil {
			answered <- -1
			return
		}
		res.Body.Close()
		answered <- res.StatusCode
	}()
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case status := <-answered:
		if status != 504 {
			t.Errorf("the request in flight got %d, want its 504", status)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the request in flight got no answer")
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v; output:\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dbusers-api did not exit after SIGTERM")
	}
	out := logs.String()
	if strings.Contains(out, token) || strings.Contains(out, string(e.key)) {
		t.Errorf("the token or the key is in the output")
	}
	for _, want := range []string{"dbusers-api ready", "signal received", `"route":"GET /api/databases/{id}/users"`, `"status":504`, "stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %s:\n%s", want, out)
		}
	}
}
