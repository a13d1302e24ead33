package mysqlops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// flavor is the server family; the privilege tables differ between them.
type flavor int

const (
	flavorUnknown flavor = iota
	flavorMariaDB
	flavorMySQL
)

// bound wraps an account statement so the server itself gives up after d.
// MySQL 8 has no equivalent for account statements; there the context
// deadline ends the wait (outcome unknown, which the callers handle).
func (f flavor) bound(query string, d time.Duration) string {
	if f == flavorMariaDB {
		return fmt.Sprintf("SET STATEMENT max_statement_time=%d FOR %s", int(d.Seconds()+0.5), query)
	}
	return query
}

// writeColumns are the mysql.db columns that let an account change data
// (MariaDB's privilege columns); an account holding none of them on the
// database is read-only.
var writeColumns = []string{"Insert_priv", "Update_priv", "Delete_priv", "Create_priv", "Drop_priv",
	"Alter_priv", "Index_priv", "References_priv", "Create_tmp_table_priv", "Lock_tables_priv",
	"Execute_priv", "Create_view_priv", "Create_routine_priv", "Alter_routine_priv", "Event_priv", "Trigger_priv"}

func (f flavor) writeExpr(alias string) string {
	cols := writeColumns
	if f == flavorMariaDB {
		cols = append(cols[:len(cols):len(cols)], "Delete_history_priv")
	}
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = alias + c + " = 'Y'"
	}
	return "(" + strings.Join(parts, " OR ") + ")"
}

// outsidersBetween returns a query, and its arguments, for the usernames
// from first to last (inclusive) that can never belong to the target
// whatever their grants on its database: a database grant elsewhere or on
// another host, a global privilege, an account on a host other than '%', a
// table, column or routine privilege elsewhere, a role or a proxy grant.
// Every part reads a key range or a small table, so its cost follows the
// range, not the server's accounts. Each row is (User, outside, old): the
// accounts table's part also names, in the same scan, the accounts at '%'
// that keep an old password (old_password.go), outside or not.
func (f flavor) outsidersBetween(first, last, db, pattern string) (string, []any) {
	var parts []string
	var args []any
	// add appends a part whose first two placeholders are the range.
	add := func(q string, more ...any) {
		parts = append(parts, q)
		args = append(append(args, first, last), more...)
	}
	add("SELECT User, 1, 0 FROM mysql.db WHERE User BETWEEN ? AND ? AND (Host <> '%' OR Db NOT IN (?, ?))", db, pattern)
	add("SELECT User, 1, 0 FROM mysql.tables_priv WHERE User BETWEEN ? AND ? AND (Host <> '%' OR Db <> ?)", db)
	add("SELECT User, 1, 0 FROM mysql.columns_priv WHERE User BETWEEN ? AND ? AND (Host <> '%' OR Db <> ?)", db)
	add("SELECT User, 1, 0 FROM mysql.procs_priv WHERE User BETWEEN ? AND ? AND (Host <> '%' OR Db <> ?)", db)
	add("SELECT User, 1, 0 FROM mysql.proxies_priv WHERE User BETWEEN ? AND ?")
	if f == flavorMariaDB {
		// The primary key is (Host, User): a range on both for '%', and
		// the few accounts on other hosts.
		add("SELECT User, COALESCE(JSON_VALUE(Priv, '$.access') <> '0', 0), COALESCE(" + oldPasswordMariaDB + ", 0) FROM mysql.global_priv " +
			"WHERE Host = '%' AND User BETWEEN ? AND ? AND (JSON_VALUE(Priv, '$.access') <> '0' OR " + oldPasswordMariaDB + ")")
		add("SELECT User, 1, 0 FROM mysql.global_priv WHERE Host <> '%' AND User BETWEEN ? AND ?")
		add("SELECT User, 1, 0 FROM mysql.roles_mapping WHERE User BETWEEN ? AND ?")
	} else {
		cols := []string{"Select_priv", "Insert_priv", "Update_priv", "Delete_priv", "Create_priv", "Drop_priv",
			"Reload_priv", "Shutdown_priv", "Process_priv", "File_priv", "Grant_priv", "References_priv",
			"Index_priv", "Alter_priv", "Show_db_priv", "Super_priv", "Create_tmp_table_priv", "Lock_tables_priv",
			"Execute_priv", "Repl_slave_priv", "Repl_client_priv", "Create_view_priv", "Show_view_priv",
			"Create_routine_priv", "Alter_routine_priv", "Create_user_priv", "Event_priv", "Trigger_priv",
			"Create_tablespace_priv", "Create_role_priv", "Drop_role_priv"}
		held := make([]string, len(cols))
		for i, c := range cols {
			held[i] = c + " = 'Y'"
		}
		anyHeld := "(" + strings.Join(held, " OR ") + ")"
		add("SELECT User, " + anyHeld + ", " + oldPasswordMySQL + " FROM mysql.user " +
			"WHERE Host = '%' AND User BETWEEN ? AND ? AND (" + anyHeld + " OR " + oldPasswordMySQL + ")")
		add("SELECT User, 1, 0 FROM mysql.user WHERE Host <> '%' AND User BETWEEN ? AND ?")
		add("SELECT USER, 1, 0 FROM mysql.global_grants WHERE USER BETWEEN ? AND ?")
		add("SELECT TO_USER, 1, 0 FROM mysql.role_edges WHERE TO_USER BETWEEN ? AND ?")
	}
	return strings.Join(parts, " UNION "), args
}

