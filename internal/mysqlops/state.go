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

// accountsTable is the table with one row per account.
func (f flavor) accountsTable() string {
	if f == flavorMariaDB {
		return "mysql.global_priv"
	}
	return "mysql.user"
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

// inspect reads the privilege tables for username in one round trip. With
// anyHost, an account of that name on any host counts (create must refuse
// it; delete ends every session of the name); without it only
// username@'%' is looked at, through primary keys and the User index, so
// a reset costs the server almost nothing beyond its ALTER USER. The reads
// are not a snapshot, but the caller serializes operations per target and
// other tenants' account statements cannot turn a foreign account into ours.
func (t *Target) inspect(ctx context.Context, username string, anyHost bool) (state, error) {
	var st state
	fl, err := t.detect(ctx)
	if err != nil {
		return st, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()

	u, db, pattern := username, t.database, escapePattern(t.database)
	var parts []string
	var args []any
	col := func(expr string, a ...any) {
		parts = append(parts, "("+expr+")")
		args = append(args, a...)
	}
	// The account at '%' and its global privileges.
	if fl == flavorMariaDB {
		col("SELECT COUNT(*) FROM mysql.global_priv WHERE Host = '%' AND User = ?", u)
		col("SELECT COUNT(*) FROM mysql.global_priv WHERE Host = '%' AND User = ? AND JSON_VALUE(Priv, '$.access') <> '0'", u)
	} else {
		col("SELECT COUNT(*) FROM mysql.user WHERE Host = '%' AND User = ?", u)
		col("SELECT COUNT(*) FROM ("+fl.globalHolders()+") g WHERE g.User = ?", u)
	}
	// Accounts of the same name on other hosts.
	if anyHost {
		col("SELECT COUNT(*) FROM "+fl.accountsTable()+" WHERE User = ? AND Host <> '%'", u)
	} else {
		col("SELECT 0")
	}
	// Database-level grants (mysql.db has an index on User).
	here := "User = ? AND Host = '%' AND Db IN (?, ?)"
	col("SELECT COUNT(*) FROM mysql.db WHERE User = ? AND NOT (Host = '%' AND Db IN (?, ?))", u, db, pattern)
	col("SELECT COUNT(*) FROM mysql.db WHERE "+here+" AND Select_priv = 'Y'", u, db, pattern)
	col("SELECT COUNT(*) FROM mysql.db WHERE "+here+" AND Select_priv <> 'Y'", u, db, pattern)
	col("SELECT COUNT(*) FROM mysql.db WHERE "+here+" AND "+fl.writeExpr(""), u, db, pattern)
	// Object-level grants and roles elsewhere, then object grants here.
	col(`SELECT (SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ? AND (Host <> '%' OR Db <> ?)) +
		(SELECT COUNT(*) FROM mysql.columns_priv WHERE User = ? AND (Host <> '%' OR Db <> ?)) +
		(SELECT COUNT(*) FROM mysql.procs_priv WHERE User = ? AND (Host <> '%' OR Db <> ?)) +
		(SELECT COUNT(*) FROM (`+fl.roleHolders()+`) r WHERE r.User = ?)`, u, db, u, db, u, db, u)
	col(`SELECT (SELECT COUNT(*) FROM mysql.tables_priv WHERE User = ? AND Host = '%' AND Db = ?) +
		(SELECT COUNT(*) FROM mysql.procs_priv WHERE User = ? AND Host = '%' AND Db = ?)`, u, db, u, db)

	var atPercent, global, otherHosts, elsewhere, granted, noSelect, writes, outside, inside int
	err = t.db.QueryRowContext(ctx, "SELECT "+strings.Join(parts, ", "), args...).
		Scan(&atPercent, &global, &otherHosts, &elsewhere, &granted, &noSelect, &writes, &outside, &inside)
	if err != nil {
		return st, fmt.Errorf("read the account's privileges: %w", err)
	}
	st.exists = atPercent > 0 || otherHosts > 0
	if !st.exists {
		return st, nil
	}
	st.foreign = atPercent == 0 || global > 0 || otherHosts > 0 || elsewhere > 0 || outside > 0
	st.granted = granted > 0
	st.inside = noSelect > 0 || inside > 0
	st.readOnly = st.granted && writes == 0
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
