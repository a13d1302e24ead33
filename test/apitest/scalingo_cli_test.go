package apitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/platformapi"
)

// scalingoCLI is the platform's own CLI, beside the repository (it is not
// part of it): ../shared/tools/scalingo-cli/scalingo from the repo root.
const scalingoCLI = "../../../shared/tools/scalingo-cli/scalingo"

// standIn answers what the platform's CLI asks of the platform's auth and
// main APIs (its README lists it); the database API is dbusers-api's.
func standIn(t *testing.T, e *env, dbURL string) string {
	t.Helper()
	var self string
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	addon := map[string]any{"id": dbID, "addon_provider": map[string]any{"id": "mysql", "name": "MySQL"}}
	mux.HandleFunc("POST /v1/tokens/exchange", func(w http.ResponseWriter, r *http.Request) {
		// The CLI reads this JWT without checking it; it needs an exp.
		tok, _ := platformapi.SignToken([]byte(strings.Repeat("s", 32)), map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
		reply(w, 200, map[string]any{"token": tok})
	})
	mux.HandleFunc("GET /v1/users/self", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"user": map[string]any{"username": "x", "flags": map[string]any{}}})
	})
	mux.HandleFunc("GET /v1/regions", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"regions": []any{map[string]any{"name": "local", "api": self, "database_api": dbURL, "default": true}}})
	})
	mux.HandleFunc("GET /v1/apps/{app}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 404, map[string]any{"resource": "app", "error": "not found"})
	})
	mux.HandleFunc("GET /v1/apps/{app}/addons", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"addons": []any{addon}})
	})
	mux.HandleFunc("GET /v1/apps/{app}/addons/{id}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"addon": addon})
	})
	// Where the platform mints the token of contract §8.
	mux.HandleFunc("POST /v1/apps/{app}/addons/{id}/token", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"addon": map[string]any{"token": e.token(r.PathValue("id"))}})
	})
	// The URL is known before the server starts, so handlers read it
	// without a race.
	srv := httptest.NewUnstartedServer(mux)
	self = "http://" + srv.Listener.Addr().String()
	srv.Start()
	t.Cleanup(srv.Close)
	return self
}

