package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/nats-io/nats.go"
	"golang.org/x/sys/unix"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
)

// buildCLI returns the dbusers binary, built once per test run.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin, err := cliBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var cliBinary = sync.OnceValues(func() (string, error) { return buildBinary("dbusers", "../cmd/dbusers") })

// cli runs the dbusers binary against one NATS server and target, given
// through the environment as a user would.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

func newCLI(t *testing.T, bin, natsURL, target string) *cli {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DBUSERS_") {
			env = append(env, kv)
		}
	}
	env = append(env, "DBUSERS_NATS_URL="+natsURL)
	if target != "" {
		env = append(env, "DBUSERS_TARGET="+target)
	}
	return &cli{t: t, bin: bin, env: env}
}

// cliResult is what one run printed and its exit status.
type cliResult struct {
	stdout, stderr string
	code           int
}

// run runs the binary with stdin (not a terminal) and args.
func (c *cli) run(stdin string, args ...string) cliResult {
	c.t.Helper()
	cmd := exec.CommandContext(c.t.Context(), c.bin, args...)
	cmd.Env = c.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run dbusers %v: %v", args, err)
	}
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// generatedLine matches a success line with a generated password and
// captures the password.
func generatedLine(user, verb string) *regexp.Regexp {
	return regexp.MustCompile(`^User "` + regexp.QuoteMeta(user) + `" ` + verb + ` with password "([A-Za-z0-9_]{64})"\.\n$`)
}

