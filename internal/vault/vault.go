// Package vault owns the worker's long-lived curve key (xkey), the sealing
// and opening of passwords with it (contract §4), and the writing of sealed
// generated passwords into the vault KV bucket.
package vault

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
	"golang.org/x/crypto/nacl/box"
	//lint:ignore SA1019 HSalsa20 is the step of nacl's box.Precompute after the key agreement; the package's own replacement (salsa20) does not offer it.
	"golang.org/x/crypto/salsa20/salsa"
)

// Keys holds the worker's curve key pair, and the shared keys computed
// for recent requesters.
type Keys struct {
	kp   nkeys.KeyPair
	pub  string
	priv *ecdh.PrivateKey

	mu     sync.Mutex
	shared map[string]*[32]byte // requester public key → nacl shared key
}

// LoadOrCreateKeys reads the xkey seed at path, or, when the file does not
// exist, creates a new key and writes its seed there (parent directories
// 0700, file 0600). A seed file that group or others can access is refused.
func LoadOrCreateKeys(path string) (*Keys, error) {
	// Anyone who reads the seed can open every password sealed to the
	// worker; anyone who can write it can swap the key.
	switch err := secret.CheckFile(path); {
	case errors.Is(err, fs.ErrNotExist):
		return createKeys(path)
	case err != nil:
		return nil, fmt.Errorf("vault: xkey seed file: %w", err)
	}
	seed, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vault: xkey seed file: %w", err)
	}
	defer wipe(seed)
	kp, err := nkeys.FromCurveSeed(bytes.TrimSpace(seed))
	if err != nil {
		// nkeys errors are fixed texts; the seed itself is never quoted.
		return nil, fmt.Errorf("vault: xkey seed file %s: %w", path, err)
	}
	return newKeys(kp)
}

func createKeys(path string) (*Keys, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vault: create xkey seed directory: %w", err)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("vault: create xkey: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("vault: create xkey: %w", err)
	}
	defer wipe(seed)
	// Temp file + rename so a crash never leaves a half-written seed behind;
	// CreateTemp makes the file 0600.
	tmp, err := os.CreateTemp(dir, ".xkey-*")
	if err != nil {
		return nil, fmt.Errorf("vault: write xkey seed: %w", err)
	}
	tmpName := tmp.Name()
	defer func() { _ = os.Remove(tmpName) }() // no-op after a successful rename
	if _, err := tmp.Write(append(seed, '\n')); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("vault: write xkey seed: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("vault: write xkey seed: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("vault: write xkey seed: %w", err)
	}
	if err := os.Chmod(tmpName, 0o600); err != nil {
		return nil, fmt.Errorf("vault: write xkey seed: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return nil, fmt.Errorf("vault: write xkey seed: %w", err)
	}
	// Sync the directory so the new name survives a power cut.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return newKeys(kp)
}

func newKeys(kp nkeys.KeyPair) (*Keys, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("vault: xkey public key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("vault: xkey seed: %w", err)
	}
	defer wipe(seed)
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil || len(raw) != 32 {
		return nil, errors.New("vault: the xkey seed does not hold a curve private key")
	}
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	wipe(raw)
	if err != nil {
		return nil, fmt.Errorf("vault: xkey private key: %w", err)
	}
	return &Keys{kp: kp, pub: pub, priv: priv, shared: map[string]*[32]byte{}}, nil
}

// maxSharedKeys bounds the cache of precomputed shared keys; a batch of
// jobs shares one reply_key, so a small cache serves bulk work.
const maxSharedKeys = 4096

// sharedKey returns the nacl shared key with peerPub (what box.Precompute
// makes), computing it only for a key not seen recently: one X25519
// scalar multiplication, about 40 µs here. box.Precompute would cost two, as
// curve25519 derives a public key from our private key on every call.
// A low-order peer key, whose shared secret anyone knows, is refused.
func (k *Keys) sharedKey(peerPub string) (*[32]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if sk, ok := k.shared[peerPub]; ok {
		return sk, nil
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(peerPub))
	if err != nil || len(raw) != 32 {
		return nil, errors.New("vault: not a curve public key")
	}
	peer, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return nil, errors.New("vault: not a curve public key")
	}
	dh, err := k.priv.ECDH(peer)
	if err != nil {
		return nil, errors.New("vault: the curve public key is of low order: nothing sealed to it would be secret")
	}
	var in [32]byte
	copy(in[:], dh)
	wipe(dh)
	sk := new([32]byte)
	salsa.HSalsa20(sk, &[16]byte{}, &in, &salsa.Sigma)
	wipe(in[:])
	if len(k.shared) >= maxSharedKeys {
		clear(k.shared)
	}
	k.shared[peerPub] = sk
	return sk, nil
}

// boxSeal seals plain to recipientPub in nkeys' xkv1 format (version,
// nonce, box), with the cached shared key.
func (k *Keys) boxSeal(plain []byte, recipientPub string) ([]byte, error) {
	sk, err := k.sharedKey(recipientPub)
	if err != nil {
		return nil, err
	}
	var nonce [24]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(nkeys.XKeyVersionV1)+len(nonce)+len(plain)+box.Overhead)
	out = append(out, nkeys.XKeyVersionV1...)
	out = append(out, nonce[:]...)
	return box.SealAfterPrecomputation(out, plain, &nonce, sk), nil
}

