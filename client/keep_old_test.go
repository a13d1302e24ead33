package client

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/workertest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

const chosenPassword = "A-chosen-password-of-32-chars-!!"

// keepOldWorker answers reset_password as a worker that keeps the old
// password: old_password_until is the completion plus keep_old_for, or
// absent without it. It answers discard_old_password with the account
// alone, and names in errs get that error whatever the op.
func keepOldWorker(t *testing.T, errs map[string]wire.Code) func(workertest.Job) workertest.Answer {
	return func(j workertest.Job) workertest.Answer {
		user := j.Field("username")
		if code, ok := errs[user]; ok {
			return workertest.Answer{Err: wire.Errorf(code, "the worker's words about %s", user)}
		}
		acc := &wire.Account{Username: user}
		switch j.Op {
		case wire.OpResetPassword:
			ans := workertest.Answer{User: acc}
			if _, chosen := j.Body["password"]; !chosen {
				ans.Generated = strings.Repeat("g", 64)
			}
			if s := j.Field("keep_old_for"); s != "" {
				d, e := wire.ParseKeepOld(s)
				if e != nil {
					return workertest.Answer{Err: e}
				}
				until := time.Now().UTC().Add(d).Truncate(time.Second)
				acc.OldPasswordUntil = &until
			}
			return ans
		case wire.OpDiscardOldPassword:
			return workertest.Answer{User: acc}
		}
		t.Errorf("unexpected job %s", j.Op)
		return workertest.Answer{Err: wire.Errorf(wire.CodeInvalidJob, "unexpected op")}
	}
}

// bodyKeys returns the fields of a job's body, sorted.
func bodyKeys(j workertest.Job) []string {
	keys := make([]string, 0, len(j.Body))
	for k := range j.Body {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestCheckKeepOld(t *testing.T) {
	tests := []struct {
		d  time.Duration
		ok bool
	}{
		{time.Minute, true},
		{15 * time.Minute, true},
		{90 * time.Second, true},
		{24 * time.Hour, true},
		{0, false},
		{59 * time.Second, false},
		{24*time.Hour + time.Second, false},
		{-15 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.d.String(), func(t *testing.T) {
			err := CheckKeepOld(tt.d)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckKeepOld(%v): %v", tt.d, err)
				}
				return
			}
			e, ok := errors.AsType[*Error](err)
			if !ok || !errors.Is(err, ErrInvalidJob) || e.JobID != "" || !strings.Contains(e.Message, "keep_old_for") {
				t.Fatalf("CheckKeepOld(%v) = %#v, want an invalid_job *Error about keep_old_for", tt.d, err)
			}
		})
	}
}