// accountsTable is the table with one row per account.
func (f flavor) accountsTable() string {
	if f == flavorMariaDB {
		return "mysql.global_priv"
	}
	return "mysql.user"
}

// detect returns the server family once the privilege check (when enabled)
// has passed: every operation goes through it before its first statement.
func (t *Target) detect(ctx context.Context) (flavor, error) {
	fl, err := t.detectFlavor(ctx)
	if err != nil {
		return fl, err
	}
	if err := t.privilegeGate(ctx); err != nil {
		return flavorUnknown, err
	}
	return fl, nil
}

// detectFlavor asks the server for its version, once.
func (t *Target) detectFlavor(ctx context.Context) (flavor, error) {
	t.flavorMu.Lock()
	defer t.flavorMu.Unlock()
	if t.flavor != flavorUnknown {
		return t.flavor, nil
	}
	var version string
	if err := t.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return flavorUnknown, fmt.Errorf("server version: %w", explainTLS(err))
	}
	t.flavor = flavorMySQL
	if strings.Contains(strings.ToLower(version), "mariadb") {
		t.flavor = flavorMariaDB
	}
	return t.flavor, nil
}

// state is what the privilege tables say about one username.
type state struct {
	exists   bool // an account of that name exists, on any host
	foreign  bool // it holds privileges outside the target's database, or has another host
	granted  bool // it holds a database-level grant with SELECT on the target's database
	inside   bool // it holds table, column or routine privileges in the target's database
	readOnly bool // granted, and none of the write privileges
	// oldPassword: SHOW GRANTS names more than one authentication method,
	// an old password kept beside the current one (MariaDB; MySQL 8 does
	// not print them, see old_password.go).
	oldPassword bool
	// current is the credential in force, when SHOW GRANTS shows it whole
	// (currentKnown; MariaDB only): a keep-old reset keeps it without
	// reading the accounts table. A state is never printed: fmt shows an
	// unexported field's Secret raw.
	current      Credential
	currentKnown bool
}

// belongs returns nil when the account belongs to the target, else why
// not: errGone when no account of that name exists, ErrForeign, or
// ErrUserNotFound for an account with no privilege on this database, which
// is not the target's, and no other tenant's either: leave it alone.
func (st state) belongs() error {
	switch {
	case !st.exists:
		return errGone
	case st.foreign:
		return ErrForeign
	case !st.granted && !st.inside:
		return ErrUserNotFound
	}
	return nil
}

