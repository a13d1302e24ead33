package mysqlops

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/secret"
)

// Change is one account of a many-account operation.
type Change struct {
	Username string
	Password secret.Secret // create and reset
	ReadOnly bool          // create
	Intent   Intent        // create and delete
}

// ErrNotBatched says that an account of a many-account operation was left
// untouched because its case is not the common one (an account that
// already exists for a create, one that is gone for a delete): the caller
// runs it alone, with the one-account operation, whose rules decide it.
var ErrNotBatched = errors.New("left for the one-account operation")

// Record notes, in one round of writes, that the changes at idx are about
// to be sent; an error stops the operation before its statement.
type Record func(ctx context.Context, idx []int) error

// MaybeSetError is the error of an account whose new password a
// many-account statement may have set (it was sent, and 1396 did not name
// the account) before the account fell back to its one-account operation,
// which then failed or found an outcome. Its message and class are Err's.
type MaybeSetError struct{ Err error }

func (e *MaybeSetError) Error() string { return e.Err.Error() }
func (e *MaybeSetError) Unwrap() error { return e.Err }

// PasswordMaybeSet reports whether err, returned for one account by
// ResetPasswords or CreateMany, comes after a statement that may have set
// that account's password: the password may be in force although the
// account's answer is an error.
func PasswordMaybeSet(err error) bool { return errors.As(err, new(*MaybeSetError)) }

// markMaybeSet wraps the error of each change at send that a statement
// which reached the server may have given its password: every one but
// those its 1396 named (failed).
func markMaybeSet(changes []Change, send []int, errs []error, failed map[string]bool) {
	for _, i := range send {
		if errs[i] != nil && !failed[changes[i].Username] {
			errs[i] = &MaybeSetError{Err: errs[i]}
		}
	}
}

// A many-account operation applies one statement to many accounts
// (as tried on MariaDB 10.11, it applies it account by account, names the failures in
// 1396, and stops a GRANT at the first failure). Whenever the statement
// fails or its outcome is unknown, each account falls back to its
// one-account operation, which looks at the real state first: so the
// intent and unknown-outcome rules of one account hold for each. Every
// returned slice has one entry per change; an error that is not an
// outcome (ErrUserExists, ErrUserNotFound, ErrProtected, ErrForeign) is
// for the caller to retry on that account alone.

// ResetPasswords sets the password of every change's account that belongs
// to the target with one ALTER USER. Open sessions are left alone.
func (t *Target) ResetPasswords(ctx context.Context, changes []Change) ([]Account, []error) {
	accts, errs, send := t.ownedOf(ctx, changes)
	for i := range accts {
		accts[i].OldPassword = false // a plain reset drops any old password
	}
	if len(send) == 0 {
		return accts, errs
	}
	if failed, err := t.execMany(ctx, "ALTER USER", changes, send, true); err != nil {
		// Some accounts may have their new password, some not: each
		// sets its own again (the same password), alone.
		for _, i := range send {
			_, errs[i] = t.ResetPassword(ctx, changes[i].Username, changes[i].Password, nil)
		}
		if !NothingSent(err) {
			markMaybeSet(changes, send, errs, failed)
		}
	} else if err := t.dropOldAfterReset(ctx, namesAt(changes, send)); err != nil {
		// MySQL 8 keeps an old password through IDENTIFIED BY: each
		// account sets its password again and drops it, alone.
		for _, i := range send {
			_, errs[i] = t.ResetPassword(ctx, changes[i].Username, changes[i].Password, nil)
		}
		markMaybeSet(changes, send, errs, nil)
	}
	return accts, errs
}