// TestResetPasswordKeepOld: KeepOldFor travels as keep_old_for in Go's
// duration form, only when set, and the account returned carries the
// worker's old_password_until; a value outside 1m–24h is refused before
// anything is sent.
func TestResetPasswordKeepOld(t *testing.T) {
	t.Parallel()
	w, c := startFakeWorker(t, keepOldWorker(t, nil))
	tests := []struct {
		name          string
		req           ResetPasswordRequest
		wantKeepOld   string // "" : the body has no keep_old_for
		wantGenerated bool
		wantErr       error // refused before sending
	}{
		{name: "chosen, kept 15m", req: ResetPasswordRequest{Username: "user_chosen", Password: secret.New(chosenPassword), KeepOldFor: 15 * time.Minute}, wantKeepOld: "15m0s"},
		{name: "generated, kept 90s", req: ResetPasswordRequest{Username: "user_generated", KeepOldFor: 90 * time.Second}, wantKeepOld: "1m30s", wantGenerated: true},
		{name: "kept 24h", req: ResetPasswordRequest{Username: "user_longest", Password: secret.New(chosenPassword), KeepOldFor: 24 * time.Hour}, wantKeepOld: "24h0m0s"},
		{name: "not kept", req: ResetPasswordRequest{Username: "user_plain", Password: secret.New(chosenPassword)}},
		{name: "30s: too short", req: ResetPasswordRequest{Username: "user_short", KeepOldFor: 30 * time.Second}, wantErr: ErrInvalidJob},
		{name: "25h: too long", req: ResetPasswordRequest{Username: "user_long", KeepOldFor: 25 * time.Hour}, wantErr: ErrInvalidJob},
		{name: "negative", req: ResetPasswordRequest{Username: "user_negative", KeepOldFor: -time.Minute}, wantErr: ErrInvalidJob},
		{name: "keep_old_for is checked before the username", req: ResetPasswordRequest{Username: "Bad", KeepOldFor: time.Second}, wantErr: ErrInvalidJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(w.Taken())
			start := time.Now().Truncate(time.Second)
			creds, err := c.ResetPassword(t.Context(), "my-app", tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ResetPassword: %v, want %v", err, tt.wantErr)
				}
				if n := len(w.Taken()); n != before {
					t.Fatalf("a refused request was sent (%d jobs, want %d)", n, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResetPassword: %v", err)
			}
			jobs := w.Taken()
			if len(jobs) != before+1 {
				t.Fatalf("%d jobs sent, want 1", len(jobs)-before)
			}
			job := jobs[len(jobs)-1]
			if job.Op != wire.OpResetPassword || job.Field("id") != creds.JobID {
				t.Errorf("job %s %s, want %s %s", job.Op, job.Field("id"), wire.OpResetPassword, creds.JobID)
			}
			_, has := job.Body["keep_old_for"]
			if got := job.Field("keep_old_for"); got != tt.wantKeepOld || has != (tt.wantKeepOld != "") {
				t.Errorf("keep_old_for %q (present %v), want %q", got, has, tt.wantKeepOld)
			}
			if got := creds.Password.Reveal(); (got != "") != tt.wantGenerated {
				t.Errorf("password %d characters, want generated: %v", len(got), tt.wantGenerated)
			}
			until := creds.Account.OldPasswordUntil
			if tt.wantKeepOld == "" {
				if until != nil {
					t.Errorf("OldPasswordUntil %v, want none", until)
				}
				return
			}
			if until == nil {
				t.Fatal("OldPasswordUntil not set")
			}
			if low, high := start.Add(tt.req.KeepOldFor), time.Now().Add(tt.req.KeepOldFor); until.Before(low) || until.After(high) {
				t.Errorf("OldPasswordUntil %v, want within %v..%v", until, low, high)
			}
		})
	}
}

// TestDiscardOldPassword: a discard_old_password job names the id and the
// username only; the worker's refusals are typed errors with the job id;
// what the client can check is refused before sending.
func TestDiscardOldPassword(t *testing.T) {
	t.Parallel()
	w, c := startFakeWorker(t, keepOldWorker(t, map[string]wire.Code{
		"missing_user": wire.CodeUserNotFound, "owner_user": wire.CodeProtectedUser, "other_tenant": wire.CodeForeignUser,
	}))
	tests := []struct {
		name     string
		req      DiscardOldPasswordRequest
		wantErr  error
		wantSent bool
	}{
		{name: "ok", req: DiscardOldPasswordRequest{Username: "my_user"}, wantSent: true},
		{name: "ok with a job id", req: DiscardOldPasswordRequest{Username: "my_user", JobID: "discard-1"}, wantSent: true},
		{name: "not found", req: DiscardOldPasswordRequest{Username: "missing_user"}, wantErr: ErrUserNotFound, wantSent: true},
		{name: "protected", req: DiscardOldPasswordRequest{Username: "owner_user"}, wantErr: ErrProtectedUser, wantSent: true},
		{name: "foreign", req: DiscardOldPasswordRequest{Username: "other_tenant"}, wantErr: ErrForeignUser, wantSent: true},
		{name: "invalid username", req: DiscardOldPasswordRequest{Username: "root"}, wantErr: ErrInvalidUsername},
		{name: "invalid job id", req: DiscardOldPasswordRequest{Username: "my_user", JobID: "a.b"}, wantErr: ErrInvalidJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(w.Taken())
			acc, err := c.DiscardOldPassword(t.Context(), "my-app", tt.req)
			jobs := w.Taken()
			if sent := len(jobs) > before; sent != tt.wantSent {
				t.Fatalf("sent %v, want %v (error %v)", sent, tt.wantSent, err)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("DiscardOldPassword: %v, want %v", err, tt.wantErr)
				}
				e, _ := errors.AsType[*Error](err)
				if tt.wantSent && (e == nil || e.JobID != jobs[len(jobs)-1].Field("id")) {
					t.Errorf("error %#v does not name the job", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DiscardOldPassword: %v", err)
			}
			job := jobs[len(jobs)-1]
			if job.Op != wire.OpDiscardOldPassword || job.Target != "my-app" {
				t.Errorf("job %s on %s", job.Op, job.Target)
			}
			if got := bodyKeys(job); !slices.Equal(got, []string{"id", "username"}) {
				t.Errorf("body fields %v, want [id username]", got)
			}
			if tt.req.JobID != "" && job.Field("id") != tt.req.JobID {
				t.Errorf("job id %q, want %q", job.Field("id"), tt.req.JobID)
			}
			if acc.Username != tt.req.Username || acc.OldPasswordUntil != nil {
				t.Errorf("account %+v", acc)
			}
		})
	}
}

