package mysqlops

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/go-sql-driver/mysql"
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
		{"read reset", &net.OpError{Op: "read", Err: errors.New("reset")}, Unknown},
		{"access denied", &mysql.MySQLError{Number: 1045}, Permanent},
		{"no privilege", &mysql.MySQLError{Number: 1227}, Permanent},
		{"syntax", &mysql.MySQLError{Number: 1064}, Permanent},
		{"plain", errors.New("boom"), Permanent},
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
