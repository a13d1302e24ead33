package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/secret"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// fakeTerminal answers ReadPassword with scripted lines.
type fakeTerminal struct {
	lines []string
	err   error
}

func (f *fakeTerminal) ReadPassword() (string, error) {
	if len(f.lines) == 0 {
		if f.err != nil {
			return "", f.err
		}
		return "", errors.New("no more input")
	}
	l := f.lines[0]
	f.lines = f.lines[1:]
	return l, nil
}

// runCLI runs the CLI in-process with no environment.
func runCLI(t *testing.T, stdin string, term terminal, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, func(string) string { return "" },
		stdio{in: strings.NewReader(stdin), out: &out, err: &errOut, term: term})
	return out.String(), errOut.String(), code
}

func TestRenderTable(t *testing.T) {
	tests := []struct {
		name     string
		accounts []client.Account
		want     string
	}{
		{
			name: "the platform's example",
			accounts: []client.Account{
				{Username: "my_app_4553", Protected: true},
				{Username: "my_app_4553_rw"},
				{Username: "my_app_4553_ro", ReadOnly: true},
			},
			want: `+----------------+-----------+-----------+
|    USERNAME    | READ-ONLY | PROTECTED |
+----------------+-----------+-----------+
| my_app_4553    | false     | true      |
| my_app_4553_rw | false     | false     |
| my_app_4553_ro | true      | false     |
+----------------+-----------+-----------+
`,
		},
		{
			name:     "odd gap: the extra space goes right",
			accounts: []client.Account{{Username: "abcdefghi"}},
			want: `+-----------+-----------+-----------+
| USERNAME  | READ-ONLY | PROTECTED |
+-----------+-----------+-----------+
| abcdefghi | false     | false     |
+-----------+-----------+-----------+
`,
		},
		{
			name: "no users",
			want: `+----------+-----------+-----------+
| USERNAME | READ-ONLY | PROTECTED |
+----------+-----------+-----------+
+----------+-----------+-----------+
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeAccounts(&b, tt.accounts); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestReadPasswordOnTerminal(t *testing.T) {
	const good = "A-good-password-of-32-characters"
	const prompts = promptPassword + promptConfirmation
	tests := []struct {
		name       string
		lines      []string
		want       string
		wantErr    string
		wantStderr string
	}{
		{name: "chosen and confirmed", lines: []string{good, good}, want: good, wantStderr: prompts},
		{name: "empty: generated, no confirmation", lines: []string{""}, want: "", wantStderr: promptPassword},
		{
			name:  "mismatch, then confirmed",
			lines: []string{good, good + "x", good, good}, want: good,
			wantStderr: prompts + "Password and confirmation do not match.\n" + prompts,
		},
		{
			name:  "too short, then empty",
			lines: []string{"short", ""}, want: "",
			wantStderr: promptPassword + "Password has 5 characters; 24 to 64 are allowed.\n" + promptPassword,
		},
		{
			name:    "three failures",
			lines:   []string{"short", "has a space in it, which is refused", good, "other"},
			wantErr: "No valid password after 3 tries: nothing was changed.",
			wantStderr: promptPassword + "Password has 5 characters; 24 to 64 are allowed.\n" +
				promptPassword + "Password character at position 4 is not allowed (printable ASCII other than ' and \").\n" +
				prompts + "Password and confirmation do not match.\n",
		},
		{
			name:  "a quote is refused",
			lines: []string{`quote"in-a-password-long-enough`, good, good}, want: good,
			wantStderr: promptPassword + "Password character at position 6 is not allowed (printable ASCII other than ' and \").\n" + prompts,
		},
		{name: "read error", lines: nil, wantErr: "Cannot read the password: no more input.", wantStderr: promptPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			a := &app{stdio: stdio{err: &errOut, term: &fakeTerminal{lines: tt.lines}}}
			got, err := a.readPassword()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
			} else if err != nil || got != tt.want {
				t.Fatalf("readPassword = %q, %v; want %q", got, err, tt.want)
			}
			if errOut.String() != tt.wantStderr {
				t.Errorf("stderr\n%q\nwant\n%q", errOut.String(), tt.wantStderr)
			}
		})
	}
}

