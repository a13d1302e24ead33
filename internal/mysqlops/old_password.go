package mysqlops

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/secret"
)

// This file keeps an account's old password working beside a new one
// (rotation without downtime, contract §9), ends it again, and reads which
// accounts hold one. docs/rotation.md shows the statements.
//
// MariaDB (tested on 10.11) has no RETAIN CURRENT PASSWORD, but an account
// may hold several authentication methods joined by OR, the same plugin
// twice included, and any of them logs in:
//
//	ALTER USER 'u'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('new') OR mysql_native_password USING '<old hash>'
//
// The first method is the password in force; every method after it is an
// old password. The old hash is the account's stored authentication string
// (mysql.global_priv), so the clear old password is never needed. A plain
// ALTER USER … IDENTIFIED BY replaces every method (checked: the old
// password is refused at once), so a reset that keeps nothing needs
// nothing more. Discarding re-states the first method alone.
//
// MySQL 8.0.14 and later (written from its manual, not run here) keep one
// secondary password: IDENTIFIED BY … RETAIN CURRENT PASSWORD makes the
// current password the secondary, DISCARD OLD PASSWORD drops it, and a
// plain IDENTIFIED BY leaves the secondary in place, so a reset that keeps
// nothing discards it too. To keep the password from before the job, not
// whatever is current (a redelivered job's own new one), the old hash is
// first made the primary again (IDENTIFIED WITH <plugin> AS <hash>), then
// retained.

// Credential is how an account's password is stored: its authentication
// plugin and the plugin's stored string (for mysql_native_password the
// hash *…), never the password. The hash is as sensitive as a password
// (with it, one watched login gives away what logs in), so it is a Secret:
// never logged, shown, or put in an error.
type Credential struct {
	Plugin string
	Hash   secret.Secret
}

// IsZero reports whether c holds nothing.
func (c Credential) IsZero() bool { return c.Plugin == "" && c.Hash.IsZero() }

// pluginName is what a plugin name written into a statement may hold.
var pluginName = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// errBadCredential refuses an old credential that cannot be written into a
// statement. Its message never quotes it.
var errBadCredential = errors.New("the old password to keep names no valid authentication plugin")

func (c Credential) check() error {
	if !pluginName.MatchString(c.Plugin) {
		return errBadCredential
	}
	return nil
}

// nativePlugin is the plugin of the passwords the worker sets (IDENTIFIED
// BY, PASSWORD()), and MariaDB's when global_priv names none.
const nativePlugin = "mysql_native_password"

// authMethods counts the authentication methods of a SHOW GRANTS line's
// options (the tokens after the grantee): MariaDB prints
// IDENTIFIED BY PASSWORD '<hash>' for one native password, and otherwise
// IDENTIFIED VIA <plugin> [USING '<string>'] [OR <plugin> [USING '<string>']]…
// (MySQL 8 prints none: 0). IDENTIFIED WITH … AS and USING PASSWORD('…')
// are read too. An IDENTIFIED clause of another shape is an error, so the
// line is not understood (an account's, foreign; the admin's, an excess).
// The first method is the credential in force: it is returned (known)
// when the line shows it whole, a plugin name as written and a string
// with no escape in it; the errors never quote the strings.
func authMethods(toks []token) (n int, first Credential, known bool, err error) {
	i := 0
	for i < len(toks) && !toks[i].is(tWord, "IDENTIFIED") {
		i++
	}
	if i == len(toks) {
		return 0, Credential{}, false, nil
	}
	p := &parser{toks: toks, i: i + 1}
	bad := errors.New("an IDENTIFIED clause the worker does not read")
	if p.word("BY") {
		if !p.word("PASSWORD") {
			return 0, Credential{}, false, bad
		}
		t, ok := p.next()
		if !ok || t.kind != tString {
			return 0, Credential{}, false, bad
		}
		return 1, Credential{Plugin: nativePlugin, Hash: secret.New(t.text)}, t.plain, nil
	}
	if !p.word("VIA") && !p.word("WITH") {
		return 0, Credential{}, false, bad
	}
	for {
		t, ok := p.next()
		if !ok || (t.kind != tWord && t.kind != tIdent && t.kind != tString) || t.is(tWord, "OR") {
			return 0, Credential{}, false, bad // a plugin name
		}
		c, whole := Credential{Plugin: t.raw}, t.kind == tWord
		if p.word("USING") || p.word("AS") {
			s, ok := p.next()
			switch {
			case ok && s.kind == tString:
				c.Hash, whole = secret.New(s.text), whole && s.plain
			case ok && s.is(tWord, "PASSWORD") && p.punct("("):
				if s, ok := p.next(); !ok || s.kind != tString || !p.punct(")") {
					return 0, Credential{}, false, bad
				}
				whole = false // a password, not the hash it became
			default:
				return 0, Credential{}, false, bad
			}
		}
		if n == 0 {
			first, known = c, whole && c.check() == nil
		}
		n++
		if !p.word("OR") {
			return n, first, known, nil
		}
	}
}

