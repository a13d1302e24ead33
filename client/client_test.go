package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/natstest"
)

func TestErrorIsItsCodesSentinel(t *testing.T) {
	sentinels := map[Code]error{
		CodeInvalidJob: ErrInvalidJob, CodeInvalidUsername: ErrInvalidUsername, CodeInvalidPassword: ErrInvalidPassword,
		CodeUnknownTarget: ErrUnknownTarget, CodeUserExists: ErrUserExists, CodeUserNotFound: ErrUserNotFound,
		CodeProtectedUser: ErrProtectedUser, CodeForeignUser: ErrForeignUser, CodeUnavailable: ErrUnavailable,
		CodeInternal: ErrInternal,
	}
	for code, sentinel := range sentinels {
		t.Run(string(code), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", &Error{Code: code, Message: "what was wrong", JobID: "job-1"})
			if !errors.Is(err, sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, sentinel)
			}
			for other, s := range sentinels {
				if other != code && errors.Is(err, s) {
					t.Errorf("a %s error is also %v", code, s)
				}
			}
			e, ok := errors.AsType[*Error](err)
			if !ok || e.Code != code || e.Message != "what was wrong" || e.JobID != "job-1" {
				t.Errorf("errors.As gives %+v", e)
			}
			if got, want := e.Error(), string(code)+": what was wrong"; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
	if (&Error{Code: "not_a_code"}).Unwrap() != nil {
		t.Error("an unknown code unwraps to a sentinel")
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		wants error // nil: valid
	}{
		{"target", CheckTarget("my-app"), nil},
		{"target digits", CheckTarget("0app_1"), nil},
		{"target 63", CheckTarget(strings.Repeat("a", 63)), nil},
		{"target 64", CheckTarget(strings.Repeat("a", 64)), ErrInvalidJob},
		{"target empty", CheckTarget(""), ErrInvalidJob},
		{"target dot", CheckTarget("my.app"), ErrInvalidJob},
		{"target wildcard", CheckTarget("*"), ErrInvalidJob},
		{"target upper", CheckTarget("App"), ErrInvalidJob},
		{"target leading dash", CheckTarget("-app"), ErrInvalidJob},
		{"job id", checkJobID("job-1_A"), nil},
		{"job id 65", checkJobID(strings.Repeat("a", 65)), ErrInvalidJob},
		{"job id dot", checkJobID("job.1"), ErrInvalidJob},
		{"username", CheckUsername("my_user"), nil},
		{"username short", CheckUsername("abc"), ErrInvalidUsername},
		{"username reserved", CheckUsername("mysql_x1"), ErrInvalidUsername},
		{"password", CheckPassword(strings.Repeat("p", 24)), nil},
		{"password backslash", CheckPassword(strings.Repeat(`\`, 64)), nil},
		{"password short", CheckPassword(strings.Repeat("p", 23)), ErrInvalidPassword},
		{"password quote", CheckPassword(strings.Repeat("p", 30) + "'"), ErrInvalidPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wants == nil {
				if tt.err != nil {
					t.Fatalf("unexpected error %v", tt.err)
				}
				return
			}
			if !errors.Is(tt.err, tt.wants) {
				t.Fatalf("error %v, want %v", tt.err, tt.wants)
			}
			if e, ok := errors.AsType[*Error](tt.err); !ok || e.Message == "" || e.JobID != "" {
				t.Fatalf("error %#v: want an *Error with a message and no job id", tt.err)
			}
		})
	}
}

func TestNewJobID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newJobID()
		if err := checkJobID(id); err != nil {
			t.Fatal(err)
		}
		if seen[id] {
			t.Fatalf("job id %s repeats", id)
		}
		seen[id] = true
	}
}

func TestNewOptions(t *testing.T) {
	nc := connectTestServer(t)
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	xkey, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    []Option
		wantErr string
	}{
		{name: "defaults"},
		{name: "all set", opts: []Option{WithPrefix("acme-db"), WithWorkerKey(xkey), WithTimeout(time.Second), WithListPageSize(5000)}},
		{name: "empty prefix", opts: []Option{WithPrefix("")}, wantErr: "prefix"},
		{name: "prefix with a dot", opts: []Option{WithPrefix("a.b")}, wantErr: "prefix"},
		{name: "worker key not a curve key", opts: []Option{WithWorkerKey("UABC")}, wantErr: "curve public key"},
		{name: "zero timeout", opts: []Option{WithTimeout(0)}, wantErr: "timeout"},
		{name: "page size 0", opts: []Option{WithListPageSize(0)}, wantErr: "page size"},
		{name: "page size 5001", opts: []Option{WithListPageSize(5001)}, wantErr: "page size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(nc, tt.opts...)
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: error %v, want one about %q", err, tt.wantErr)
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

// TestNoWorker: without a worker, the calls fail at once with ErrNoWorker.
func TestNoWorker(t *testing.T) {
	c, err := New(connectTestServer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := c.WorkerInfo(ctx); !errors.Is(err, ErrNoWorker) {
		t.Errorf("WorkerInfo: %v, want ErrNoWorker", err)
	}
	if _, err := c.CreateUser(ctx, "app", CreateUserRequest{Username: "my_user"}); !errors.Is(err, ErrNoWorker) {
		t.Errorf("CreateUser: %v, want ErrNoWorker", err)
	}
	if _, err := c.DeleteUser(ctx, "app", DeleteUserRequest{Username: "my_user"}); !errors.Is(err, ErrNoWorker) {
		t.Errorf("DeleteUser (no jobs stream): %v, want ErrNoWorker", err)
	}
	if _, err := c.RotatePasswords(ctx, "app", []string{"my_user"}, RotateOptions{}); !errors.Is(err, ErrNoWorker) {
		t.Errorf("RotatePasswords: %v, want ErrNoWorker", err)
	}
	if _, err := c.RotatePasswords(ctx, "app", []string{"my_user", "my_user"}, RotateOptions{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("RotatePasswords with a repeated username: %v", err)
	}
}

// connectTestServer starts an in-process JetStream server and connects.
func connectTestServer(t *testing.T) *nats.Conn {
	t.Helper()
	nc, _ := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	return nc
}
