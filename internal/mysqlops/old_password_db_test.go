package mysqlops

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
)

// These tests run on the shared MariaDB as the fixture's least-privilege
// admin (contract §5.7: CREATE USER, PROCESS, CONNECTION ADMIN globally,
// SELECT on mysql.*, everything on the target's database), and log in with
// real connections to tell which passwords work.

func oldPwTarget(t *testing.T, f *mysqltest.Fixture, check PrivilegeCheck) *Target {
	t.Helper()
	db, err := OpenDB(secret.New(f.AdminDSN), DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, Options{Database: f.Database, Protected: []string{f.Protected}, Privileges: check})
}

// oldPwAccount creates a read-write account of the target and returns its
// name and password.
func oldPwAccount(t *testing.T, f *mysqltest.Fixture, tg *Target, prefix string) (string, string) {
	t.Helper()
	u, pw := mysqltest.Username(prefix), "pw0-"+mysqltest.Password()
	f.DropUserLater(u)
	if err := tg.Create(context.Background(), u, secret.New(pw), false, &noIntent{}, nil); err != nil {
		t.Fatalf("create %s: %v", u, err)
	}
	return u, pw
}

type noIntent struct{}

func (noIntent) Mine(context.Context) (bool, error)   { return false, nil }
func (noIntent) Record(context.Context) (bool, error) { return false, nil }
func (noIntent) Unsent()                              {}

// logsIn checks which passwords of user log in (a new connection each).
func logsIn(t *testing.T, f *mysqltest.Fixture, user string, yes []string, no []string) {
	t.Helper()
	for i, pw := range yes {
		if err := f.CanLogin(user, pw); err != nil {
			t.Errorf("%s: password %d of those that must log in is refused: %v", user, i, err)
		}
	}
	for i, pw := range no {
		if err := f.CanLogin(user, pw); !errors.Is(err, &mysql.MySQLError{Number: 1045}) {
			t.Errorf("%s: password %d of those that must not log in: %v, want 1045", user, i, err)
		}
	}
}

func credentialOf(t *testing.T, tg *Target, user string) Credential {
	t.Helper()
	creds, errs := tg.Credentials(context.Background(), []string{user})
	if errs[0] != nil {
		t.Fatalf("credential of %s: %v", user, errs[0])
	}
	return creds[0]
}