// authOf is what the accounts table says of one account's authentication.
type authOf struct {
	current Credential // the password in force
	old     bool       // an old password works beside it
}

// privAuth is the authentication part of MariaDB's mysql.global_priv.Priv.
// With several methods the JSON holds one at the top level and all of them
// under auth_or, in their order, with {} where the top level's one stands
// (seen on 10.11: [{}, {old}] after a keep-old reset, [{"plugin":
// "unix_socket"}, {}] for VIA unix_socket OR mysql_native_password), and
// [{}] once a plain IDENTIFIED BY replaced them.
type privAuth struct {
	privMethod
	AuthOr []privMethod `json:"auth_or"`
}

type privMethod struct {
	Plugin     *string `json:"plugin"`
	AuthString *string `json:"authentication_string"`
}

func (m privMethod) credential() Credential {
	c := Credential{Plugin: nativePlugin}
	if m.Plugin != nil {
		c.Plugin = *m.Plugin
	}
	if m.AuthString != nil {
		c.Hash = secret.New(*m.AuthString)
	}
	return c
}

// methods returns the account's authentication methods in order.
func (p privAuth) methods() []privMethod {
	if len(p.AuthOr) == 0 {
		return []privMethod{p.privMethod}
	}
	var out []privMethod
	top := false
	for _, m := range p.AuthOr {
		if m.Plugin == nil && m.AuthString == nil {
			m, top = p.privMethod, true
		}
		out = append(out, m)
	}
	if !top { // no place marked: the top level's comes first
		out = append([]privMethod{p.privMethod}, out...)
	}
	return out
}

// parsePrivAuth reads the authentication of a global_priv.Priv value. Its
// error never quotes the value (it holds hashes).
func parsePrivAuth(priv []byte) (authOf, error) {
	var p privAuth
	if err := json.Unmarshal(priv, &p); err != nil {
		return authOf{}, errors.New("mysql.global_priv holds a Priv value that is not JSON")
	}
	ms := p.methods()
	return authOf{current: ms[0].credential(), old: len(ms) > 1}, nil
}

