package apitest

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/dbusers/dbusers/internal/mysqltest"
)

// chromium is Debian's chromium package (.ci/run installs it).
const chromium = "/usr/bin/chromium"

var screenshot = flag.String("screenshot", "", "write a screenshot of the dashboard's users page to this file (docs/dashboard.png is ../../docs/dashboard.png)")

// browser starts a headless Chromium of the test's own (fresh profile) and
// returns a tab's context. A JavaScript dialog (alert) fails the test: the
// page never opens one, so one means a name ran as script.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (apt-get install -y chromium): %v", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profileDir(t)),
		chromedp.WindowSize(1100, 720),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	// This chromedp predates some DOM events of Debian's Chromium
	// (TopLayerElementsUpdated): it reports them as errors, harmlessly.
	quiet := chromedp.WithErrorf(func(format string, args ...any) {
		if !strings.HasPrefix(format, "unhandled node event") {
			t.Logf("chromedp: "+format, args...)
		}
	})
	ctx, cancel := chromedp.NewContext(actx, quiet)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel)
	chromedp.ListenTarget(ctx, func(ev any) {
		if d, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			t.Errorf("the page opened a JavaScript %s dialog: %q", d.Type, d.Message)
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(true)) }()
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
}

func evalBool(t *testing.T, ctx context.Context, js string) bool {
	t.Helper()
	var b bool
	run(t, ctx, js, chromedp.Evaluate(js, &b))
	return b
}

