package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/workertest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

const chosen = "A-chosen-password-of-32-chars-!!"

// oldUntil is when the scripted worker says an old password kept for 15m
// stops working; keep_old_for moves it (2h: 15:50:00), and so does
// untilOffset per user.
var oldUntil = time.Date(2026, 12, 3, 14, 5, 0, 0, time.UTC)

var untilOffset = map[string]time.Duration{"user_late": 9 * time.Second}

// keepOldAnswers scripts the worker: resets keep the old password as
// keep_old_for asks, discards and the list answer as the worker does, and
// the users below are refused.
func keepOldAnswers(t *testing.T) func(workertest.Job) workertest.Answer {
	refused := map[string]wire.Code{"owner_user": wire.CodeProtectedUser, "missing_user": wire.CodeUserNotFound, "other_tenant": wire.CodeForeignUser}
	return func(j workertest.Job) workertest.Answer {
		user := j.Field("username")
		if code, ok := refused[user]; ok {
			return workertest.Answer{Err: wire.Errorf(code, "the worker's words about %s", user)}
		}
		switch j.Op {
		case wire.OpResetPassword:
			ans := workertest.Answer{User: &wire.Account{Username: user}}
			if _, ok := j.Body["password"]; !ok {
				ans.Generated = strings.Repeat("g", 64)
			}
			if s := j.Field("keep_old_for"); s != "" {
				d, e := wire.ParseKeepOld(s)
				if e != nil {
					return workertest.Answer{Err: e}
				}
				until := oldUntil.Add(d - 15*time.Minute + untilOffset[user])
				ans.User.OldPasswordUntil = &until
			}
			return ans
		case wire.OpDiscardOldPassword:
			return workertest.Answer{User: &wire.Account{Username: user}}
		case wire.OpList:
			until := oldUntil
			return workertest.Answer{Users: []wire.Account{
				{Username: "my_user", OldPasswordUntil: &until},
				{Username: "owner_user", Protected: true},
				{Username: "reader_user", ReadOnly: true},
			}}
		}
		t.Errorf("unexpected job %s", j.Op)
		return workertest.Answer{Err: wire.Errorf(wire.CodeInvalidJob, "unexpected op")}
	}
}

