package apitest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/mysqltest"
)

// user is a database user as the API answers it.
type user struct {
	Name      string  `json:"name"`
	ReadOnly  bool    `json:"read_only"`
	Protected bool    `json:"protected"`
	Password  *string `json:"password"`
}

func decodeUser(t *testing.T, r response) user {
	t.Helper()
	var body struct {
		DatabaseUser *user `json:"database_user"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.DatabaseUser == nil {
		t.Fatalf("body %s is not {\"database_user\": {…}}: %v", r.body, err)
	}
	return *body.DatabaseUser
}

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

func wantNoStore(t *testing.T, r response) {
	t.Helper()
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q on a response that carries a password, want no-store", got)
	}
}

// TestList: GET …/users lists every account of the database as the
// platform's client reads it, protected user included, and only those.
func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	rw, ro := mysqltest.Username("lrw_"), mysqltest.Username("lro_")
	e.makeAccount(rw, false)
	e.makeAccount(ro, true)
	// An account of another database is not listed.
	other := mysqltest.Username("loth_")
	e.f.DropUserLater(other)
	e.f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", other, mysqltest.Password())
	e.f.Exec("GRANT SELECT ON `other_db_x`.* TO ?@'%'", other)

	r := e.do("GET", users(dbID), e.token(dbID), nil)
	wantStatus(t, r, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	var body map[string][]map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	got := body["database-users"]
	want := []map[string]any{
		{"name": e.f.Protected, "read_only": false, "protected": true},
		{"name": rw, "read_only": false, "protected": false},
		{"name": ro, "read_only": true, "protected": false},
	}
	slices.SortFunc(want, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for i := range want {
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("user %d: %s = %v, want %v (got %v)", i, k, got[i][k], v, got[i])
			}
		}
		if len(got[i]) != 3 {
			t.Errorf("user %d has fields %v, want name, read_only, protected only", i, got[i])
		}
	}
}

// TestListFollowsEveryPage: a list longer than one list job's page comes
// whole.
func TestListFollowsEveryPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	const n = 1100 // the client's page is 1000
	names := makeManyAccounts(t, e, "pg_", n)
	r := e.do("GET", users(dbID), e.token(dbID), nil)
	wantStatus(t, r, 200)
	var body struct {
		Users []user `json:"database-users"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range body.Users {
		if strings.HasPrefix(u.Name, "pg_") {
			got = append(got, u.Name)
		}
	}
	if !slices.Equal(got, names) {
		t.Fatalf("listed %d of the %d accounts", len(got), n)
	}
	if logs := e.apiLog.String(); strings.Count(logs, `"jobs":["api-`) != 1 || !strings.Contains(logs, `","api-`) {
		t.Errorf("the request's log line does not name its two list jobs:\n%s", logs)
	}
}

// TestCreate: POST …/users makes the account the body asks for; the
// account logs in with the generated or the chosen password, and can write
// only when read_only is false.
func TestCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	chosen := "Chosen-Pw_" + mysqltest.Token(20) + `\!#`
	tests := []struct {
		name     string
		readOnly bool
		password string // "" generated
	}{
		{name: "read-write, generated password"},
		{name: "read-only, generated password", readOnly: true},
		{name: "read-write, chosen password", password: chosen},
		{name: "read-only, chosen password", readOnly: true, password: chosen + "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := mysqltest.Username("cr_")
			e.f.DropUserLater(name)
			e.remember(tt.password)
			u := map[string]any{"database_id": dbID, "name": name, "read_only": tt.readOnly}
			if tt.password != "" {
				u["password"], u["password_confirmation"] = tt.password, tt.password
			}
			r := e.do("POST", users(dbID), e.token(dbID), map[string]any{"database_user": u})
			wantStatus(t, r, 201)
			got := decodeUser(t, r)
			if got.Name != name || got.ReadOnly != tt.readOnly || got.Protected {
				t.Errorf("answered %+v", got)
			}
			password := tt.password
			if tt.password == "" {
				if got.Password == nil || len(*got.Password) != 64 {
					t.Fatalf("no 64-character generated password in %s", r.body)
				}
				password = *got.Password
				e.remember(password)
				wantNoStore(t, r)
			} else if got.Password != nil {
				t.Errorf("a chosen password came back in the answer")
			}
			if err := e.canRead(name, password); err != nil {
				t.Fatalf("the new account cannot log in and read: %v", err)
			}
			err := e.canWrite(name, password)
			if tt.readOnly && err == nil {
				t.Errorf("a read-only account could create a table")
			}
			if !tt.readOnly && err != nil {
				t.Errorf("a read-write account cannot create a table: %v", err)
			}
		})
	}
}