// TestCLICommands: every command and error of the CLI against a real
// worker, with its exact output (golden strings), stdin not a terminal.
func TestCLICommands(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	waitForInfo(t, e)
	c := newCLI(t, buildCLI(t), e.cfg.NATS.URL, "app")
	rw, ro, gen := mysqltest.Username("clirw_"), mysqltest.Username("cliro_"), mysqltest.Username("cligen")
	for _, u := range []string{rw, ro, gen} {
		f.DropUserLater(u)
	}
	chosen := "Chosen-password-" + mysqltest.Token(16)
	chosen2 := `Chosen\password-` + mysqltest.Token(16)
	// The usernames have the same length, so the table's layout is fixed.
	names := strings.NewReplacer("{rw}", rw, "{ro}", ro, "{gen}", gen, "{prot}", f.Protected)
	var generated string // the last generated password

	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string         // exact, after names; unused when match is set
		match      *regexp.Regexp // a generated password's line
		wantStderr string         // exact, after names
		login      func() string  // the password that must log in as rw after the step
	}{
		{name: "list: only the protected user", args: []string{"database-users-list"}, wantStdout: `+-----------------+-----------+-----------+
|    USERNAME     | READ-ONLY | PROTECTED |
+-----------------+-----------+-----------+
| {prot} | false     | true      |
+-----------------+-----------+-----------+
`},
		{name: "create with a chosen password", args: []string{"database-users-create", rw}, stdin: chosen + "\n",
			wantStdout: `User "{rw}" created.` + "\n", login: func() string { return chosen }},
		{name: "create read-only, generated", args: []string{"database-users-create", "--read-only", ro}, stdin: "\n",
			match: generatedLine(ro, "created")},
		{name: "create generated from empty stdin", args: []string{"database-users-create", gen}, stdin: "",
			match: generatedLine(gen, "created")},
		{name: "create existing", args: []string{"database-users-create", rw}, stdin: "\n", wantCode: 3,
			wantStderr: `User "{rw}" already exists.` + "\n"},
		{name: "list: three users", args: []string{"database-users-list"}, wantStdout: `+------------------+-----------+-----------+
|     USERNAME     | READ-ONLY | PROTECTED |
+------------------+-----------+-----------+
| {gen} | false     | false     |
| {ro} | true      | false     |
| {rw} | false     | false     |
| {prot}  | false     | true      |
+------------------+-----------+-----------+
`},
		{name: "update password, generated", args: []string{"database-users-update-password", rw}, stdin: "\n",
			match: generatedLine(rw, "updated"), login: func() string { return generated }},
		{name: "update password, chosen with a backslash", args: []string{"database-users-update-password", rw}, stdin: chosen2 + "\r\n",
			wantStdout: `User "{rw}" password updated.` + "\n", login: func() string { return chosen2 }},
		{name: "update password of the protected user", args: []string{"database-users-update-password", f.Protected}, stdin: "\n", wantCode: 3,
			wantStderr: `User "{prot}" is protected.` + "\n"},
		{name: "update password of a missing user", args: []string{"database-users-update-password", "missing_user"}, stdin: "\n", wantCode: 4,
			wantStderr: `User "missing_user" does not exist.` + "\n"},
		{name: "invalid password", args: []string{"database-users-update-password", rw}, stdin: "too short\n", wantCode: 3,
			wantStderr: "Invalid password: password has 9 characters; 24 to 64 are allowed.\n", login: func() string { return chosen2 }},
		{name: "invalid username", args: []string{"database-users-create", "Bad-Name"}, wantCode: 3,
			wantStderr: `Invalid username: username "Bad-Name" must begin with a lowercase letter a-z.` + "\n"},
		{name: "delete the protected user", args: []string{"database-users-delete", f.Protected}, wantCode: 3,
			wantStderr: `User "{prot}" is protected.` + "\n"},
		{name: "delete", args: []string{"database-users-delete", ro}, wantStdout: "User {ro} has been deleted\n"},
		{name: "delete again", args: []string{"database-users-delete", ro}, wantCode: 4,
			wantStderr: `User "{ro}" does not exist.` + "\n"},
		{name: "unknown target", args: []string{"--target", "nowhere", "database-users-list"}, wantCode: 4,
			wantStderr: `Unknown target "nowhere": the worker has no target of that name (check --target or DBUSERS_TARGET).` + "\n"},
		{name: "usage error", args: []string{"database-users-delete"}, wantCode: 2,
			wantStderr: "Expected one <username> argument, got 0.\nRun 'dbusers database-users-delete --help' for usage.\n"},
		{name: "json list", args: []string{"--json", "database-users-list"},
			wantStdout: `{"target":"app","users":[{"username":"{gen}","read_only":false,"protected":false},` +
				`{"username":"{rw}","read_only":false,"protected":false},{"username":"{prot}","read_only":false,"protected":true}]}` + "\n"},
		{name: "json delete", args: []string{"--json", "database-users-delete", gen},
			wantStdout: `{"target":"app","user":{"username":"{gen}","read_only":false,"protected":false}}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.run(tt.stdin, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tt.wantCode, r.stderr)
			}
			if want := names.Replace(tt.wantStderr); r.stderr != want {
				t.Errorf("stderr\n%q\nwant\n%q", r.stderr, want)
			}
			if tt.match != nil {
				m := tt.match.FindStringSubmatch(r.stdout)
				if m == nil {
					t.Fatalf("stdout %q does not match %s", r.stdout, tt.match)
				}
				generated = m[1]
			} else if want := names.Replace(tt.wantStdout); r.stdout != want {
				t.Errorf("stdout\n%s\nwant\n%s", r.stdout, want)
			}
			if line := strings.TrimSuffix(tt.stdin, "\n"); len(line) > 10 && strings.Contains(r.stdout+r.stderr, line) {
				t.Errorf("the chosen password was printed")
			}
			if tt.login != nil {
				if err := loginError(t.Context(), f, rw, tt.login()); err != nil {
					t.Errorf("login as %s: %v", rw, err)
				}
			}
		})
	}

	t.Run("json create, generated", func(t *testing.T) {
		user := mysqltest.Username("clijs_")
		f.DropUserLater(user)
		r := c.run("\n", "--json", "database-users-create", user)
		var got struct {
			Target   string `json:"target"`
			User     struct{ Username string }
			Password string `json:"password"`
			JobID    string `json:"job_id"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("exit %d, stdout %q: %v", r.code, r.stdout, err)
		}
		if got.Target != "app" || got.User.Username != user || len(got.Password) != 64 || got.JobID == "" {
			t.Fatalf("JSON %+v", got)
		}
		if err := loginError(t.Context(), f, user, got.Password); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("json error", func(t *testing.T) {
		r := c.run("", "--json", "database-users-delete", f.Protected)
		var got struct{ Error errorJSONBody }
		if err := json.Unmarshal([]byte(r.stderr), &got); err != nil || r.code != 3 || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q: %v", r.code, r.stdout, r.stderr, err)
		}
		want := errorJSONBody{Code: "protected_user", Message: `User "` + f.Protected + `" is protected.`, ExitStatus: 3, JobID: got.Error.JobID}
		if got.Error != want || !strings.HasPrefix(got.Error.JobID, "cli-") {
			t.Fatalf("error %+v, want %+v with the job id", got.Error, want)
		}
	})
	t.Run("job results by id", func(t *testing.T) {
		// A create whose generated password the command read: its job id,
		// read later, tells the outcome and that the password is not
		// readable there; a delete's succeeded; an unknown id is not found.
		user := mysqltest.Username("clijr_")
		f.DropUserLater(user)
		r := c.run("\n", "--json", "database-users-create", user)
		var created struct {
			JobID string `json:"job_id"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || r.code != 0 {
			t.Fatalf("create: exit %d, stdout %q: %v", r.code, r.stdout, err)
		}
		r = c.run("", "database-users-job-result", created.JobID)
		if r.code != 6 || !strings.Contains(r.stderr, "Job "+created.JobID+" (user.create of user \""+user+"\") succeeded at ") ||
			!strings.Contains(r.stderr, "after 1 attempt.") || !strings.Contains(r.stderr, "generated password can no longer be read") {
			t.Errorf("job result of the create: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		r = c.run("", "--json", "database-users-job-result", created.JobID)
		var job struct {
			JobID                       string `json:"job_id"`
			State, Op                   string
			User                        struct{ Username string }
			GeneratedPasswordUnreadable bool `json:"generated_password_unreadable"`
			Attempts                    int
		}
		if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || r.code != 6 || job.JobID != created.JobID ||
			job.State != "done" || job.Op != "user.create" || job.User.Username != user || !job.GeneratedPasswordUnreadable || job.Attempts != 1 {
			t.Errorf("json job result: exit %d, %+v, stdout %q: %v", r.code, job, r.stdout, err)
		}
		r = c.run("", "--json", "database-users-delete", f.Protected)
		var refused struct{ Error errorJSONBody }
		if err := json.Unmarshal([]byte(r.stderr), &refused); err != nil {
			t.Fatal(err)
		}
		r = c.run("", "database-users-job-result", refused.Error.JobID)
		if r.code != 3 || !strings.HasPrefix(r.stderr, "Job "+refused.Error.JobID+" failed after 1 attempt: protected_user: ") {
			t.Errorf("job result of a refused delete: exit %d, stderr %q", r.code, r.stderr)
		}
		r = c.run("", "database-users-job-result", "cli-never-sent")
		if r.code != 4 || !strings.Contains(r.stderr, "No job cli-never-sent is known for target \"app\"") {
			t.Errorf("job result of an unknown id: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("help of every command", func(t *testing.T) {
		for _, cmd := range []string{"database-users-list", "database-users-create", "database-users-update-password",
			"database-users-delete", "database-users-rotate", "database-users-job-result"} {
			r := c.run("", cmd, "--help")
			if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Usage:\n  dbusers "+cmd) || !strings.Contains(r.stdout, "--nats-url") {
				t.Errorf("%s --help: exit %d, stderr %q, stdout\n%s", cmd, r.code, r.stderr, r.stdout)
			}
		}
	})
}

// TestCLIWithoutWorker: what a user sees when nothing answers.
func TestCLIWithoutWorker(t *testing.T) {
	t.Parallel()
	bin := buildCLI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "nats://" + l.Addr().String()
	l.Close()
	bare := startNATS(t).ClientURL()

	// A worker that answered once but takes no jobs: its streams remain,
	// and a stand-in answers the info endpoint.
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	xkey := e.svc.PublicKey()
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	sub, err := e.nc.Subscribe("dbusers.info", func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"xkey":"` + xkey + `","version":"stand-in"}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// {id} stands for the job id the command prints.
	tests := []struct {
		name       string
		url        string
		args       []string
		wantStderr string
	}{
		{"NATS down", closedURL, []string{"database-users-list"},
			"Cannot connect to NATS at " + closedURL + ": nats: no servers available for connection.\n" +
				"Is the worker running, and is --nats-url (or DBUSERS_NATS_URL) right?\n"},
		{"no worker", bare, []string{"database-users-create", "some_user"},
			"No dbusers worker answered at " + bare + " (prefix \"dbusers\").\n" +
				"Is the worker running, and is --nats-url (or DBUSERS_NATS_URL) right?\n"},
		{"worker takes no jobs", e.cfg.NATS.URL, []string{"--timeout", "1s", "database-users-delete", "some_user"},
			"The worker did not answer within 1s.\n" +
				"Job {id} is queued: no worker has taken it yet. Is a worker running, and are earlier jobs of target \"app\" stuck?\n" +
				"If it succeeds later, user \"some_user\" is deleted.\n" +
				"See its result with: dbusers --target app database-users-job-result {id}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCLI(t, bin, tt.url, "app")
			r := c.run("\n", tt.args...)
			id := jobIDIn(r.stderr)
			if want := strings.ReplaceAll(tt.wantStderr, "{id}", id); r.code != 5 || r.stdout != "" || r.stderr != want {
				t.Fatalf("exit %d, stdout %q, stderr\n%q\nwant\n%q", r.code, r.stdout, r.stderr, want)
			}
			if id == "" {
				return
			}
			// Read later by its id, the job is still queued.
			r = c.run("", "database-users-job-result", id)
			if want := "Job " + id + " is queued"; r.code != 5 || !strings.HasPrefix(r.stderr, want) {
				t.Errorf("job result: exit %d, stderr %q, want 5 and %q", r.code, r.stderr, want)
			}
		})
	}
}

// jobIDIn returns the first CLI job id in s, "" when there is none.
func jobIDIn(s string) string { return regexp.MustCompile(`cli-[A-Z2-7]{26}`).FindString(s) }

// errorJSONBody is the body of the CLI's --json error.
type errorJSONBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	ExitStatus int    `json:"exit_status"`
	JobID      string `json:"job_id"`
	JobState   string `json:"job_state"`
}

// TestCLIWhileMySQLIsDown: with the target's MySQL down, the worker takes
// a create and retries it; a command that waits less than the retry
// budget says the job was taken and is being retried (not queued), prints
// its id, says that a generated password of a late success cannot be read
// and how to see the result later; --json says the same as a JSON error
// with the job's state. Reading the job later shows it taken, then, once
// the budget is spent, its unavailable result.
func TestCLIWhileMySQLIsDown(t *testing.T) {
	t.Parallel()
	e := startWorker(t, []config.Target{deadTarget(t, "app")}, func(c *config.Config) { c.Retry.Budget = 6 * time.Second })
	waitForInfo(t, e)
	c := newCLI(t, buildCLI(t), e.cfg.NATS.URL, "app")

	r := c.run("\n", "--timeout", "2s", "database-users-create", "late_user")
	id := jobIDIn(r.stderr)
	want := "The worker did not answer within 2s.\n" +
		"Job " + id + " was taken by a worker that has not finished it: it is running, or being retried while the database does not answer (the worker's log says which).\n" +
		"If it succeeds later, user \"late_user\" is created with a generated password that no one can read: set a new one then with database-users-update-password.\n" +
		"See its result with: dbusers --target app database-users-job-result " + id + "\n"
	if r.code != 5 || r.stdout != "" || id == "" || r.stderr != want {
		t.Fatalf("exit %d, stdout %q, stderr\n%q\nwant\n%q", r.code, r.stdout, r.stderr, want)
	}
	r = c.run("", "database-users-job-result", id)
	if r.code != 5 || !strings.HasPrefix(r.stderr, "Job "+id+" was taken by a worker") {
		t.Errorf("job result while retrying: exit %d, stderr %q", r.code, r.stderr)
	}

	r = c.run("", "--json", "--timeout", "1s", "database-users-update-password", "late_user")
	var got struct{ Error errorJSONBody }
	if err := json.Unmarshal([]byte(r.stderr), &got); err != nil || r.code != 5 {
		t.Fatalf("--json: exit %d, stderr %q: %v", r.code, r.stderr, err)
	}
	if got.Error.Code != "timeout" || got.Error.ExitStatus != 5 || !strings.HasPrefix(got.Error.JobID, "cli-") ||
		(got.Error.JobState != "taken" && got.Error.JobState != "queued") || !strings.Contains(got.Error.Message, "database-users-job-result "+got.Error.JobID) {
		t.Errorf("--json error %+v", got.Error)
	}

	// Once the retry budget is spent, the create's result is stored: the
	// job failed, unavailable (exit 5 too, with other words).
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(r.stderr, " failed after ") && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		r = c.run("", "database-users-job-result", id)
	}
	if r.code != 5 || !strings.HasPrefix(r.stderr, "Job "+id+" failed after ") ||
		!strings.Contains(r.stderr, `The database of target "app" did not answer the worker through its retry budget`) {
		t.Errorf("job result after the budget: exit %d, stderr %q", r.code, r.stderr)
	}
}

// ptyRun is the binary running on a pseudo-terminal: stdin, stdout and
// stderr are the terminal, as for a person at a shell.
type ptyRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	tty    *os.File // the terminal's controlling side
	mu     sync.Mutex
	output bytes.Buffer
	seen   int // how much of output expect has consumed
	done   chan struct{}
}

func startPTY(t *testing.T, c *cli, args ...string) *ptyRun {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), c.bin, args...)
	cmd.Env = c.env
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	p := &ptyRun{t: t, cmd: cmd, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		r := bufio.NewReader(tty)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			p.mu.Lock()
			p.output.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return // EIO once the program has exited
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		tty.Close()
	})
	return p
}

// expect waits until the output shows s after what was consumed.
func (p *ptyRun) expect(s string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		out := strings.ReplaceAll(p.output.String(), "\r\n", "\n")
		p.mu.Unlock()
		if i := strings.Index(out[min(p.seen, len(out)):], s); i >= 0 {
			p.seen += i + len(s)
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %q on the terminal; it shows:\n%s", s, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// typeHidden waits for the prompt, then for the terminal's echo to be off
// (the program turns it off after printing the prompt), then types line.
func (p *ptyRun) typeHidden(prompt, line string) {
	p.t.Helper()
	p.expect(prompt)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tio, err := unix.IoctlGetTermios(int(p.tty.Fd()), unix.TCGETS)
		if err != nil {
			p.t.Fatal(err)
		}
		if tio.Lflag&unix.ECHO == 0 {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatal("the terminal's echo stayed on at the password prompt")
		}
	}
	if _, err := io.WriteString(p.tty, line+"\r"); err != nil {
		p.t.Fatal(err)
	}
}

// wait returns the exit status and everything the terminal showed.
func (p *ptyRun) wait() (int, string) {
	p.t.Helper()
	err := p.cmd.Wait()
	<-p.done
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return code, strings.ReplaceAll(p.output.String(), "\r\n", "\n")
}

// TestCLIPrompts: the password prompts on a terminal, hidden, with a
// confirmation and 3 tries.
func TestCLIPrompts(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	waitForInfo(t, e)
	c := newCLI(t, buildCLI(t), e.cfg.NATS.URL, "app")
	const (
		ask     = "Password (Will be generated if left empty): "
		confirm = "Password Confirmation: "
	)
	good := "Typed-password-" + mysqltest.Token(16)
	other := "Other-password-" + mysqltest.Token(16)
	existing := makeAccounts(t, f, "ptyex_", 1)[0]

	type input struct{ prompt, line string }
	tests := []struct {
		name     string
		command  string // create or update-password
		user     string // "" for a new one
		inputs   []input
		wantCode int
		// wantScreen is the whole terminal transcript after the inputs
		// (typed text is never echoed); {u} is the username and {pw}
		// stands for a generated password.
		wantScreen string
		login      string // the password that must log in afterwards
	}{
		{
			name: "chosen and confirmed", command: "database-users-create",
			inputs:     []input{{ask, good}, {confirm, good}},
			wantScreen: ask + "\n" + confirm + "\nUser \"{u}\" created.\n", login: good,
		},
		{
			name: "left empty: generated", command: "database-users-create",
			inputs:     []input{{ask, ""}},
			wantScreen: ask + "\nUser \"{u}\" created with password \"{pw}\".\n",
		},
		{
			name: "mismatch, then confirmed", command: "database-users-update-password", user: existing,
			inputs: []input{{ask, good}, {confirm, other}, {ask, other}, {confirm, other}},
			wantScreen: ask + "\n" + confirm + "\nPassword and confirmation do not match.\n" +
				ask + "\n" + confirm + "\nUser \"{u}\" password updated.\n",
			login: other,
		},
		{
			name: "update, generated", command: "database-users-update-password", user: existing,
			inputs:     []input{{ask, ""}},
			wantScreen: ask + "\nUser \"{u}\" updated with password \"{pw}\".\n",
		},
		{
			name: "three wrong tries", command: "database-users-create",
			inputs:   []input{{ask, "short"}, {ask, "with space " + good}, {ask, good}, {confirm, other}},
			wantCode: 1,
			wantScreen: ask + "\nPassword has 5 characters; 24 to 64 are allowed.\n" +
				ask + "\nPassword character at position 5 is not allowed (printable ASCII other than ' and \").\n" +
				ask + "\n" + confirm + "\nPassword and confirmation do not match.\n" +
				"No valid password after 3 tries: nothing was changed.\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := tt.user
			if user == "" {
				user = mysqltest.Username("pty_")
				f.DropUserLater(user)
			}
			p := startPTY(t, c, tt.command, user)
			for _, in := range tt.inputs {
				p.typeHidden(in.prompt, in.line)
			}
			code, screen := p.wait()
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			for _, in := range tt.inputs {
				if in.line != "" && strings.Contains(screen, in.line) {
					t.Fatalf("the typed password was echoed:\n%s", screen)
				}
			}
			pattern := regexp.QuoteMeta(strings.ReplaceAll(tt.wantScreen, "{u}", user))
			pattern = strings.ReplaceAll(pattern, `\{pw\}`, `([A-Za-z0-9_]{64})`)
			m := regexp.MustCompile("^" + pattern + "$").FindStringSubmatch(screen)
			if m == nil {
				t.Fatalf("terminal shows\n%q\nwant\n%q", screen, tt.wantScreen)
			}
			login := tt.login
			if len(m) > 1 {
				login = m[1]
			}
			switch {
			case tt.wantCode != 0:
				if f.AccountExists(user) != (tt.user != "") {
					t.Fatalf("a failed prompt changed the accounts")
				}
			case login != "":
				if err := loginError(t.Context(), f, user, login); err != nil {
					t.Fatalf("login: %v", err)
				}
			}
		})
	}
}

// TestCLIRotate: database-users-rotate of 500 accounts, every new password
// checked by logging in; skipped and failed accounts; the --out file's
// rules; the progress bar on a terminal.
func TestCLIRotate(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	waitForInfo(t, e)
	c := newCLI(t, buildCLI(t), e.cfg.NATS.URL, "app")
	start := time.Now()
	names := makeAccounts(t, f, "bulk_", 500)
	t.Logf("500 accounts made in %v", time.Since(start))
	dir := t.TempDir()

	t.Run("all 500", func(t *testing.T) {
		out := filepath.Join(dir, "all.jsonl")
		start := time.Now()
		r := c.run("", "database-users-rotate", "--all", "--out", out, "--concurrency", "16")
		t.Logf("rotated in %v", time.Since(start))
		wantStdout := "Rotated: 500, skipped: 1, failed: 0\nNew credentials are in " + out + "\n"
		wantStderr := `Skipped: User "` + f.Protected + `" is protected.` + "\n"
		if r.code != 0 || r.stdout != wantStdout || r.stderr != wantStderr {
			t.Fatalf("exit %d\nstdout %q\nwant   %q\nstderr %q\nwant   %q", r.code, r.stdout, wantStdout, r.stderr, wantStderr)
		}
		fi, err := os.Stat(out)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("--out file: %v, mode %v; want 0600", err, fi.Mode())
		}
		creds := readCredentials(t, out)
		if len(creds) != len(names) {
			t.Fatalf("%d credentials for %d accounts", len(creds), len(names))
		}
		for _, u := range names {
			if len(creds[u]) != 64 {
				t.Fatalf("no new password for %s", u)
			}
		}
		start = time.Now()
		checkLogins(t, f, creds)
		t.Logf("500 logins in %v", time.Since(start))

		// The file is never written over.
		r = c.run("", "database-users-rotate", "--all", "--out", out)
		wantStderr = out + " already exists: give a new file (credentials are never written over an existing file).\n"
		if r.code != 2 || r.stderr != wantStderr {
			t.Fatalf("second rotation into the same file: exit %d, stderr %q", r.code, r.stderr)
		}
		if again := readCredentials(t, out); !maps.Equal(again, creds) {
			t.Fatal("the existing file changed")
		}
	})

	t.Run("named, with skipped and failed", func(t *testing.T) {
		out := filepath.Join(dir, "named.jsonl")
		r := c.run("", "database-users-rotate", names[0], f.Protected, "missing_user", names[1], "--out", out)
		wantStdout := "Rotated: 2, skipped: 1, failed: 1\nNew credentials are in " + out + "\n"
		wantStderr := `Skipped: User "` + f.Protected + `" is protected.` + "\n" +
			`Failed: User "missing_user" does not exist.` + "\n" +
			"1 of 4 users could not be rotated.\n"
		if r.code != 1 || r.stdout != wantStdout || r.stderr != wantStderr {
			t.Fatalf("exit %d\nstdout %q\nwant   %q\nstderr %q\nwant   %q", r.code, r.stdout, wantStdout, r.stderr, wantStderr)
		}
		creds := readCredentials(t, out)
		if len(creds) != 2 {
			t.Fatalf("credentials %d, want 2", len(creds))
		}
		checkLogins(t, f, creds)
	})

	t.Run("progress bar on a terminal", func(t *testing.T) {
		out := filepath.Join(dir, "tty.jsonl")
		p := startPTY(t, c, append([]string{"database-users-rotate", "--out", out}, names[:20]...)...)
		code, screen := p.wait()
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, screen)
		}
		for _, want := range []string{"Rotating", "20/20", "users/s", "Rotated: 20, skipped: 0, failed: 0\n"} {
			if !strings.Contains(screen, want) {
				t.Errorf("no %q on the terminal:\n%s", want, screen)
			}
		}
		creds := readCredentials(t, out)
		for _, pw := range creds {
			if strings.Contains(screen, pw) {
				t.Fatal("a new password reached the terminal")
			}
		}
		checkLogins(t, f, creds)
	})

	t.Run("json summary", func(t *testing.T) {
		out := filepath.Join(dir, "json.jsonl")
		r := c.run("", "--json", "database-users-rotate", names[2], "missing_user", "--out", out)
		want := `{"target":"app","out":"` + out + `","rotated":1,"skipped":[],"failed":[{"username":"missing_user","error":"User \"missing_user\" does not exist."}]}` + "\n"
		if r.code != 1 || r.stdout != want {
			t.Fatalf("exit %d, stdout\n%s\nwant\n%s", r.code, r.stdout, want)
		}
	})
}

// readCredentials reads rotate's JSON lines: username → password.
func readCredentials(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	creds := map[string]string{}
	for line := range strings.Lines(string(data)) {
		var l struct {
			Target    string `json:"target"`
			Username  string `json:"username"`
			Password  string `json:"password"`
			ReadOnly  bool   `json:"read_only"`
			JobID     string `json:"job_id"`
			RotatedAt string `json:"rotated_at"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if l.Target != "app" || l.JobID == "" || l.RotatedAt == "" {
			t.Fatalf("line %q", line)
		}
		creds[l.Username] = l.Password
	}
	return creds
}