// inspect reads what the server says about username. With anyHost, an
// account of that name on any host counts (create must refuse it; delete
// ends every session of the name): one query lists its hosts. The grants of
// username@'%' come from SHOW GRANTS, which the server answers from its
// in-memory privilege cache: a reset costs the server one cheap statement
// beyond its ALTER USER (a query joining the privilege tables cost MariaDB
// 0.5 to 1.5 ms per job, five times the ALTER itself). The reads are not a
// snapshot, but the caller serializes operations per target and other
// tenants' account statements cannot turn a foreign account into ours.
func (t *Target) inspect(ctx context.Context, username string, anyHost bool) (state, error) {
	var st state
	fl, err := t.detect(ctx)
	if err != nil {
		return st, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()

	otherHosts := false
	if anyHost {
		atPercent := false
		if otherHosts, atPercent, err = t.hosts(ctx, fl, username); err != nil {
			return st, err
		}
		if !atPercent {
			// Only namesakes on other hosts (or nothing): never ours.
			st.exists, st.foreign = otherHosts, otherHosts
			return st, nil
		}
	}
	lines, found, err := t.accountGrants(ctx, username)
	if err != nil {
		return st, err
	}
	if !found {
		st.exists, st.foreign = otherHosts, otherHosts
		return st, nil
	}
	shared, err := t.sharedPattern(ctx)
	if err != nil {
		return st, err
	}
	st = classifyGrants(lines, t.database, escapePattern(t.database), shared)
	st.exists = true
	st.foreign = st.foreign || otherHosts
	return st, nil
}

// hosts reports whether accounts named username exist on hosts other than
// '%', and on '%'. MariaDB's roles (host "") count as other hosts.
func (t *Target) hosts(ctx context.Context, fl flavor, username string) (other, atPercent bool, err error) {
	rows, err := t.db.QueryContext(ctx, "SELECT Host FROM "+fl.accountsTable()+" WHERE User = ?", username)
	if err != nil {
		return false, false, fmt.Errorf("read the account's hosts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var host string
		if err := rows.Scan(&host); err != nil {
			return false, false, fmt.Errorf("read the account's hosts: %w", err)
		}
		if host == "%" {
			atPercent = true
		} else {
			other = true
		}
	}
	if err := rows.Err(); err != nil {
		return false, false, fmt.Errorf("read the account's hosts: %w", err)
	}
	return other, atPercent, nil
}

// accountGrants returns the SHOW GRANTS lines of username@'%', found=false
// when there is no such account (error 1141). The lines can hold the
// password hash (MariaDB), so they are never logged or put in an error.
func (t *Target) accountGrants(ctx context.Context, username string) (lines []string, found bool, err error) {
	lines, err = t.grantLines(ctx, username)
	if errors.Is(err, &mysql.MySQLError{Number: 1141}) { // the driver reports it at the query or at the first row
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read the account's grants: %w", err)
	}
	return lines, true, nil
}

func (t *Target) grantLines(ctx context.Context, username string) ([]string, error) {
	rows, err := t.db.QueryContext(ctx, "SHOW GRANTS FOR ?@'%'", username)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, err
		}
		lines = append(lines, l)
	}
	return lines, rows.Err()
}

// classifyGrants reads an account's SHOW GRANTS lines against the target's
// database (its name, or the escaped pattern a grant names it by). Any line
// it does not understand makes the account foreign: the worker then leaves
// it alone, which is the safe side. sharedPattern says the database name
// unescaped also matches another database (Target.sharedPattern): a grant
// on it then makes the account foreign too.
func classifyGrants(lines []string, database, pattern string, sharedPattern bool) state {
	var st state
	writes := false
	for _, line := range lines {
		if skipLine(line) {
			continue // SET DEFAULT ROLE follows a role grant; a partial revoke, a global grant
		}
		g, err := parseGrant(line)
		if err != nil {
			st.foreign = true
			continue
		}
		switch g.level {
		case levelGlobal:
			if g.grantOption || len(g.privileges) != 1 || g.privileges[0] != "USAGE" {
				st.foreign = true
			}
			st.oldPassword = st.oldPassword || g.methods > 1
			if g.methods > 0 {
				st.current, st.currentKnown = g.current, g.currentKnown
			}
		case levelDatabase:
			if g.database != database && g.database != pattern {
				st.foreign = true
				continue
			}
			if g.database == database && database != pattern && sharedPattern {
				st.foreign = true // the unescaped name reaches another database too
				continue
			}
			selects := false
			for _, p := range g.privileges {
				switch baseName(p) {
				case "SELECT":
					selects = true
				case "ALL PRIVILEGES":
					selects, writes = true, true
				case "SHOW VIEW", "USAGE":
				default:
					writes = true
				}
			}
			if g.grantOption {
				writes = true
			}
			if selects {
				st.granted = true
			} else {
				st.inside = true
			}
		case levelTable, levelRoutine:
			if g.database != database {
				st.foreign = true
			} else {
				st.inside = true
			}
		default: // roles, proxies
			st.foreign = true
		}
	}
	st.readOnly = st.granted && !writes
	return st
}

// MaxListLimit is the largest page List returns.
const MaxListLimit = 5000

