package test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/wire"
)

// TestFailedJobsLeaveNoVaultEntry: jobs with generated passwords that MySQL's
// side refuses (protected_user, user_not_found, user_exists, foreign_user)
// leave no entry in the vault bucket, whether each ran alone or they came
// together (and ran as many-account batches); the entry of a job that
// succeeded stays, and still opens to a password that logs in. A removed
// entry reads as gone, as the client reads it: its key's last message is
// the purge marker, without the sealed bytes.
func TestFailedJobsLeaveNoVaultEntry(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f), target("other", other)}, nil)
	kv, err := e.js.KeyValue(t.Context(), "DBUSERS_VAULT")
	if err != nil {
		t.Fatal(err)
	}
	vaultStream, err := e.js.Stream(t.Context(), "KV_DBUSERS_VAULT")
	if err != nil {
		t.Fatal(err)
	}

	existing := mysqltest.Username("vx_")
	f.DropUserLater(existing)
	wantOK(t, first(e.create("app", existing, false, "")))
	otherUser := mysqltest.Username("vo_")
	other.DropUserLater(otherUser)
	wantOK(t, first(e.create("other", otherUser, false, "")))

	type job struct {
		op, username string
		want         wire.Code // "" for ok
	}
	// jobSet is one of each failure, and one that succeeds, each with a
	// generated password.
	jobSet := func() []job {
		made := mysqltest.Username("vn_")
		f.DropUserLater(made)
		return []job{
			{"reset_password", f.Protected, wire.CodeProtectedUser},
			{"reset_password", mysqltest.Username("vg_"), wire.CodeUserNotFound},
			{"create", existing, wire.CodeUserExists},
			{"reset_password", otherUser, wire.CodeForeignUser},
			{"create", made, ""},
		}
	}
	type sent struct {
		job
		id string
		r  requester
	}
	check := func(t *testing.T, all []sent, results map[string]wire.Result) {
		t.Helper()
		var okKeys []string
		for _, s := range all {
			res := results[s.id]
			if s.want == "" {
				wantOK(t, res)
				if res.Secret == nil || res.Secret.Key != wire.VaultKey("app", s.id) {
					t.Fatalf("%s %s: secret %+v, want the vault key", s.op, s.username, res.Secret)
				}
				okKeys = append(okKeys, res.Secret.Key)
				continue
			}
			wantCode(t, res, s.want)
		}
		// The purges go out right after the results: wait for them.
		deadline := time.Now().Add(10 * time.Second)
		for _, s := range all {
			if s.want == "" {
				continue
			}
			key := wire.VaultKey("app", s.id)
			for {
				_, err := kv.Get(t.Context(), key)
				if isKeyGone(err) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s of %s ended %s, and the vault still holds its entry %s (%v)", s.op, s.username, s.want, key, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// As the client reads it: a direct get of the key's last
			// message finds the purge marker, no sealed bytes.
			msg, err := vaultStream.GetLastMsgForSubject(t.Context(), "$KV.DBUSERS_VAULT."+key)
			if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				t.Fatal(err)
			}
			if err == nil && (len(msg.Data) != 0 || msg.Header.Get("KV-Operation") != "PURGE") {
				t.Fatalf("%s: last message %d bytes, KV-Operation %q; want a purge marker", key, len(msg.Data), msg.Header.Get("KV-Operation"))
			}
		}
		// What the bucket holds: the successful jobs' entries, none of
		// the failed ones'.
		lister, err := kv.ListKeys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var held []string
		for k := range lister.Keys() {
			held = append(held, k)
		}
		for _, s := range all {
			if s.want != "" && slices.Contains(held, wire.VaultKey("app", s.id)) {
				t.Fatalf("the bucket lists %s of failed job %s", wire.VaultKey("app", s.id), s.id)
			}
		}
		for _, k := range okKeys {
			if !slices.Contains(held, k) {
				t.Fatalf("the entry %s of a job that succeeded is gone (bucket holds %q)", k, held)
			}
		}
		for _, s := range all {
			if s.want == "" {
				pw := e.readSecret(s.r, s.id, results[s.id].Secret)
				if err := f.CanLogin(s.username, pw); err != nil {
					t.Fatalf("the kept entry's password does not log in: %v", err)
				}
			}
		}
	}

	t.Run("one at a time", func(t *testing.T) {
		var all []sent
		results := map[string]wire.Result{}
		for _, j := range jobSet() {
			r := newRequester(t)
			id := e.nextID()
			results[id] = e.job("app", j.op, map[string]any{"id": id, "username": j.username, "reply_key": r.pub})
			all = append(all, sent{job: j, id: id, r: r})
		}
		check(t, all, results)
	})

	t.Run("together", func(t *testing.T) {
		sub, err := e.nc.SubscribeSync(prefix + ".results.app.>")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		var all []sent
		// Resets, then creates: each kind on distinct accounts, so each
		// can run as one many-account batch.
		set := jobSet()
		slices.SortStableFunc(set, func(a, b job) int {
			if a.op == b.op {
				return 0
			}
			if a.op == "reset_password" {
				return -1
			}
			return 1
		})
		for _, j := range set {
			r := newRequester(t)
			id := e.nextID()
			body, _ := json.Marshal(map[string]any{"id": id, "username": j.username, "reply_key": r.pub})
			msg := nats.NewMsg(prefix + ".jobs.app.user." + j.op)
			msg.Data = body
			msg.Header.Set(jetstream.MsgIDHeader, id)
			if _, err := e.js.PublishMsgAsync(msg); err != nil {
				t.Fatal(err)
			}
			all = append(all, sent{job: j, id: id, r: r})
		}
		select {
		case <-e.js.PublishAsyncComplete():
		case <-time.After(10 * time.Second):
			t.Fatal("jobs not stored")
		}
		results := map[string]wire.Result{}
		for len(results) < len(all) {
			m, err := sub.NextMsg(30 * time.Second)
			if err != nil {
				t.Fatalf("%d of %d results: %v", len(results), len(all), err)
			}
			var res wire.Result
			if err := json.Unmarshal(m.Data, &res); err != nil {
				t.Fatal(err)
			}
			results[res.ID] = res
		}
		check(t, all, results)
	})
}