// authOrLen is how many entries mysql.global_priv holds under auth_or.
func authOrLen(t *testing.T, f *mysqltest.Fixture, user string) int {
	t.Helper()
	var n *int
	if err := f.Root.QueryRow("SELECT JSON_LENGTH(Priv, '$.auth_or') FROM mysql.global_priv WHERE Host = '%' AND User = ?", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == nil {
		return 0
	}
	return *n
}

// TestKeepOldResetAndDiscard: after a keep-old reset both passwords log
// in, the account is still the target's (its SHOW GRANTS read as such),
// List and OldPasswords show the old one, a redelivered reset keeps the
// same old one, and after the discard only the new one logs in; open
// sessions are untouched throughout.
func TestKeepOldResetAndDiscard(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := oldPwTarget(t, f, PrivilegeCheck{Enabled: true})
	u, pw0 := oldPwAccount(t, f, tg, "keep_")
	other, otherPW := oldPwAccount(t, f, tg, "plain_")
	session, err := f.Login(u, pw0)
	if err != nil {
		t.Fatal(err)
	}

	old := credentialOf(t, tg, u)
	if old.Plugin != "mysql_native_password" || !strings.HasPrefix(old.Hash.Reveal(), "*") {
		t.Fatalf("credential %s %d bytes, want a native hash", old.Plugin, old.Hash.Len())
	}
	pw1 := "pw1-" + mysqltest.Password()
	readyCalled := false
	acct, err := tg.ResetPasswordKeepOld(ctx, u, secret.New(pw1), old, func(context.Context) error { readyCalled = true; return nil })
	if err != nil || !acct.OldPassword || acct.ReadOnly || !readyCalled {
		t.Fatalf("keep-old reset: %+v %v (ready called: %v)", acct, err, readyCalled)
	}
	logsIn(t, f, u, []string{pw0, pw1}, nil)

	// SHOW GRANTS now prints two methods; the account is the target's.
	lines, err := tg.grantLines(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lines[0], " OR mysql_native_password USING '") {
		t.Fatalf("SHOW GRANTS does not show two methods (line of %d bytes)", len(lines[0]))
	}
	if st := classifyGrants(lines, f.Database, escapePattern(f.Database), false); st.foreign || !st.granted || !st.oldPassword {
		t.Fatalf("the real grant lines classify as %+v", st)
	}
	accts, _, err := tg.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accts {
		if a.OldPassword != (a.Username == u) {
			t.Errorf("list: %+v", a)
		}
	}
	held, err := tg.OldPasswords(ctx, []string{u, other, "nobody_" + mysqltest.Token(6)})
	if err != nil || len(held) != 1 || !held[u] {
		t.Fatalf("OldPasswords = %v, %v", held, err)
	}

	// A redelivered job keeps the hash recorded before the job, not its
	// own new password's.
	if _, err := tg.ResetPasswordKeepOld(ctx, u, secret.New(pw1), old, nil); err != nil {
		t.Fatal(err)
	}
	logsIn(t, f, u, []string{pw0, pw1}, nil)
	if n := authOrLen(t, f, u); n != 2 {
		t.Fatalf("auth_or holds %d entries, want 2", n)
	}

	acct, err = tg.DiscardOldPassword(ctx, u)
	if err != nil || acct.OldPassword {
		t.Fatalf("discard: %+v %v", acct, err)
	}
	logsIn(t, f, u, []string{pw1}, []string{pw0})
	if err := session.PingContext(ctx); err != nil {
		t.Errorf("the session opened with the old password ended: %v", err)
	}
	if _, err := session.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Errorf("the session opened with the old password ended: %v", err)
	}
	// Harmless when there is none, and on an account that never had one.
	for _, name := range []string{u, other} {
		if _, err := tg.DiscardOldPassword(ctx, name); err != nil {
			t.Errorf("discard without an old password: %v", err)
		}
	}
	logsIn(t, f, u, []string{pw1}, []string{pw0})
	logsIn(t, f, other, []string{otherPW}, nil)
	if held, err := tg.OldPasswords(ctx, []string{u}); err != nil || held[u] {
		t.Fatalf("OldPasswords after the discard = %v, %v", held, err)
	}

	// The rules of reset_password hold.
	for _, tc := range []struct {
		user string
		want error
	}{{f.Protected, ErrProtected}, {f.Admin, ErrForeign}, {"nobody_" + mysqltest.Token(6), ErrUserNotFound}} {
		if _, err := tg.ResetPasswordKeepOld(ctx, tc.user, secret.New(pw1), old, nil); !errors.Is(err, tc.want) {
			t.Errorf("keep-old reset of %s: %v, want %v", tc.user, err, tc.want)
		}
		if _, err := tg.DiscardOldPassword(ctx, tc.user); !errors.Is(err, tc.want) {
			t.Errorf("discard of %s: %v, want %v", tc.user, err, tc.want)
		}
		if _, errs := tg.Credentials(ctx, []string{tc.user}); !errors.Is(errs[0], tc.want) {
			t.Errorf("credentials of %s: %v, want %v", tc.user, errs[0], tc.want)
		}
	}
	if _, err := tg.ResetPasswordKeepOld(ctx, u, secret.New(pw1), Credential{}, nil); err == nil {
		t.Error("a keep-old reset without a credential to keep ran")
	}
}

// TestKeepOldKeepsOnlyTheLatest: an account that already holds an old
// password keeps only the one given (the password in force before this
// reset): the oldest stops.
func TestKeepOldKeepsOnlyTheLatest(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := oldPwTarget(t, f, PrivilegeCheck{})
	u, pw0 := oldPwAccount(t, f, tg, "latest_")
	pw1, pw2 := "pw1-"+mysqltest.Password(), "pw2-"+mysqltest.Password()

	if _, err := tg.ResetPasswordKeepOld(ctx, u, secret.New(pw1), credentialOf(t, tg, u), nil); err != nil {
		t.Fatal(err)
	}
	cur := credentialOf(t, tg, u) // pw1's hash, the first method
	if _, err := tg.ResetPasswordKeepOld(ctx, u, secret.New(pw2), cur, nil); err != nil {
		t.Fatal(err)
	}
	logsIn(t, f, u, []string{pw2, pw1}, []string{pw0})
	if n := authOrLen(t, f, u); n != 2 {
		t.Fatalf("auth_or holds %d entries, want 2", n)
	}
}