// CreateMany makes every change's account with its password and grant:
// one CREATE USER for all, one GRANT per kind (read-write, read-only). An
// account of that name that exists already is ErrNotBatched (the
// one-account Create decides whether it is this job's own). record is
// called right before the CREATE USER with the accounts it sends.
func (t *Target) CreateMany(ctx context.Context, changes []Change, record Record) []error {
	errs := make([]error, len(changes))
	for i, c := range changes {
		if t.protected[c.Username] {
			errs[i] = ErrUserExists
		}
	}
	names := pendingNames(changes, errs)
	states, err := t.inspectMany(ctx, names, true)
	if err != nil {
		return fill(errs, err)
	}
	var send []int
	for i := range changes {
		if errs[i] != nil {
			continue
		}
		if st := states[changes[i].Username]; st.exists {
			errs[i] = ErrNotBatched
			continue
		}
		send = append(send, i)
	}
	if len(send) == 0 {
		return errs
	}
	if err := record(ctx, send); err != nil {
		for _, i := range send {
			errs[i] = err
		}
		return errs
	}
	failed, err := t.execMany(ctx, "CREATE USER", changes, send, true)
	if err != nil {
		if NothingSent(err) {
			for _, i := range send {
				changes[i].Intent.Unsent()
			}
		}
		// The accounts 1396 names existed already: not this job's doing.
		for _, i := range send {
			if failed[changes[i].Username] {
				changes[i].Intent.Unsent()
			}
		}
		errs = t.createAlone(ctx, changes, send, errs)
		if !NothingSent(err) {
			markMaybeSet(changes, send, errs, failed)
		}
		return errs
	}
	for _, readOnly := range []bool{false, true} {
		var group []string
		for _, i := range send {
			if changes[i].ReadOnly == readOnly {
				group = append(group, changes[i].Username)
			}
		}
		if len(group) == 0 {
			continue
		}
		q := "GRANT " + grantPrivileges(readOnly) + " ON " + t.grantOn + " TO " + accountList(len(group))
		if err := t.exec(ctx, q, anys(group)...); err != nil {
			// GRANT stops at the first failure: each account completes
			// its own grant, or drops itself, alone. Every account was
			// created with its password.
			errs = t.createAlone(ctx, changes, send, errs)
			markMaybeSet(changes, send, errs, nil)
			return errs
		}
	}
	return errs
}

// createAlone runs the one-account Create for the changes at send, after a
// many-account statement failed: each finds its own account (its intent
// recorded) and completes it, or creates it.
func (t *Target) createAlone(ctx context.Context, changes []Change, send []int, errs []error) []error {
	for _, i := range send {
		c := changes[i]
		errs[i] = t.Create(ctx, c.Username, c.Password, c.ReadOnly, c.Intent, nil)
	}
	return errs
}

// DeleteMany drops every change's account that belongs to the target with
// one DROP USER, then ends their open sessions in one pass. An account
// that does not exist at all is ErrNotBatched (the one-account Delete
// decides whether this job dropped it already). record is called right
// before the DROP USER with the accounts it sends.
func (t *Target) DeleteMany(ctx context.Context, changes []Change, record Record) ([]Account, []error) {
	accts, errs := t.accountsOf(changes)
	names := pendingNames(changes, errs)
	states, err := t.inspectMany(ctx, names, true)
	if err != nil {
		return accts, fill(errs, err)
	}
	var send []int
	for i := range changes {
		if errs[i] != nil {
			continue
		}
		st := states[changes[i].Username]
		accts[i].ReadOnly = st.readOnly
		switch {
		case !st.exists:
			errs[i] = ErrNotBatched
		case st.foreign:
			errs[i] = ErrForeign
		case !st.granted && !st.inside:
			errs[i] = ErrUserNotFound
		default:
			send = append(send, i)
		}
	}
	if len(send) == 0 {
		return accts, errs
	}
	if err := record(ctx, send); err != nil {
		for _, i := range send {
			errs[i] = err
		}
		return accts, errs
	}
	if _, err := t.execMany(ctx, "DROP USER IF EXISTS", changes, send, false); err != nil {
		for _, i := range send {
			_, errs[i] = t.Delete(ctx, changes[i].Username, changes[i].Intent)
		}
		return accts, errs
	}
	names = names[:0]
	for _, i := range send {
		names = append(names, changes[i].Username)
	}
	if err := t.killSessionsOf(ctx, names); err != nil {
		for _, i := range send {
			errs[i] = err
		}
	}
	return accts, errs
}

