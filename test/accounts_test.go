package test

import (
	"context"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// TestReadWriteAccountCanWrite: a generated-password read-write account logs
// in with the password from the vault and can change data and schema.
func TestReadWriteAccountCanWrite(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	user := mysqltest.Username("rw_")
	f.DropUserLater(user)

	res, pw := e.create("app", user, false, "")
	wantOK(t, res)
	if *res.User != (wire.Account{Username: user}) || res.Attempts != 1 || res.Op != wire.OpCreate || res.Target != "app" {
		t.Fatalf("result %+v", res)
	}
	if len(pw) != 64 {
		t.Fatalf("generated password has %d characters, want 64", len(pw))
	}
	c, err := f.Login(user, pw)
	if err != nil {
		t.Fatalf("login with the generated password: %v", err)
	}
	ctx := context.Background()
	for _, q := range []string{"CREATE TABLE notes (id int PRIMARY KEY, body text)",
		"INSERT INTO notes VALUES (1, 'hello')", "UPDATE notes SET body = 'hi'", "DELETE FROM notes"} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Errorf("read-write account: %s: %v", q, err)
		}
	}
}

// TestReadOnlyAccountOnlyReads: a read-only account reads, and can neither
// write nor create tables.
func TestReadOnlyAccountOnlyReads(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	f.Exec("CREATE TABLE `" + f.Database + "`.items (id int)")
	f.Exec("INSERT INTO `" + f.Database + "`.items VALUES (1), (2)")
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	user := mysqltest.Username("ro_")
	f.DropUserLater(user)

	chosen := "Chosen-password-" + mysqltest.Token(12)
	res, pw := e.create("app", user, true, chosen)
	wantOK(t, res)
	if !res.User.ReadOnly || res.Secret != nil {
		t.Fatalf("result %+v", res)
	}
	c, err := f.Login(user, pw)
	if err != nil {
		t.Fatalf("login with the chosen password: %v", err)
	}
	ctx := context.Background()
	var n int
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n); err != nil || n != 2 {
		t.Fatalf("read-only account reads %d rows, err %v", n, err)
	}
	for _, q := range []string{"INSERT INTO items VALUES (3)", "UPDATE items SET id = 5", "DELETE FROM items",
		"CREATE TABLE more (id int)", "DROP TABLE items"} {
		if _, err := c.ExecContext(ctx, q); err == nil {
			t.Errorf("read-only account could run %s", q)
		}
	}
}

// TestGrantNeverReachesPatternSibling: the database name's "_" is escaped
// in the grant, so an account of dbu_x cannot read dbuXx.
func TestGrantNeverReachesPatternSibling(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	if !strings.Contains(f.Database, "_") {
		t.Fatalf("fixture database %q has no _", f.Database)
	}
	sibling := strings.Replace(f.Database, "_", "x", 1)
	f.Exec("CREATE DATABASE `" + sibling + "`")
	t.Cleanup(func() { _, _ = f.Root.Exec("DROP DATABASE IF EXISTS `" + sibling + "`") })
	f.Exec("CREATE TABLE `" + sibling + "`.secrets (v text)")
	f.Exec("INSERT INTO `" + sibling + "`.secrets VALUES ('other tenant')")

	e := startWorker(t, []config.Target{target("app", f)}, nil)
	for _, readOnly := range []bool{false, true} {
		user := mysqltest.Username("esc_")
		f.DropUserLater(user)
		res, pw := e.create("app", user, readOnly, "")
		wantOK(t, res)
		c, err := f.Login(user, pw)
		if err != nil {
			t.Fatal(err)
		}
		var v string
		if err := c.QueryRowContext(context.Background(), "SELECT v FROM `"+sibling+"`.secrets").Scan(&v); err == nil {
			t.Fatalf("account of %s (read_only=%v) read %s: %q", f.Database, readOnly, sibling, v)
		}
	}
}

// TestResetPasswordAndDelete: reset changes the password in force and keeps
// the grant; delete drops the account and ends its open sessions.
func TestResetPasswordAndDelete(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	user := mysqltest.Username("cycle_")
	f.DropUserLater(user)
	res, oldPW := e.create("app", user, true, "")
	wantOK(t, res)
	session, err := f.Login(user, oldPW)
	if err != nil {
		t.Fatal(err)
	}

	res, newPW := e.reset("app", user, "")
	wantOK(t, res)
	if *res.User != (wire.Account{Username: user, ReadOnly: true}) {
		t.Fatalf("reset result user %+v", res.User)
	}
	if newPW == oldPW {
		t.Fatal("reset kept the same password")
	}
	if err := f.CanLogin(user, oldPW); err == nil {
		t.Fatal("the old password still logs in after reset")
	}
	if err := f.CanLogin(user, newPW); err != nil {
		t.Fatalf("the new password does not log in: %v", err)
	}
	ctx := context.Background()
	if err := session.PingContext(ctx); err != nil {
		t.Fatalf("reset ended an open session: %v", err)
	}

	wantOK(t, e.job("app", "delete", map[string]any{"username": user}))
	if f.AccountExists(user) {
		t.Fatal("account exists after delete")
	}
	var one int
	if err := session.QueryRowContext(ctx, "SELECT 1").Scan(&one); err == nil {
		t.Fatal("the deleted account's open session still runs queries")
	}
}

// TestBackslashPassword: a chosen password with backslashes works under the
// default sql_mode and under NO_BACKSLASH_ESCAPES.
func TestBackslashPassword(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	noBackslash := target("nbe", f)
	noBackslash.DSN = secret.New(strings.TrimSuffix(f.AdminDSN, "/") + "/?sql_mode=%27NO_BACKSLASH_ESCAPES%27")
	e := startWorker(t, []config.Target{target("app", f), noBackslash}, nil)
	pw := `Back\slash\\end\` + `%_*&^$#@!~` + mysqltest.Token(6) + `\`
	for _, tg := range []string{"app", "nbe"} {
		t.Run(tg, func(t *testing.T) {
			user := mysqltest.Username("bs_")
			f.DropUserLater(user)
			res, _ := e.create(tg, user, false, pw)
			wantOK(t, res)
			if err := f.CanLogin(user, pw); err != nil {
				t.Fatalf("login with the backslash password: %v", err)
			}
			res, _ = e.reset(tg, user, pw+"2")
			wantOK(t, res)
			if err := f.CanLogin(user, pw+"2"); err != nil {
				t.Fatalf("login after reset with the backslash password: %v", err)
			}
		})
	}
}
