package mysqlops_test

import (
	"context"
	"errors"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
)

// sendingIntent is an intent record that, as the worker's, forgets a
// statement that did not run (Unsent).
type sendingIntent struct{ testIntent }

func (i *sendingIntent) Mine(context.Context) (bool, error) { return i.recorded && i.unsent == 0, nil }

func recordAll[I mysqlops.Intent](intents []I) mysqlops.Record {
	return func(ctx context.Context, idx []int) error {
		for _, i := range idx {
			if _, err := intents[i].Record(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestManyAccountStatements: one statement for many accounts gives each
// account what its one-account operation would: the new ones exist with
// their grant and password, the ones that are not the target's are left
// alone with the outcome their one-account operation gives.
func TestManyAccountStatements(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)

	foreign := mysqltest.Username("frn_")
	f.DropUserLater(foreign)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", foreign, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+other.Database+"`.* TO ?@'%'", foreign)
	taken := mysqltest.Username("tkn_")
	f.DropUserLater(taken)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", taken, mysqltest.Password())

	var changes []mysqlops.Change
	var intents []*testIntent
	for i := range 5 {
		u := mysqltest.Username("many_")
		f.DropUserLater(u)
		in := fresh()
		intents = append(intents, in)
		changes = append(changes, mysqlops.Change{Username: u, Password: secret.New(mysqltest.Password()), ReadOnly: i%2 == 1, Intent: in})
	}
	for _, u := range []string{taken, f.Protected} {
		in := fresh()
		intents = append(intents, in)
		changes = append(changes, mysqlops.Change{Username: u, Password: secret.New(mysqltest.Password()), Intent: in})
	}

	errs := tg.CreateMany(ctx, changes, recordAll(intents))
	for i, c := range changes[:5] {
		if errs[i] != nil {
			t.Fatalf("create %s: %v", c.Username, errs[i])
		}
		if err := f.CanLogin(c.Username, c.Password.Reveal()); err != nil {
			t.Errorf("%s cannot log in with its password: %v", c.Username, err)
		}
		if !intents[i].recorded {
			t.Errorf("%s was created without its intent recorded", c.Username)
		}
	}
	if !errors.Is(errs[5], mysqlops.ErrNotBatched) || intents[5].recorded {
		t.Errorf("existing account: %v (recorded %v), want ErrNotBatched and no intent", errs[5], intents[5].recorded)
	}
	if !errors.Is(errs[6], mysqlops.ErrUserExists) {
		t.Errorf("protected user: %v, want ErrUserExists", errs[6])
	}
	accts, _, err := tg.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	ro := map[string]bool{}
	for _, a := range accts {
		ro[a.Username] = a.ReadOnly
	}
	for _, c := range changes[:5] {
		if got, ok := ro[c.Username]; !ok || got != c.ReadOnly {
			t.Errorf("%s listed %v read-only %v, want listed read-only %v", c.Username, ok, got, c.ReadOnly)
		}
	}

	// Rotation: the target's accounts get their new password; the
	// others are refused as one at a time would refuse them.
	missing := mysqltest.Username("miss_")
	resets := append([]mysqlops.Change{}, changes[:5]...)
	for i := range resets {
		resets[i].Password = secret.New(mysqltest.Password())
	}
	resets = append(resets, mysqlops.Change{Username: foreign, Password: secret.New(mysqltest.Password())},
		mysqlops.Change{Username: f.Protected, Password: secret.New(mysqltest.Password())},
		mysqlops.Change{Username: missing, Password: secret.New(mysqltest.Password())},
		mysqlops.Change{Username: taken, Password: secret.New(mysqltest.Password())})
	got, rerrs := tg.ResetPasswords(ctx, resets)
	for i, c := range resets[:5] {
		if rerrs[i] != nil {
			t.Fatalf("reset %s: %v", c.Username, rerrs[i])
		}
		if got[i].ReadOnly != c.ReadOnly {
			t.Errorf("reset %s: read-only %v, want %v", c.Username, got[i].ReadOnly, c.ReadOnly)
		}
		if err := f.CanLogin(c.Username, c.Password.Reveal()); err != nil {
			t.Errorf("%s cannot log in with its new password: %v", c.Username, err)
		}
		if f.CanLogin(c.Username, changes[i].Password.Reveal()) == nil {
			t.Errorf("%s still logs in with its old password", c.Username)
		}
	}
	for i, want := range []error{mysqlops.ErrForeign, mysqlops.ErrProtected, mysqlops.ErrUserNotFound, mysqlops.ErrUserNotFound} {
		if !errors.Is(rerrs[5+i], want) {
			t.Errorf("reset %s: %v, want %v", resets[5+i].Username, rerrs[5+i], want)
		}
	}

	// Delete: the dropped accounts are gone and their sessions ended.
	session, err := f.Login(resets[0].Username, resets[0].Password.Reveal())
	if err != nil {
		t.Fatal(err)
	}
	dels := append([]mysqlops.Change{}, changes[:5]...)
	var dintents []*testIntent
	for i := range dels {
		in := fresh()
		dintents = append(dintents, in)
		dels[i].Intent = in
	}
	for _, u := range []string{foreign, missing} {
		in := fresh()
		dintents = append(dintents, in)
		dels = append(dels, mysqlops.Change{Username: u, Intent: in})
	}
	_, derrs := tg.DeleteMany(ctx, dels, recordAll(dintents))
	for i, c := range dels[:5] {
		if derrs[i] != nil {
			t.Fatalf("delete %s: %v", c.Username, derrs[i])
		}
		if f.AccountExists(c.Username) {
			t.Errorf("%s still exists after its delete", c.Username)
		}
	}
	if !errors.Is(derrs[5], mysqlops.ErrForeign) || !f.AccountExists(foreign) {
		t.Errorf("delete foreign: %v, want ErrForeign and the account kept", derrs[5])
	}
	if !errors.Is(derrs[6], mysqlops.ErrNotBatched) {
		t.Errorf("delete missing: %v, want ErrNotBatched", derrs[6])
	}
	if err := session.PingContext(ctx); err == nil {
		t.Errorf("the session of a deleted account still works")
	}
}

// TestCreateManyFallsBackWhenAnAccountAppears: an account created by
// someone else between the check and the statement fails in the
// statement (1396); the others are created, and that one is user_exists,
// never taken for this job's own.
func TestCreateManyFallsBackWhenAnAccountAppears(t *testing.T) {
	ctx := context.Background()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	tg := newTarget(t, f)
	a, b := mysqltest.Username("fa_"), mysqltest.Username("fb_")
	f.DropUserLater(a)
	f.DropUserLater(b)
	intents := []*sendingIntent{{}, {}}
	changes := []mysqlops.Change{
		{Username: a, Password: secret.New(mysqltest.Password()), Intent: intents[0]},
		{Username: b, Password: secret.New(mysqltest.Password()), Intent: intents[1]},
	}
	record := func(ctx context.Context, idx []int) error {
		f.Exec("CREATE USER ?@'%' IDENTIFIED BY 'someone-elses-password-1'", b) // between check and statement
		return recordAll(intents)(ctx, idx)
	}
	errs := tg.CreateMany(ctx, changes, record)
	if errs[0] != nil {
		t.Fatalf("create %s: %v", a, errs[0])
	}
	if err := f.CanLogin(a, changes[0].Password.Reveal()); err != nil {
		t.Errorf("%s: %v", a, err)
	}
	if !errors.Is(errs[1], mysqlops.ErrUserExists) {
		t.Errorf("create %s created meanwhile by someone else: %v, want ErrUserExists", b, errs[1])
	}
	if mysqlops.PasswordMaybeSet(errs[1]) {
		t.Errorf("create %s: 1396 named it, yet its error says the statement may have set its password", b)
	}
	// Its password still logs in (1044: no access to this database, so
	// no grant was added either).
	if err := f.CanLogin(b, "someone-elses-password-1"); !errors.Is(err, &mysql.MySQLError{Number: 1044}) {
		t.Errorf("someone else's account changed: %v, want 1044 (its password, no grant here)", err)
	}
}