// PublicKey returns the worker's curve public key ("X…"), as published on P.info.
func (k *Keys) PublicKey() string { return k.pub }

// StoreKey derives from the worker's seed the key that encrypts the
// embedded nats-server's store at rest: the worker's one secret protects
// both, and nothing else needs keeping.
func (k *Keys) StoreKey() (string, error) {
	seed, err := k.kp.Seed()
	if err != nil {
		return "", fmt.Errorf("vault: seed: %w", err)
	}
	defer wipe(seed)
	h := sha256.New()
	h.Write([]byte("dbusers jetstream store key\x00"))
	h.Write(seed)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// OpenPassword opens a requester-chosen password: sealed is the job's
// standard-base64 "password" field, senderPub the job's reply_key. The seal
// must hold {"job_id","password"} with job_id equal to jobID. Errors wrap
// ErrSeal or ErrSealJobID and never contain the password.
func (k *Keys) OpenPassword(sealed secret.Secret, senderPub, jobID string) (secret.Secret, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed.Reveal())
	if err != nil {
		return secret.Secret{}, fmt.Errorf("%w: not standard base64", wire.ErrSeal)
	}
	return wire.Open(k.kp, raw, senderPub, jobID)
}

// SealPassword seals {"job_id":jobID,"password":password} from the worker to
// recipientPub (the job's reply_key). The result is raw bytes, as stored in
// the vault bucket.
func (k *Keys) SealPassword(jobID string, password secret.Secret, recipientPub string) ([]byte, error) {
	return wire.Seal(k.boxSeal, jobID, password, recipientPub)
}

// Store writes sealed generated passwords into the vault KV bucket.
type Store struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	ttl time.Duration
}

// NewStore returns a Store over kv, whose bucket TTL is ttl (the TTL is used
// only to tell the requester when the entry expires); js publishes a
// batch's entries at once (PutMany).
func NewStore(js jetstream.JetStream, kv jetstream.KeyValue, ttl time.Duration) *Store {
	return &Store{js: js, kv: kv, ttl: ttl}
}

// Put stores sealed under Key(target, jobID), replacing any earlier value (a
// retried job's new password must win). expiresAt is taken after the write
// and rounded up to the second, so the entry is gone by then.
func (s *Store) Put(ctx context.Context, target, jobID string, sealed []byte) (key string, expiresAt time.Time, err error) {
	key = wire.VaultKey(target, jobID)
	if _, err := s.kv.Put(ctx, key, sealed); err != nil {
		return "", time.Time{}, fmt.Errorf("vault: put %s/%s: %w", s.kv.Bucket(), key, err)
	}
	return key, s.expiry(), nil
}

// PutNew stores sealed under Key(target, jobID) only where the bucket holds
// nothing for that key, not even a purge marker; created=false (and no
// error) when it holds something. A first delivery writes its entry so
// before it knows whether the job was answered before: a write that finds
// an earlier entry waits to know, and an answered job's entry is never
// replaced.
func (s *Store) PutNew(ctx context.Context, target, jobID string, sealed []byte) (key string, expiresAt time.Time, created bool, err error) {
	key = wire.VaultKey(target, jobID)
	_, err = s.js.Publish(ctx, "$KV."+s.kv.Bucket()+"."+key, sealed, jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return key, s.expiry(), true, nil
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return key, time.Time{}, false, nil
	}
	return "", time.Time{}, false, fmt.Errorf("vault: put %s/%s: %w", s.kv.Bucket(), key, err)
}

// PutMany is Put for many jobs of target: every entry published at once,
// the stream's acks awaited together.
func (s *Store) PutMany(ctx context.Context, target string, jobIDs []string, sealed [][]byte) ([]string, time.Time, []error) {
	keys := make([]string, len(jobIDs))
	for i, id := range jobIDs {
		keys[i] = wire.VaultKey(target, id)
	}
	errs := streams.PutAll(ctx, s.js, s.kv.Bucket(), keys, sealed)
	for i, err := range errs {
		if err != nil {
			errs[i] = fmt.Errorf("vault: put %s/%s: %w", s.kv.Bucket(), keys[i], err)
		}
	}
	return keys, s.expiry(), errs
}

// expiry is when an entry written now expires, to the second, rounded up.
func (s *Store) expiry() time.Time {
	exp := time.Now().UTC().Add(s.ttl)
	if t := exp.Truncate(time.Second); t.Before(exp) {
		exp = t.Add(time.Second)
	}
	return exp
}

// Purge removes the entry under Key(target, jobID) and every earlier value
// of it, as a requester's purge after reading does: a direct get then
// finds only the purge marker, which reads as gone (ErrKeyDeleted), and
// the sealed bytes are no longer in the bucket's stream.
func (s *Store) Purge(ctx context.Context, target, jobID string) error {
	key := wire.VaultKey(target, jobID)
	if err := s.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("vault: purge %s/%s: %w", s.kv.Bucket(), key, err)
	}
	return nil
}

// Bucket returns the vault bucket's name, as reported in results.
func (s *Store) Bucket() string { return s.kv.Bucket() }

// wipe zeroes a buffer that held a secret, so it does not linger in memory.
func wipe(b []byte) { clear(b) }
