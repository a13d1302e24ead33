package test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunStopsItsWorker runs `make run` as a newcomer does, in a copy
// of this checkout whose deploy/dev.yaml listens on free ports (so that it
// neither takes nor needs 14222): the CLI then works in the checkout
// without flags or exports; SIGTERM to make, as a supervisor or kill
// sends it, must end the worker too and free its port, so that the next
// `make run` starts; Ctrl-C (SIGINT to the terminal's process group) must
// stop it cleanly, without make reporting an error.
func TestMakeRunStopsItsWorker(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binaries and runs make run")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine")
	}
	dir, natsAddr := devCheckout(t)

	run := startMakeRun(t, dir)
	// A newcomer's first CLI command, from another terminal of the same
	// checkout, needs no flag and no export: it finds this worker (on its
	// port, not 4222) and the demo target through make run's context.
	cliCmd := exec.Command(filepath.Join(dir, "bin", "dbusers"), "database-users-list")
	cliCmd.Dir = dir
	cliCmd.Env = withoutDBUsersEnv()
	out, err := cliCmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "demo_app_4553") {
		t.Errorf("bin/dbusers database-users-list after make run, without flags: %v\n%s", err, out)
	}
	if err := syscall.Kill(run.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	run.waitGone(t, natsAddr)

	// The port is free again: a second make run starts, and Ctrl-C in its
	// terminal ends it without an error from make.
	run = startMakeRun(t, dir)
	if err := syscall.Kill(-run.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	run.waitGone(t, natsAddr)
	if out := run.out.String(); strings.Contains(out, "make: ***") {
		t.Fatalf("make reported an error after Ctrl-C:\n%s", out)
	}
	if out := run.out.String(); !strings.Contains(out, "stopped") {
		t.Fatalf("the worker did not log a clean stop after Ctrl-C:\n%s", out)
	}
}

// devCheckout copies this checkout's files (tracked and new ones, as they
// are in the work tree) to a temporary directory and points the copy's
// deploy/dev.yaml at free ports. It returns the copy and the address of its
// embedded NATS.
func devCheckout(t *testing.T) (dir, natsAddr string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dir = t.TempDir()
	for name := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
		if err := copyFile(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // deleted in the work tree
			}
			t.Fatal(err)
		}
	}
	// The checkout's own admin password, when it has one: dev-setup.sh sets
	// dbusers_admin's password to the file's, and a `make run` of the
	// checkout itself must keep working.
	if err := copyFile(filepath.Join(root, "data", "dev-admin.password"), filepath.Join(dir, "data", "dev-admin.password")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	yamlPath := filepath.Join(dir, "deploy", "dev.yaml")
	yaml, err := os.ReadFile(yamlPath)
	if err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{"127.0.0.1:14222": natsAddr, "127.0.0.1:14280": httpAddr} {
		if !strings.Contains(string(yaml), from) {
			t.Fatalf("deploy/dev.yaml does not listen on %s", from)
		}
		yaml = []byte(strings.ReplaceAll(string(yaml), from, to))
	}
	if err := os.WriteFile(yamlPath, yaml, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, natsAddr
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.Stat()
	if err != nil {
		return err
	}
	if info.IsDir() {
		return nil // a submodule or a directory git lists
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// makeRun is a `make run` in its own process group, as in a terminal.
type makeRun struct {
	cmd    *exec.Cmd
	out    *logBuffer
	exited chan struct{}
}

// startMakeRun starts `make run` in dir, with no DBUSERS_ variable of the
// test's environment, and waits until its worker is ready.
func startMakeRun(t *testing.T, dir string) *makeRun {
	t.Helper()
	cmd := exec.Command("make", "run")
	cmd.Dir = dir
	cmd.Env = withoutDBUsersEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r := &makeRun{cmd: cmd, out: &logBuffer{}, exited: make(chan struct{})}
	// An *os.File, so that Wait returns when make exits, not when the last
	// process holding the pipe (a left-behind worker) does.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			_, _ = r.out.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "worker ready") {
				once.Do(func() { close(ready) })
			}
		}
		_ = pr.Close()
	}()
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()
	// Whatever the test saw, nothing of this run outlives it.
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-r.exited
	})
	select {
	case <-ready:
	case <-r.exited:
		t.Fatalf("make run ended before its worker was ready:\n%s", r.out.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("make run's worker not ready within 3 minutes:\n%s", r.out.String())
	}
	return r
}

// waitGone waits for make to exit, then checks that no process of its
// group is left and that the worker's NATS port is free.
func (r *makeRun) waitGone(t *testing.T, natsAddr string) {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("make run did not exit within 30s of the signal:\n%s", r.out.String())
	}
	pgid := r.cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a process of make run outlived it:\n%s", r.out.String())
		}
	}
	l, err := net.Listen("tcp", natsAddr)
	if err != nil {
		t.Fatalf("the worker's port %s is still held after make run exited: %v", natsAddr, err)
	}
	_ = l.Close()
}

// withoutDBUsersEnv is the test's environment without DBUSERS_ variables,
// as a newcomer's shell has it.
func withoutDBUsersEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBUSERS_") {
			env = append(env, kv)
		}
	}
	return env
}