// cli runs the platform's CLI in a pseudo-terminal (it reads passwords
// with term.ReadPassword), typing each answer once its prompt shows, and
// returns what it printed, without colours and carriage returns.
type cli struct {
	t    *testing.T
	bin  string
	env  []string
	home string
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

func (c *cli) run(answers []string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--app", "my-app", "--addon", dbID}, args...)...)
	cmd.Env = c.env
	cmd.Dir = c.home
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		c.t.Fatalf("start scalingo in a pty: %v", err)
	}
	defer tty.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	printed := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	prompts := []string{"Password (Will be generated if left empty): ", "Password Confirmation: "}
	for i, a := range answers {
		prompt := prompts[i%2]
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(printed(), prompt) < i/2+1 {
			if time.Now().After(deadline) {
				c.t.Fatalf("scalingo %v: no prompt %q; printed:\n%s", args, prompt, printed())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := io.WriteString(tty, a+"\r"); err != nil {
			c.t.Fatal(err)
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			c.t.Errorf("scalingo %v: %v; printed:\n%s", args, err, printed())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		c.t.Fatalf("scalingo %v did not end; printed:\n%s", args, printed())
	}
	<-done
	return strings.ReplaceAll(ansi.ReplaceAllString(printed(), ""), "\r", "")
}

// lineWith returns the one line of out that contains s.
func lineWith(t *testing.T, out, s string) string {
	t.Helper()
	for l := range strings.SplitSeq(out, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("no line with %q in:\n%s", s, out)
	return ""
}

// TestScalingoCLI: the platform's own CLI, unchanged, lists, creates
// (chosen and generated passwords, --read-only), updates passwords (both
// ways) and deletes against dbusers-api, printing what it prints against
// the platform itself; every
// password it prints or was given logs in to MariaDB.
func TestScalingoCLI(t *testing.T) {
	bin, err := filepath.Abs(scalingoCLI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("the platform's CLI is not at %s (a machine without ../shared): %v", bin, err)
	}
	t.Parallel()
	e := newEnv(t, envOptions{})
	home := t.TempDir()
	api := standIn(t, e, e.url)
	c := &cli{t: t, bin: bin, home: home, env: []string{
		"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TERM=dumb",
		"SCALINGO_AUTH_URL=" + api, "SCALINGO_API_URL=" + api, "SCALINGO_DB_URL=" + e.url,
		"SCALINGO_API_TOKEN=tk-us-dbusers-test", "DISABLE_UPDATE_CHECKER=true",
	}}
	ro, rw := mysqltest.Username("cli_ro_"), mysqltest.Username("cli_rw_")
	e.f.DropUserLater(ro)
	e.f.DropUserLater(rw)
	chosen := "Cli-Chosen-" + mysqltest.Token(20)
	e.remember(chosen)

	// create --read-only with a chosen password.
	out := c.run([]string{chosen, chosen}, "database-users-create", "--read-only", ro)
	if got, want := lineWith(t, out, "created"), fmt.Sprintf("User %q created.", ro); got != want {
		t.Errorf("create printed %q, want %q", got, want)
	}
	if err := e.canRead(ro, chosen); err != nil {
		t.Errorf("the chosen password does not log in: %v", err)
	}
	if err := e.canWrite(ro, chosen); err == nil {
		t.Errorf("--read-only made an account that can write")
	}

	// create with the password left empty: the CLI generates one.
	out = c.run([]string{"", ""}, "database-users-create", rw)
	m := regexp.MustCompile(`^User "([^"]+)" created with password "([^"]{64})"\.$`).FindStringSubmatch(lineWith(t, out, "created with password"))
	if m == nil || m[1] != rw {
		t.Fatalf("create printed:\n%s", out)
	}
	e.remember(m[2])
	if err := e.canWrite(rw, m[2]); err != nil {
		t.Errorf("the printed password does not log in and write: %v", err)
	}

	// list: one row per user, READ-ONLY and PROTECTED as true/false.
	out = c.run(nil, "database-users-list")
	rows := map[string][2]string{}
	for l := range strings.SplitSeq(out, "\n") {
		cells := strings.FieldsFunc(l, func(r rune) bool { return r == '│' || r == '|' })
		if len(cells) != 3 {
			continue
		}
		rows[strings.TrimSpace(cells[0])] = [2]string{strings.TrimSpace(cells[1]), strings.TrimSpace(cells[2])}
	}
	want := map[string][2]string{e.f.Protected: {"false", "true"}, ro: {"true", "false"}, rw: {"false", "false"}}
	for name, w := range want {
		if rows[name] != w {
			t.Errorf("list row of %s: %v, want %v; printed:\n%s", name, rows[name], w, out)
		}
	}
	if !strings.Contains(out, "USERNAME") || !strings.Contains(out, "PROTECTED") {
		t.Errorf("list printed no header:\n%s", out)
	}

	// update-password with a chosen password.
	chosen2 := "Cli-Chosen2-" + mysqltest.Token(20)
	e.remember(chosen2)
	out = c.run([]string{chosen2, chosen2}, "database-users-update-password", ro)
	if got, want := lineWith(t, out, "password updated"), fmt.Sprintf("User %q password updated.", ro); got != want {
		t.Errorf("update-password printed %q, want %q", got, want)
	}
	if err := e.canRead(ro, chosen2); err != nil {
		t.Errorf("the updated password does not log in: %v", err)
	}
	if err := e.f.CanLogin(ro, chosen); err == nil {
		t.Errorf("the old password still logs in")
	}

	// update-password left empty: the API generates one (reset_password).
	out = c.run([]string{"", ""}, "database-users-update-password", rw)
	m = regexp.MustCompile(`^User "([^"]+)" updated with password "([A-Za-z0-9_]{64})"\.$`).FindStringSubmatch(lineWith(t, out, "with password"))
	if m == nil || m[1] != rw {
		t.Fatalf("update-password printed:\n%s", out)
	}
	e.remember(m[2])
	if err := e.canWrite(rw, m[2]); err != nil {
		t.Errorf("the generated password does not log in: %v", err)
	}

	// delete.
	out = c.run(nil, "database-users-delete", rw)
	if got, want := lineWith(t, out, "has been deleted"), "-----> User "+rw+" has been deleted"; got != want {
		t.Errorf("delete printed %q, want %q", got, want)
	}
	if e.f.AccountExists(rw) {
		t.Errorf("the account still exists")
	}
}
