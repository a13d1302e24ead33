package vault

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

func TestLoadOrCreateKeys(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string) // nil: file absent
		wantErr string
	}{
		{name: "absent: created", prepare: nil},
		{name: "existing 0600: loaded", prepare: func(t *testing.T, path string) { writeSeed(t, path, 0o600) }},
		{name: "existing 0400: loaded", prepare: func(t *testing.T, path string) { writeSeed(t, path, 0o400) }},
		{name: "group readable: refused", prepare: func(t *testing.T, path string) { writeSeed(t, path, 0o640) }, wantErr: "chmod 600"},
		{name: "world readable: refused", prepare: func(t *testing.T, path string) { writeSeed(t, path, 0o604) }, wantErr: "chmod 600"},
		{name: "not a seed: refused", prepare: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("SUAGARBAGE\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "nkeys"},
		{name: "directory: refused", prepare: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sub", "dir", "worker.xk")
			if tt.prepare != nil {
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				tt.prepare(t, path)
			}
			k, err := LoadOrCreateKeys(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadOrCreateKeys: %v", err)
			}
			if !nkeys.IsValidPublicCurveKey(k.PublicKey()) {
				t.Fatalf("public key %q is not a curve key", k.PublicKey())
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("seed file mode %04o", fi.Mode().Perm())
			}
			if tt.prepare == nil {
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("created seed file mode %04o, want 0600", fi.Mode().Perm())
				}
				di, err := os.Stat(filepath.Dir(path))
				if err != nil {
					t.Fatal(err)
				}
				if di.Mode().Perm() != 0o700 {
					t.Errorf("created dir mode %04o, want 0700", di.Mode().Perm())
				}
			}
			again, err := LoadOrCreateKeys(path)
			if err != nil {
				t.Fatalf("second load: %v", err)
			}
			if again.PublicKey() != k.PublicKey() {
				t.Errorf("second load gave %s, first %s", again.PublicKey(), k.PublicKey())
			}
		})
	}
}

func writeSeed(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, seed, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
}

