package test

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
	"github.com/dbusers/dbusers/wire"
)

// TestVaultEntryIsReadOnce: a generated password is in the vault sealed to
// the requester, gone after purge, and gone after the TTL when nobody reads it.
func TestVaultEntryIsReadOnce(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, func(c *config.Config) { c.Vault.TTL = 2 * time.Second })
	kv, err := e.js.KeyValue(t.Context(), "DBUSERS_VAULT")
	if err != nil {
		t.Fatal(err)
	}

	// Read once, then purged by the requester: gone.
	user := mysqltest.Username("vault_")
	f.DropUserLater(user)
	res, pw := e.create("app", user, false, "")
	wantOK(t, res)
	if res.Secret.Key != "app."+res.ID || res.Secret.Bucket != "DBUSERS_VAULT" {
		t.Fatalf("secret %+v", res.Secret)
	}
	if until := time.Until(res.Secret.ExpiresAt); until <= 0 || until > 3*time.Second {
		t.Errorf("expires_at %v is not about the 2s TTL from now", res.Secret.ExpiresAt)
	}
	if err := f.CanLogin(user, pw); err != nil {
		t.Fatalf("vault password does not log in: %v", err)
	}
	if _, err := kv.Get(t.Context(), res.Secret.Key); !isKeyGone(err) {
		t.Fatalf("after purge: %v, want the key gone", err)
	}

	// Sealed to the requester only: another key cannot open it.
	r := newRequester(t)
	id := e.nextID()
	user2 := mysqltest.Username("vault_")
	f.DropUserLater(user2)
	res = e.job("app", "create", map[string]any{"id": id, "username": user2, "reply_key": r.pub})
	wantOK(t, res)
	entry, err := kv.Get(t.Context(), res.Secret.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wire.OpenGeneratedPassword(newRequester(t).kp, e.svc.PublicKey(), entry.Value(), id); err == nil {
		t.Fatal("another requester's key opened the sealed password")
	}
	if _, err := wire.OpenGeneratedPassword(r.kp, e.svc.PublicKey(), entry.Value(), "another-job"); err == nil {
		t.Fatal("the sealed password opened for another job id")
	}

	// Not read: gone after the TTL.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := kv.Get(t.Context(), res.Secret.Key)
		if isKeyGone(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault entry still there 10s after a 2s TTL: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestListPagesSortedAndFiltered: list shows the target's accounts with
// their flags, sorted, page by page, and leaves out foreign accounts.
func TestListPagesSortedAndFiltered(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)

	want := []wire.Account{{Username: f.Protected, Protected: true}}
	for i := range 5 {
		u := mysqltest.Username(fmt.Sprintf("l%d_", i))
		f.DropUserLater(u)
		ro := i%2 == 0
		wantOK(t, first(e.create("app", u, ro, "")))
		want = append(want, wire.Account{Username: u, ReadOnly: ro})
	}
	// Foreign: also holds a grant on another database.
	foreign := mysqltest.Username("lf_")
	f.DropUserLater(foreign)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", foreign, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", foreign)
	f.Exec("GRANT SELECT ON `"+other.Database+"`.* TO ?@'%'", foreign)
	// Made outside dbusers, and the target's: a name MySQL allows but
	// the username rule does not. A page ending on it must not stop the
	// listing (the next page's cursor is that name).
	odd := "lq'" + mysqltest.Token(4) + ` \x`
	f.DropUserLater(odd)
	f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", odd, mysqltest.Password())
	f.Exec("GRANT SELECT ON `"+f.Database+"`.* TO ?@'%'", odd)
	want = append(want, wire.Account{Username: odd, ReadOnly: true})
	slices.SortFunc(want, func(a, b wire.Account) int { return strings.Compare(a.Username, b.Username) })

	// Every account is a page's last at one of the two page sizes.
	for _, limit := range []int{2, 1} {
		var got []wire.Account
		after := ""
		pages := 0
		for {
			fields := map[string]any{"limit": limit}
			if after != "" {
				fields["after"] = after
			}
			res := e.job("app", "list", fields)
			wantOK(t, res)
			pages++
			if len(res.Users) > limit {
				t.Fatalf("page of %d with limit %d", len(res.Users), limit)
			}
			got = append(got, res.Users...)
			if res.Next == "" {
				break
			}
			after = res.Next
			if pages > 10 {
				t.Fatal("list does not end")
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("list by %d = %+v\nwant %+v", limit, got, want)
		}
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
			t.Errorf("%d pages for %d accounts at %d a page, want %d", pages, len(want), limit, wantPages)
		}
	}

	// An empty page still has users: [] and next: "".
	raw := e.publishRaw(prefix+".jobs.app.user.list", "empty-list", "empty-list", []byte(`{"id":"empty-list","after":"zzzzzz"}`))
	var shape map[string]json.RawMessage
	if err := json.Unmarshal(raw, &shape); err != nil {
		t.Fatal(err)
	}
	if string(shape["users"]) != "[]" || string(shape["next"]) != `""` {
		t.Fatalf("empty page: users=%s next=%s", shape["users"], shape["next"])
	}
}