// TestPlainResetDropsTheOld: ALTER USER … IDENTIFIED BY alone, for one
// account and for many in one statement, ends an old password on MariaDB.
func TestPlainResetDropsTheOld(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := oldPwTarget(t, f, PrivilegeCheck{})
	var changes []Change
	var before []string
	for range 3 {
		u, pw0 := oldPwAccount(t, f, tg, "drop_")
		pw1 := "pw1-" + mysqltest.Password()
		if _, err := tg.ResetPasswordKeepOld(ctx, u, secret.New(pw1), credentialOf(t, tg, u), nil); err != nil {
			t.Fatal(err)
		}
		logsIn(t, f, u, []string{pw0, pw1}, nil)
		changes = append(changes, Change{Username: u, Password: secret.New("pw2-" + mysqltest.Password())})
		before = append(before, pw0, pw1)
	}
	if acct, err := tg.ResetPassword(ctx, changes[0].Username, changes[0].Password, nil); err != nil || acct.OldPassword {
		t.Fatalf("plain reset: %+v %v", acct, err)
	}
	_, errs := tg.ResetPasswords(ctx, changes[1:])
	for i, c := range changes {
		if i > 0 && errs[i-1] != nil {
			t.Fatalf("many-account reset of %s: %v", c.Username, errs[i-1])
		}
		logsIn(t, f, c.Username, []string{c.Password.Reveal()}, before[2*i:2*i+2])
		if n := authOrLen(t, f, c.Username); n > 1 {
			t.Errorf("%s: auth_or holds %d entries after a plain reset", c.Username, n)
		}
	}
}

// TestManyAccountsKeepOld: Credentials and ResetPasswordsKeepOld for many
// accounts at once keep each account's own old password beside its new
// one; the accounts that are not the target's get the one-account answers
// and are left alone; DiscardOldPasswords ends them, and passes over an
// account without one.
func TestManyAccountsKeepOld(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := oldPwTarget(t, f, PrivilegeCheck{Enabled: true})
	foreign, foreignPW := oldPwAccount(t, other, oldPwTarget(t, other, PrivilegeCheck{}), "foreign_")

	var names, pw0s []string
	for range 5 {
		u, pw0 := oldPwAccount(t, f, tg, "many_")
		names, pw0s = append(names, u), append(pw0s, pw0)
	}
	missing := "nobody_" + mysqltest.Token(6)
	all := append(append([]string{}, names...), f.Protected, foreign, missing)
	creds, errs := tg.Credentials(ctx, all)
	for i, want := range []error{nil, nil, nil, nil, nil, ErrProtected, ErrForeign, ErrUserNotFound} {
		if want == nil && (errs[i] != nil || creds[i].IsZero()) || want != nil && (!errors.Is(errs[i], want) || !creds[i].IsZero()) {
			t.Errorf("credentials of %s: %v (zero: %v), want %v", all[i], errs[i], creds[i].IsZero(), want)
		}
	}

	changes := make([]Change, len(all))
	for i, u := range all {
		changes[i] = Change{Username: u, Password: secret.New("pw1-" + mysqltest.Password())}
	}
	accts, errs := tg.ResetPasswordsKeepOld(ctx, changes, creds)
	for i, want := range []error{nil, nil, nil, nil, nil, ErrProtected, ErrForeign, ErrUserNotFound} {
		if !errors.Is(errs[i], want) || (want == nil) != accts[i].OldPassword {
			t.Errorf("keep-old reset of %s: %+v %v, want %v", all[i], accts[i], errs[i], want)
		}
	}
	for i, u := range names {
		logsIn(t, f, u, []string{pw0s[i], changes[i].Password.Reveal()}, nil)
	}
	logsIn(t, other, foreign, []string{foreignPW}, []string{changes[6].Password.Reveal()})

	if _, errs := tg.ResetPasswordsKeepOld(ctx, changes[:2], creds[:1]); errs[0] == nil || errs[1] == nil {
		t.Fatalf("mismatched credentials accepted: %v", errs)
	}

	// Discard: the first four have an old password, plain has none.
	plain, plainPW := oldPwAccount(t, f, tg, "none_")
	discard := []Change{{Username: names[0]}, {Username: names[1]}, {Username: plain}, {Username: names[2]}, {Username: names[3]}, {Username: foreign}}
	accts, errs = tg.DiscardOldPasswords(ctx, discard)
	for i, c := range discard {
		want := error(nil)
		if c.Username == foreign {
			want = ErrForeign
		}
		if !errors.Is(errs[i], want) || accts[i].OldPassword {
			t.Errorf("discard of %s: %+v %v, want %v", c.Username, accts[i], errs[i], want)
		}
	}
	for i := range 4 {
		logsIn(t, f, names[i], []string{changes[i].Password.Reveal()}, []string{pw0s[i]})
	}
	logsIn(t, f, plain, []string{plainPW}, nil)
	logsIn(t, f, names[4], []string{pw0s[4], changes[4].Password.Reveal()}, nil) // not in the discard
	held, err := tg.OldPasswords(ctx, append(names, plain))
	if err != nil || len(held) != 1 || !held[names[4]] {
		t.Fatalf("OldPasswords = %v, %v", held, err)
	}
}

