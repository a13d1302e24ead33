package mysqlops

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/secret"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"too many connections", &mysql.MySQLError{Number: 1040}, Transient},
		{"lock wait", fmt.Errorf("create: %w", &mysql.MySQLError{Number: 1205}), Transient},
		{"deadlock", &mysql.MySQLError{Number: 1213}, Transient},
		{"shutdown", &mysql.MySQLError{Number: 1053}, Transient},
		{"max_statement_time", &mysql.MySQLError{Number: 1969}, Transient},
		{"dial refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, Transient},
		{"bad conn", driver.ErrBadConn, Transient},
		{"invalid conn", mysql.ErrInvalidConn, Unknown},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), Unknown},
		{"cancelled (a worker stopping)", fmt.Errorf("x: %w", context.Canceled), Unknown},
		{"read reset", &net.OpError{Op: "read", Err: errors.New("reset")}, Unknown},
		{"access denied", &mysql.MySQLError{Number: 1045}, Permanent},
		{"no privilege", &mysql.MySQLError{Number: 1227}, Permanent},
		{"syntax", &mysql.MySQLError{Number: 1064}, Permanent},
		{"plain", errors.New("boom"), Permanent},
		{"password file unreadable", fmt.Errorf("ping: %w", &PasswordSourceError{Err: errors.New("mode 0644")}), Transient},
		{"password file's password refused", fmt.Errorf("grant: %w", &LoginRefusedError{Err: &mysql.MySQLError{Number: 1045}}), Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestEscapePattern(t *testing.T) {
	tests := map[string]string{
		"app_db":  `app\_db`,
		"a%b":     `a\%b`,
		"plain":   "plain",
		"x`y":     "x``y",
		`back\sl`: `back\\sl`,
	}
	for in, want := range tests {
		if got := escapePattern(in); got != want {
			t.Errorf("escapePattern(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPasswordSourceFailsBeforeConnecting: a password source that fails
// fails the connection before anything is dialled, as a transient error
// that proves nothing was sent, naming the cause and never a password.
func TestPasswordSourceFailsBeforeConnecting(t *testing.T) {
	cause := errors.New("targets[0].password_file: /etc/x is readable by group")
	// Port 1: were it dialled, the error would be a refused dial instead.
	db, err := OpenDB(secret.New("admin:dsn-password@tcp(127.0.0.1:1)/"), DBOptions{
		PasswordSource: func() (secret.Secret, error) { return secret.Secret{}, cause },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	err = db.PingContext(t.Context())
	var pse *PasswordSourceError
	if !errors.As(err, &pse) || !errors.Is(err, cause) {
		t.Fatalf("ping = %v, want the password source's error", err)
	}
	if Classify(err) != Transient || !NothingSent(err) {
		t.Fatalf("Classify = %v, NothingSent = %v; want transient, nothing sent", Classify(err), NothingSent(err))
	}
	if strings.Contains(err.Error(), "dsn-password") {
		t.Fatalf("the error shows the DSN's password: %v", err)
	}
}
