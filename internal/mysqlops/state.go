package mysqlops

import (
	"context"
	"fmt"
	"strings"
	"time"
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
// (FACTS.md); an account holding none of them on the database is read-only.
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

// globalHolders is a query for the usernames that hold a global privilege or
// an account on a host other than '%': such accounts never belong to a
// target.
func (f flavor) globalHolders() string {
	if f == flavorMariaDB {
		return "SELECT User FROM mysql.global_priv WHERE Host <> '%' OR JSON_VALUE(Priv, '$.access') <> '0'"
	}
	cols := []string{"Select_priv", "Insert_priv", "Update_priv", "Delete_priv", "Create_priv", "Drop_priv",
		"Reload_priv", "Shutdown_priv", "Process_priv", "File_priv", "Grant_priv", "References_priv",
		"Index_priv", "Alter_priv", "Show_db_priv", "Super_priv", "Create_tmp_table_priv", "Lock_tables_priv",
		"Execute_priv", "Repl_slave_priv", "Repl_client_priv", "Create_view_priv", "Show_view_priv",
		"Create_routine_priv", "Alter_routine_priv", "Create_user_priv", "Event_priv", "Trigger_priv",
		"Create_tablespace_priv", "Create_role_priv", "Drop_role_priv"}
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = c + " = 'Y'"
	}
	return "SELECT User FROM mysql.user WHERE Host <> '%' OR " + strings.Join(parts, " OR ") +
		" UNION SELECT USER FROM mysql.global_grants"
}

// roleHolders is a query for the usernames granted a role or a proxy.
func (f flavor) roleHolders() string {
	if f == flavorMariaDB {
		return "SELECT User FROM mysql.roles_mapping UNION SELECT User FROM mysql.proxies_priv"
	}
	return "SELECT TO_USER FROM mysql.role_edges UNION SELECT User FROM mysql.proxies_priv"
}

func (t *Target) detect(ctx context.Context) (flavor, error) {
	t.flavorMu.Lock()
	defer t.flavorMu.Unlock()
	if t.flavor != flavorUnknown {
		return t.flavor, nil
	}
	var version string
	if err := t.db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return flavorUnknown, fmt.Errorf("server version: %w", err)
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
}

// inspect reads the privilege tables for username. The reads are not a
// snapshot, but the caller serializes operations per target and account
// statements of other tenants cannot turn a foreign account into ours.
func (t *Target) inspect(ctx context.Context, username string) (state, error) {
	var st state
	fl, err := t.detect(ctx)
	if err != nil {
		return st, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()

	var q string
	if fl == flavorMariaDB {
		q = "SELECT COUNT(*), COALESCE(SUM(Host <> '%' OR JSON_VALUE(Priv, '$.access') <> '0'), 0) FROM mysql.global_priv WHERE User = ?"
	} else {
		q = "SELECT (SELECT COUNT(*) FROM mysql.user WHERE User = ?), (SELECT COUNT(*) FROM (" + fl.globalHolders() + ") g WHERE g.User = ?)"
	}
	var accounts, global int
	args := []any{username}
	if fl != flavorMariaDB {
		args = append(args, username)
	}
	if err := t.db.QueryRowContext(ctx, q, args...).Scan(&accounts, &global); err != nil {
		return st, fmt.Errorf("read accounts: %w", err)
	}
	st.exists = accounts > 0
	if !st.exists {
		return st, nil
	}
	st.foreign = global > 0

	rows, err := t.db.QueryContext(ctx,
		"SELECT Host = '%' AND Db IN (?, ?), Select_priv = 'Y', "+fl.writeExpr("")+" FROM mysql.db WHERE User = ?",
		t.database, escapePattern(t.database), username)
	if err != nil {
		return st, fmt.Errorf("read database grants: %w", err)
	}
	canWrite := false
	for rows.Next() {
		var here, sel, write bool
		if err := rows.Scan(&here, &sel, &write); err != nil {
			rows.Close()
			return st, fmt.Errorf("read database grants: %w", err)
		}
		switch {
		case !here:
			st.foreign = true
		case sel:
			st.granted = true
			canWrite = canWrite || write
		default:
			st.inside = true
			canWrite = canWrite || write
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("read database grants: %w", err)
	}
	st.readOnly = st.granted && !canWrite

	var outside, inside int
	err = t.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ? AND (Host <> '%' OR Db <> ?)) +
		(SELECT COUNT(*) FROM mysql.columns_priv WHERE User = ? AND (Host <> '%' OR Db <> ?)) +
		(SELECT COUNT(*) FROM mysql.procs_priv WHERE User = ? AND (Host <> '%' OR Db <> ?)) +
		(SELECT COUNT(*) FROM (`+fl.roleHolders()+`) r WHERE r.User = ?),
		(SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ? AND Host = '%' AND Db = ?) +
		(SELECT COUNT(*) FROM mysql.procs_priv WHERE User = ? AND Host = '%' AND Db = ?)`,
		username, t.database, username, t.database, username, t.database, username,
		username, t.database, username, t.database).Scan(&outside, &inside)
	if err != nil {
		return st, fmt.Errorf("read object grants: %w", err)
	}
	st.foreign = st.foreign || outside > 0
	st.inside = st.inside || inside > 0
	return st, nil
}

// MaxListLimit is the largest page List returns.
const MaxListLimit = 5000

// List returns up to limit accounts that belong to the target with a
// username after the cursor, sorted by username, and the cursor of the next
// page ("" on the last page). Accounts with privileges anywhere else are
// left out.
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
	pattern := escapePattern(t.database)
	// One pass over mysql.db grouped by user, then anti-joins against the
	// other privilege tables; 12,000 accounts take milliseconds.
	q := `SELECT d.User, d.rw FROM (
		SELECT User,
			MAX(` + fl.writeExpr("") + `) AS rw,
			SUM(Host = '%' AND Db IN (?, ?) AND Select_priv = 'Y') AS here,
			SUM(Host <> '%' OR Db NOT IN (?, ?)) AS elsewhere
		FROM mysql.db GROUP BY User) d
	WHERE d.here > 0 AND d.elsewhere = 0 AND d.User > ?
		AND d.User NOT IN (` + fl.globalHolders() + `)
		AND d.User NOT IN (SELECT User FROM mysql.tables_priv WHERE Host <> '%' OR Db <> ?)
		AND d.User NOT IN (SELECT User FROM mysql.columns_priv WHERE Host <> '%' OR Db <> ?)
		AND d.User NOT IN (SELECT User FROM mysql.procs_priv WHERE Host <> '%' OR Db <> ?)
		AND d.User NOT IN (` + fl.roleHolders() + `)
	ORDER BY d.User LIMIT ?`
	rows, err := t.db.QueryContext(ctx, q, t.database, pattern, t.database, pattern, after,
		t.database, t.database, t.database, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	accounts := make([]Account, 0, min(limit, 1024))
	for rows.Next() {
		var a Account
		var rw bool
		if err := rows.Scan(&a.Username, &rw); err != nil {
			return nil, "", fmt.Errorf("list accounts: %w", err)
		}
		a.ReadOnly = !rw
		a.Protected = t.protected[a.Username]
		accounts = append(accounts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list accounts: %w", err)
	}
	next := ""
	if len(accounts) > limit {
		accounts = accounts[:limit]
		next = accounts[limit-1].Username
	}
	return accounts, next, nil
}
