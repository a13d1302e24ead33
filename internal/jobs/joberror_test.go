package jobs

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/wire"
)

// TestFailureMessagesArePlainSentences: every message of the failure
// catalogue is a sentence ending with a full stop that names the target;
// an unavailable one says how it ended and what to do, never quoting the
// driver, which stays the Error's cause.
func TestFailureMessagesArePlainSentences(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	version := fmt.Errorf("server version: %w", dial)
	tests := []struct {
		name string
		err  error
		code wire.Code
		want string
	}{
		{"unreachable", version, wire.CodeUnavailable, "MySQL server of target shop did not answer after 5 attempts; the job made no change. Send it again once the server is up."},
		{"connection lost", mysql.ErrInvalidConn, wire.CodeUnavailable, "MySQL server of target shop did not answer after 5 attempts; the job made no change. Send it again once the server is up."},
		{"busy", &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded; try restarting transaction"}, wire.CodeUnavailable,
			"MySQL server of target shop answered but kept failing the job after 5 attempts (a lock held by another session, a statement over its time limit, or a server shutting down); the job made no change. Send it again later."},
		{"password file", &mysqlops.PasswordSourceError{Err: errors.New("/run/secrets/adm: readable by group")}, wire.CodeUnavailable,
			"the worker could not read the admin password file of target shop after 5 attempts; the job made no change. Send the job again once the worker's operator has fixed the file (the worker's log says why)."},
		{"login refused", &mysqlops.LoginRefusedError{Err: &mysql.MySQLError{Number: 1045, Message: "Access denied for user 'adm'@'h'"}}, wire.CodeUnavailable,
			"MySQL refused the worker's admin login for target shop after 5 attempts: the target's password file does not hold the admin's password (a rotation half done?); the job made no change. Send the job again once the worker's operator has fixed it."},
		{"DSN password", &mysql.MySQLError{Number: 1045, Message: "Access denied for user 'adm'@'h'"}, wire.CodeInternal,
			"MySQL refused the worker's admin login for target shop (the password in its DSN is wrong); the worker's operator must fix the DSN and restart the worker, then send the job again."},
		{"permanent", errors.New("something the worker does not know"), wire.CodeInternal, "something the worker does not know."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jerr := toJobError(tt.err, failure{target: "shop", attempts: 5})
			if jerr.Code != tt.code || jerr.Message != tt.want {
				t.Fatalf("got %s %q\nwant %s %q", jerr.Code, jerr.Message, tt.code, tt.want)
			}
			if jerr.Cause != tt.err {
				t.Fatalf("cause %v, want the operation's error", jerr.Cause)
			}
		})
	}
	// Not tried, or may have taken effect.
	if got := toJobError(version, failure{target: "shop"}).Message; got != "MySQL server of target shop did not answer when the job before "+
		"this one tried moments ago (this job's retry budget ran out while it waited); the job made no change. Send it again once the server is up." {
		t.Errorf("not tried: %q", got)
	}
	if got := toJobError(mysql.ErrInvalidConn, failure{target: "shop", attempts: 1, changed: true}).Message; got != "MySQL server of target shop "+
		"did not answer after 1 attempt; the job may or may not have taken effect. Send it again once the server is up." {
		t.Errorf("may have taken effect: %q", got)
	}
	// Outcomes carry no cause: they are answers, not failures.
	for _, err := range []error{mysqlops.ErrUserExists, mysqlops.ErrUserNotFound, mysqlops.ErrProtected, mysqlops.ErrForeign} {
		if jerr := toJobError(err, failure{}); jerr.Cause != nil || !strings.HasSuffix(jerr.Message, ".") {
			t.Errorf("%v: %+v", err, jerr)
		}
	}
}

// TestUnavailableMessageCountsEveryAttempt: a redelivered job's message
// counts its earlier deliveries as the result's attempts do, and says the
// job may have taken effect (an earlier delivery may have run it).
func TestUnavailableMessageCountsEveryAttempt(t *testing.T) {
	h := newHarness(t, 300*time.Millisecond)
	h.ops.errs = always(errRefused)
	m := deleteMsg("again-1", "good_user", 7)
	m.delivered = 3
	h.w.process(&delivery{msg: m, received: time.Now()})
	res := h.result(t, "again-1")
	if res.Error == nil || res.Error.Code != wire.CodeUnavailable || res.Attempts < 3 {
		t.Fatalf("result %+v (error %+v), want unavailable after 2 earlier deliveries and this one's attempts", res, res.Error)
	}
	want := fmt.Sprintf("MySQL server of target app did not answer after %d attempts; the job may or may not have taken effect.", res.Attempts)
	if !strings.Contains(res.Error.Message, want) {
		t.Fatalf("message %q, want %q", res.Error.Message, want)
	}
}

// TestUnavailableLogsTheDriversError: the job's log line carries the
// driver's error as its cause, the result only the plain message.
func TestUnavailableLogsTheDriversError(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	h := newHarness(t, 300*time.Millisecond)
	h.w.log = zap.New(core)
	h.ops.errs = always(fmt.Errorf("server version: %w", errRefused))
	_, res := h.run(t, "delete", "u-1", `{"id":"u-1","username":"good_user"}`)
	if res.Error == nil || res.Error.Code != wire.CodeUnavailable || strings.Contains(res.Error.Message, "server version") {
		t.Fatalf("result %+v (error %+v), want unavailable in plain words", res, res.Error)
	}
	lines := logs.FilterMessage("job").FilterField(zap.String("job_id", "u-1")).All()
	if len(lines) != 1 {
		t.Fatalf("%d job lines, want 1", len(lines))
	}
	fields := lines[0].ContextMap()
	if cause, _ := fields["cause"].(string); !strings.Contains(cause, "server version: dial: connection refused") {
		t.Fatalf("log line %v: cause %q, want the driver's error", fields, cause)
	}
	if fields["error"] != res.Error.Message {
		t.Fatalf("log line's error %q, want the result's message", fields["error"])
	}
}
