package apitest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/internal/platformapi"
)

// TestSecurityHeaders: the dashboard and the API are sent with a CSP that
// allows no inline script and no other origin, X-Frame-Options: DENY and
// nosniff; the page itself has no inline script or handler for the CSP to
// have to allow.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, path := range []string{"/", "/static/app.js", "/static/app.css", users(dbID), "/nothing"} {
		token := ""
		if strings.HasPrefix(path, "/api/") {
			token = e.token(dbID)
		}
		r := e.do("GET", path, token, nil)
		csp := r.header.Get("Content-Security-Policy")
		if csp != platformapi.ContentSecurityPolicy {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "http:", "https:", "data:"} {
			if strings.Contains(csp, bad) {
				t.Errorf("%s: the CSP allows %s", path, bad)
			}
		}
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: the CSP does not restrict scripts and framing: %q", path, csp)
		}
		if got := r.header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", path, got)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, got)
		}
	}
	r := e.do("GET", "/", "", nil)
	wantStatus(t, r, 200)
	page := string(r.body)
	for _, m := range regexp.MustCompile(`(?is)<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(m, `src="/static/`) {
			t.Errorf("inline script in the page: %s", m)
		}
	}
	if regexp.MustCompile(`(?is)<script[^>]*>\s*[^<\s]`).MatchString(page) {
		t.Errorf("a script element with content")
	}
	if m := regexp.MustCompile(`(?i)\son[a-z]+\s*=`).FindString(page); m != "" {
		t.Errorf("an inline event handler in the page: %s", m)
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("the page loads something from another origin")
	}
	if js := e.do("GET", "/static/app.js", "", nil); js.status != 200 || !strings.Contains(js.header.Get("Content-Type"), "javascript") {
		t.Errorf("app.js: %d %s", js.status, js.header.Get("Content-Type"))
	} else if strings.Contains(string(js.body), "innerHTML") || strings.Contains(string(js.body), "localStorage") {
		t.Errorf("app.js writes HTML from strings or keeps the token in storage that outlives the tab")
	}
}
