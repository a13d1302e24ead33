package mysqlops

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"

	"github.com/go-sql-driver/mysql"
)

// Outcome errors of the account operations. They are permanent: retrying
// cannot change them.
var (
	// ErrUserExists: create found an account of that name on the server
	// (any host) that is not from an earlier attempt of the same job.
	ErrUserExists = errors.New("an account of that name already exists on the server")
	// ErrUserNotFound: no account of that name belongs to the target.
	ErrUserNotFound = errors.New("no account of that name belongs to the target")
	// ErrProtected: the account is one of the target's protected users.
	ErrProtected = errors.New("the account is protected")
	// ErrForeign: the account exists but holds privileges outside the
	// target's database, so it is never touched.
	ErrForeign = errors.New("the account holds privileges outside the target's database")
)

// errCreatedMeanwhile: CREATE USER found the account, which did not exist
// when the attempt looked, and an earlier attempt of the same job may have
// sent its own CREATE USER with an unknown outcome. The account may be
// this job's own: Unknown, so that the next attempt looks again.
var errCreatedMeanwhile = errors.New("the account appeared after the check, maybe by an earlier attempt's CREATE USER")

// Class says what a caller may do after an error.
type Class int

const (
	// Permanent errors are final: retrying gives the same answer.
	Permanent Class = iota
	// Transient errors did not change anything (or changed it in a way the
	// next attempt detects); the operation may be retried.
	Transient
	// Unknown means the statement may or may not have run; the next attempt
	// must look at the real state first. Every operation here does, so
	// callers retry Unknown like Transient.
	Unknown
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Unknown:
		return "unknown_outcome"
	default:
		return "permanent"
	}
}

// transientCodes are server errors after which nothing was changed and a
// later attempt can succeed, as seen through go-sql-driver/mysql.
var transientCodes = map[uint16]bool{
	1040: true, // too many connections
	1203: true, // max_user_connections
	1226: true, // user resource limit
	1205: true, // lock wait timeout
	1213: true, // deadlock
	1053: true, // server shutdown in progress
	1317: true, // query interrupted
	1927: true, // connection killed
	1969: true, // max_statement_time exceeded
}

// Classify sorts an error from an operation into a Class, once, by type and
// server error number; it never looks at message text.
func Classify(err error) Class {
	if err == nil {
		return Permanent
	}
	// The password file could not be read (being replaced, or its mode
	// refused), or MySQL refused its password (a rotation half done): the
	// operator can fix it while the job retries. Looked at before the
	// server's error a LoginRefusedError wraps.
	if errors.As(err, new(*PasswordSourceError)) || errors.As(err, new(*LoginRefusedError)) {
		return Transient
	}
	if errors.Is(err, errCreatedMeanwhile) {
		return Unknown
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		if transientCodes[myErr.Number] {
			return Transient
		}
		return Permanent
	}
	if errors.Is(err, driver.ErrBadConn) {
		return Transient // nothing was sent
	}
	// A statement cut short by its context (a deadline, or a worker
	// stopping) may or may not have run.
	if errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unknown
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		if opErr.Op == "dial" {
			return Transient
		}
		return Unknown
	}
	return Permanent
}

// NothingSent reports whether err proves that no statement reached the
// server: the connection was never made or was refused at login. After such
// an error the server is exactly as it was.
func NothingSent(err error) bool {
	if errors.Is(err, driver.ErrBadConn) || errors.As(err, new(*PasswordSourceError)) ||
		errors.As(err, new(*LoginRefusedError)) {
		return true
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1040, 1203, 1226: // refused at connect
			return true
		}
		return false
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// FromServer reports whether err is an answer of the MySQL server (it was
// reachable), as opposed to a connection that could not be made or broke.
func FromServer(err error) bool {
	return errors.As(err, new(*mysql.MySQLError))
}

// LoginRefused reports whether the server refused the admin's login with
// the DSN's password (1045, or 1698 for an account that must log in over
// the unix socket). A password from a file is a LoginRefusedError.
func LoginRefused(err error) bool {
	return (errors.Is(err, &mysql.MySQLError{Number: 1045}) || errors.Is(err, &mysql.MySQLError{Number: 1698})) &&
		!errors.As(err, new(*LoginRefusedError))
}

// MissingPrivilege reports whether the server refused a statement because
// the admin account lacks a privilege (on a database, table, column,
// routine, or globally).
func MissingPrivilege(err error) bool {
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) {
		return false
	}
	switch myErr.Number {
	case 1044, 1142, 1143, 1227, 1370, 1095: // 1095: KILL of another account's session (CONNECTION ADMIN)
		return true
	}
	return false
}