// TestAdminWithTwoPasswords: an admin account whose own password is being
// rotated the same way (two methods on its USAGE line) passes the
// privilege check, logged in with either password.
func TestAdminWithTwoPasswords(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	var hash string
	if err := f.Root.QueryRow("SELECT JSON_VALUE(Priv, '$.authentication_string') FROM mysql.global_priv WHERE Host = '%' AND User = ?", f.Admin).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	newPW := mysqltest.Password()
	f.Exec("ALTER USER ?@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD(?) OR mysql_native_password USING ?", f.Admin, newPW, hash)
	logsIn(t, f, f.Admin, []string{f.AdminPassword, newPW}, nil)

	for i, pw := range []string{f.AdminPassword, newPW} {
		fx := *f
		fx.AdminDSN = strings.Replace(f.AdminDSN, ":"+f.AdminPassword+"@", ":"+pw+"@", 1)
		tg := oldPwTarget(t, &fx, PrivilegeCheck{Enabled: true})
		rep, err := tg.VerifyPrivileges(ctx)
		if err != nil || len(rep.Excess) != 0 {
			t.Fatalf("admin logged in with password %d: %+v %v", i, rep, err)
		}
		if _, _, err := tg.List(ctx, "", 10); err != nil {
			t.Fatalf("list as the admin with two passwords: %v", err)
		}
	}
}