// TestDashboardInBrowser does every operation of the dashboard
// (docs/api.md, "The dashboard") in a real browser, checking MariaDB after
// each.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browser(t)
	t.Parallel()
	e := newEnv(t, envOptions{})
	// An account made outside dbusers, in the target's database, whose
	// name is markup.
	xss := `<img src=x onerror=alert(1)>`
	e.f.DropUserLater(xss)
	e.f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", xss, mysqltest.Password())
	e.f.Exec("GRANT SELECT ON `"+mysqltest.EscapePattern(e.f.Database)+"`.* TO ?@'%'", xss)
	rw, ro := mysqltest.Username("web_rw_"), mysqltest.Username("web_ro_")
	e.f.DropUserLater(rw)
	e.f.DropUserLater(ro)
	token := e.token(dbID)
	row := func(name string) string { return `tr[data-name="` + name + `"]` }

	// Sign in.
	run(t, ctx, "open the dashboard", chromedp.Navigate(e.url+"/"), chromedp.WaitVisible("#token", chromedp.ByID))
	run(t, ctx, "sign in",
		chromedp.SetValue("#token", token, chromedp.ByID),
		chromedp.Click("#sign-in", chromedp.ByID),
		chromedp.WaitVisible(row(e.f.Protected), chromedp.ByQuery))

	// The list: the protected user, marked so and without a menu; the
	// markup-named account as text.
	var protectedRow string
	run(t, ctx, "read the protected row", chromedp.Text(row(e.f.Protected), &protectedRow, chromedp.ByQuery))
	if f := strings.Fields(protectedRow); len(f) != 3 || f[1] != "false" || f[2] != "true" {
		t.Errorf("protected user's row reads %q, want name, false, true", protectedRow)
	}
	if evalBool(t, ctx, `document.querySelector('`+row(e.f.Protected)+` button') !== null`) {
		t.Errorf("the protected user has a menu")
	}
	if !evalBool(t, ctx, `[...document.querySelectorAll('td.name')].some(td => td.textContent === `+jsString(xss)+`)`) {
		t.Errorf("the markup-named account is not shown as its name")
	}
	if evalBool(t, ctx, `document.querySelectorAll('img').length > 0`) {
		t.Errorf("an account's name became an element")
	}

	// Add a read-write user (Write checked): the popup shows its password.
	addUser := func(name string, write bool) string {
		t.Helper()
		actions := []chromedp.Action{
			chromedp.Click("#add-user", chromedp.ByID),
			chromedp.WaitVisible("#new-name", chromedp.ByID),
			chromedp.SendKeys("#new-name", name, chromedp.ByID),
		}
		if write {
			actions = append(actions, chromedp.Click("#new-write", chromedp.ByID))
		}
		var pw, who string
		actions = append(actions,
			chromedp.Click("#add-submit", chromedp.ByID),
			chromedp.WaitVisible("#password-value", chromedp.ByID),
			chromedp.Text("#password-value", &pw, chromedp.ByID),
			chromedp.Text("#password-user", &who, chromedp.ByID),
		)
		run(t, ctx, "add "+name, actions...)
		if who != name || len(pw) != 64 {
			t.Fatalf("the popup shows %q's password %q (%d characters)", who, "…", len(pw))
		}
		e.remember(pw)
		var status string
		run(t, ctx, "copy and close the popup",
			chromedp.Click("#copy-password", chromedp.ByID),
			chromedp.Sleep(200*time.Millisecond),
			chromedp.Text("#copy-status", &status, chromedp.ByID),
			chromedp.Click("#close-password", chromedp.ByID),
			chromedp.WaitNotVisible("#password-dialog", chromedp.ByID),
			chromedp.WaitVisible(row(name), chromedp.ByQuery))
		if status == "" {
			t.Errorf("the Copy button said nothing")
		}
		if evalBool(t, ctx, `document.body.innerHTML.includes(`+jsString(pw)+`)`) {
			t.Errorf("the password is still in the page after the popup closed")
		}
		return pw
	}
	rwPW := addUser(rw, true)
	if err := e.canWrite(rw, rwPW); err != nil {
		t.Errorf("the popup's password of the read-write user does not log in and write: %v", err)
	}
	roPW := addUser(ro, false)
	if err := e.canRead(ro, roPW); err != nil {
		t.Errorf("the popup's password of the read-only user does not log in: %v", err)
	}
	if err := e.canWrite(ro, roPW); err == nil {
		t.Errorf("Write unchecked made a user that can write")
	}
	var roRow string
	run(t, ctx, "read the read-only row", chromedp.Text(row(ro), &roRow, chromedp.ByQuery))
	if f := strings.Fields(roRow); len(f) < 3 || f[1] != "true" || f[2] != "false" {
		t.Errorf("read-only user's row reads %q", roRow)
	}

	// A reload keeps the session (this tab's sessionStorage) but never
	// shows a password again; the token is in no URL and no lasting storage.
	run(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(row(ro), chromedp.ByQuery))
	if evalBool(t, ctx, `document.getElementById('password-dialog').open`) ||
		evalBool(t, ctx, `document.documentElement.outerHTML.includes(`+jsString(roPW)+`) || document.documentElement.outerHTML.includes(`+jsString(rwPW)+`)`) {
		t.Errorf("a password is shown again after a reload")
	}
	var url string
	run(t, ctx, "location", chromedp.Location(&url))
	if strings.Contains(url, token[:20]) || evalBool(t, ctx, `localStorage.length > 0 || document.cookie !== ''`) {
		t.Errorf("the token is in the URL, localStorage or a cookie")
	}
	if !evalBool(t, ctx, `sessionStorage.getItem('dbusers.token') === `+jsString(token)) {
		t.Errorf("the session is not kept in sessionStorage")
	}

	if *screenshot != "" {
		var png []byte
		run(t, ctx, "screenshot", chromedp.FullScreenshot(&png, 100)) // 100: PNG, not JPEG
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Reset rw's password: Confirm stays disabled until the exact name.
	// Clearing the field as a user would (select all, delete) fires the
	// input event that the page listens to.
	clearConfirmation := chromedp.Tasks{
		chromedp.Evaluate(`document.getElementById('confirm-input').select()`, nil),
		chromedp.SendKeys("#confirm-input", "\b", chromedp.ByID),
	}
	confirmDisabled := func() bool { return evalBool(t, ctx, `document.getElementById('confirm-button').disabled`) }
	openAction := func(name, item string) {
		t.Helper()
		run(t, ctx, item+" "+name,
			chromedp.Click(row(name)+" button.more", chromedp.ByQuery),
			chromedp.WaitVisible("#user-menu", chromedp.ByID),
			chromedp.Click(item, chromedp.ByID),
			chromedp.WaitVisible("#confirm-input", chromedp.ByID))
	}
	typeConfirmation := func(name string) {
		t.Helper()
		if !confirmDisabled() {
			t.Errorf("Confirm is enabled before anything is typed")
		}
		for _, wrong := range []string{name[:len(name)-1], name + "x", strings.ToUpper(name)} {
			run(t, ctx, "type "+wrong, clearConfirmation, chromedp.SendKeys("#confirm-input", wrong, chromedp.ByID))
			if !confirmDisabled() {
				t.Errorf("Confirm is enabled with %q typed for %q", wrong, name)
			}
		}
		run(t, ctx, "type the name", clearConfirmation, chromedp.SendKeys("#confirm-input", name, chromedp.ByID))
		if confirmDisabled() {
			t.Fatalf("Confirm stays disabled with the exact name typed")
		}
	}
	openAction(rw, "#menu-reset")
	typeConfirmation(rw)
	var newPW string
	run(t, ctx, "confirm the reset",
		chromedp.Click("#confirm-button", chromedp.ByID),
		chromedp.WaitVisible("#password-value", chromedp.ByID),
		chromedp.Text("#password-value", &newPW, chromedp.ByID),
		chromedp.Click("#close-password", chromedp.ByID),
		chromedp.WaitNotVisible("#password-dialog", chromedp.ByID))
	e.remember(newPW)
	if err := e.canWrite(rw, newPW); err != nil {
		t.Errorf("the reset password does not log in: %v", err)
	}
	if err := e.f.CanLogin(rw, rwPW); err == nil {
		t.Errorf("the old password still logs in after the reset")
	}

	// Delete ro, also behind the typed confirmation.
	openAction(ro, "#menu-delete")
	typeConfirmation(ro)
	run(t, ctx, "confirm the delete",
		chromedp.Click("#confirm-button", chromedp.ByID),
		chromedp.WaitNotPresent(row(ro), chromedp.ByQuery))
	if e.f.AccountExists(ro) {
		t.Errorf("the deleted user's account still exists")
	}

	// An error in plain words: adding a user that exists.
	var msg string
	run(t, ctx, "add an existing user",
		chromedp.Click("#add-user", chromedp.ByID),
		chromedp.SendKeys("#new-name", rw, chromedp.ByID),
		chromedp.Click("#add-submit", chromedp.ByID),
		chromedp.WaitVisible("#error", chromedp.ByID),
		chromedp.Text("#error", &msg, chromedp.ByID))
	if msg != `User "`+rw+`" already exists` {
		t.Errorf("error shown: %q", msg)
	}

	// An expired session says so, and signs out.
	run(t, ctx, "use a wrong token",
		chromedp.Evaluate(`sessionStorage.setItem('dbusers.token', sessionStorage.getItem('dbusers.token').slice(0, -4) + 'AAAA')`, nil),
		chromedp.Reload(),
		chromedp.WaitVisible("#sign-in-section", chromedp.ByID),
		chromedp.Text("#error", &msg, chromedp.ByID))
	if !strings.Contains(msg, "access token was refused") || !strings.Contains(msg, "signature") {
		t.Errorf("a refused token shows %q", msg)
	}
	if evalBool(t, ctx, `sessionStorage.getItem('dbusers.token') !== null`) {
		t.Errorf("a refused token stays in sessionStorage")
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "<", `\x3c`)
	return "'" + r.Replace(s) + "'"
}

// profileDir is a browser profile directory for the test, removed at its
// end once the browser's last processes have let go of it: t.TempDir's own
// removal failed when Chromium still wrote there ("directory not empty").
func profileDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "dbusers-browser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("browser profile %s left behind: %v", dir, os.RemoveAll(dir))
	})
	return dir
}