// placeholders is "?, ?, …" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// readAuth reads the authentication of each username@'%' that exists, in
// one query. The hashes it returns are never logged.
func (t *Target) readAuth(ctx context.Context, fl flavor, usernames []string) (map[string]authOf, error) {
	out := make(map[string]authOf, len(usernames))
	if len(usernames) == 0 {
		return out, nil
	}
	q := "SELECT User, Priv FROM mysql.global_priv WHERE Host = '%' AND User IN (" + placeholders(len(usernames)) + ")"
	if fl == flavorMySQL {
		q = "SELECT User, plugin, authentication_string, " +
			"COALESCE(JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.additional_password')), '') <> '' " +
			"FROM mysql.user WHERE Host = '%' AND User IN (" + placeholders(len(usernames)) + ")"
	}
	rows, err := t.db.QueryContext(ctx, q, anys(usernames)...)
	if err != nil {
		return nil, fmt.Errorf("read the accounts' passwords: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user string
		var a authOf
		if fl == flavorMySQL {
			var plugin string
			var hash []byte // caching_sha2_password's is binary
			if err := rows.Scan(&user, &plugin, &hash, &a.old); err != nil {
				return nil, fmt.Errorf("read the accounts' passwords: %w", err)
			}
			a.current = Credential{Plugin: plugin, Hash: secret.New(string(hash))}
		} else {
			var priv []byte
			if err := rows.Scan(&user, &priv); err != nil {
				return nil, fmt.Errorf("read the accounts' passwords: %w", err)
			}
			if a, err = parsePrivAuth(priv); err != nil {
				return nil, err
			}
		}
		out[user] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the accounts' passwords: %w", err)
	}
	return out, nil
}

// Credentials returns the credential in force of each username's account,
// the old password a later ResetPasswordKeepOld keeps. The caller reads it
// before the reset and records it with the job, so that a redelivered
// reset keeps the password from before the job, never its own new one.
// Only the accounts that belong to the target are read (another tenant's
// hash never leaves the server): errs holds ErrProtected, ErrForeign or
// ErrUserNotFound for the others, as ResetPassword would answer. Two round
// trips whatever the number of names: their grants (as ResetPasswords
// reads them), then one SELECT on the accounts table.
func (t *Target) Credentials(ctx context.Context, usernames []string) ([]Credential, []error) {
	changes := make([]Change, len(usernames))
	for i, u := range usernames {
		changes[i].Username = u
	}
	_, creds, errs, _, _ := t.ownedCredentials(ctx, changes)
	return creds, errs
}

// ownedCredentials is the ownership pass of changes (ownedOf), then one
// SELECT of the credential in force of the accounts that belong to the
// target: creds[i] is changes[i]'s. owned is the indexes of those accounts
// once read, nil when none was (none owned, or the read failed: errs says
// why); among them, an account dropped since its grants were read has
// errGone. fl is the server's flavor, known when owned is not nil.
func (t *Target) ownedCredentials(ctx context.Context, changes []Change) (accts []Account, creds []Credential, errs []error, owned []int, fl flavor) {
	creds = make([]Credential, len(changes))
	accts, errs, owned, states := t.ownedStates(ctx, changes)
	if len(owned) == 0 {
		return accts, creds, errs, nil, fl
	}
	fl, err := t.detect(ctx)
	if err != nil {
		return accts, creds, fill(errs, err), nil, fl
	}
	// MariaDB's SHOW GRANTS, just read for the ownership check, shows the
	// credential in force: the accounts table is read only for those it
	// does not show whole (and always on MySQL 8, which shows none). That
	// query costs MariaDB about 7 µs per account.
	var unread []int
	for _, i := range owned {
		if st := states[changes[i].Username]; fl == flavorMariaDB && st.currentKnown {
			creds[i] = st.current
		} else {
			unread = append(unread, i)
		}
	}
	if len(unread) == 0 {
		return accts, creds, errs, owned, fl
	}
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	auth, err := t.readAuth(rctx, fl, namesAt(changes, unread))
	cancel()
	if err != nil {
		return accts, creds, fill(errs, err), nil, fl
	}
	for _, i := range unread {
		a, ok := auth[changes[i].Username]
		if !ok {
			errs[i] = errGone // dropped since its grants were read
			continue
		}
		creds[i], accts[i].OldPassword = a.current, a.old
	}
	return accts, creds, errs, owned, fl
}

// OldPasswords reports which of the usernames' accounts (at '%') hold an
// old password beside the current one, in one query; a name without an
// account is false. It reads no hash.
func (t *Target) OldPasswords(ctx context.Context, usernames []string) (map[string]bool, error) {
	fl, err := t.detect(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.oldPasswords(ctx, fl, usernames)
}

func (t *Target) oldPasswords(ctx context.Context, fl flavor, usernames []string) (map[string]bool, error) {
	out := make(map[string]bool)
	if len(usernames) == 0 {
		return out, nil
	}
	rows, err := t.db.QueryContext(ctx, fl.oldPasswordQuery(len(usernames)), anys(usernames)...)
	if err != nil {
		return nil, fmt.Errorf("read which accounts keep an old password: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("read which accounts keep an old password: %w", err)
		}
		out[u] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read which accounts keep an old password: %w", err)
	}
	return out, nil
}

// An account row that keeps an old password: on MariaDB a second entry in
// global_priv's auth_or (which also holds the current method's place, so
// [{}] alone, left by a plain IDENTIFIED BY, is none), on MySQL 8 a
// non-empty additional_password in mysql.user's User_attributes. List
// reads it in the scan it makes of the accounts table anyway
// (outsidersBetween): as a query of its own it cost MariaDB 12 to 20 ms
// per 10,000 accounts, as a condition of that scan about 4 ms.
const (
	oldPasswordMariaDB = "JSON_EXISTS(Priv, '$.auth_or[1]')"
	oldPasswordMySQL   = "COALESCE(JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.additional_password')), '') <> ''"
)

// oldPasswordQuery selects, of n usernames, those whose account at '%'
// keeps an old password; it reads the primary key.
func (f flavor) oldPasswordQuery(n int) string {
	if f == flavorMySQL {
		return "SELECT User FROM mysql.user WHERE Host = '%' AND User IN (" + placeholders(n) + ") AND " + oldPasswordMySQL
	}
	return "SELECT User FROM mysql.global_priv WHERE Host = '%' AND User IN (" + placeholders(n) + ") AND " + oldPasswordMariaDB
}

// stmt is one statement and its arguments.
type stmt struct {
	query string
	args  []any
}

// keepOld is one account of a reset that keeps its old password.
type keepOld struct {
	username string
	password secret.Secret
	old      Credential // checked
}

// keepOldSQL returns the statements that give each account its new
// password and keep its old credential beside it, and nothing else: any
// other old password is dropped.
func (f flavor) keepOldSQL(accounts []keepOld) []stmt {
	if f == flavorMySQL {
		// The old hash becomes the primary again (a plain IDENTIFIED
		// leaves the secondary alone), then the new password retains it
		// as the secondary, replacing any other.
		restore, retain := newStmtBuilder(len(accounts), 1), newStmtBuilder(len(accounts), 2)
		for _, a := range accounts {
			restore.add("?@'%' IDENTIFIED WITH "+a.old.Plugin+" AS "+hexLiteral(a.old.Hash), a.username)
			retain.add("?@'%' IDENTIFIED BY ? RETAIN CURRENT PASSWORD", a.username, a.password.Reveal())
		}
		return []stmt{restore.stmt(), retain.stmt()}
	}
	s := newStmtBuilder(len(accounts), 3)
	for _, a := range accounts {
		s.add("?@'%' IDENTIFIED VIA "+nativePlugin+" USING PASSWORD(?) OR "+a.old.Plugin+" USING ?",
			a.username, a.password.Reveal(), a.old.Hash.Reveal())
	}
	return []stmt{s.stmt()}
}

// stmtBuilder builds one ALTER USER of many accounts. A batch holds up to
// hundreds of them: appended to one buffer, not concatenated clause by
// clause (which copies the statement so far each time).
type stmtBuilder struct {
	query    strings.Builder
	args     []any
	accounts int
}

// newStmtBuilder returns a builder for n accounts of perAccount arguments.
func newStmtBuilder(n, perAccount int) *stmtBuilder {
	b := &stmtBuilder{args: make([]any, 0, n*perAccount)}
	b.query.Grow(len("ALTER USER") + n*96)
	b.query.WriteString("ALTER USER")
	return b
}

// add appends one account's clause and its arguments.
func (b *stmtBuilder) add(clause string, args ...any) {
	if b.accounts > 0 {
		b.query.WriteByte(',')
	}
	b.accounts++
	b.query.WriteByte(' ')
	b.query.WriteString(clause)
	b.args = append(b.args, args...)
}

func (b *stmtBuilder) stmt() stmt { return stmt{query: b.query.String(), args: b.args} }

// hexLiteral writes a hash as MySQL 8 prints it with
// print_identified_with_as_hex (caching_sha2_password's holds bytes no
// string literal carries safely); an empty string literal when empty.
func hexLiteral(h secret.Secret) string {
	if h.IsZero() {
		return "''"
	}
	return "0x" + strings.ToUpper(hex.EncodeToString([]byte(h.Reveal())))
}

// discardOf is one account whose old password is dropped; current is its
// credential in force (MariaDB re-states it alone).
type discardOf struct {
	username string
	current  Credential // checked; unused on MySQL 8
}

// discardSQL returns the statement that drops the old password of each
// account.
func (f flavor) discardSQL(accounts []discardOf) stmt {
	s := newStmtBuilder(len(accounts), 2)
	for _, a := range accounts {
		if f == flavorMySQL {
			s.add("?@'%' DISCARD OLD PASSWORD", a.username)
			continue
		}
		s.add("?@'%' IDENTIFIED VIA "+a.current.Plugin+" USING ?", a.username, a.current.Hash.Reveal())
	}
	return s.stmt()
}

// runWithheld runs the statements in order, each bounded like exec, and
// stops at the first error. They carry passwords or hashes, so a server
// error's message is withheld (it can quote the statement); the accounts
// a 1396 names are returned, for the caller to tell which failed.
func (t *Target) runWithheld(ctx context.Context, stmts []stmt) (map[string]bool, error) {
	for _, s := range stmts {
		err := t.exec(ctx, s.query, s.args...)
		var myErr *mysql.MySQLError
		if !errors.As(err, &myErr) {
			if err != nil {
				return nil, err
			}
			continue
		}
		var failed map[string]bool
		if myErr.Number == 1396 {
			failed = failedAccounts(myErr.Message)
		}
		return failed, &mysql.MySQLError{Number: myErr.Number, SQLState: myErr.SQLState,
			Message: "message withheld: the statement carried passwords or their hashes"}
	}
	return nil, nil
}

// namesAt returns the usernames of the changes at idx.
func namesAt(changes []Change, idx []int) []string {
	names := make([]string, len(idx))
	for n, i := range idx {
		names[n] = changes[i].Username
	}
	return names
}

// ResetPasswordKeepOld sets a new password on an account that belongs to
// the target and keeps old, the credential in force before the job (read
// with Credentials and recorded by the caller), working beside it: the
// account then holds exactly these two. Any other old password it held is
// dropped (an account keeps at most one). Open sessions are left alone.
// Run again with the same arguments (a redelivered job), it gives the same
// result. ready is waited for right before the statement.
func (t *Target) ResetPasswordKeepOld(ctx context.Context, username string, password secret.Secret, old Credential, ready Ready) (Account, error) {
	acct, err := t.owned(ctx, username, false)
	if err != nil {
		return acct, err
	}
	if err := old.check(); err != nil {
		return acct, err
	}
	fl, err := t.detect(ctx)
	if err != nil {
		return acct, err
	}
	if err := ready.wait(ctx); err != nil {
		return acct, err
	}
	if _, err := t.runWithheld(ctx, fl.keepOldSQL([]keepOld{{username, password, old}})); err != nil {
		if errors.Is(err, &mysql.MySQLError{Number: 1396}) {
			return acct, ErrUserNotFound
		}
		return acct, fmt.Errorf("alter user, keeping the old password: %w", err)
	}
	acct.OldPassword = true
	return acct, nil
}

// ResetPasswordsKeepOld is ResetPasswordKeepOld for many accounts in one
// statement (MySQL 8: two), as ResetPasswords is ResetPassword's: old[i]
// is the credential to keep for changes[i]. When a statement fails or its
// outcome is unknown, each account runs ResetPasswordKeepOld alone, and
// its error is a MaybeSetError when the statement may have set its
// password (PasswordMaybeSet). Open sessions are left alone.
func (t *Target) ResetPasswordsKeepOld(ctx context.Context, changes []Change, old []Credential) ([]Account, []error) {
	if len(old) != len(changes) {
		accts, errs := t.accountsOf(changes)
		return accts, fill(errs, fmt.Errorf("%d old credentials for %d accounts", len(old), len(changes)))
	}
	accts, errs, owned := t.ownedOf(ctx, changes)
	var send []int
	for _, i := range owned {
		if errs[i] = old[i].check(); errs[i] == nil {
			send = append(send, i)
		}
	}
	if len(send) == 0 {
		return accts, errs
	}
	fl, err := t.detect(ctx)
	if err != nil {
		return accts, fill(errs, err)
	}
	return t.sendKeepOld(ctx, fl, changes, send, old, accts, errs)
}

// KeepRecord is told, right before a keep-old statement, the credential
// each account at idx keeps (creds[k] for changes[idx[k]]), so that the
// caller records it with its job, and whether the account holds an old
// password beside it now (holdsOld[k]), which the statement drops; an
// error for one keeps that account out of the statement.
type KeepRecord func(ctx context.Context, idx []int, creds []Credential, holdsOld []bool) []error

// ResetPasswordsKeepingCurrent is ResetPasswordsKeepOld that keeps each
// account's credential in force, read in the same pass as the ownership
// check (its grants, then one SELECT, then the statement: three round
// trips for the batch). record hears the credentials before the statement.
func (t *Target) ResetPasswordsKeepingCurrent(ctx context.Context, changes []Change, record KeepRecord) ([]Account, []error) {
	accts, current, errs, owned, fl := t.ownedCredentials(ctx, changes)
	if owned == nil {
		return accts, errs
	}
	var idx []int
	var creds []Credential
	var holdsOld []bool
	for _, i := range owned {
		if errs[i] != nil {
			continue // dropped since its grants were read
		}
		if errs[i] = current[i].check(); errs[i] == nil {
			idx, creds, holdsOld = append(idx, i), append(creds, current[i]), append(holdsOld, accts[i].OldPassword)
		}
	}
	var send []int
	for k, err := range record(ctx, idx, creds, holdsOld) {
		if errs[idx[k]] = err; err == nil {
			send = append(send, idx[k])
		}
	}
	if len(send) == 0 {
		return accts, errs
	}
	return t.sendKeepOld(ctx, fl, changes, send, current, accts, errs)
}

// sendKeepOld runs the keep-old statement of the changes at send, old[i]
// kept for changes[i]. When it fails or its outcome is unknown, some
// accounts may have their new password and some not: each sets its own
// again (the same password and old hash), alone, and its error is a
// MaybeSetError when the statement may have set it.
func (t *Target) sendKeepOld(ctx context.Context, fl flavor, changes []Change, send []int, old []Credential, accts []Account, errs []error) ([]Account, []error) {
	batch := make([]keepOld, len(send))
	for n, i := range send {
		batch[n] = keepOld{changes[i].Username, changes[i].Password, old[i]}
	}
	failed, err := t.runWithheld(ctx, fl.keepOldSQL(batch))
	if err != nil {
		for _, i := range send {
			_, errs[i] = t.ResetPasswordKeepOld(ctx, changes[i].Username, changes[i].Password, old[i], nil)
		}
		if !NothingSent(err) {
			markMaybeSet(changes, send, errs, failed)
		}
	}
	for _, i := range send {
		if errs[i] == nil {
			accts[i].OldPassword = true
		}
	}
	return accts, errs
}

// DiscardOldPassword ends the old password of an account that belongs to
// the target: only its password in force logs in from now on. An account
// without an old password is left as it is (MySQL 8: the statement is
// sent and changes nothing). Open sessions are left alone.
func (t *Target) DiscardOldPassword(ctx context.Context, username string) (Account, error) {
	accts, errs := t.DiscardOldPasswords(ctx, []Change{{Username: username}})
	err := errs[0]
	if errors.Is(err, &mysql.MySQLError{Number: 1396}) {
		err = ErrUserNotFound
	}
	return accts[0], err
}

// DiscardOldPasswords is DiscardOldPassword for many accounts (only
// Change.Username is read): their grants in one round trip, on MariaDB the
// credentials of those SHOW GRANTS shows with an old password in one more,
// then one ALTER USER for the accounts that hold one. When it fails, each
// account is tried alone.
func (t *Target) DiscardOldPasswords(ctx context.Context, changes []Change) ([]Account, []error) {
	accts, errs, owned := t.ownedOf(ctx, changes)
	if len(owned) == 0 {
		return accts, errs
	}
	fl, err := t.detect(ctx)
	if err != nil {
		return accts, fill(errs, err)
	}
	var send []int
	var batch []discardOf
	if fl == flavorMySQL {
		// SHOW GRANTS does not show a secondary password; discarding
		// none is harmless.
		send = owned
		for _, i := range send {
			batch = append(batch, discardOf{username: changes[i].Username})
		}
	} else {
		var withOld []int
		for _, i := range owned {
			if accts[i].OldPassword {
				withOld = append(withOld, i)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, t.timeout)
		auth, err := t.readAuth(rctx, fl, namesAt(changes, withOld))
		cancel()
		if err != nil {
			for _, i := range withOld {
				errs[i] = err
			}
			return accts, errs
		}
		for _, i := range withOld {
			a, ok := auth[changes[i].Username]
			switch {
			case !ok:
				errs[i] = errGone // dropped since its grants were read
			case !a.old:
				accts[i].OldPassword = false // dropped meanwhile: nothing to do
			case a.current.check() != nil:
				errs[i] = fmt.Errorf("the account's password in force: %w", a.current.check())
			default:
				send = append(send, i)
				batch = append(batch, discardOf{username: changes[i].Username, current: a.current})
			}
		}
	}
	if len(send) == 0 {
		return accts, errs
	}
	if _, err := t.runWithheld(ctx, []stmt{fl.discardSQL(batch)}); err != nil {
		if len(changes) == 1 {
			errs[send[0]] = fmt.Errorf("alter user, discarding the old password: %w", err)
			return accts, errs
		}
		for _, i := range send {
			accts[i], errs[i] = t.DiscardOldPassword(ctx, changes[i].Username)
		}
		return accts, errs
	}
	for _, i := range send {
		accts[i].OldPassword = false
	}
	return accts, errs
}

// dropOldAfterReset drops the old passwords of accounts just given a new
// one by a plain ALTER USER … IDENTIFIED BY (a reset without keep-old
// drops any old password). MariaDB's IDENTIFIED BY replaced every method
// already: nothing is sent. MySQL 8 keeps the secondary through it:
// DISCARD OLD PASSWORD, one statement for all.
func (t *Target) dropOldAfterReset(ctx context.Context, usernames []string) error {
	fl, err := t.detectFlavor(ctx)
	if err != nil || fl != flavorMySQL || len(usernames) == 0 {
		return err
	}
	batch := make([]discardOf, len(usernames))
	for i, u := range usernames {
		batch[i].username = u
	}
	if _, err := t.runWithheld(ctx, []stmt{fl.discardSQL(batch)}); err != nil {
		return fmt.Errorf("discard the old password: %w", err)
	}
	return nil
}