// TestKeepOldCommands runs the commands of rotation without downtime
// against a scripted worker: what each sends, prints and exits with.
func TestKeepOldCommands(t *testing.T) {
	w := workertest.Start(t, client.DefaultPrefix, keepOldAnswers(t))
	generated := strings.Repeat("g", 64)
	tests := []struct {
		name        string
		args        []string
		stdin       string
		wantOp      wire.Op // "" : no job is sent
		wantKeepOld string  // the job's keep_old_for; "" : absent
		wantStdout  string
		wantStderr  string
		wantExit    int
	}{
		{
			name: "update, chosen, kept 15m", args: []string{"database-users-update-password", "--keep-old", "15m", "my_user"}, stdin: chosen + "\n",
			wantOp: wire.OpResetPassword, wantKeepOld: "15m0s",
			wantStdout: "User \"my_user\" password updated.\nThe old password of my_user keeps working until 2026-12-03 14:05:00 UTC.\n",
		},
		{
			name: "update, generated, kept 2h", args: []string{"database-users-update-password", "my_user", "--keep-old", "2h"}, stdin: "\n",
			wantOp: wire.OpResetPassword, wantKeepOld: "2h0m0s",
			wantStdout: "User \"my_user\" updated with password \"" + generated + "\".\nThe old password of my_user keeps working until 2026-12-03 15:50:00 UTC.\n",
		},
		{
			name: "update, not kept: the platform's words alone", args: []string{"database-users-update-password", "my_user"}, stdin: chosen + "\n",
			wantOp: wire.OpResetPassword, wantStdout: "User \"my_user\" password updated.\n",
		},
		{
			name: "update, kept, protected", args: []string{"database-users-update-password", "--keep-old", "15m", "owner_user"}, stdin: chosen + "\n",
			wantOp: wire.OpResetPassword, wantKeepOld: "15m0s", wantStderr: "User \"owner_user\" is protected.\n", wantExit: exitRefused,
		},
		{
			name: "update, 30s: refused before sending", args: []string{"database-users-update-password", "--keep-old", "30s", "my_user"}, stdin: chosen + "\n",
			wantStderr: "Invalid --keep-old 30s: the old password can be kept from 1m to 24h (leave --keep-old out to end it at once).\n", wantExit: exitUsage,
		},
		{
			name: "update, 25h: refused before sending", args: []string{"database-users-update-password", "--keep-old", "25h", "my_user"}, stdin: chosen + "\n",
			wantStderr: "Invalid --keep-old 25h0m0s: the old password can be kept from 1m to 24h (leave --keep-old out to end it at once).\n", wantExit: exitUsage,
		},
		{
			name: "update, 0 given: refused", args: []string{"database-users-update-password", "--keep-old", "0", "my_user"}, stdin: chosen + "\n",
			wantStderr: "Invalid --keep-old 0s: the old password can be kept from 1m to 24h (leave --keep-old out to end it at once).\n", wantExit: exitUsage,
		},
		{
			name: "update, not a duration", args: []string{"database-users-update-password", "--keep-old", "soon", "my_user"},
			wantStderr: "Invalid argument \"soon\" for \"--keep-old\" flag: time: invalid duration \"soon\".\nRun 'dbusers database-users-update-password --help' for usage.\n", wantExit: exitUsage,
		},
		{
			name: "rotate, 48h: refused before sending", args: []string{"database-users-rotate", "my_user", "--keep-old", "48h", "--out", "OUT"},
			wantStderr: "Invalid --keep-old 48h0m0s: the old password can be kept from 1m to 24h (leave --keep-old out to end it at once).\n", wantExit: exitUsage,
		},
		{
			name: "discard", args: []string{"database-users-discard-old-password", "my_user"},
			wantOp: wire.OpDiscardOldPassword, wantStdout: "The old password of my_user no longer works.\n",
		},
		{
			name: "discard, protected", args: []string{"database-users-discard-old-password", "owner_user"},
			wantOp: wire.OpDiscardOldPassword, wantStderr: "User \"owner_user\" is protected.\n", wantExit: exitRefused,
		},
		{
			name: "discard, not found", args: []string{"database-users-discard-old-password", "missing_user"},
			wantOp: wire.OpDiscardOldPassword, wantStderr: "User \"missing_user\" does not exist.\n", wantExit: exitNotFound,
		},
		{
			name: "discard, foreign", args: []string{"database-users-discard-old-password", "other_tenant"},
			wantOp:     wire.OpDiscardOldPassword,
			wantStderr: "User \"other_tenant\" is not managed here: it holds privileges outside the database of target \"app\", so it is left untouched.\n", wantExit: exitRefused,
		},
		{
			name: "discard, invalid username", args: []string{"database-users-discard-old-password", "root"},
			wantStderr: "Invalid username: username \"root\" is reserved (the server's superuser).\n", wantExit: exitRefused,
		},
		{
			name: "discard, no username", args: []string{"database-users-discard-old-password"},
			wantStderr: "Expected one <username> argument, got 0.\nRun 'dbusers database-users-discard-old-password --help' for usage.\n", wantExit: exitUsage,
		},
		{
			name: "list keeps its three columns", args: []string{"database-users-list"}, wantOp: wire.OpList,
			wantStdout: "+-------------+-----------+-----------+\n" +
				"|  USERNAME   | READ-ONLY | PROTECTED |\n" +
				"+-------------+-----------+-----------+\n" +
				"| my_user     | false     | false     |\n" +
				"| owner_user  | false     | true      |\n" +
				"| reader_user | true      | false     |\n" +
				"+-------------+-----------+-----------+\n",
		},
		{
			name: "list --json carries old_password_until", args: []string{"--json", "database-users-list"}, wantOp: wire.OpList,
			wantStdout: `{"target":"app","users":[{"username":"my_user","read_only":false,"protected":false,"old_password_until":"2026-12-03T14:05:00Z"},` +
				`{"username":"owner_user","read_only":false,"protected":true},{"username":"reader_user","read_only":true,"protected":false}]}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(w.Taken())
			args := append([]string{"--nats-url", w.URL, "--target", "app", "--timeout", "10s"}, tt.args...)
			for i, a := range args {
				if a == "OUT" {
					args[i] = filepath.Join(t.TempDir(), "out.jsonl")
				}
			}
			stdout, stderr, code := runCLI(t, tt.stdin, nil, args...)
			if code != tt.wantExit || stdout != tt.wantStdout || stderr != tt.wantStderr {
				t.Errorf("exit %d, want %d\nstdout %q\nwant   %q\nstderr %q\nwant   %q", code, tt.wantExit, stdout, tt.wantStdout, stderr, tt.wantStderr)
			}
			jobs := w.Taken()[before:]
			if tt.wantOp == "" {
				if len(jobs) != 0 {
					t.Fatalf("%d jobs sent, want none", len(jobs))
				}
				return
			}
			if len(jobs) != 1 || jobs[0].Op != tt.wantOp || jobs[0].Target != "app" {
				t.Fatalf("jobs %+v, want one %s", jobs, tt.wantOp)
			}
			_, has := jobs[0].Body["keep_old_for"]
			if got := jobs[0].Field("keep_old_for"); got != tt.wantKeepOld || has != (tt.wantKeepOld != "") {
				t.Errorf("keep_old_for %q (present %v), want %q", got, has, tt.wantKeepOld)
			}
		})
	}
}

// TestKeepOldJSON: --json of update-password and discard-old-password is
// the user as the worker reports it, old_password_until included while the
// old password works.
func TestKeepOldJSON(t *testing.T) {
	w := workertest.Start(t, client.DefaultPrefix, keepOldAnswers(t))
	tests := []struct {
		name      string
		args      []string
		wantUntil *time.Time
	}{
		{"update kept 15m", []string{"database-users-update-password", "--keep-old", "15m", "my_user"}, &oldUntil},
		{"update not kept", []string{"database-users-update-password", "my_user"}, nil},
		{"discard", []string{"database-users-discard-old-password", "my_user"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--json", "--nats-url", w.URL, "--target", "app"}, tt.args...)
			stdout, stderr, code := runCLI(t, chosen+"\n", nil, args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			var got struct {
				Target string         `json:"target"`
				User   map[string]any `json:"user"`
				JobID  string         `json:"job_id"`
			}
			dec := json.NewDecoder(strings.NewReader(stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("stdout %q: %v", stdout, err)
			}
			until, has := got.User["old_password_until"]
			if tt.wantUntil == nil && has || tt.wantUntil != nil && until != tt.wantUntil.Format(time.RFC3339) {
				t.Errorf("old_password_until %v (present %v), want %v", until, has, tt.wantUntil)
			}
			if got.Target != "app" || got.User["username"] != "my_user" || !strings.HasPrefix(got.JobID, "cli-") {
				t.Errorf("output %s", stdout)
			}
		})
	}
}

// TestRotateKeepOld: rotate --keep-old sends keep_old_for with every job,
// writes each user's old_password_until to the file and sums the times up.
func TestRotateKeepOld(t *testing.T) {
	w := workertest.Start(t, client.DefaultPrefix, keepOldAnswers(t))
	tests := []struct {
		name       string
		args       []string
		wantUntil  map[string]string // per user in the file; "" : absent
		wantStdout string            // OUT stands for the file
	}{
		{
			name: "one time", args: []string{"database-users-rotate", "--keep-old", "15m", "user_one", "user_two", "owner_user"},
			wantUntil:  map[string]string{"user_one": "2026-12-03T14:05:00Z", "user_two": "2026-12-03T14:05:00Z"},
			wantStdout: "Rotated: 2, skipped: 1, failed: 0\nNew credentials are in OUT\nThe old passwords keep working until 2026-12-03 14:05:00 UTC.\n",
		},
		{
			name: "a span", args: []string{"database-users-rotate", "--keep-old", "15m", "user_one", "user_late"},
			wantUntil: map[string]string{"user_one": "2026-12-03T14:05:00Z", "user_late": "2026-12-03T14:05:09Z"},
			wantStdout: "Rotated: 2, skipped: 0, failed: 0\nNew credentials are in OUT\n" +
				"The old passwords keep working until 2026-12-03 14:05:00 UTC at the earliest, 2026-12-03 14:05:09 UTC at the latest; each user's time is in OUT.\n",
		},
		{
			name: "not kept", args: []string{"database-users-rotate", "user_one"},
			wantUntil:  map[string]string{"user_one": ""},
			wantStdout: "Rotated: 1, skipped: 0, failed: 0\nNew credentials are in OUT\n",
		},
		{
			name: "--json", args: []string{"--json", "database-users-rotate", "--keep-old", "15m", "user_one", "user_late"},
			wantUntil: map[string]string{"user_one": "2026-12-03T14:05:00Z", "user_late": "2026-12-03T14:05:09Z"},
			wantStdout: `{"target":"app","out":"OUT","rotated":2,"skipped":[],"failed":[],` +
				`"old_password_until":{"earliest":"2026-12-03T14:05:00Z","latest":"2026-12-03T14:05:09Z"}}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "new-passwords.jsonl")
			before := len(w.Taken())
			args := append([]string{"--nats-url", w.URL, "--target", "app"}, tt.args...)
			stdout, _, code := runCLI(t, "", nil, append(args, "--out", out)...)
			if want := strings.ReplaceAll(tt.wantStdout, "OUT", out); code != 0 || stdout != want {
				t.Errorf("exit %d\nstdout %q\nwant   %q", code, stdout, want)
			}
			for _, j := range w.Taken()[before:] {
				if _, kept := tt.wantUntil[j.Field("username")]; kept && (j.Field("keep_old_for") != "") != (tt.wantUntil[j.Field("username")] != "") {
					t.Errorf("job of %s: keep_old_for %q", j.Field("username"), j.Field("keep_old_for"))
				}
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			lines := 0
			for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
				var l map[string]any
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				user, _ := l["username"].(string)
				want, ok := tt.wantUntil[user]
				got, has := l["old_password_until"]
				if !ok || want == "" && has || want != "" && got != want {
					t.Errorf("line of %q: old_password_until %v, want %q", user, got, want)
				}
			}
			if lines != len(tt.wantUntil) {
				t.Errorf("%d lines, want %d", lines, len(tt.wantUntil))
			}
		})
	}
}