// accountsOf returns the Account of each change and ErrProtected for the
// protected ones.
func (t *Target) accountsOf(changes []Change) ([]Account, []error) {
	accts := make([]Account, len(changes))
	errs := make([]error, len(changes))
	for i, c := range changes {
		accts[i] = Account{Username: c.Username, Protected: t.protected[c.Username]}
		if accts[i].Protected {
			errs[i] = ErrProtected
		}
	}
	return accts, errs
}

// ownedOf is the ownership pass of a batch: it reads the grants of the
// changes' accounts in one round trip and returns the accounts, one error
// per change, and the indexes of the changes whose account belongs to the
// target. The others' errors are as the one-account operations answer
// (ErrProtected, then state.belongs), or the read's when it failed. It
// fills in each account's ReadOnly and OldPassword as they are before the
// operation.
func (t *Target) ownedOf(ctx context.Context, changes []Change) ([]Account, []error, []int) {
	accts, errs, send, _ := t.ownedStates(ctx, changes)
	return accts, errs, send
}

// ownedStates is ownedOf, with what the grants said of each account.
func (t *Target) ownedStates(ctx context.Context, changes []Change) ([]Account, []error, []int, map[string]state) {
	accts, errs := t.accountsOf(changes)
	states, err := t.inspectMany(ctx, pendingNames(changes, errs), false)
	if err != nil {
		return accts, fill(errs, err), nil, nil
	}
	var send []int
	for i := range changes {
		if errs[i] != nil {
			continue
		}
		st := states[changes[i].Username]
		accts[i].ReadOnly, accts[i].OldPassword = st.readOnly, st.oldPassword
		if errs[i] = st.belongs(); errs[i] == nil {
			send = append(send, i)
		}
	}
	return accts, errs, send, states
}

// pendingNames returns the usernames of the changes without an error yet.
func pendingNames(changes []Change, errs []error) []string {
	var names []string
	for i, c := range changes {
		if errs[i] == nil {
			names = append(names, c.Username)
		}
	}
	return names
}

// fill sets err on every change without an error yet.
func fill(errs []error, err error) []error {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// accountList is "?@'%', ?@'%', …" for n accounts.
func accountList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?@'%', ", n), ", ")
}

// execMany runs verb on the changes at idx in one statement, with each
// account's password when withPassword. A server error's message is
// withheld (it can quote the statement); the accounts a 1396 names are
// returned, for the caller to tell which failed.
func (t *Target) execMany(ctx context.Context, verb string, changes []Change, idx []int, withPassword bool) (map[string]bool, error) {
	var q strings.Builder
	q.WriteString(verb)
	args := make([]any, 0, 2*len(idx))
	for n, i := range idx {
		if n > 0 {
			q.WriteString(",")
		}
		q.WriteString(" ?@'%'")
		args = append(args, changes[i].Username)
		if withPassword {
			q.WriteString(" IDENTIFIED BY ?")
			args = append(args, changes[i].Password.Reveal())
		}
	}
	err := t.exec(ctx, q.String(), args...)
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) {
		if err != nil {
			return nil, fmt.Errorf("%s for %d accounts: %w", strings.ToLower(verb), len(idx), err)
		}
		return nil, nil
	}
	var failed map[string]bool
	if myErr.Number == 1396 {
		failed = failedAccounts(myErr.Message)
	}
	return failed, fmt.Errorf("%s for %d accounts: %w", strings.ToLower(verb), len(idx),
		&mysql.MySQLError{Number: myErr.Number, SQLState: myErr.SQLState, Message: "message withheld: the statement carried passwords"})
}

// failedRe finds the accounts of a 1396 message: "Operation CREATE USER
// failed for 'a'@'%','b'@'%'" (a quote in a name is doubled).
var failedRe = regexp.MustCompile(`'((?:[^']|'')*)'@'%'`)