// List returns up to limit accounts that belong to the target with a
// username after the cursor, sorted by username, and the cursor of the next
// page ("" on the last page). Accounts with privileges anywhere else are
// left out.
//
// Candidates come from the target's own rows of mysql.db, read in key
// order and stopped at the page's size; the usernames in the candidates'
// range that hold privileges elsewhere come from a second query, and are
// left out here. A page short of candidates after that reads the next
// ones. (Excluding them in SQL, with NOT IN or NOT EXISTS per candidate,
// cost MariaDB twice as much for 10,000 accounts.)
func (t *Target) List(ctx context.Context, after string, limit int) ([]Account, string, error) {
	if limit <= 0 || limit > MaxListLimit {
		return nil, "", fmt.Errorf("list limit %d outside 1..%d", limit, MaxListLimit)
	}
	fl, err := t.detect(ctx)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	accounts := make([]Account, 0, min(limit+1, 1024))
	for cursor := after; len(accounts) <= limit; {
		want := limit + 1 - len(accounts)
		batch, err := t.candidates(ctx, fl, cursor, want)
		if err != nil {
			return nil, "", fmt.Errorf("list accounts: %w", err)
		}
		if len(batch) == 0 {
			break
		}
		out, old, err := t.outsiders(ctx, fl, batch[0].username, batch[len(batch)-1].username)
		if err != nil {
			return nil, "", fmt.Errorf("list accounts: %w", err)
		}
		for _, c := range batch {
			if !out[c.username] {
				// Read-only as inspect says it: a database grant with
				// SELECT and no write privilege.
				accounts = append(accounts, Account{Username: c.username, ReadOnly: c.selects && !c.writes, Protected: t.protected[c.username],
					OldPassword: old[c.username]})
			}
		}
		if len(batch) < want {
			break // no more candidates
		}
		cursor = batch[len(batch)-1].username
	}
	next := ""
	if len(accounts) > limit {
		accounts = accounts[:limit]
		next = accounts[limit-1].Username
	}
	return accounts, next, nil
}

// candidate is a username with grants on the target's database.
type candidate struct {
	username        string
	selects, writes bool
}

// candidates returns up to n usernames after cursor, in order, that hold a
// privilege in the target's database: a database grant (on its name or
// escaped pattern), with what those grants allow, or a table, column or
// routine privilege there, which makes the account the target's as much
// (contract §5.5: its only privileges are on the target's database; reset
// and delete take it, so list shows it). Each source is read by its own
// ordered key range, one row per username, stopped at n: a username among
// the first n of the merge is among the first n of each range it has rows
// in, so its rows are all read.
func (t *Target) candidates(ctx context.Context, fl flavor, cursor string, n int) ([]candidate, error) {
	one := "(SELECT User, " + fl.writeExpr("") + " AS w, Select_priv = 'Y' AS s FROM mysql.db " +
		"WHERE Host = '%' AND Db = ? AND User > ? ORDER BY User LIMIT ?)"
	// Finer grants count as neither SELECT nor a write, as in inspect.
	inside := func(table string) string {
		return "(SELECT DISTINCT User, 0, 0 FROM mysql." + table + " WHERE Host = '%' AND Db = ? AND User > ? ORDER BY User LIMIT ?)"
	}
	q := "SELECT User, MAX(s), MAX(w) FROM (" + one + " UNION ALL " + one +
		" UNION ALL " + inside("tables_priv") + " UNION ALL " + inside("columns_priv") + " UNION ALL " + inside("procs_priv") +
		") c GROUP BY User ORDER BY User LIMIT ?"
	rows, err := t.db.QueryContext(ctx, q, t.database, cursor, n, escapePattern(t.database), cursor, n,
		t.database, cursor, n, t.database, cursor, n, t.database, cursor, n, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.username, &c.selects, &c.writes); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// outsiders returns the usernames from first to last that hold privileges
// outside the target's database, and those that keep an old password (see
// flavor.outsidersBetween).
func (t *Target) outsiders(ctx context.Context, fl flavor, first, last string) (out, old map[string]bool, err error) {
	q, args := fl.outsidersBetween(first, last, t.database, escapePattern(t.database))
	rows, err := t.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	out, old = map[string]bool{}, map[string]bool{}
	for rows.Next() {
		var u string
		var outside, keeps bool
		if err := rows.Scan(&u, &outside, &keeps); err != nil {
			return nil, nil, err
		}
		out[u] = out[u] || outside
		old[u] = old[u] || keeps
	}
	return out, old, rows.Err()
}