// TestJobResultOldPassword: a done reset that kept the old password, and a
// done discard, say so when looked up later, in the past tense since the
// old password may have ended since.
func TestJobResultOldPassword(t *testing.T) {
	until := oldUntil
	done := time.Date(2026, 12, 3, 13, 50, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   client.JobStatus
		want string
	}{
		{
			name: "reset kept",
			st: client.JobStatus{ID: "cli-1", State: client.JobDone, Op: string(wire.OpResetPassword),
				Result: &client.JobResult{Account: &client.Account{Username: "my_user", OldPasswordUntil: &until}, Attempts: 1, CompletedAt: done}},
			want: "Job cli-1 (user.reset_password of user \"my_user\") succeeded at 2026-12-03T13:50:00Z after 1 attempt.\n" +
				"It kept the old password of my_user working until 2026-12-03 14:05:00 UTC.\n",
		},
		{
			name: "discard",
			st: client.JobStatus{ID: "cli-2", State: client.JobDone, Op: string(wire.OpDiscardOldPassword),
				Result: &client.JobResult{Account: &client.Account{Username: "my_user"}, Attempts: 2, CompletedAt: done}},
			want: "Job cli-2 (user.discard_old_password of user \"my_user\") succeeded at 2026-12-03T13:50:00Z after 2 attempts.\n" +
				"It ended the old password of my_user.\n",
		},
		{
			name: "reset not kept",
			st: client.JobStatus{ID: "cli-3", State: client.JobDone, Op: string(wire.OpResetPassword),
				Result: &client.JobResult{Account: &client.Account{Username: "my_user"}, Attempts: 1, CompletedAt: done}},
			want: "Job cli-3 (user.reset_password of user \"my_user\") succeeded at 2026-12-03T13:50:00Z after 1 attempt.\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			a := &app{stdio: stdio{out: &out}, target: "app"}
			if err := a.printJob(tt.st, nil); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got  %q\nwant %q", out.String(), tt.want)
			}
		})
	}
}

