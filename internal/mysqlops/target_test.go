package mysqlops_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
)

// testIntent is an in-memory intent record; mine says an earlier attempt
// recorded it.
type testIntent struct {
	mine, recorded bool
	unsent         int // Unsent calls
}

func (i *testIntent) Mine(context.Context) (bool, error) { return i.mine || i.recorded, nil }
func (i *testIntent) Record(context.Context) (bool, error) {
	earlier := i.mine || i.recorded
	i.recorded = true
	return earlier, nil
}
func (i *testIntent) Unsent() { i.unsent++ }

func fresh() *testIntent { return &testIntent{} }
func mine() *testIntent  { return &testIntent{mine: true} }

func newTarget(t *testing.T, f *mysqltest.Fixture) *mysqlops.Target {
	t.Helper()
	db, err := mysqlops.OpenDB(secret.New(f.AdminDSN), mysqlops.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return mysqlops.New(db, mysqlops.Options{Database: f.Database, Protected: []string{f.Protected}})
}

func TestCreateResetDeleteList(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	rw, ro := mysqltest.Username("rw_"), mysqltest.Username("ro_")
	f.DropUserLater(rw)
	f.DropUserLater(ro)

	if err := tg.Create(ctx, rw, secret.New("pw-rw-"+mysqltest.Password()), false, fresh(), nil); err != nil {
		t.Fatalf("create rw: %v", err)
	}
	if err := tg.Create(ctx, ro, secret.New("pw-ro-"+mysqltest.Password()), true, fresh(), nil); err != nil {
		t.Fatalf("create ro: %v", err)
	}
	if err := tg.Create(ctx, rw, secret.New("x"+mysqltest.Password()), false, fresh(), nil); !errors.Is(err, mysqlops.ErrUserExists) {
		t.Fatalf("second create: got %v, want ErrUserExists", err)
	}

	accts, next, err := tg.List(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if next != "" {
		t.Errorf("next = %q, want empty", next)
	}
	got := map[string]mysqlops.Account{}
	for _, a := range accts {
		got[a.Username] = a
	}
	want := []mysqlops.Account{
		{Username: f.Protected, Protected: true},
		{Username: rw},
		{Username: ro, ReadOnly: true},
	}
	if len(accts) != len(want) {
		t.Fatalf("list = %+v, want %d accounts", accts, len(want))
	}
	for _, w := range want {
		if got[w.Username] != w {
			t.Errorf("list entry %q = %+v, want %+v", w.Username, got[w.Username], w)
		}
	}
	for i := 1; i < len(accts); i++ {
		if accts[i-1].Username >= accts[i].Username {
			t.Errorf("list not sorted: %q before %q", accts[i-1].Username, accts[i].Username)
		}
	}

	page, next, err := tg.List(ctx, "", 2)
	if err != nil || len(page) != 2 || next != page[1].Username {
		t.Fatalf("page 1 = %+v next %q err %v", page, next, err)
	}
	page2, next2, err := tg.List(ctx, next, 2)
	if err != nil || len(page2) != 1 || next2 != "" || page2[0].Username <= next {
		t.Fatalf("page 2 = %+v next %q err %v", page2, next2, err)
	}

	if _, err := tg.ResetPassword(ctx, f.Protected, secret.New(mysqltest.Password()), nil); !errors.Is(err, mysqlops.ErrProtected) {
		t.Errorf("reset protected: %v", err)
	}
	if _, err := tg.ResetPassword(ctx, mysqltest.Username("nobody_"), secret.New(mysqltest.Password()), nil); !errors.Is(err, mysqlops.ErrUserNotFound) {
		t.Errorf("reset missing: %v", err)
	}
	if _, err := tg.ResetPassword(ctx, f.Admin, secret.New(mysqltest.Password()), nil); !errors.Is(err, mysqlops.ErrForeign) {
		t.Errorf("reset admin: %v", err)
	}
	newPW := "new-" + mysqltest.Password()
	if acct, err := tg.ResetPassword(ctx, ro, secret.New(newPW), nil); err != nil || !acct.ReadOnly {
		t.Fatalf("reset ro: %+v %v", acct, err)
	}
	if _, err := f.Login(ro, newPW); err != nil {
		t.Fatalf("login with new password: %v", err)
	}
	in := fresh()
	if _, err := tg.Delete(ctx, rw, in); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if !in.recorded {
		t.Fatal("delete did not record its intent before DROP USER")
	}
	if f.AccountExists(rw) {
		t.Fatal("account still exists after delete")
	}
	if _, err := tg.Delete(ctx, rw, fresh()); !errors.Is(err, mysqlops.ErrUserNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := tg.Delete(ctx, rw, mine()); err != nil {
		t.Errorf("redelivered delete of the account it dropped: %v", err)
	}
}

func TestCreateResumeAdoptsHalfMadeAccount(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	u := mysqltest.Username("half_")
	f.DropUserLater(u)
	// An earlier attempt died between CREATE USER and GRANT.
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, "old-"+mysqltest.Password())

	if err := tg.Create(ctx, u, secret.New(mysqltest.Password()), false, fresh(), nil); !errors.Is(err, mysqlops.ErrUserExists) {
		t.Fatalf("create of another job's account: %v", err)
	}
	if err := tg.Abandon(ctx, u, fresh()); err != nil || !f.AccountExists(u) {
		t.Fatalf("a job that made nothing dropped the account: %v", err)
	}
	pw := "adopted-" + mysqltest.Password()
	if err := tg.Create(ctx, u, secret.New(pw), true, mine(), nil); err != nil {
		t.Fatalf("resume: %v", err)
	}
	c, err := f.Login(u, pw)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.ExecContext(ctx, "CREATE TABLE t (id int)"); err == nil {
		t.Error("read-only account created a table")
	}
}

func TestForeignAccountsAreNeverTouched(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)

	two := mysqltest.Username("two_") // grants on both databases
	f.DropUserLater(two)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", two, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", two)
	f.Exec("GRANT SELECT ON `"+other.Database+"`.* TO ?@'%'", two)

	glob := mysqltest.Username("glob_") // a global privilege
	f.DropUserLater(glob)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", glob, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", glob)
	f.Exec("GRANT PROCESS ON *.* TO ?@'%'", glob)

	tbl := mysqltest.Username("tbl_") // a table privilege elsewhere
	f.DropUserLater(tbl)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", tbl, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", tbl)
	f.Exec("CREATE TABLE `" + other.Database + "`.secrets (id int)")
	f.Exec("GRANT SELECT ON `"+other.Database+"`.secrets TO ?@'%'", tbl)

	col := mysqltest.Username("col_") // a column privilege elsewhere
	f.DropUserLater(col)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", col, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", col)
	f.Exec("GRANT SELECT (id) ON `"+other.Database+"`.secrets TO ?@'%'", col)

	role := mysqltest.Username("role_") // a role, which may carry anything
	roleName := mysqltest.Username("r_")
	f.DropUserLater(role)
	t.Cleanup(func() { _, _ = f.Root.Exec("DROP ROLE IF EXISTS " + roleName) })
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", role, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", role)
	f.Exec("CREATE ROLE " + roleName)
	f.Exec("GRANT "+roleName+" TO ?@'%'", role)

	local := mysqltest.Username("local_") // same name on another host
	f.DropUserLater(local)
	t.Cleanup(func() { _, _ = f.Root.Exec("DROP USER IF EXISTS ?@'localhost'", local) })
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", local, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", local)
	f.Exec("CREATE USER ?@'localhost' IDENTIFIED BY ?", local, mysqltest.Password())

	// A reset touches only username@'%'; its namesake on another host is
	// a different account, left as it is.
	if _, err := tg.ResetPassword(ctx, local, secret.New(mysqltest.Password()), nil); err != nil {
		t.Errorf("reset %s@'%%' beside %s@localhost: %v", local, local, err)
	}
	// A delete ends every session of the name, so a namesake makes it foreign.
	if _, err := tg.Delete(ctx, local, mine()); !errors.Is(err, mysqlops.ErrForeign) {
		t.Errorf("delete %s with a namesake on another host: %v, want ErrForeign", local, err)
	}
	for _, u := range []string{two, glob, tbl, col, role, other.Protected, other.Admin, f.Admin} {
		if _, err := tg.ResetPassword(ctx, u, secret.New(mysqltest.Password()), nil); !errors.Is(err, mysqlops.ErrForeign) {
			t.Errorf("reset %s: %v, want ErrForeign", u, err)
		}
		if _, err := tg.Delete(ctx, u, mine()); err == nil {
			t.Errorf("delete %s succeeded", u)
		}
		if !f.AccountExists(u) {
			t.Errorf("%s was dropped", u)
		}
	}
	accts, _, err := tg.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(accts) != 1 || accts[0].Username != f.Protected {
		t.Errorf("list = %+v, want only the protected user", accts)
	}
}

