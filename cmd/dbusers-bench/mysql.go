package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/internal/mysqlops"
)

// batchSize is how many accounts one setup statement creates or drops:
// MariaDB rebuilds its account cache per statement, so batching is what
// makes preparing 10,000 accounts take seconds, not minutes.
const batchSize = 500

// namePrefix starts every database and account a run creates:
// "dbb<6 hex>_". staleRegexp finds those of any run.
const staleRegexp = "^dbb[0-9a-f]{6}_"

// openDB opens dsn as the worker does (client-side interpolation, 5 s
// connect timeout) with a small pool.
func openDB(dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse MySQL DSN: %w", err)
	}
	cfg.InterpolateParams = true
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("MySQL connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxIdleConns(8)
	return db, nil
}

// randomHex returns n random hex characters.
func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)[:n]
}

// escapePattern escapes a database name for GRANT ... ON `db`.*, where _ and
// % are wildcards.
func escapePattern(db string) string {
	return strings.NewReplacer("`", "``", `\`, `\\`, "_", `\_`, "%", `\%`).Replace(db)
}

// mysqlSide is the benchmark's root access to the server under test.
type mysqlSide struct {
	root    *sql.DB
	addr    string // host:port of the server
	version string
	token   string // the run's unique part of every name
}

// connectMySQL opens the root DSN and reads the server version.
func connectMySQL(ctx context.Context, rootDSN, token string) (*mysqlSide, error) {
	cfg, err := mysql.ParseDSN(rootDSN)
	if err != nil {
		return nil, fmt.Errorf("parse -mysql-dsn: %w", err)
	}
	if cfg.Net != "tcp" {
		return nil, fmt.Errorf("-mysql-dsn must use tcp (the worker connects over TCP), not %q", cfg.Net)
	}
	root, err := openDB(rootDSN)
	if err != nil {
		return nil, err
	}
	m := &mysqlSide{root: root, addr: cfg.Addr, token: token}
	if err := root.QueryRowContext(ctx, "SELECT VERSION()").Scan(&m.version); err != nil {
		root.Close()
		return nil, fmt.Errorf("MySQL at %s does not answer (make bench starts it with scripts/mariadb-up.sh): %w", cfg.Addr, err)
	}
	return m, nil
}

// name returns a run-unique database or account name: "dbb<token>_<suffix>".
func (m *mysqlSide) name(suffix string) string { return "dbb" + m.token + "_" + suffix }

// accountCount is the number of accounts on the server.
func (m *mysqlSide) accountCount(ctx context.Context) (int, error) {
	var n int
	if err := m.root.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.global_priv").Scan(&n); err != nil {
		return 0, fmt.Errorf("count accounts: %w", err)
	}
	return n, nil
}

// sqlCounters are the global status counters read around runs: every
// statement the server received, and those of the kinds the jobs send.
var sqlCounters = []string{"Questions", "Com_select", "Com_alter_user", "Com_create_user", "Com_grant", "Com_drop_user"}

// status reads sqlCounters; nil when the server does not answer.
func (m *mysqlSide) status(ctx context.Context) map[string]int64 {
	rows, err := m.root.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('"+strings.Join(sqlCounters, "','")+"')")
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var v int64
		if rows.Scan(&name, &v) == nil {
			out[name] = v
		}
	}
	return out
}

// benchTarget is one managed database set up the way the platform sets one
// up: a database, its protected user, and a least-privilege admin account
// (contract §5.7) that the worker and the direct baselines both use.
type benchTarget struct {
	name      string // target name in the worker config
	database  string
	protected string
	admin     string
	adminPass string
	adminDSN  string
	grantOn   string   // `db`.* escaped
	accounts  []string // accounts the benchmark made for it
	db        *sql.DB  // pool as the admin
}

// setupTarget creates target i's database, protected user and admin.
func (m *mysqlSide) setupTarget(ctx context.Context, name string, i int) (*benchTarget, error) {
	t := &benchTarget{
		name:      name,
		database:  m.name(fmt.Sprintf("db%d", i)),
		protected: m.name(fmt.Sprintf("prot%d", i)),
		admin:     m.name(fmt.Sprintf("adm%d", i)),
		adminPass: randomHex(32),
	}
	t.grantOn = "`" + escapePattern(t.database) + "`.*"
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = t.admin, t.adminPass, "tcp", m.addr
	t.adminDSN = cfg.FormatDSN()
	stmts := []struct {
		q    string
		args []any
	}{
		{"CREATE DATABASE `" + t.database + "`", nil},
		{"CREATE USER ?@'%' IDENTIFIED BY ?", []any{t.protected, randomHex(32)}},
		// The platform's own grant, with the database name unescaped.
		{"GRANT ALL PRIVILEGES ON `" + t.database + "`.* TO ?@'%'", []any{t.protected}},
		{"CREATE USER ?@'%' IDENTIFIED BY ?", []any{t.admin, t.adminPass}},
		{"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO ?@'%'", []any{t.admin}},
		{"GRANT SELECT ON mysql.* TO ?@'%'", []any{t.admin}},
		{"GRANT ALL PRIVILEGES ON " + t.grantOn + " TO ?@'%' WITH GRANT OPTION", []any{t.admin}},
	}
	for _, s := range stmts {
		if _, err := m.root.ExecContext(ctx, s.q, s.args...); err != nil {
			return nil, fmt.Errorf("set up target %s: %s: %w", name, s.q, err)
		}
	}
	db, err := openDB(t.adminDSN)
	if err != nil {
		return nil, err
	}
	t.db = db
	return t, nil
}

// createAccounts creates read-write accounts of t in batches, as root.
func (m *mysqlSide) createAccounts(ctx context.Context, t *benchTarget, names []string) error {
	password := randomHex(32)
	for start := 0; start < len(names); start += batchSize {
		batch := names[start:min(start+batchSize, len(names))]
		create := make([]string, len(batch))
		grantees := make([]string, len(batch))
		args := make([]any, 0, 2*len(batch))
		for i, u := range batch {
			create[i] = "?@'%' IDENTIFIED BY ?"
			grantees[i] = "?@'%'"
			args = append(args, u, password)
		}
		if _, err := m.root.ExecContext(ctx, "CREATE USER "+strings.Join(create, ", "), args...); err != nil {
			return fmt.Errorf("create accounts: %w", err)
		}
		users := make([]any, len(batch))
		for i, u := range batch {
			users[i] = u
		}
		if _, err := m.root.ExecContext(ctx, "GRANT ALL PRIVILEGES ON "+t.grantOn+" TO "+strings.Join(grantees, ", "), users...); err != nil {
			return fmt.Errorf("grant accounts: %w", err)
		}
	}
	return nil
}

// dropAccounts drops the named accounts (any that exist) in batches.
func (m *mysqlSide) dropAccounts(ctx context.Context, names []string) error {
	for start := 0; start < len(names); start += batchSize {
		batch := names[start:min(start+batchSize, len(names))]
		list := make([]string, len(batch))
		args := make([]any, len(batch))
		for i, u := range batch {
			list[i], args[i] = "?@'%'", u
		}
		if _, err := m.root.ExecContext(ctx, "DROP USER IF EXISTS "+strings.Join(list, ", "), args...); err != nil {
			return fmt.Errorf("drop accounts: %w", err)
		}
	}
	return nil
}

// dropMatching drops every account and database whose name matches the
// regular expression re, and returns how many of each it dropped.
func (m *mysqlSide) dropMatching(ctx context.Context, re string) (accounts, databases int, err error) {
	var users []string
	rows, err := m.root.QueryContext(ctx, "SELECT DISTINCT User FROM mysql.global_priv WHERE User REGEXP ?", re)
	if err != nil {
		return 0, 0, fmt.Errorf("find accounts: %w", err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("find accounts: %w", err)
		}
		users = append(users, u)
	}
	rows.Close()
	if err := m.dropAccounts(ctx, users); err != nil {
		return 0, 0, err
	}
	var dbs []string
	rows, err = m.root.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME REGEXP ?", re)
	if err != nil {
		return len(users), 0, fmt.Errorf("find databases: %w", err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			rows.Close()
			return len(users), 0, fmt.Errorf("find databases: %w", err)
		}
		dbs = append(dbs, d)
	}
	rows.Close()
	for _, d := range dbs {
		if _, err := m.root.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+strings.ReplaceAll(d, "`", "``")+"`"); err != nil {
			return len(users), 0, fmt.Errorf("drop database %s: %w", d, err)
		}
	}
	return len(users), len(dbs), nil
}

// cleanup drops everything this run created.
func (m *mysqlSide) cleanup(ctx context.Context) (accounts, databases int, err error) {
	return m.dropMatching(ctx, "^dbb"+m.token+"_")
}

// canLogin logs in as user with password on t's database once.
func (m *mysqlSide) canLogin(ctx context.Context, t *benchTarget, user, password string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", m.addr, t.database
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("connector: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("log in as %s: %w", user, err)
	}
	return nil
}

// direct runs the baselines: the statements the worker's jobs come down
// to, issued by this process on one connection of the target's admin.
type direct struct {
	conn *sql.Conn
	t    *benchTarget
	ops  *mysqlops.Target // the worker's list query, on t's admin pool
}

// openDirect takes one connection of t's admin pool and warms it.
func openDirect(ctx context.Context, t *benchTarget) (*direct, error) {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("direct connection: %w", err)
	}
	if err := conn.PingContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("direct connection: %w", err)
	}
	ops := mysqlops.New(t.db, mysqlops.Options{Database: t.database, Protected: []string{t.protected}})
	return &direct{conn: conn, t: t, ops: ops}, nil
}

func (d *direct) close() { _ = d.conn.Close() }

// alter runs ALTER USER ... IDENTIFIED BY for each user with its password.
// When lat is not nil, each statement's duration is appended to it.
func (d *direct) alter(ctx context.Context, users, passwords []string, lat *[]time.Duration) error {
	for i, u := range users {
		start := time.Now()
		if _, err := d.conn.ExecContext(ctx, "ALTER USER ?@'%' IDENTIFIED BY ?", u, passwords[i]); err != nil {
			return fmt.Errorf("direct ALTER USER %s: %w", u, err)
		}
		if lat != nil {
			*lat = append(*lat, time.Since(start))
		}
	}
	return nil
}

// alterMany runs ALTER USER a IDENTIFIED BY …, b IDENTIFIED BY …, per
// statement accounts at a time: the server's own limit for rotation.
func (d *direct) alterMany(ctx context.Context, users, passwords []string, per int) error {
	for i := 0; i < len(users); i += per {
		end := min(i+per, len(users))
		q := "ALTER USER" + strings.TrimSuffix(strings.Repeat(" ?@'%' IDENTIFIED BY ?,", end-i), ",")
		args := make([]any, 0, 2*(end-i))
		for k := i; k < end; k++ {
			args = append(args, users[k], passwords[k])
		}
		if _, err := d.conn.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("direct ALTER USER of %d accounts: %w", end-i, err)
		}
	}
	return nil
}

// drop runs DROP USER for each user, one statement each.
func (d *direct) drop(ctx context.Context, users []string) error {
	for _, u := range users {
		if _, err := d.conn.ExecContext(ctx, "DROP USER ?@'%'", u); err != nil {
			return fmt.Errorf("direct DROP USER %s: %w", u, err)
		}
	}
	return nil
}

// create runs CREATE USER and GRANT ALL PRIVILEGES ON the target's database
// for each user, as a read-write create job does.
func (d *direct) create(ctx context.Context, users, passwords []string) error {
	grant := "GRANT ALL PRIVILEGES ON " + d.t.grantOn + " TO ?@'%'"
	for i, u := range users {
		if _, err := d.conn.ExecContext(ctx, "CREATE USER ?@'%' IDENTIFIED BY ?", u, passwords[i]); err != nil {
			return fmt.Errorf("direct CREATE USER %s: %w", u, err)
		}
		if _, err := d.conn.ExecContext(ctx, grant, u); err != nil {
			return fmt.Errorf("direct GRANT to %s: %w", u, err)
		}
	}
	return nil
}

// list pages through the target's accounts with the worker's own list query
// (mysqlops.Target.List) on this process's pool, and returns the count and
// the number of pages.
func (d *direct) list(ctx context.Context, page int) (accounts, pages int, err error) {
	after := ""
	for {
		accts, next, err := d.ops.List(ctx, after, page)
		if err != nil {
			return accounts, pages, fmt.Errorf("direct list: %w", err)
		}
		accounts += len(accts)
		pages++
		if next == "" {
			return accounts, pages, nil
		}
		after = next
	}
}
