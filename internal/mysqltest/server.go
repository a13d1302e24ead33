package mysqltest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Server is a mariadbd of a test's own (own datadir, port and socket), for
// tests that stop and start MySQL; the machine's shared server is left
// alone.
type Server struct {
	t       testing.TB
	dir     string
	socket  string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}
	logFile string
	binary  string
	args    []string // extra mariadbd options
}

// StartServer installs a fresh datadir and starts mariadbd on a free port,
// with args appended to its options (e.g. --ssl-ca=…). It is stopped when
// the test ends.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("mariadbd")
	if err != nil {
		bin = "/usr/sbin/mariadbd"
	}
	dir := t.TempDir()
	s := &Server{t: t, dir: dir, socket: filepath.Join(dir, "mysqld.sock"), logFile: filepath.Join(dir, "error.log"), args: args}
	// A tmpdir of its own: a starting mariadbd deletes every #sql* file in
	// its tmpdir, which in /tmp are the temporary tables of the other
	// servers running (the shared one's, and other tests' own ones).
	if err := os.Mkdir(s.tmpdir(), 0o700); err != nil {
		t.Fatal(err)
	}
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+filepath.Join(dir, "data"),
		"--user=root", "--auth-root-authentication-method=normal", "--skip-test-db", "--tmpdir="+s.tmpdir())
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.binary = bin
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server again on the same datadir and port, and waits
// until it answers.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = exec.Command(s.binary, "--no-defaults", "--user=root",
		"--datadir="+filepath.Join(s.dir, "data"), "--socket="+s.socket,
		fmt.Sprintf("--port=%d", s.port), "--bind-address=127.0.0.1",
		"--pid-file="+filepath.Join(s.dir, "mysqld.pid"), "--log-error="+s.logFile,
		"--skip-name-resolve", "--innodb-buffer-pool-size=32M", "--max-connections=200", "--tmpdir="+s.tmpdir())
	s.cmd.Args = append(s.cmd.Args, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start mariadbd: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("mysql", s.RootDSN())
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logFile)
			s.t.Fatalf("own mariadbd did not answer in 30s: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down (SIGTERM, then SIGKILL after 30 s) and waits.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// tmpdir is the server's own directory for temporary files.
func (s *Server) tmpdir() string { return filepath.Join(s.dir, "tmp") }

// RootDSN logs in as root over the server's socket.
func (s *Server) RootDSN() string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", s.socket
	cfg.Timeout = 2 * time.Second
	return cfg.FormatDSN()
}

// Addr is the server's TCP address.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// WaitDown waits until the server process has exited.
func (s *Server) WaitDown(ctx context.Context) error {
	select {
	case <-s.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HoldBackupLock takes FLUSH TABLES WITH READ LOCK on the server, as a
// backup does, on a connection of its own, and returns the function that
// releases it (also called when the test ends).
func HoldBackupLock(t testing.TB, root *sql.DB) (release func()) {
	t.Helper()
	ctx := context.Background()
	lock, err := root.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if _, err := lock.ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
			t.Errorf("unlock tables: %v", err)
		}
	}
}