// TestUpdatePassword: PATCH …/users/{name} sets the chosen password: the
// new one logs in, the old one no longer does.
func TestUpdatePassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	name := mysqltest.Username("up_")
	old := e.makeAccount(name, true)
	pw := "New-Pw-" + mysqltest.Token(24)
	e.remember(pw)
	r := e.do("PATCH", users(dbID)+"/"+name, e.token(dbID),
		map[string]any{"database_user": map[string]any{"database_id": dbID, "password": pw, "password_confirmation": pw}})
	wantStatus(t, r, 200)
	got := decodeUser(t, r)
	if got.Name != name || !got.ReadOnly || got.Protected || got.Password != nil {
		t.Errorf("answered %s", r.body)
	}
	if err := e.f.CanLogin(name, pw); err != nil {
		t.Errorf("the new password does not log in: %v", err)
	}
	if err := e.f.CanLogin(name, old); err == nil {
		t.Errorf("the old password still logs in")
	}
}

// TestResetPassword: POST …/reset_password, with the CLI's {} or no body,
// answers a generated password that logs in, and the old one stops.
func TestResetPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, body := range []any{"{}", nil} {
		name := mysqltest.Username("rs_")
		old := e.makeAccount(name, false)
		r := e.do("POST", users(dbID)+"/"+name+"/reset_password", e.token(dbID), body)
		wantStatus(t, r, 200)
		wantNoStore(t, r)
		got := decodeUser(t, r)
		if got.Name != name || got.ReadOnly || got.Protected || got.Password == nil || len(*got.Password) != 64 {
			t.Fatalf("answered %+v", got)
		}
		e.remember(*got.Password)
		if err := e.canWrite(name, *got.Password); err != nil {
			t.Errorf("body %v: the generated password does not log in and write: %v", body, err)
		}
		if err := e.f.CanLogin(name, old); err == nil {
			t.Errorf("body %v: the old password still logs in", body)
		}
	}
}

// TestDelete: DELETE …/users/{name} answers 204 and the account is gone.
func TestDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	name := mysqltest.Username("dl_")
	pw := e.makeAccount(name, false)
	r := e.do("DELETE", users(dbID)+"/"+name, e.token(dbID), nil)
	wantStatus(t, r, 204)
	if len(r.body) != 0 {
		t.Errorf("a 204 with a body: %q", r.body)
	}
	if e.f.AccountExists(name) {
		t.Errorf("the account still exists")
	}
	if err := e.f.CanLogin(name, pw); err == nil {
		t.Errorf("the deleted account still logs in")
	}
	// And the list no longer shows it.
	if r := e.do("GET", users(dbID), e.token(dbID), nil); strings.Contains(string(r.body), name) {
		t.Errorf("the list still shows it: %s", r.body)
	}
}

// makeManyAccounts creates n read-write accounts of the fixture's database
// as root, a few connections at once, and returns their names sorted.
func makeManyAccounts(t testing.TB, e *env, prefix string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = mysqltest.Username(prefix)
		e.f.DropUserLater(names[i])
	}
	grant := "GRANT ALL PRIVILEGES ON `" + mysqltest.EscapePattern(e.f.Database) + "`.* TO ?@'%'"
	work := make(chan string)
	errs := make(chan error, n)
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for u := range work {
				if _, err := e.f.Root.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, "x-"+u); err != nil {
					errs <- err
					continue
				}
				if _, err := e.f.Root.Exec(grant, u); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, u := range names {
		work <- u
	}
	close(work)
	for range 4 {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Fatalf("create accounts: %v", err)
	}
	slices.Sort(names)
	return names
}
