package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/config"
)

// workerBinary builds cmd/worker once per test run.
var workerBinary = sync.OnceValues(func() (string, error) { return buildBinary("worker", "../cmd/worker") })

// binDir holds the binaries the tests build; TestMain removes it.
var binDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "dbusers-test-bin-") })

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := binDir(); err == nil {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// buildBinary builds the package pkg as name in binDir.
func buildBinary(name, pkg string) (string, error) {
	dir, err := binDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// workerYAML writes a worker config for natsURL and targets into dir;
// extra is YAML appended under the top level (e.g. retry settings).
func workerYAML(t *testing.T, dir, natsURL string, targets []config.Target, extra string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "nats:\n  url: %q\n  ack_wait: 2s\n  lease_ttl: 2s\n", natsURL)
	fmt.Fprintf(&b, "vault:\n  xkey_seed_file: %q\n", filepath.Join(dir, "worker.xk"))
	fmt.Fprintf(&b, "shutdown_grace: 5s\n%s", extra)
	b.WriteString("targets:\n")
	for _, tg := range targets {
		fmt.Fprintf(&b, "  - name: %s\n    dsn: %q\n    database: %s\n    protected_users: [%s]\n",
			tg.Name, tg.DSN.Reveal(), tg.Database, strings.Join(tg.ProtectedUsers, ", "))
	}
	path := filepath.Join(dir, fmt.Sprintf("worker-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a worker process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan struct{}
}

// startProc runs the worker binary with cfgPath and waits until it says it
// is ready.
func startProc(t *testing.T, cfgPath string) *proc {
	t.Helper()
	bin, err := workerBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: exec.Command(bin, "-config", cfgPath), logs: &logBuffer{}, exited: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		once := sync.Once{}
		for sc.Scan() {
			_, _ = p.logs.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), `"worker ready"`) {
				once.Do(func() { close(ready) })
			}
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	select {
	case <-ready:
	case <-p.exited:
		t.Fatalf("worker exited before it was ready:\n%s", p.logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("worker not ready in 60s:\n%s", p.logs.String())
	}
	return p
}

// kill ends the process with SIGKILL, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// jobLines counts the jobs this process answered.
func (p *proc) jobLines() int { return strings.Count(p.logs.String(), `"msg":"job"`) }