// TestRepublishedJobChangesNothing: a job id republished after the stream's
// duplicate window (here: without the Nats-Msg-Id header, which the stream
// would otherwise drop) is answered with the stored result and not applied
// again.
func TestRepublishedJobChangesNothing(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	user := mysqltest.Username("again_")
	f.DropUserLater(user)
	wantOK(t, first(e.create("app", user, false, "")))

	r := newRequester(t)
	id := e.nextID()
	pw := "First-reset-password-" + mysqltest.Token(8)
	body, _ := json.Marshal(map[string]any{"id": id, "username": user, "reply_key": r.pub, "password": e.sealFor(r, id, pw)})
	firstRaw := e.publishRaw(prefix+".jobs.app.user.reset_password", id, id, body)

	// Someone changes the password by other means; a replay of the job
	// must not set it back.
	other := "Changed-elsewhere-" + mysqltest.Token(8)
	f.Exec("ALTER USER ?@'%' IDENTIFIED BY ?", user, other)
	againRaw := e.publishRaw(prefix+".jobs.app.user.reset_password", "", id, body)
	if string(againRaw) != string(firstRaw) {
		t.Fatalf("replay result differs:\n%s\n%s", firstRaw, againRaw)
	}
	if err := f.CanLogin(user, other); err != nil {
		t.Fatalf("the replayed job was applied again: %v", err)
	}
}

// TestJobsOfOneTargetRunInOrder: create, reset, reset, delete, create of one
// username, published back to back, are applied in that order.
func TestJobsOfOneTargetRunInOrder(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	g := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f), target("two", g)}, nil)

	type step struct{ target, op, user string }
	var steps []step
	for _, tg := range []string{"app", "two"} {
		for i := range 3 {
			u := mysqltest.Username(fmt.Sprintf("o%d_", i))
			f.DropUserLater(u)
			for _, op := range []string{"create", "reset_password", "reset_password", "delete", "create"} {
				steps = append(steps, step{tg, op, u})
			}
		}
	}
	// Subscribe to every result, publish all, then collect.
	sub, err := e.nc.SubscribeSync(prefix + ".results.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ids := make([]string, len(steps))
	r := newRequester(t)
	for i, s := range steps {
		ids[i] = fmt.Sprintf("ord-%s-%d", mysqltest.Token(6), i)
		fields := map[string]any{"id": ids[i], "username": s.user}
		if s.op != "delete" {
			fields["reply_key"] = r.pub
		}
		body, _ := json.Marshal(fields)
		if _, err := e.js.Publish(t.Context(), prefix+".jobs."+s.target+".user."+s.op, body); err != nil {
			t.Fatal(err)
		}
	}
	completed := map[string]wire.Result{}
	for len(completed) < len(steps) {
		msg, err := sub.NextMsg(30 * time.Second)
		if err != nil {
			t.Fatalf("%d of %d results: %v", len(completed), len(steps), err)
		}
		var res wire.Result
		if err := json.Unmarshal(msg.Data, &res); err != nil {
			t.Fatal(err)
		}
		completed[res.ID] = res
	}
	for i, s := range steps {
		res := completed[ids[i]]
		if res.Status != wire.StatusOK {
			t.Errorf("step %d %s %s on %s: %+v (out of order?)", i, s.op, s.user, s.target, res.Error)
		}
	}
	for _, s := range steps {
		fx := f
		if s.target == "two" {
			fx = g
		}
		if !fx.AccountExists(s.user) {
			t.Errorf("%s does not exist after create, delete, create", s.user)
		}
	}
}

// TestInfoEndpoint answers with the worker's xkey and version.
func TestInfoEndpoint(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	msg, err := e.nc.Request(prefix+".info", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info["xkey"] != e.svc.PublicKey() || !strings.HasPrefix(info["xkey"], "X") || info["version"] != service.Version || len(info) != 2 {
		t.Fatalf("info = %v", info)
	}
}

// TestEmbeddedServer: with nats.url empty the worker serves NATS itself on
// the configured address, and a taken address fails at once, naming the key.
func TestEmbeddedServer(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cfg := config.Default()
	cfg.NATS.Embedded.Listen = l.Addr().String()
	cfg.NATS.Embedded.StoreDir = t.TempDir()
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "w.xk")
	cfg.Targets = []config.Target{target("app", f)}
	start := time.Now()
	_, err = service.Start(t.Context(), &cfg, service.Options{})
	if err == nil || !strings.Contains(err.Error(), "nats.embedded.listen") || time.Since(start) > 5*time.Second {
		t.Fatalf("taken port: err %v after %v, want a quick error naming nats.embedded.listen", err, time.Since(start))
	}

	addr := l.Addr().String()
	l.Close()
	svc, err := service.Start(t.Context(), &cfg, service.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	if want := "nats://" + addr; svc.ClientURL() != want {
		t.Errorf("ClientURL %q, want %q", svc.ClientURL(), want)
	}
	e := &env{t: t, svc: svc}
	e.nc = connect(t, "nats://"+addr)
	e.js = jetstreamFor(t, e.nc)
	res := e.job("app", "list", map[string]any{})
	wantOK(t, res)
}
