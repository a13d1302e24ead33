package test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
)

// sharedAdmin creates one least-privilege admin for the databases of
// fixtures (contract §5.7's globals and each database's ALL PRIVILEGES …
// WITH GRANT OPTION, as a hosting platform sets it up), plus the extra
// grants (GRANT statements with %s for the account), and returns each
// fixture's target logging in as that admin. The admin is dropped when the
// test ends.
func sharedAdmin(t *testing.T, fixtures []*mysqltest.Fixture, extra ...string) (string, []config.Target) {
	t.Helper()
	root := mysqltest.Root(t)
	admin, pw := mysqltest.Username("adm_sh_"), mysqltest.Password()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := root.Exec(q, args...); err != nil {
			t.Fatalf("setup %q: %v", q, err)
		}
	}
	exec("CREATE USER ?@'%' IDENTIFIED BY ?", admin, pw)
	t.Cleanup(func() { _, _ = root.Exec("DROP USER IF EXISTS ?@'%'", admin) })
	grants := []string{"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s", "GRANT SELECT ON mysql.* TO %s"}
	for _, f := range fixtures {
		grants = append(grants, "GRANT ALL PRIVILEGES ON `"+mysqltest.EscapePattern(f.Database)+"`.* TO %s WITH GRANT OPTION")
	}
	for _, g := range append(grants, extra...) {
		exec(fmt.Sprintf(g, "?@'%'"), admin)
	}
	rootCfg, err := mysql.ParseDSN(mysqltest.RootDSN())
	if err != nil {
		t.Fatal(err)
	}
	var targets []config.Target
	for i, f := range fixtures {
		tg := target(fmt.Sprintf("site-%d", i+1), f)
		tg.DSN = secret.New(fmt.Sprintf("%s:%s@tcp(%s)/", admin, pw, rootCfg.Addr))
		targets = append(targets, tg)
	}
	return admin, targets
}

// TestOneAdminForSeveralTargets: three targets of one MariaDB that share
// one least-privilege admin start, and each runs jobs: the other targets'
// database grants are within §5.7, since this worker serves them with the
// same account. A grant on a database that no configured target owns is
// still refused at start, and named alone.
func TestOneAdminForSeveralTargets(t *testing.T) {
	t.Parallel()
	newFixtures := func(t *testing.T) []*mysqltest.Fixture {
		var fs []*mysqltest.Fixture
		for range 3 {
			fs = append(fs, mysqltest.NewFixture(t, mysqltest.Options{}))
		}
		return fs
	}

	t.Run("three targets", func(t *testing.T) {
		t.Parallel()
		fixtures := newFixtures(t)
		_, targets := sharedAdmin(t, fixtures)
		e := runWorker(t, workerConfig(t, targets))
		for i, f := range fixtures {
			user := mysqltest.Username("sh_")
			f.DropUserLater(user)
			wantOK(t, first(e.create(targets[i].Name, user, false, "")))
		}
		if strings.Contains(e.logs.String(), "privileges beyond contract") {
			t.Errorf("the shared admin was reported as over-privileged:\n%s", e.logs.String())
		}
	})

	t.Run("a database no target owns", func(t *testing.T) {
		t.Parallel()
		fixtures := newFixtures(t)
		stray := "dbu_" + mysqltest.Token(10)
		root := mysqltest.Root(t)
		if _, err := root.Exec("CREATE DATABASE `" + stray + "`"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = root.Exec("DROP DATABASE IF EXISTS `" + stray + "`") })
		admin, targets := sharedAdmin(t, fixtures, "GRANT SELECT ON `"+mysqltest.EscapePattern(stray)+"`.* TO %s")

		err := tryStart(t, workerConfig(t, targets), &logBuffer{})
		if err == nil {
			t.Fatal("the worker started with an admin that holds a grant on a database no target owns")
		}
		msg := err.Error()
		for _, want := range []string{"targets[0] (site-1)", "`" + admin + "`@`%`", "SELECT ON `" + mysqltest.EscapePattern(stray) + "`.*"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q:\n%s", want, msg)
			}
		}
		for _, f := range fixtures {
			if strings.Contains(msg, f.Database) || strings.Contains(msg, mysqltest.EscapePattern(f.Database)) {
				t.Errorf("error names the served database %s as excess:\n%s", f.Database, msg)
			}
		}
	})

	t.Run("the same admin, one target configured", func(t *testing.T) {
		t.Parallel()
		// The worker serves one of the three: the others' grants are
		// excess for it, exactly as before.
		fixtures := newFixtures(t)
		_, targets := sharedAdmin(t, fixtures)
		err := tryStart(t, workerConfig(t, targets[:1]), &logBuffer{})
		if err == nil {
			t.Fatal("the worker started with an admin that holds the grants of targets it does not serve")
		}
		for _, f := range fixtures[1:] {
			if want := "`" + mysqltest.EscapePattern(f.Database) + "`.*"; !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
	})
}