func failedAccounts(msg string) map[string]bool {
	out := map[string]bool{}
	_, list, ok := strings.Cut(msg, " failed for ")
	if !ok {
		return out
	}
	for _, m := range failedRe.FindAllStringSubmatch(list, -1) {
		out[strings.ReplaceAll(m[1], "''", "'")] = true
	}
	return out
}

// inspectMany reads what the server says about each username (see
// inspect), in at most two round trips: the hosts of every name (with
// anyHost), then every SHOW GRANTS in one multi-statement request. A
// name without an account at '%' stops the request at its statement
// (1141); the names after it are asked again.
func (t *Target) inspectMany(ctx context.Context, usernames []string, anyHost bool) (map[string]state, error) {
	out := make(map[string]state, len(usernames))
	if len(usernames) == 0 {
		return out, nil
	}
	fl, err := t.detect(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	ask := usernames
	other := map[string]bool{}
	if anyHost {
		atPercent := map[string]bool{}
		rows, err := t.db.QueryContext(ctx, "SELECT User, Host FROM "+fl.accountsTable()+" WHERE User IN ("+
			strings.TrimSuffix(strings.Repeat("?, ", len(usernames)), ", ")+")", anys(usernames)...)
		if err != nil {
			return nil, fmt.Errorf("read the accounts' hosts: %w", err)
		}
		for rows.Next() {
			var user, host string
			if err := rows.Scan(&user, &host); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read the accounts' hosts: %w", err)
			}
			if host == "%" {
				atPercent[user] = true
			} else {
				other[user] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read the accounts' hosts: %w", err)
		}
		ask = nil
		for _, u := range usernames {
			if atPercent[u] {
				ask = append(ask, u)
			} else {
				out[u] = state{exists: other[u], foreign: other[u]}
			}
		}
	}
	for len(ask) > 0 {
		done, err := t.grantsMany(ctx, ask, out)
		if errors.Is(err, &mysql.MySQLError{Number: 1141}) {
			out[ask[done]] = state{exists: other[ask[done]], foreign: other[ask[done]]}
			ask = ask[done+1:]
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read the accounts' grants: %w", err)
		}
		break
	}
	for u, st := range out {
		if other[u] {
			st.foreign = true
			out[u] = st
		}
	}
	return out, nil
}

// grantsMany runs SHOW GRANTS for each username in one request and
// records each account's state; it returns how many it read before an
// error. The lines can hold password hashes: never logged.
func (t *Target) grantsMany(ctx context.Context, usernames []string, out map[string]state) (int, error) {
	q := strings.TrimSuffix(strings.Repeat("SHOW GRANTS FOR ?@'%'; ", len(usernames)), " ")
	rows, err := t.db.QueryContext(ctx, q, anys(usernames)...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	pattern := escapePattern(t.database)
	shared, err := t.sharedPattern(ctx)
	if err != nil {
		return 0, err
	}
	for i, u := range usernames {
		if i > 0 && !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return i, err
			}
			return i, errors.New("fewer answers than SHOW GRANTS statements")
		}
		var lines []string
		for rows.Next() {
			var l string
			if err := rows.Scan(&l); err != nil {
				return i, err
			}
			lines = append(lines, l)
		}
		if err := rows.Err(); err != nil {
			return i, err
		}
		st := classifyGrants(lines, t.database, pattern, shared)
		st.exists = true
		out[u] = st
	}
	return len(usernames), nil
}

// killSessionsOf ends the open sessions of every username in one pass.
func (t *Target) killSessionsOf(ctx context.Context, usernames []string) error {
	rows, err := t.db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN ("+
		strings.TrimSuffix(strings.Repeat("?, ", len(usernames)), ", ")+")", anys(usernames)...)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("list sessions: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	for _, id := range ids {
		if _, err := t.db.ExecContext(ctx, "KILL CONNECTION ?", id); err != nil && !errors.Is(err, &mysql.MySQLError{Number: 1094}) {
			return fmt.Errorf("end session %d: %w", id, err)
		}
	}
	return nil
}