// TestRotateSummaryOldPasswords: the summary's old-password line covers
// the users rotated, not those that failed or whose line was lost.
func TestRotateSummaryOldPasswords(t *testing.T) {
	at := func(d time.Duration) client.Account {
		u := oldUntil.Add(d)
		return client.Account{OldPasswordUntil: &u}
	}
	var out, errOut strings.Builder
	a := &app{stdio: stdio{out: &out, err: &errOut}, target: "app", timeout: time.Second}
	err := a.rotateSummary("out.jsonl", []client.RotateResult{
		{Username: "user_a", Account: at(0), Password: secret.New("p"), JobID: "j1"},
		{Username: "user_b", Account: at(3 * time.Second), Password: secret.New("p"), JobID: "j2"},
		{Username: "user_lost", Account: at(time.Hour), Password: secret.New("p"), JobID: "j3"},
	}, nil, map[string]error{"user_lost": os.ErrClosed})
	if err == nil {
		t.Fatal("a lost line is not a failure")
	}
	want := "Rotated: 2, skipped: 0, failed: 1\nNew credentials are in out.jsonl\n" +
		"The old passwords keep working until 2026-12-03 14:05:00 UTC at the earliest, 2026-12-03 14:05:03 UTC at the latest; each user's time is in out.jsonl.\n"
	if out.String() != want {
		t.Errorf("stdout %q\nwant   %q", out.String(), want)
	}
}