// alterCount is how many ALTER USER statements tg's one connection has run.
func alterCount(t *testing.T, tg *Target) int {
	t.Helper()
	var name string
	var n int
	if err := tg.db.QueryRow("SHOW SESSION STATUS LIKE 'Com_alter_user'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestManyAccountsOneStatement: a keep-old reset and a discard of many
// accounts send one ALTER USER each (counted on the target's only
// connection), not one per account.
func TestManyAccountsOneStatement(t *testing.T) {
	ctx := context.Background()
	// A name without _ or %: no pattern check, which would need a second
	// connection while grantsMany's rows are open.
	f := mysqltest.NewFixture(t, mysqltest.Options{Database: "dbuone" + mysqltest.Token(8)})
	tg := oldPwTarget(t, f, PrivilegeCheck{})
	tg.db.SetMaxOpenConns(1)
	var names []string
	for range 4 {
		u, _ := oldPwAccount(t, f, tg, "one_")
		names = append(names, u)
	}
	creds, errs := tg.Credentials(ctx, names)
	changes := make([]Change, len(names))
	for i, u := range names {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		changes[i] = Change{Username: u, Password: secret.New("pw1-" + mysqltest.Password())}
	}
	n0 := alterCount(t, tg)
	if _, errs := tg.ResetPasswordsKeepOld(ctx, changes, creds); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	n1 := alterCount(t, tg)
	if _, errs := tg.DiscardOldPasswords(ctx, changes); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	n2 := alterCount(t, tg)
	if _, errs := tg.DiscardOldPasswords(ctx, changes); errors.Join(errs...) != nil {
		t.Fatal(errors.Join(errs...))
	}
	n3 := alterCount(t, tg)
	if n1-n0 != 1 || n2-n1 != 1 || n3-n2 != 0 {
		t.Fatalf("ALTER USER statements: keep-old %d, discard %d, discard of none %d; want 1, 1, 0", n1-n0, n2-n1, n3-n2)
	}
}

// TestKeepingCurrentReadsRecordsAndKeeps: ResetPasswordsKeepingCurrent
// hears each owned account's credential in force before its statement,
// and whether it holds an old password then, keeps the credential beside
// the new password (dropping the older one), leaves out an account whose
// record failed, and answers the others' outcomes as a reset would.
func TestKeepingCurrentReadsRecordsAndKeeps(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := oldPwTarget(t, f, PrivilegeCheck{Enabled: true})
	var names, pw0s []string
	for range 3 {
		u, pw0 := oldPwAccount(t, f, tg, "cur_")
		names, pw0s = append(names, u), append(pw0s, pw0)
	}
	// names[1] holds an old password already: the statement drops it.
	older := pw0s[1]
	pw0s[1] = "pwk-" + mysqltest.Password()
	if _, err := tg.ResetPasswordKeepOld(ctx, names[1], secret.New(pw0s[1]), credentialOf(t, tg, names[1]), nil); err != nil {
		t.Fatal(err)
	}
	before := make([]Credential, len(names))
	for i, u := range names {
		before[i] = credentialOf(t, tg, u)
	}
	missing := "nobody_" + mysqltest.Token(6)
	all := append(append([]string{}, names...), f.Protected, missing)
	changes := make([]Change, len(all))
	for i, u := range all {
		changes[i] = Change{Username: u, Password: secret.New("pw1-" + mysqltest.Password())}
	}
	refused := errors.New("record refused")
	var heard []int
	accts, errs := tg.ResetPasswordsKeepingCurrent(ctx, changes, func(_ context.Context, idx []int, creds []Credential, holdsOld []bool) []error {
		out := make([]error, len(idx))
		for k, i := range idx {
			heard = append(heard, i)
			if creds[k].Hash.Reveal() != before[i].Hash.Reveal() || creds[k].Plugin != before[i].Plugin {
				t.Errorf("record of %s heard another credential than the one in force", all[i])
			}
			if holdsOld[k] != (i == 1) {
				t.Errorf("record of %s heard holdsOld %v, want %v", all[i], holdsOld[k], i == 1)
			}
			if i == 2 {
				out[k] = refused
			}
		}
		return out
	})
	if len(heard) != 3 {
		t.Fatalf("record heard accounts %v, want the three owned ones", heard)
	}
	for i, want := range []error{nil, nil, refused, ErrProtected, ErrUserNotFound} {
		if !errors.Is(errs[i], want) || (want == nil) != accts[i].OldPassword {
			t.Errorf("%s: %+v %v, want %v", all[i], accts[i], errs[i], want)
		}
	}
	for i := range 2 {
		logsIn(t, f, names[i], []string{pw0s[i], changes[i].Password.Reveal()}, nil)
	}
	logsIn(t, f, names[1], nil, []string{older})
	logsIn(t, f, names[2], []string{pw0s[2]}, []string{changes[2].Password.Reveal()})
}

// TestCredentialFromGrantsIsTheAccountsTables: the credential in force
// that a keep-old reset reads from SHOW GRANTS (MariaDB) is the one
// mysql.global_priv holds, for each form of authentication an account of
// the target can have: one password, a kept old one beside it, a socket
// first, and after a plain reset replaced them.
func TestCredentialFromGrantsIsTheAccountsTables(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := oldPwTarget(t, f, PrivilegeCheck{})
	fl, err := tg.detect(ctx)
	if err != nil || fl != flavorMariaDB {
		t.Skipf("SHOW GRANTS shows credentials on MariaDB only (flavor %v, %v)", fl, err)
	}
	one, _ := oldPwAccount(t, f, tg, "one_")
	kept, _ := oldPwAccount(t, f, tg, "kept_")
	if _, err := tg.ResetPasswordKeepOld(ctx, kept, secret.New("pw1-"+mysqltest.Password()), credentialOf(t, tg, kept), nil); err != nil {
		t.Fatal(err)
	}
	socket, _ := oldPwAccount(t, f, tg, "sock_")
	if _, err := f.Root.Exec("ALTER USER ?@'%' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD(?)", socket, "pw2-"+mysqltest.Password()); err != nil {
		t.Fatal(err)
	}
	replaced, _ := oldPwAccount(t, f, tg, "repl_")
	if _, err := tg.ResetPasswordKeepOld(ctx, replaced, secret.New("pw3-"+mysqltest.Password()), credentialOf(t, tg, replaced), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.ResetPassword(ctx, replaced, secret.New("pw4-"+mysqltest.Password()), nil); err != nil {
		t.Fatal(err)
	}

	users := []string{one, kept, socket, replaced}
	changes := make([]Change, len(users))
	for i, u := range users {
		changes[i] = Change{Username: u}
	}
	_, _, owned, states := tg.ownedStates(ctx, changes)
	if len(owned) != len(users) {
		t.Fatalf("%d of %d accounts owned", len(owned), len(users))
	}
	auth, err := tg.readAuth(ctx, fl, users)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		st, a := states[u], auth[u]
		if !st.currentKnown {
			t.Errorf("%s: SHOW GRANTS does not show the credential in force whole", u)
			continue
		}
		if st.current.Plugin != a.current.Plugin || st.current.Hash.Reveal() != a.current.Hash.Reveal() {
			t.Errorf("%s: SHOW GRANTS gives %s (%d bytes), mysql.global_priv %s (%d bytes)",
				u, st.current.Plugin, st.current.Hash.Len(), a.current.Plugin, a.current.Hash.Len())
		}
	}
}