// TestProtectedUserIsNeverTakenOver: even a job whose intent record says
// it made the account cannot adopt, reset or drop a protected user.
func TestProtectedUserIsNeverTakenOver(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	if err := tg.Create(ctx, f.Protected, secret.New("x"+mysqltest.Password()), false, mine(), nil); !errors.Is(err, mysqlops.ErrUserExists) {
		t.Fatalf("create over the protected user: %v", err)
	}
	if err := tg.Abandon(ctx, f.Protected, mine()); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Delete(ctx, f.Protected, mine()); !errors.Is(err, mysqlops.ErrProtected) {
		t.Fatalf("delete of the protected user: %v", err)
	}
	if !f.AccountExists(f.Protected) {
		t.Fatal("the protected user was dropped")
	}
}

// TestAbandonDropsOnlyItsOwnHalfMadeAccount: a create that gives up drops
// the account it may have made, and nothing when the intent is not its own.
func TestAbandonDropsOnlyItsOwnHalfMadeAccount(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	u := mysqltest.Username("aband_")
	f.DropUserLater(u)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, mysqltest.Password()) // CREATE ran, GRANT never did
	if err := tg.Abandon(ctx, u, fresh()); err != nil || !f.AccountExists(u) {
		t.Fatalf("abandon without intent: err %v, exists %v", err, f.AccountExists(u))
	}
	if err := tg.Abandon(ctx, u, mine()); err != nil || f.AccountExists(u) {
		t.Fatalf("abandon with intent: err %v, exists %v", err, f.AccountExists(u))
	}
}

