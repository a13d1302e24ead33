// Package mysqltest provisions throwaway databases and accounts on the
// shared test MariaDB for tests: each fixture has a unique database, a
// protected user created the way the platform creates it, and a
// least-privilege admin account (contract §5.7) for the worker. Everything a
// fixture creates is dropped in t.Cleanup.
package mysqltest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// RootDSNEnv names the variable that overrides the root DSN used to set up
// fixtures.
const RootDSNEnv = "DBUSERS_TEST_MYSQL_DSN"

// DefaultRootDSN is the machine's MariaDB as DEVELOPERS.md describes it.
const DefaultRootDSN = "root@tcp(127.0.0.1:3306)/"

// RootDSN returns the DSN used for setup.
func RootDSN() string {
	if dsn := os.Getenv(RootDSNEnv); dsn != "" {
		return dsn
	}
	return DefaultRootDSN
}

// Open opens dsn with client-side interpolation and fails the test if the
// server does not answer.
func Open(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	cfg.InterpolateParams = true
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("connector: %v", err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(); err != nil {
		t.Fatalf("MariaDB at %s does not answer (start it: see README): %v", cfg.Addr, err)
	}
	return db
}

// Root opens the setup connection.
func Root(t testing.TB) *sql.DB {
	t.Helper()
	return Open(t, RootDSN())
}

// Token returns n random hex characters for unique names.
func Token(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)[:n]
}

// Username returns a unique valid username starting with prefix (a-z).
func Username(prefix string) string {
	name := prefix + Token(10)
	if len(name) > 32 {
		name = name[:32]
	}
	return name
}

// Password returns a random 32-character password of [0-9a-f].
func Password() string { return Token(32) }

// Fixture is one managed database set up for a test.
type Fixture struct {
	Root          *sql.DB
	Database      string
	Protected     string
	Admin         string
	AdminPassword string
	// AdminDSN logs in as the least-privilege admin over TCP.
	AdminDSN string
	addr     string
	t        testing.TB
}

// Options tune NewFixture.
type Options struct {
	// Database is the database name; a unique "dbu_<hex>" when empty.
	Database string
	// AdminGrants replaces the admin's grants (each a full GRANT statement
	// with %s for the account); contract §5.7's set when nil.
	AdminGrants []string
	// Server puts the fixture on a test's own server instead of the
	// shared one.
	Server *Server
}

// NewFixture creates a database, its protected user and its admin.
func NewFixture(t testing.TB, opts Options) *Fixture {
	t.Helper()
	var root *sql.DB
	var addr string
	if opts.Server != nil {
		root, addr = Open(t, opts.Server.RootDSN()), opts.Server.Addr()
	} else {
		root = Root(t)
		cfg, _ := mysql.ParseDSN(RootDSN())
		addr = cfg.Addr
	}
	f := &Fixture{Root: root, Database: opts.Database, addr: addr, t: t}
	if f.Database == "" {
		f.Database = "dbu_" + Token(10)
	}
	f.Protected = Username("prot_")
	f.Admin = Username("adm_")
	f.AdminPassword = Password()
	f.AdminDSN = fmt.Sprintf("%s:%s@tcp(%s)/", f.Admin, f.AdminPassword, f.addr)

	t.Cleanup(f.cleanup)
	f.Exec("CREATE DATABASE `" + f.Database + "`")
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", f.Protected, Password())
	// The platform's own grant, with the database name unescaped.
	f.Exec("GRANT ALL PRIVILEGES ON `"+f.Database+"`.* TO ?@'%'", f.Protected)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", f.Admin, f.AdminPassword)
	grants := opts.AdminGrants
	if grants == nil {
		grants = []string{
			"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s",
			"GRANT SELECT ON mysql.* TO %s",
			"GRANT ALL PRIVILEGES ON `" + EscapePattern(f.Database) + "`.* TO %s WITH GRANT OPTION",
		}
	}
	for _, g := range grants {
		f.Exec(fmt.Sprintf(g, "?@'%'"), f.Admin)
	}
	return f
}

// EscapePattern escapes _ and % as a GRANT database pattern needs.
func EscapePattern(db string) string {
	return strings.NewReplacer("_", `\_`, "%", `\%`).Replace(db)
}

// Exec runs a setup statement as root and fails the test on error.
func (f *Fixture) Exec(query string, args ...any) {
	f.t.Helper()
	if _, err := f.Root.Exec(query, args...); err != nil {
		f.t.Fatalf("setup %q: %v", query, err)
	}
}

// DropUserLater drops username@'%' when the test ends.
func (f *Fixture) DropUserLater(username string) {
	f.t.Cleanup(func() { _, _ = f.Root.Exec("DROP USER IF EXISTS ?@'%'", username) })
}

// DSN returns a DSN that logs in as user with password on the fixture's database.
func (f *Fixture) DSN(user, password string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", f.addr, f.Database
	return cfg.FormatDSN()
}

// Login opens one connection as user and returns the error of the login
// itself (nil when it logged in).
func (f *Fixture) Login(user, password string) (*sql.Conn, error) {
	f.t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", f.addr, f.Database
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	f.t.Cleanup(func() { db.Close() })
	c, err := db.Conn(f.t.Context())
	if err != nil {
		return nil, err
	}
	f.t.Cleanup(func() { c.Close() })
	return c, nil
}

// CanLogin logs in as user with password once, and closes the connection;
// nil means it logged in.
func (f *Fixture) CanLogin(user, password string) error {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", f.addr, f.Database
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return db.Ping()
}

// AccountExists reports whether any account named user exists (any host).
func (f *Fixture) AccountExists(user string) bool {
	f.t.Helper()
	var n int
	if err := f.Root.QueryRow("SELECT COUNT(*) FROM mysql.global_priv WHERE User = ?", user).Scan(&n); err != nil {
		f.t.Fatalf("count accounts: %v", err)
	}
	return n > 0
}

func (f *Fixture) cleanup() {
	// Every account holding a grant on the fixture's database goes too.
	rows, err := f.Root.Query("SELECT DISTINCT User FROM mysql.db WHERE Db IN (?, ?)", f.Database, EscapePattern(f.Database))
	if err == nil {
		var users []string
		for rows.Next() {
			var u string
			if rows.Scan(&u) == nil {
				users = append(users, u)
			}
		}
		rows.Close()
		for _, u := range users {
			_, _ = f.Root.Exec("DROP USER IF EXISTS ?@'%'", u)
		}
	}
	_, _ = f.Root.Exec("DROP USER IF EXISTS ?@'%'", f.Protected)
	_, _ = f.Root.Exec("DROP USER IF EXISTS ?@'%'", f.Admin)
	_, _ = f.Root.Exec("DROP DATABASE IF EXISTS `" + f.Database + "`")
}
