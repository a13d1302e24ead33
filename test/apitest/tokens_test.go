package apitest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/mysqltest"
)

// rawToken signs header.claims with HMAC-SHA256 of key, whatever the
// header says: a token whose only fault is what the test puts in it.
func rawToken(key []byte, header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(header)) + "." + enc([]byte(claims))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + enc(mac.Sum(nil))
}

func claimsJSON(t *testing.T, c map[string]any) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestTokens: every endpoint refuses every bad token with 401 and an
// {"error"} that does not quote it, and changes nothing. Each case differs
// from a good token in one way only, so each fails if its check goes.
func TestTokens(t *testing.T) {
	t.Parallel()
	e := newRefusalEnv(t)
	hs256 := `{"alg":"HS256","typ":"JWT"}`
	inAnHour := time.Now().Add(time.Hour).Unix()
	good := claimsJSON(t, map[string]any{"sub": dbID, "exp": inAnHour})
	otherKey := []byte(strings.Repeat("k", 40))
	valid := rawToken(e.key, hs256, good)
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(claimsJSON(t, map[string]any{"sub": dbID, "exp": inAnHour + 1}))) + "." + parts[2]

	cases := []struct {
		name   string
		header string // the Authorization header; "" sends none
	}{
		{"no Authorization header", ""},
		{"not a bearer token", "Basic " + base64.StdEncoding.EncodeToString([]byte("user:pw"))},
		{"bearer without a token", "Bearer "},
		{"not a JWT", "Bearer not-a-jwt"},
		{"two parts", "Bearer " + parts[0] + "." + parts[1]},
		{"claims not base64url", "Bearer " + parts[0] + ".!!!." + parts[2]},
		{"padded base64", "Bearer " + parts[0] + "." + parts[1] + "==." + parts[2]},
		{"alg none", "Bearer " + rawToken(e.key, `{"alg":"none"}`, good)},
		{"alg HS512", "Bearer " + rawToken(e.key, `{"alg":"HS512"}`, good)},
		{"crit header", "Bearer " + rawToken(e.key, `{"alg":"HS256","crit":["exp"]}`, good)},
		{"signed with another key", "Bearer " + rawToken(otherKey, hs256, good)},
		{"claims changed after signing", "Bearer " + tampered},
		{"no signature", "Bearer " + parts[0] + "." + parts[1] + "."},
		{"no exp", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": dbID}))},
		{"exp a string", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": dbID, "exp": "9999999999"}))},
		{"expired beyond the skew", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": dbID, "exp": time.Now().Add(-75 * time.Second).Unix()}))},
		{"not valid yet", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": dbID, "exp": inAnHour, "nbf": time.Now().Add(10 * time.Minute).Unix()}))},
		{"no sub", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"exp": inAnHour}))},
		{"sub a number", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": 42, "exp": inAnHour}))},
		// Another database this API serves: the token is good, for it.
		{"another database", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": deadDBID, "exp": inAnHour}))},
		{"the database id with another case", "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": strings.ToUpper(dbID), "exp": inAnHour}))},
	}
	newName := mysqltest.Username("rfn_")
	e.f.DropUserLater(newName)
	e.watch = append(e.watch, newName)
	pw := "Token-Test-Pw-" + mysqltest.Token(16)
	e.remember(pw)
	endpoints := []struct {
		method, path string
		body         any
	}{
		{"GET", users(dbID), nil},
		{"POST", users(dbID), map[string]any{"database_user": map[string]any{"database_id": dbID, "name": newName, "read_only": false}}},
		{"PATCH", users(dbID) + "/" + e.victim, map[string]any{"database_user": map[string]any{"database_id": dbID, "password": pw, "password_confirmation": pw}}},
		{"POST", users(dbID) + "/" + e.victim + "/reset_password", "{}"},
		{"DELETE", users(dbID) + "/" + e.victim, nil},
	}
	for _, tc := range cases {
		e.remember(strings.TrimPrefix(tc.header, "Bearer "))
		t.Run(tc.name, func(t *testing.T) {
			for _, ep := range endpoints {
				var r response
				e.unchanged(t, func() { r = e.doHeader(ep.method, ep.path, tc.header, ep.body) })
				if r.status != 401 {
					t.Errorf("%s %s: status %d, want 401; body %s", ep.method, ep.path, r.status, r.body)
					continue
				}
				var body map[string]any
				if err := json.Unmarshal(r.body, &body); err != nil {
					t.Fatalf("%s %s: body %q: %v", ep.method, ep.path, r.body, err)
				}
				msg, _ := body["error"].(string)
				if msg == "" {
					t.Errorf("%s %s: body %s has no error", ep.method, ep.path, r.body)
				}
				if tok := strings.TrimPrefix(tc.header, "Bearer "); len(tok) > 8 && strings.Contains(string(r.body), tok) {
					t.Errorf("the answer quotes the token")
				}
				if r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("a 401 without WWW-Authenticate")
				}
			}
		})
	}

	// What is allowed: a token expired less than the 60 s skew ago, and
	// the scheme in any case.
	for name, header := range map[string]string{
		"expired within the skew": "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": dbID, "exp": time.Now().Add(-30 * time.Second).Unix()})),
		"lower-case scheme":       "bearer " + valid,
		"nbf within the skew":     "Bearer " + rawToken(e.key, hs256, claimsJSON(t, map[string]any{"sub": dbID, "exp": inAnHour, "nbf": time.Now().Add(30 * time.Second).Unix()})),
	} {
		e.remember(strings.TrimPrefix(strings.TrimPrefix(header, "Bearer "), "bearer "))
		if r := e.doHeader("GET", users(dbID), header, nil); r.status != 200 {
			t.Errorf("%s: status %d, want 200; body %s", name, r.status, r.body)
		}
	}
}

// doHeader is do with the Authorization header as given ("" for none).
func (e *env) doHeader(method, path, authorization string, body any) response {
	e.t.Helper()
	return e.doRaw(method, path, authorization, body)
}