// TestListReadsEveryGrantOfTheDatabase: an account's grants on the
// database's name and on its escaped pattern are one account's privileges;
// a write privilege on either makes it read-write. An account whose only
// privileges are in the database, without SELECT on all of it (a write
// privilege alone, or a table's privileges), belongs to the target too:
// list shows it, read-write as reset and delete see it.
func TestListReadsEveryGrantOfTheDatabase(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	mixed, noSelect, tableOnly := mysqltest.Username("mix_"), mysqltest.Username("nosel_"), mysqltest.Username("tbl_")
	for _, u := range []string{mixed, noSelect, tableOnly} {
		f.DropUserLater(u)
		f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, mysqltest.Password())
	}
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", mixed)
	f.Exec("GRANT INSERT ON `"+mysqltest.EscapePattern(f.Database)+"`.* TO ?@'%'", mixed)
	f.Exec("GRANT INSERT ON `"+mysqltest.EscapePattern(f.Database)+"`.* TO ?@'%'", noSelect)
	f.Exec("CREATE TABLE `" + f.Database + "`.t (x INT)")
	f.Exec("GRANT SELECT ON `"+f.Database+"`.t TO ?@'%'", tableOnly)

	accts, next, err := tg.List(ctx, "", 100)
	if err != nil || next != "" {
		t.Fatalf("list: %v (next %q)", err, next)
	}
	got := map[string]bool{}
	for _, a := range accts {
		got[a.Username] = a.ReadOnly
	}
	for _, u := range []string{mixed, noSelect, tableOnly} {
		if ro, ok := got[u]; !ok || ro {
			t.Errorf("%s listed %v, read-only %v; want listed read-write", u, ok, ro)
		}
	}
	// What list shows, reset takes.
	if _, err := tg.ResetPassword(ctx, tableOnly, secret.New(mysqltest.Password()), nil); err != nil {
		t.Errorf("reset of listed %s: %v", tableOnly, err)
	}
}

// TestListPagesPastOutsiders: accounts that hold privileges elsewhere are
// left out without shortening a page, and the cursor walks every account
// exactly once.
func TestListPagesPastOutsiders(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	prefix := mysqltest.Username("pg_")[:10]
	var want []string
	for i := range 9 {
		u := fmt.Sprintf("%s_%02d", prefix, i)
		f.DropUserLater(u)
		f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, mysqltest.Password())
		f.Exec("GRANT SELECT ON `"+mysqltest.EscapePattern(f.Database)+"`.* TO ?@'%'", u)
		if i%3 == 1 { // every third one also reads another database
			f.Exec("GRANT SELECT ON `"+mysqltest.EscapePattern(other.Database)+"`.* TO ?@'%'", u)
			continue
		}
		want = append(want, u)
	}
	var got []string
	after := prefix
	for page := 0; ; page++ {
		accts, next, err := tg.List(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range accts {
			if strings.HasPrefix(a.Username, prefix) {
				got = append(got, a.Username)
			}
		}
		if next == "" {
			break
		}
		if len(accts) != 2 {
			t.Fatalf("page %d has %d accounts and a next cursor, want 2", page, len(accts))
		}
		after = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("listed %q, want %q", got, want)
	}
}

