package apitest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/mysqltest"
)

// refusalEnv is an env with the accounts refusals are tried on: a
// read-write victim with a known password and a foreign account (it also
// holds a grant on another database).
type refusalEnv struct {
	*env
	victim, victimPW, foreign string
	// watch are names a refused request might create.
	watch []string
}

func newRefusalEnv(t *testing.T) *refusalEnv {
	t.Helper()
	e := &refusalEnv{env: newEnv(t, envOptions{})}
	e.victim = mysqltest.Username("rfv_")
	e.victimPW = e.makeAccount(e.victim, false)
	e.foreign = mysqltest.Username("rff_")
	e.makeAccount(e.foreign, false)
	e.f.Exec("GRANT SELECT ON `rf_other_tenant`.* TO ?@'%'", e.foreign)
	return e
}

// unchanged runs step and fails the test when any account of the fixture
// or a watched one changed (created, dropped, password, grants), or
// when the victim's password stopped working.
func (e *refusalEnv) unchanged(t *testing.T, step func()) {
	t.Helper()
	before := e.snapshot(e.watch...)
	step()
	after := e.snapshot(e.watch...)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a refused request changed the accounts:\nbefore %v\nafter  %v", before, after)
	}
	if err := e.f.CanLogin(e.victim, e.victimPW); err != nil {
		t.Errorf("the victim's password no longer logs in: %v", err)
	}
}