func TestReadPasswordFromStdin(t *testing.T) {
	const good = `A-good\password-of-32-characters`
	tests := []struct {
		name    string
		stdin   string
		want    string
		wantErr string
	}{
		{name: "first line", stdin: good + "\nsecond line\n", want: good},
		{name: "CRLF", stdin: good + "\r\n", want: good},
		{name: "no newline", stdin: good, want: good},
		{name: "empty line: generated", stdin: "\n" + good + "\n", want: ""},
		{name: "no input: generated", stdin: "", want: ""},
		{name: "too long", stdin: strings.Repeat("x", 65) + "\n", wantErr: "Invalid password: password has 65 characters; 24 to 64 are allowed."},
		{name: "a space", stdin: "a password with spaces in it\n", wantErr: "Invalid password: password character at position 2 is not allowed (printable ASCII other than ' and \")."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &app{stdio: stdio{in: strings.NewReader(tt.stdin)}}
			got, err := a.readPassword()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("readPassword = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestUsageErrors: what is refused before any connection, with the exit
// status of its kind: 2 for the command line, 3 for a rule.
func TestUsageErrors(t *testing.T) {
	const run = "\nRun 'dbusers %s --help' for usage.\n"
	tests := []struct {
		name       string
		args       []string
		wantStderr string
		wantCode   int
	}{
		{"create without username", []string{"database-users-create"}, "Expected one <username> argument, got 0." + fmt.Sprintf(run, "database-users-create"), exitUsage},
		{"delete with two usernames", []string{"database-users-delete", "aaaaaa", "bbbbbb"}, "Expected one <username> argument, got 2." + fmt.Sprintf(run, "database-users-delete"), exitUsage},
		{"list with an argument", []string{"database-users-list", "x"}, `Unexpected arguments ["x"]: database-users-list takes none.` + fmt.Sprintf(run, "database-users-list"), exitUsage},
		{"unknown flag", []string{"database-users-list", "--bogus"}, "Unknown flag: --bogus." + fmt.Sprintf(run, "database-users-list"), exitUsage},
		{"bad timeout", []string{"--timeout", "soon", "database-users-list"}, `Invalid argument "soon" for "--timeout" flag: time: invalid duration "soon".` + fmt.Sprintf(run, "database-users-list"), exitUsage},
		{"unknown command", []string{"database-users-frobnicate"}, `Unknown command "database-users-frobnicate" for "dbusers".` + "\nRun 'dbusers --help' for usage.\n", exitUsage},
		{"job result without id", []string{"--target", "app", "database-users-job-result"}, "Expected one <job-id> argument, got 0." + fmt.Sprintf(run, "database-users-job-result"), exitUsage},
		{"invalid username", []string{"database-users-create", "abc"}, `Invalid username: username "abc" has 3 characters; 6 to 32 are allowed.` + "\n", exitRefused},
		{"reserved username", []string{"database-users-delete", "mysql_admin"}, `Invalid username: username "mysql_admin" is reserved`, exitRefused},
		{"no target", []string{"database-users-list"}, "No target: give --target or set DBUSERS_TARGET (the target's name in the worker's config).\n", exitUsage},
		{"bad target", []string{"--target", "My.App", "database-users-list"}, `Invalid target "My.App": it must match ^[a-z0-9][a-z0-9_-]{0,62}$.` + "\n", exitUsage},
		{"rotate without users", []string{"database-users-rotate", "--out", "x"}, "Give the usernames to rotate, or --all for every user.\n", exitUsage},
		{"rotate with both", []string{"database-users-rotate", "--all", "my_user", "--out", "x"}, "Give either --all or usernames, not both.\n", exitUsage},
		{"rotate without --out", []string{"database-users-rotate", "--all"}, "Give --out FILE: the new credentials are written there, never to the terminal.\n", exitUsage},
		{"rotate invalid username", []string{"database-users-rotate", "my_user", "Bad", "--out", "x"}, `Invalid username: username "Bad" has 3 characters; 6 to 32 are allowed.` + "\n", exitRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", nil, tt.args...)
			if code != tt.wantCode || stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing", code, stdout, tt.wantCode)
			}
			if strings.HasSuffix(tt.wantStderr, "\n") && stderr != tt.wantStderr || !strings.HasPrefix(stderr, tt.wantStderr) {
				t.Errorf("stderr\n%q\nwant\n%q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestErrorsUnderJSON: under --json an error is one JSON object on stderr
// with the contract's code (or the CLI's own), the message and the exit
// status, which is also the process's.
func TestErrorsUnderJSON(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode string
		wantExit int
	}{
		{"usage", []string{"--json", "database-users-create"}, codeUsage, exitUsage},
		{"unknown flag", []string{"--json", "database-users-list", "--bogus"}, codeUsage, exitUsage},
		{"invalid username", []string{"--json", "--target", "app", "database-users-create", "abc"}, "invalid_username", exitRefused},
		{"no target", []string{"--json", "database-users-list"}, codeUsage, exitUsage},
		{"keep-old out of range", []string{"--json", "--target", "app", "database-users-update-password", "--keep-old", "25h", "my_user"}, codeUsage, exitUsage},
		{"rotate keep-old out of range", []string{"--json", "--target", "app", "database-users-rotate", "--all", "--keep-old", "1s", "--out", "x"}, codeUsage, exitUsage},
		{"NATS down", []string{"--json", "--target", "app", "--nats-url", "nats://127.0.0.1:1", "--timeout", "1s", "database-users-list"}, codeNATS, exitUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", nil, tt.args...)
			if code != tt.wantExit || stdout != "" {
				t.Errorf("exit %d, stdout %q; want %d and nothing", code, stdout, tt.wantExit)
			}
			var got errorJSON
			dec := json.NewDecoder(strings.NewReader(stderr))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil || dec.More() {
				t.Fatalf("stderr is not one JSON error: %v\n%s", err, stderr)
			}
			if got.Error.Code != tt.wantCode || got.Error.ExitStatus != tt.wantExit || got.Error.Message == "" {
				t.Errorf("error %+v, want code %q, exit_status %d and a message", got.Error, tt.wantCode, tt.wantExit)
			}
		})
	}
}

// TestExitStatuses: each kind of failure has its own status, as
// docs/cli.md lists them.
func TestExitStatuses(t *testing.T) {
	e := func(code client.Code) error {
		return fmt.Errorf("wrapped: %w", &client.Error{Code: code, Message: "x", JobID: "j"})
	}
	tests := []struct {
		err        error
		wantStatus int
		wantCode   string
	}{
		{e(client.CodeInvalidJob), exitRefused, "invalid_job"},
		{e(client.CodeInvalidUsername), exitRefused, "invalid_username"},
		{e(client.CodeInvalidPassword), exitRefused, "invalid_password"},
		{e(client.CodeUserExists), exitRefused, "user_exists"},
		{e(client.CodeProtectedUser), exitRefused, "protected_user"},
		{e(client.CodeForeignUser), exitRefused, "foreign_user"},
		{e(client.CodeUserNotFound), exitNotFound, "user_not_found"},
		{e(client.CodeUnknownTarget), exitNotFound, "unknown_target"},
		{e(client.CodeUnavailable), exitUnavailable, "unavailable"},
		{e(client.CodeInternal), exitFailed, "internal"},
		{fmt.Errorf("client: %w: job x: %w", client.ErrNoResult, context.DeadlineExceeded), exitUnavailable, codeTimeout},
		{fmt.Errorf("client: %w: job x: %w", client.ErrNoResult, context.Canceled), exitInterrupted, codeInterrupted},
		{fmt.Errorf("client: %w on dbusers.info", client.ErrNoWorker), exitUnavailable, codeNoWorker},
		{fmt.Errorf("client: job x: %w", client.ErrSecretGone), exitPasswordUnread, codePasswordUnread},
		{fmt.Errorf("client: job x: %w", client.ErrSecretUnread), exitPasswordUnread, codePasswordUnread},
		{errors.New("unknown flag: --x"), exitUsage, codeUsage},
		{failf("Cannot write the file."), exitFailed, codeFailed},
	}
	a := &app{target: "app", timeout: time.Second}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			err := tt.err
			if _, ok := errors.AsType[*failure](err); !ok && !strings.HasPrefix(err.Error(), "unknown flag") {
				err = a.describe(err, "my_user") // as the commands word them
			}
			status, code := classify(err)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("status %d, code %q; want %d, %q", status, code, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

// TestNATSURLPasswordNeverShown: a --nats-url holding a password is never
// echoed: not when it does not parse (nats.go's parse error quotes it),
// nor when it has no scheme (nats.go reads user:pw@host as a nats:// URL).
func TestNATSURLPasswordNeverShown(t *testing.T) {
	const pw = "Zq9^UNIQUE#pw"
	tests := []struct{ url, wantStderr string }{
		{"nats://alice:" + pw + "@127.0.0.1:1", "Invalid --nats-url (or DBUSERS_NATS_URL): the URL does not parse"},
		{"alice:Zq9-UNIQUE-pw@127.0.0.1:1", "Cannot connect to NATS at nats://127.0.0.1:1:"},
		{"nats://alice:1234#Zq9-UNIQUE-pw@127.0.0.1:1", "Invalid --nats-url (or DBUSERS_NATS_URL): the URL has an @ outside its user info"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", nil, "--nats-url", tt.url, "--target", "app", "--timeout", "2s", "database-users-list")
			if (code != exitUsage && code != exitUnavailable) || !strings.HasPrefix(stderr, tt.wantStderr) {
				t.Fatalf("exit %d, stderr %q; want 2 or 5, beginning %q", code, stderr, tt.wantStderr)
			}
			if strings.Contains(stderr, "UNIQUE") {
				t.Fatalf("stderr shows the URL's password: %q", stderr)
			}
		})
	}
}

// TestRotateRefusesExistingFile: credentials are never written over a
// file, checked before anything is sent.
func TestRotateRefusesExistingFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "creds.jsonl")
	if err := os.WriteFile(out, []byte("earlier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, "", nil, "--target", "app", "database-users-rotate", "--all", "--out", out)
	want := out + " already exists: give a new file (credentials are never written over an existing file).\n"
	if code != exitUsage || stderr != want {
		t.Fatalf("exit %d, stderr %q; want 2, %q", code, stderr, want)
	}
	if b, _ := os.ReadFile(out); string(b) != "earlier\n" {
		t.Fatalf("the existing file changed: %q", b)
	}
}

// TestHelp compares every command's --help with testdata/<command>.help
// (go test -update rewrites them).
func TestHelp(t *testing.T) {
	for _, cmd := range []string{"", "database-users-list", "database-users-create", "database-users-update-password",
		"database-users-delete", "database-users-discard-old-password", "database-users-rotate", "database-users-job-result"} {
		name := cmp(cmd, "dbusers")
		t.Run(name, func(t *testing.T) {
			args := []string{"--help"}
			if cmd != "" {
				args = []string{cmd, "--help"}
			}
			stdout, stderr, code := runCLI(t, "", nil, args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			golden := filepath.Join("testdata", name+".help")
			if *update {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if stdout != string(want) {
				t.Errorf("--help differs from %s (go test -update rewrites it):\n%s", golden, stdout)
			}
		})
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestDescribe: each error of the client is worded for people.
func TestDescribe(t *testing.T) {
	a := &app{natsURL: "nats://alice:secret@127.0.0.1:4222", prefix: "dbusers", target: "my-app", timeout: 30e9}
	e := func(code client.Code, msg string) error {
		return &client.Error{Code: code, Message: msg, JobID: "job-1"}
	}
	tests := []struct {
		err  error
		want string
	}{
		{e(client.CodeUserExists, "x"), `User "my_user" already exists.`},
		{e(client.CodeUserNotFound, "x"), `User "my_user" does not exist.`},
		{e(client.CodeProtectedUser, "x"), `User "my_user" is protected.`},
		{e(client.CodeForeignUser, "x"), `User "my_user" is not managed here: it holds privileges outside the database of target "my-app", so it is left untouched.`},
		{e(client.CodeInvalidUsername, "too short"), `Invalid username: too short.`},
		{e(client.CodeInvalidPassword, "too short."), `Invalid password: too short.`},
		{e(client.CodeUnknownTarget, "x"), `Unknown target "my-app": the worker has no target of that name (check --target or DBUSERS_TARGET).`},
		{e(client.CodeUnavailable, "MySQL: server version: dial tcp 127.0.0.1:1: connect: connection refused; retry the job"),
			"The database of target \"my-app\" did not answer the worker through its retry budget: its server is down or cannot be reached.\n" +
				"Run the command again once it is back; the worker's log and its /readyz endpoint say more."},
		{e(client.CodeInvalidJob, "bad id"), `Invalid request: bad id.`},
		{e(client.CodeInternal, "boom"), `The worker failed: boom.`},
		{fmt.Errorf("client: %w on dbusers.info: %w", client.ErrNoWorker, errors.New("nats: no responders")),
			"No dbusers worker answered at nats://127.0.0.1:4222 (prefix \"dbusers\").\nIs the worker running, and is --nats-url (or DBUSERS_NATS_URL) right?"},
		{fmt.Errorf("client: %w: job x: %w", client.ErrNoResult, context.DeadlineExceeded),
			"The worker did not answer within 30s.\nIs the worker running and reaching its database? --timeout sets the wait."},
		{fmt.Errorf("client: %w: job x: %w", client.ErrNoResult, context.Canceled), "Interrupted before the worker answered."},
		{fmt.Errorf("client: job x: %w", client.ErrSecretGone),
			"User \"my_user\" was changed, but its generated password could not be read from the vault (expired or already read).\nSet a new one with database-users-update-password."},
		{fmt.Errorf("client: job x: %w: read vault key k: %w", client.ErrSecretUnread, errors.New("nats: timeout")),
			"User \"my_user\" was changed, but its generated password could not be read (job x: generated password could not be read: read vault key k: nats: timeout).\nSet a new one with database-users-update-password."},
		{errors.New("client: something odd"), "Something odd."},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := a.describe(tt.err, "my_user")
			if got.Error() != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("the worded error does not wrap %v", tt.err)
			}
		})
	}
}

// TestRotateSummary: skipped and failed users in the order given, then the
// counts; users never sent are counted once.
func TestRotateSummary(t *testing.T) {
	protected := &client.Error{Code: client.CodeProtectedUser, Message: "x", JobID: "j2"}
	missing := &client.Error{Code: client.CodeUserNotFound, Message: "x", JobID: "j3"}
	notSent := fmt.Errorf("client: rotate: not sent: %w", context.Canceled)
	tests := []struct {
		name       string
		results    []client.RotateResult
		skipped    []string
		lost       map[string]error
		wantStdout string
		wantStderr string
		wantErr    string
	}{
		{
			name:       "all rotated",
			results:    []client.RotateResult{{Username: "user_a", Password: secret.New("p"), JobID: "j1"}},
			skipped:    []string{"owner_user"},
			wantStdout: "Rotated: 1, skipped: 1, failed: 0\nNew credentials are in out.jsonl\n",
			wantStderr: "Skipped: User \"owner_user\" is protected.\n",
		},
		{
			name: "skipped, failed, lost and not sent",
			results: []client.RotateResult{
				{Username: "user_a", Password: secret.New("p"), JobID: "j1"},
				{Username: "owner_user", Err: protected, JobID: "j2"},
				{Username: "missing_user", Err: missing, JobID: "j3"},
				{Username: "user_lost", Password: secret.New("p"), JobID: "j4"},
				{Username: "user_late1", Err: notSent},
				{Username: "user_late2", Err: notSent},
			},
			lost:       map[string]error{"user_lost": errors.New("disk full")},
			wantStdout: "Rotated: 1, skipped: 1, failed: 4\nNew credentials are in out.jsonl\n",
			wantStderr: "Skipped: User \"owner_user\" is protected.\n" +
				"Failed: User \"missing_user\" does not exist.\n" +
				"Failed: User \"user_lost\" got a new password that could not be written to out.jsonl (disk full): rotate it again.\n" +
				"Interrupted: 2 users were not sent, and keep their passwords.\n",
			wantErr: "4 of 6 users could not be rotated.",
		},
		{
			name:       "nothing to rotate",
			wantStdout: "Rotated: 0, skipped: 0, failed: 0\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			a := &app{stdio: stdio{out: &out, err: &errOut}, target: "app", timeout: 30e9}
			err := a.rotateSummary("out.jsonl", tt.results, tt.skipped, tt.lost)
			if (err == nil) != (tt.wantErr == "") || err != nil && err.Error() != tt.wantErr {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if out.String() != tt.wantStdout || errOut.String() != tt.wantStderr {
				t.Errorf("stdout %q\nwant   %q\nstderr %q\nwant   %q", out.String(), tt.wantStdout, errOut.String(), tt.wantStderr)
			}
		})
	}
}

// TestNATSSettingsErrors: the NATS authentication and TLS flags are
// checked before any connection, and their errors name the flag and never
// show the password.
func TestNATSSettingsErrors(t *testing.T) {
	const password = "NATS-pw-UNIQUE-5150"
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pwFile := write("pw", password+"\n", 0o600)
	openPWFile := write("open-pw", password+"\n", 0o644)
	openSeed := write("open.nk", "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n", 0o644)
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantStderr []string
	}{
		{"user without password", nil, []string{"--user", "app"},
			[]string{"Invalid NATS settings:\n--password-file or DBUSERS_NATS_PASSWORD: must be given with --user"}},
		{"password without user", map[string]string{"DBUSERS_NATS_PASSWORD": password}, nil,
			[]string{"--user: must be given with DBUSERS_NATS_PASSWORD"}},
		{"password twice", map[string]string{"DBUSERS_NATS_PASSWORD": password}, []string{"--user", "app", "--password-file", pwFile},
			[]string{"Give the NATS password with --password-file or DBUSERS_NATS_PASSWORD, not both."}},
		{"password file open to others", nil, []string{"--user", "app", "--password-file", openPWFile},
			[]string{"--password-file: ", "mode 0644", "chmod 600"}},
		{"nkey and user", nil, []string{"--nkey", openSeed, "--user", "app", "--password-file", pwFile},
			[]string{"--nkey, --user and --password-file: give one way", "--nkey: ", "chmod 600"}},
		{"seed from the environment open to others", map[string]string{"DBUSERS_NKEY": openSeed}, nil, []string{"--nkey: ", "chmod 600"}},
		{"cert without key", map[string]string{"DBUSERS_TLS_CERT": pwFile}, nil, []string{"--tls-key: must be given with --tls-cert"}},
		{"missing CA", nil, []string{"--tls-ca", filepath.Join(dir, "none.pem")}, []string{"--tls-ca: ", "no such file"}},
		{"user in the URL too", map[string]string{"DBUSERS_NATS_PASSWORD": password},
			[]string{"--nats-url", "nats://a:b@127.0.0.1:1", "--user", "app"}, []string{"--nats-url (or DBUSERS_NATS_URL) holds a user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			getenv := func(k string) string { return tt.env[k] }
			args := append(append([]string{"--target", "app"}, tt.args...), "database-users-list")
			code := run(t.Context(), args, getenv, stdio{in: strings.NewReader(""), out: &out, err: &errOut})
			if code != exitUsage || out.Len() != 0 {
				t.Fatalf("exit %d, stdout %q", code, out.String())
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr %q does not say %q", errOut.String(), w)
				}
			}
			if strings.Contains(errOut.String(), password) {
				t.Errorf("stderr shows the password: %q", errOut.String())
			}
		})
	}
}