// TestRefusedLoginWithSourcedPassword: MySQL refusing the admin's login
// (1045) is permanent when the password is the DSN's, which only a restart
// changes, and transient, with nothing sent, when it comes from a password
// source, which may be half way through a rotation. Neither error shows a
// password.
func TestRefusedLoginWithSourcedPassword(t *testing.T) {
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	wrong := mysqltest.Password()
	tests := []struct {
		name      string
		dsn       string
		opts      mysqlops.DBOptions
		want      mysqlops.Class
		wantLogin bool // a *LoginRefusedError
	}{
		{"password in the DSN", f.DSN(f.Admin, wrong), mysqlops.DBOptions{}, mysqlops.Permanent, false},
		{"password from a source", f.DSN(f.Admin, ""), mysqlops.DBOptions{
			PasswordSource: func() (secret.Secret, error) { return secret.New(wrong), nil },
		}, mysqlops.Transient, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := mysqlops.OpenDB(secret.New(tt.dsn), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			err = db.PingContext(t.Context())
			if err == nil {
				t.Fatal("logged in with a wrong password")
			}
			var lre *mysqlops.LoginRefusedError
			if got := mysqlops.Classify(err); got != tt.want || errors.As(err, &lre) != tt.wantLogin ||
				mysqlops.NothingSent(err) != tt.wantLogin {
				t.Fatalf("ping = %v: class %v, login refused %v, nothing sent %v; want %v, %v, %v",
					err, got, errors.As(err, &lre), mysqlops.NothingSent(err), tt.want, tt.wantLogin, tt.wantLogin)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestCreateFindsItsEarlierAttemptsAccount: an attempt's CREATE USER whose
// outcome was unknown may run on the server after the next attempt looked
// (here the account appears between the check and the CREATE, while ready
// runs). When an earlier attempt of the job recorded the intent, the
// CREATE's 1396 may be this job's own account: an Unknown error, and the
// next attempt completes it. When none did, the account is someone
// else's: user_exists, and it is left alone.
func TestCreateFindsItsEarlierAttemptsAccount(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	tests := []struct {
		name       string
		intent     *testIntent
		wantExists bool
	}{
		{"recorded by an earlier attempt", mine(), false},
		{"first attempt of the job", fresh(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, pw := mysqltest.Username("race_"), mysqltest.Password()
			f.DropUserLater(u)
			meanwhile := func(context.Context) error {
				f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, mysqltest.Password())
				return nil
			}
			err := tg.Create(ctx, u, secret.New(pw), false, tt.intent, meanwhile)
			if tt.wantExists {
				if !errors.Is(err, mysqlops.ErrUserExists) {
					t.Fatalf("create = %v, want user_exists", err)
				}
				if f.CanLogin(u, pw) == nil {
					t.Fatal("someone else's account took this job's password")
				}
				if tt.intent.unsent != 1 {
					t.Fatalf("Unsent called %d times, want once: the server refused the CREATE USER", tt.intent.unsent)
				}
				return
			}
			if errors.Is(err, mysqlops.ErrUserExists) || mysqlops.Classify(err) != mysqlops.Unknown {
				t.Fatalf("create = %v (%v), want an unknown outcome to look at again", err, mysqlops.Classify(err))
			}
			if err := tg.Create(ctx, u, secret.New(pw), false, tt.intent, nil); err != nil {
				t.Fatalf("the next attempt: %v", err)
			}
			if err := f.CanLogin(u, pw); err != nil {
				t.Fatalf("the completed account does not log in: %v", err)
			}
			accts, _, err := tg.List(ctx, "", mysqlops.MaxListLimit)
			if err != nil || !slices.ContainsFunc(accts, func(a mysqlops.Account) bool { return a.Username == u && !a.ReadOnly }) {
				t.Fatalf("list %v: %s is not listed read-write (err %v)", accts, u, err)
			}
		})
	}
}