// TestRefusals: every error row of contract §8, each with the status and
// body the platform's client reads, and each changing nothing.
func TestRefusals(t *testing.T) {
	t.Parallel()
	e := newRefusalEnv(t)
	newName := mysqltest.Username("rfn_")
	e.f.DropUserLater(newName)
	e.watch = append(e.watch, newName, "rfnoway_1", "rfnobody_1", "rfab")
	goodPW := "Good-Password-" + mysqltest.Token(16)
	e.remember(goodPW)
	create := func(fields map[string]any) map[string]any {
		u := map[string]any{"database_id": dbID, "name": newName, "read_only": false}
		for k, v := range fields {
			if v == nil {
				delete(u, k)
			} else {
				u[k] = v
			}
		}
		return map[string]any{"database_user": u}
	}
	patch := func(pw, confirmation any) map[string]any {
		u := map[string]any{"database_id": dbID}
		if pw != nil {
			u["password"] = pw
		}
		if confirmation != nil {
			u["password_confirmation"] = confirmation
		}
		return map[string]any{"database_user": u}
	}
	quote := func(s string) string { return fmt.Sprintf("%q", s) }
	u := users(dbID)
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		// field is the 422 field; error the words {"error"} must contain
		// ("" : only that it is not empty); exact the whole {"error"}.
		field, error, exact string
		resource            string
	}{
		{name: "create: name with a capital and a dash", method: "POST", path: u, body: create(map[string]any{"name": "Bad-Name1"}), status: 422, field: "name"},
		{name: "create: reserved name", method: "POST", path: u, body: create(map[string]any{"name": "mysql_evil"}), status: 422, field: "name"},
		{name: "create: name too short", method: "POST", path: u, body: create(map[string]any{"name": "rfab"}), status: 422, field: "name"},
		{name: "create: no name", method: "POST", path: u, body: create(map[string]any{"name": nil}), status: 422, field: "name"},
		{name: "create: confirmation differs", method: "POST", path: u, body: create(map[string]any{"password": goodPW, "password_confirmation": goodPW + "x"}), status: 422, field: "password"},
		{name: "create: password without confirmation", method: "POST", path: u, body: create(map[string]any{"password": goodPW}), status: 422, field: "password"},
		{name: "create: password too short", method: "POST", path: u, body: create(map[string]any{"password": "short-pw", "password_confirmation": "short-pw"}), status: 422, field: "password"},
		{name: "create: password with a quote", method: "POST", path: u, body: create(map[string]any{"password": goodPW + "'", "password_confirmation": goodPW + "'"}), status: 422, field: "password"},
		{name: "create: misspelt read_only", method: "POST", path: u, body: create(map[string]any{"readonly": true}), status: 400, error: "readonly"},
		{name: "create: read_only not a boolean", method: "POST", path: u, body: create(map[string]any{"read_only": "yes"}), status: 400, error: "read_only"},
		{name: "create: not JSON", method: "POST", path: u, body: `{"database_user": {`, status: 400},
		{name: "create: an array", method: "POST", path: u, body: `[]`, status: 400},
		{name: "create: no database_user", method: "POST", path: u, body: `{}`, status: 400, error: "database_user"},
		{name: "create: empty body", method: "POST", path: u, body: ``, status: 400},
		{name: "create: two JSON values", method: "POST", path: u, body: `{"database_user": {"name": "rfnoway_1"}} {}`, status: 400},
		{name: "create: another database's id in the body", method: "POST", path: u, body: create(map[string]any{"database_id": deadDBID}), status: 400, error: "database_id"},
		{name: "create: existing user", method: "POST", path: u, body: create(map[string]any{"name": e.victim}), status: 409, exact: "User " + quote(e.victim) + " already exists"},
		{name: "create: the protected user's name", method: "POST", path: u, body: create(map[string]any{"name": e.f.Protected}), status: 409, exact: "User " + quote(e.f.Protected) + " already exists"},
		{name: "update: no password", method: "PATCH", path: u + "/" + e.victim, body: patch(nil, nil), status: 400, error: "password"},
		{name: "update: not JSON", method: "PATCH", path: u + "/" + e.victim, body: `password=x`, status: 400},
		{name: "update: unknown field", method: "PATCH", path: u + "/" + e.victim, body: `{"database_user": {"password": "x", "name": "y"}}`, status: 400, error: "name"},
		{name: "update: confirmation differs", method: "PATCH", path: u + "/" + e.victim, body: patch(goodPW, goodPW+"x"), status: 422, field: "password"},
		{name: "update: password too short", method: "PATCH", path: u + "/" + e.victim, body: patch("short-pw", "short-pw"), status: 422, field: "password"},
		{name: "update: unknown user", method: "PATCH", path: u + "/rfnobody_1", body: patch(goodPW, goodPW), status: 404, resource: "database_user"},
		{name: "update: protected user", method: "PATCH", path: u + "/" + e.f.Protected, body: patch(goodPW, goodPW), status: 403, error: "protected"},
		{name: "update: foreign user", method: "PATCH", path: u + "/" + e.foreign, body: patch(goodPW, goodPW), status: 403, error: "outside this database"},
		{name: "update: invalid name", method: "PATCH", path: u + "/Root", body: patch(goodPW, goodPW), status: 422, field: "name"},
		{name: "reset: a body with fields", method: "POST", path: u + "/" + e.victim + "/reset_password", body: `{"database_user": {}}`, status: 400},
		{name: "reset: unknown user", method: "POST", path: u + "/rfnobody_1/reset_password", body: `{}`, status: 404, resource: "database_user"},
		{name: "reset: protected user", method: "POST", path: u + "/" + e.f.Protected + "/reset_password", body: `{}`, status: 403, error: "protected"},
		{name: "reset: foreign user", method: "POST", path: u + "/" + e.foreign + "/reset_password", body: `{}`, status: 403, error: "outside this database"},
		{name: "reset: invalid name", method: "POST", path: u + "/root/reset_password", body: `{}`, status: 422, field: "name"},
		{name: "delete: unknown user", method: "DELETE", path: u + "/rfnobody_1", status: 404, resource: "database_user"},
		{name: "delete: protected user", method: "DELETE", path: u + "/" + e.f.Protected, status: 403, error: "protected"},
		{name: "delete: foreign user", method: "DELETE", path: u + "/" + e.foreign, status: 403, error: "outside this database"},
		{name: "delete: invalid name", method: "DELETE", path: u + "/mysql", status: 422, field: "name"},
		{name: "MySQL unreachable: list", method: "GET", path: users(deadDBID), status: 503, error: "could not be reached"},
		{name: "MySQL unreachable: create", method: "POST", path: users(deadDBID), body: map[string]any{"database_user": map[string]any{"database_id": deadDBID, "name": newName}}, status: 503, error: "could not be reached"},
		{name: "target unknown to the worker", method: "POST", path: users(orphanDBID), body: map[string]any{"database_user": map[string]any{"database_id": orphanDBID, "name": newName}}, status: 500, error: "not configured on the worker"},
		{name: "no such endpoint", method: "GET", path: "/api/databases/" + dbID + "/nothing", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := e.token(strings.Split(strings.TrimPrefix(tt.path, "/api/databases/"), "/")[0])
			var r response
			e.unchanged(t, func() { r = e.do(tt.method, tt.path, token, tt.body) })
			wantStatus(t, r, tt.status)
			var body struct {
				Error    *string             `json:"error"`
				Errors   map[string][]string `json:"errors"`
				Resource string              `json:"resource"`
			}
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("body %q: %v", r.body, err)
			}
			if tt.status == 422 {
				msgs := body.Errors[tt.field]
				if len(body.Errors) != 1 || len(msgs) == 0 || msgs[0] == "" {
					t.Fatalf("body %s, want {\"errors\": {%q: [\"…\"]}}", r.body, tt.field)
				}
				return
			}
			if body.Error == nil || *body.Error == "" {
				t.Fatalf("body %s has no \"error\"", r.body)
			}
			if tt.exact != "" && *body.Error != tt.exact {
				t.Errorf("error %q, want %q", *body.Error, tt.exact)
			}
			if !strings.Contains(*body.Error, tt.error) {
				t.Errorf("error %q does not say %q", *body.Error, tt.error)
			}
			if body.Resource != tt.resource {
				t.Errorf("resource %q, want %q", body.Resource, tt.resource)
			}
			if strings.Contains(string(r.body), goodPW) {
				t.Errorf("the answer quotes the password")
			}
		})
	}
	if e.f.AccountExists(newName) {
		t.Errorf("a refused create made %s", newName)
	}
}

// TestUnknownDatabase: a valid token for a database id this API does not
// serve gets 404, and nothing is done.
func TestUnknownDatabase(t *testing.T) {
	t.Parallel()
	e := newRefusalEnv(t)
	e.watch = append(e.watch, "rfnew_unknown")
	for _, method := range []string{"GET", "POST", "DELETE"} {
		path := users("ad-nothere1")
		if method == "DELETE" {
			path += "/" + e.victim
		}
		var r response
		e.unchanged(t, func() { r = e.do(method, path, e.token("ad-nothere1"), `{"database_user": {"name": "rfnew_unknown"}}`) })
		wantStatus(t, r, 404)
		if m := r.json(t); m["error"] == "" || m["error"] == nil {
			t.Errorf("%s: body %s", method, r.body)
		}
	}
}
