package test

import (
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/wire"
)

// TestUnescapedGrantReachingAnotherDatabaseIsForeign: an account whose
// grant names the target's database unescaped (`app_db`.*) also reaches
// every database that pattern matches. Where another database matches, the
// account is foreign_user: a reset would hand that database to whoever
// asked. Where none does, it is still the target's.
func TestUnescapedGrantReachingAnotherDatabaseIsForeign(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{Database: "lp_" + mysqltest.Token(6) + "_db"})
	lone := mysqltest.NewFixture(t, mysqltest.Options{Database: "lq_" + mysqltest.Token(6) + "_db"})
	// A database of another tenant that f's unescaped name matches.
	other := strings.Replace(f.Database, "_db", "Xdb", 1)
	// A database of another tenant that f's unescaped name matches, with
	// its own default user, as every hosted database has.
	f.Exec("CREATE DATABASE `" + other + "`")
	t.Cleanup(func() { f.Exec("DROP DATABASE IF EXISTS `" + other + "`") })
	otherOwner := "own_" + mysqltest.Token(8)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY 'other-tenant-password-0123'", otherOwner)
	f.DropUserLater(otherOwner)
	f.Exec("GRANT ALL PRIVILEGES ON `"+mysqltest.EscapePattern(other)+"`.* TO ?@'%'", otherOwner)
	e := startWorker(t, []config.Target{target("lp", f), target("lq", lone)}, nil)

	legacy := func(fx *mysqltest.Fixture) string {
		name := "leg_" + mysqltest.Token(8)
		fx.Exec("CREATE USER ?@'%' IDENTIFIED BY 'legacy-password-0123456789'", name)
		fx.DropUserLater(name)
		fx.Exec("GRANT SELECT, INSERT ON `"+fx.Database+"`.* TO ?@'%'", name)
		return name
	}
	shared := legacy(f)
	res, _ := e.reset("lp", shared, "")
	wantCode(t, res, wire.CodeForeignUser)
	if err := f.CanLogin(shared, "legacy-password-0123456789"); err != nil {
		t.Errorf("the refused reset changed the account: %v", err)
	}
	res = e.job("lp", "delete", map[string]any{"username": shared})
	wantCode(t, res, wire.CodeForeignUser)
	if !f.AccountExists(shared) {
		t.Error("the refused delete dropped the account")
	}
	// The same kind of grant where the pattern matches nothing else.
	own := legacy(lone)
	res, pw := e.reset("lq", own, "")
	wantOK(t, res)
	if err := lone.CanLogin(own, pw); err != nil {
		t.Errorf("the reset password does not log in: %v", err)
	}
}