// TestRotatePasswordsKeepOld: RotateOptions.KeepOldFor goes with every
// account's job and every result carries its old_password_until; out of
// range, nothing starts.
func TestRotatePasswordsKeepOld(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		keepOld     time.Duration
		wantKeepOld string
		wantErr     error
	}{
		{name: "kept 2h", keepOld: 2 * time.Hour, wantKeepOld: "2h0m0s"},
		{name: "not kept"},
		{name: "59s", keepOld: 59 * time.Second, wantErr: ErrInvalidJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, c := startFakeWorker(t, keepOldWorker(t, map[string]wire.Code{"owner_user": wire.CodeProtectedUser}))
			usernames := []string{"user_one", "owner_user", "user_two"}
			results, err := c.RotatePasswords(t.Context(), "my-app", usernames, RotateOptions{KeepOldFor: tt.keepOld, Concurrency: 2})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || results != nil {
					t.Fatalf("RotatePasswords: %v, %v; want %v", results, err, tt.wantErr)
				}
				if n := len(w.Taken()); n != 0 {
					t.Fatalf("%d jobs sent, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range w.Taken() {
				if got := j.Field("keep_old_for"); got != tt.wantKeepOld {
					t.Errorf("job of %s: keep_old_for %q, want %q", j.Field("username"), got, tt.wantKeepOld)
				}
			}
			for i, r := range results {
				if r.Username != usernames[i] {
					t.Fatalf("result %d is %s, want %s", i, r.Username, usernames[i])
				}
				if r.Username == "owner_user" {
					if !errors.Is(r.Err, ErrProtectedUser) || r.Account.OldPasswordUntil != nil {
						t.Errorf("protected: %+v", r)
					}
					continue
				}
				if r.Err != nil || r.Password.IsZero() {
					t.Fatalf("%s: %v", r.Username, r.Err)
				}
				if (r.Account.OldPasswordUntil != nil) != (tt.keepOld != 0) {
					t.Errorf("%s: OldPasswordUntil %v with keep-old %v", r.Username, r.Account.OldPasswordUntil, tt.keepOld)
				}
			}
		})
	}
}

// TestAccountJSONCarriesOldPasswordUntil: the account callers get encodes
// old_password_until as RFC 3339, and leaves it out when there is none.
func TestAccountJSONCarriesOldPasswordUntil(t *testing.T) {
	until := time.Date(2026, 12, 3, 14, 5, 0, 0, time.UTC)
	tests := []struct {
		acc  Account
		want string
	}{
		{Account{Username: "my_user", OldPasswordUntil: &until}, `{"username":"my_user","read_only":false,"protected":false,"old_password_until":"2026-12-03T14:05:00Z"}`},
		{Account{Username: "my_user"}, `{"username":"my_user","read_only":false,"protected":false}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.acc)
		if err != nil || string(got) != tt.want {
			t.Errorf("json %s, %v; want %s", got, err, tt.want)
		}
	}
}