func testKeys(t *testing.T) (*Keys, nkeys.KeyPair) {
	t.Helper()
	w, err := LoadOrCreateKeys(filepath.Join(t.TempDir(), "worker.xk"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	return w, r
}

func pub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var passwords = []string{
	`Abcdefghijklmnopqrstuvwxyz0123`,
	`quote"back\slash'semi;colon<tag>&amp{}[]`,
	`ünïcødé-пароль-密码-🔑-\u0000-literal`,
	"tab\tnew\nline",
	"",
}

func TestChosenPasswordRoundTrip(t *testing.T) {
	w, r := testKeys(t)
	for _, pw := range passwords {
		t.Run(pw, func(t *testing.T) {
			sealed, err := wire.SealChosenPassword(r, w.PublicKey(), "job-1", secret.New(pw))
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.OpenPassword(secret.New(sealed), pub(t, r), "job-1")
			if err != nil {
				t.Fatalf("OpenPassword: %v", err)
			}
			if got.Reveal() != pw {
				t.Fatalf("got %q, want %q", got, pw)
			}
		})
	}
}

func TestGeneratedPasswordRoundTrip(t *testing.T) {
	w, r := testKeys(t)
	for _, pw := range passwords {
		t.Run(pw, func(t *testing.T) {
			sealed, err := w.SealPassword("job-2", secret.New(pw), pub(t, r))
			if err != nil {
				t.Fatal(err)
			}
			got, err := wire.OpenGeneratedPassword(r, w.PublicKey(), sealed, "job-2")
			if err != nil {
				t.Fatalf("OpenGeneratedPassword: %v", err)
			}
			if got.Reveal() != pw {
				t.Fatalf("got %q, want %q", got, pw)
			}
		})
	}
}

func TestOpenPasswordErrors(t *testing.T) {
	const pw = "Secret-Password-1234567890"
	w, r := testKeys(t)
	other, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	good, err := wire.SealChosenPassword(r, w.PublicKey(), "job-1", secret.New(pw))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(good)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), raw...)
	tampered[len(tampered)-1] ^= 0x01
	// A well-sealed payload of the wrong shape.
	badJSON, err := r.Seal([]byte(`{"job_id":"job-1","password":"`+pw+`","extra":1}`), w.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	notJSON, err := r.Seal([]byte(pw), w.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		sealed string
		sender string
		jobID  string
		want   error
	}{
		{"wrong sender", good, pub(t, other), "job-1", wire.ErrSeal},
		{"sender not a curve key", good, "UABC", "job-1", wire.ErrSeal},
		{"tampered", base64.StdEncoding.EncodeToString(tampered), pub(t, r), "job-1", wire.ErrSeal},
		{"bad base64", "!!not base64!!", pub(t, r), "job-1", wire.ErrSeal},
		{"url base64", base64.URLEncoding.EncodeToString(raw) + "_-", pub(t, r), "job-1", wire.ErrSeal},
		{"unknown field", base64.StdEncoding.EncodeToString(badJSON), pub(t, r), "job-1", wire.ErrSeal},
		{"not json", base64.StdEncoding.EncodeToString(notJSON), pub(t, r), "job-1", wire.ErrSeal},
		{"job id mismatch", good, pub(t, r), "job-2", wire.ErrSealJobID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := w.OpenPassword(secret.New(tt.sealed), tt.sender, tt.jobID)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !got.IsZero() {
				t.Errorf("returned a password on error")
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestSealRejects(t *testing.T) {
	w, r := testKeys(t)
	tests := []struct {
		name, jobID, pw, recipient string
		want                       string // in the error, when set
	}{
		{"invalid utf8", "j", "a\xffb", pub(t, r), ""},
		{"empty job id", "", "pw", pub(t, r), ""},
		{"recipient not curve key", "j", "pw", "Uxyz", ""},
		// The zero point: its shared secret with any key is all zeroes.
		{"low-order recipient", "j", "pw-secret", lowOrderKey(t), "low order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := w.SealPassword(tt.jobID, secret.New(tt.pw), tt.recipient)
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), tt.pw) || strings.Contains(err.Error(), tt.recipient) {
				t.Fatalf("error %q: want it to say %q, and to quote neither the password nor the key", err, tt.want)
			}
		})
	}
}

// lowOrderKey is a well-formed curve public key of low order.
func lowOrderKey(t *testing.T) string {
	k, err := nkeys.Encode(nkeys.PrefixByteCurve, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return string(k)
}

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	return js
}

func TestStore(t *testing.T) {
	js := startJS(t)
	ctx := t.Context()
	w, r := testKeys(t)

	tests := []struct {
		name   string
		ttl    time.Duration
		remove func(t *testing.T, kv jetstream.KeyValue, key string) // then the key must be gone
	}{
		{name: "get then purge", ttl: time.Minute, remove: func(t *testing.T, kv jetstream.KeyValue, key string) {
			if err := kv.Purge(ctx, key); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "expires after ttl", ttl: time.Second, remove: func(t *testing.T, _ jetstream.KeyValue, _ string) {
			time.Sleep(1500 * time.Millisecond)
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bucket := "TEST_VAULT_" + string(rune('A'+i))
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: tt.ttl, History: 1})
			if err != nil {
				t.Fatal(err)
			}
			// Not deleted: the server and its store are the test's own, and
			// deleting an account's last stream races the next one's
			// creation inside nats-server ("could not create storage
			// directory ... $G/streams: no such file or directory").
			st := NewStore(js, kv, tt.ttl)
			if st.Bucket() != bucket {
				t.Errorf("Bucket() = %q", st.Bucket())
			}
			sealed, err := w.SealPassword("job-7", secret.New("pw-xyz"), pub(t, r))
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			key, exp, err := st.Put(ctx, "my-app", "job-7", sealed)
			if err != nil {
				t.Fatal(err)
			}
			if key != "my-app.job-7" || key != wire.VaultKey("my-app", "job-7") {
				t.Errorf("key = %q", key)
			}
			if exp.Location() != time.UTC || exp.Nanosecond() != 0 || exp.Before(before.Add(tt.ttl)) || exp.After(time.Now().Add(tt.ttl+time.Second)) {
				t.Errorf("expiresAt = %v, want UTC whole second just after now+%s", exp, tt.ttl)
			}
			e, err := kv.Get(ctx, key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, err := wire.OpenGeneratedPassword(r, w.PublicKey(), e.Value(), "job-7")
			if err != nil || got.Reveal() != "pw-xyz" {
				t.Fatalf("opened %q, %v", got, err)
			}
			tt.remove(t, kv, key)
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err = kv.Get(ctx, key)
				if errors.Is(err, jetstream.ErrKeyNotFound) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("key still readable: err = %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

func TestStorePutError(t *testing.T) {
	js := startJS(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "V", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(js, kv, time.Minute)
	if _, _, err := st.Put(t.Context(), "bad target", "j", []byte("x")); err == nil {
		t.Fatal("want an error for an invalid key")
	}
}

// TestStorePutMany: a batch's entries are written in one round, each under
// its job's key, readable as written.
func TestStorePutMany(t *testing.T) {
	js := startJS(t)
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "V", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(js, kv, time.Minute)
	before := time.Now()
	keys, expires, errs := st.PutMany(t.Context(), "app", []string{"j1", "j2", "j3"}, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	if d := expires.Sub(before); d < time.Minute || d > time.Minute+2*time.Second {
		t.Fatalf("entries expire %v after the write, want the bucket's minute", d)
	}
	for i, want := range []string{"a", "b", "c"} {
		if errs[i] != nil || keys[i] != wire.VaultKey("app", []string{"j1", "j2", "j3"}[i]) {
			t.Fatalf("entry %d: key %q, %v", i, keys[i], errs[i])
		}
		e, err := kv.Get(t.Context(), keys[i])
		if err != nil || string(e.Value()) != want {
			t.Fatalf("entry %s: %v %q, want %q", keys[i], err, e.Value(), want)
		}
	}
	if _, _, errs := st.PutMany(t.Context(), "bad target", []string{"j"}, [][]byte{[]byte("x")}); errs[0] == nil {
		t.Fatal("want an error for an invalid key")
	}
}

// TestStorePutNew: an entry is created only under a key that holds
// nothing, not an entry and not the purge marker a requester's read
// leaves; a refused write changes nothing and is not an error.
func TestStorePutNew(t *testing.T) {
	js := startJS(t)
	ctx := t.Context()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "V", TTL: time.Minute, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := NewStore(js, kv, time.Minute)
	tests := []struct {
		name    string
		before  func(t *testing.T, key string) // what the key holds first
		created bool
		value   string // then read under the key; "" = reads as gone
	}{
		{name: "nothing", before: func(*testing.T, string) {}, created: true, value: "new"},
		{name: "an entry", before: func(t *testing.T, key string) {
			if _, err := kv.Put(ctx, key, []byte("first")); err != nil {
				t.Fatal(err)
			}
		}, created: false, value: "first"},
		{name: "a purge marker", before: func(t *testing.T, key string) {
			if _, err := kv.Put(ctx, key, []byte("first")); err != nil {
				t.Fatal(err)
			}
			if err := kv.Purge(ctx, key); err != nil {
				t.Fatal(err)
			}
		}, created: false, value: ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("job-%d", i)
			key := wire.VaultKey("app", id)
			tt.before(t, key)
			gotKey, exp, created, err := st.PutNew(ctx, "app", id, []byte("new"))
			if err != nil || created != tt.created {
				t.Fatalf("PutNew: created %v, %v; want created %v", created, err, tt.created)
			}
			if created && (gotKey != key || time.Until(exp) < 58*time.Second) {
				t.Fatalf("PutNew: key %q expiring %v, want %q a minute on", gotKey, exp, key)
			}
			e, err := kv.Get(ctx, key)
			switch {
			case tt.value == "" && !errors.Is(err, jetstream.ErrKeyNotFound):
				t.Fatalf("Get: %v, want the key gone", err)
			case tt.value != "" && (err != nil || string(e.Value()) != tt.value):
				t.Fatalf("Get: %v, want %q", err, tt.value)
			}
		})
	}
	if _, _, _, err := st.PutNew(ctx, "bad target", "j", []byte("x")); err == nil {
		t.Fatal("want an error for an invalid key")
	}
}

// TestSealReusesSharedKey: sealing to a requester seen before reuses its
// shared key, the output still opens with nkeys on the requester's side,
// and the cache stays bounded.
func TestSealReusesSharedKey(t *testing.T) {
	k, err := LoadOrCreateKeys(filepath.Join(t.TempDir(), "w.xk"))
	if err != nil {
		t.Fatal(err)
	}
	req, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	reqPub, _ := req.PublicKey()
	var seals [][]byte
	for i := range 3 {
		b, err := k.SealPassword("job-1", secret.New(fmt.Sprintf("pw-%d", i)), reqPub)
		if err != nil {
			t.Fatal(err)
		}
		seals = append(seals, b)
	}
	if len(k.shared) != 1 {
		t.Fatalf("%d shared keys cached for one requester", len(k.shared))
	}
	for i, b := range seals {
		pw, err := wire.OpenGeneratedPassword(req, k.PublicKey(), b, "job-1")
		if err != nil || pw.Reveal() != fmt.Sprintf("pw-%d", i) {
			t.Fatalf("seal %d opens to %q, %v", i, pw, err)
		}
	}
	if bytes.Equal(seals[0], seals[1]) {
		t.Fatal("two seals are equal: the nonce was reused")
	}
	for range maxSharedKeys + 10 {
		other, _ := nkeys.CreateCurveKeys()
		pub, _ := other.PublicKey()
		if _, err := k.SealPassword("job-2", secret.New("pw"), pub); err != nil {
			t.Fatal(err)
		}
	}
	if len(k.shared) > maxSharedKeys {
		t.Fatalf("cache holds %d shared keys, bound %d", len(k.shared), maxSharedKeys)
	}
}
