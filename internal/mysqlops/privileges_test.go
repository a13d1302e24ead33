package mysqlops_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
)

// leastGrants is contract §5.7's set for the fixture's admin (MariaDB names).
func leastGrants(extra ...string) []string {
	return append([]string{
		"GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO %s",
		"GRANT SELECT ON mysql.* TO %s",
	}, extra...)
}

// checkedTarget opens a target on f's admin with the privilege check.
func checkedTarget(t *testing.T, f *mysqltest.Fixture, check mysqlops.PrivilegeCheck) *mysqlops.Target {
	t.Helper()
	db, err := mysqlops.OpenDB(secret.New(f.AdminDSN), mysqlops.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	check.Enabled = true
	return mysqlops.New(db, mysqlops.Options{Database: f.Database, Protected: []string{f.Protected}, Privileges: check})
}

// TestVerifyPrivileges reads real grants on the shared MariaDB: the §5.7
// set passes, anything more is named, also through a role.
func TestVerifyPrivileges(t *testing.T) {
	role := mysqltest.Username("role_")
	root := mysqltest.Root(t)
	if _, err := root.Exec("CREATE ROLE " + role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = root.Exec("DROP ROLE IF EXISTS " + role) })
	if _, err := root.Exec("GRANT SUPER ON *.* TO " + role); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		grants func(db string) []string // nil: the fixture's §5.7 set
		want   []string                 // excess strings; none when empty
	}{
		{"least privilege", nil, nil},
		{"file and select elsewhere", func(db string) []string {
			return leastGrants("GRANT ALL PRIVILEGES ON `"+mysqltest.EscapePattern(db)+"`.* TO %s WITH GRANT OPTION",
				"GRANT FILE ON *.* TO %s", "GRANT SELECT ON performance_schema.* TO %s")
		}, []string{"FILE ON *.*", "SELECT ON `performance_schema`.*"}},
		{"all privileges", func(string) []string {
			return []string{"GRANT ALL PRIVILEGES ON *.* TO %s WITH GRANT OPTION"}
		}, []string{"ALL PRIVILEGES, GRANT OPTION ON *.*"}},
		{"through a role", func(db string) []string {
			return leastGrants("GRANT ALL PRIVILEGES ON `"+mysqltest.EscapePattern(db)+"`.* TO %s WITH GRANT OPTION",
				"GRANT "+role+" TO %s")
		}, []string{"SUPER ON *.* (through role `" + role + "`)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := "dbu_" + mysqltest.Token(10)
			opts := mysqltest.Options{Database: db}
			if tt.grants != nil {
				opts.AdminGrants = tt.grants(db)
			}
			f := mysqltest.NewFixture(t, opts)
			tg := checkedTarget(t, f, mysqlops.PrivilegeCheck{})
			rep, err := tg.VerifyPrivileges(t.Context())
			wantAccount := "`" + f.Admin + "`@`%`"
			if rep.Account != wantAccount {
				t.Errorf("account = %q, want %q", rep.Account, wantAccount)
			}
			var got []string
			for _, x := range rep.Excess {
				got = append(got, x.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("excess\n got %q\nwant %q", got, tt.want)
			}
			var excess *mysqlops.ExcessError
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("verify: %v", err)
			}
			if len(tt.want) > 0 && !errors.As(err, &excess) {
				t.Fatalf("verify: %v, want an *ExcessError", err)
			}
			if err != nil && strings.Contains(err.Error(), f.AdminPassword) {
				t.Errorf("the error holds the admin password: %v", err)
			}
		})
	}
}

// TestPrivilegeGate proves that a target whose admin holds too much runs
// no operation, tells its observer, works again once the excess is
// revoked, and works despite excess when it is allowed.
func TestPrivilegeGate(t *testing.T) {
	ctx := t.Context()
	db := "dbu_" + mysqltest.Token(10)
	f := mysqltest.NewFixture(t, mysqltest.Options{Database: db, AdminGrants: leastGrants(
		"GRANT ALL PRIVILEGES ON `"+mysqltest.EscapePattern(db)+"`.* TO %s WITH GRANT OPTION",
		"GRANT FILE ON *.* TO %s")})

	var mu sync.Mutex
	var seen []error
	observe := func(_ mysqlops.PrivilegeReport, err error) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, err)
	}
	tg := checkedTarget(t, f, mysqlops.PrivilegeCheck{Observe: observe})
	_, _, err := tg.List(ctx, "", 10)
	var excess *mysqlops.ExcessError
	if !errors.As(err, &excess) || !strings.Contains(err.Error(), "FILE ON *.*") {
		t.Fatalf("list with an over-privileged admin: %v, want an *ExcessError naming FILE", err)
	}
	if mysqlops.Classify(err) != mysqlops.Permanent {
		t.Errorf("the refusal is %v, want permanent", mysqlops.Classify(err))
	}
	user := mysqltest.Username("gate_")
	f.DropUserLater(user)
	if err := tg.Create(ctx, user, secret.New(mysqltest.Password()), false, &testIntent{}, nil); !errors.As(err, &excess) {
		t.Fatalf("create: %v, want an *ExcessError", err)
	}
	if f.AccountExists(user) {
		t.Fatal("a refused target created an account")
	}

	f.Exec("REVOKE FILE ON *.* FROM ?@'%'", f.Admin)
	if _, _, err := tg.List(ctx, "", 10); err != nil {
		t.Fatalf("list after the revoke: %v", err)
	}
	mu.Lock()
	if len(seen) != 3 || seen[0] == nil || seen[1] == nil || seen[2] != nil {
		t.Errorf("observed %v, want two refusals then a pass", seen)
	}
	mu.Unlock()

	f.Exec("GRANT FILE ON *.* TO ?@'%'", f.Admin)
	allowed := checkedTarget(t, f, mysqlops.PrivilegeCheck{AllowExcess: true})
	rep, err := allowed.VerifyPrivileges(ctx)
	if err != nil || len(rep.Excess) != 1 {
		t.Fatalf("allowed: report %+v, err %v; want the excess reported and no error", rep, err)
	}
	if _, _, err := allowed.List(ctx, "", 10); err != nil {
		t.Fatalf("list with allowed excess: %v", err)
	}
}
