package vault_test

// Benchmarks of sealing and opening passwords, part of make bench's CPU per
// job (docs/benchmarks.md). A seal is nacl box:
// an X25519 shared key between the worker's key and the reply key, then
// XSalsa20-Poly1305. The shared key is the expensive part, and the same for
// every job of a batch that shares a reply key, so the benchmarks also show
// what sealing costs once the shared key is known.

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"

	"github.com/dbusers/dbusers/internal/vault"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

const (
	benchJobID    = "job-01hzy3k8q4v7c2m9t5w6x0r1ab"
	benchPassword = "Aq3vN7wL0pZ_x9Tb2Rk5Hs8Jd1Fg4Yc6Mn0Qe3Wu7Io2Pl5Ka8Sz1Xd4Cv7Bn9_r"
)

func benchKeys(b *testing.B) (*vault.Keys, nkeys.KeyPair, string) {
	b.Helper()
	worker, err := vault.LoadOrCreateKeys(filepath.Join(b.TempDir(), "worker.xk"))
	if err != nil {
		b.Fatal(err)
	}
	requester, err := nkeys.CreateCurveKeys()
	if err != nil {
		b.Fatal(err)
	}
	pub, err := requester.PublicKey()
	if err != nil {
		b.Fatal(err)
	}
	return worker, requester, pub
}

// BenchmarkSealPassword is the worker sealing a generated password to a
// reply key, as each generated-password job does now.
func BenchmarkSealPassword(b *testing.B) {
	worker, _, reqPub := benchKeys(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := worker.SealPassword(benchJobID, secret.New(benchPassword), reqPub); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealFreshReplyKey is the worker sealing to a reply key it has
// not seen, as a lone job's reset does (the Go client makes a fresh key
// per job): the shared key is computed for each seal.
func BenchmarkSealFreshReplyKey(b *testing.B) {
	worker, _, _ := benchKeys(b)
	// Twice the cache's bound, cycled: a key comes back only after the
	// cache has been cleared.
	pubs := make([]string, 8192)
	for i := range pubs {
		kp, err := nkeys.CreateCurveKeys()
		if err != nil {
			b.Fatal(err)
		}
		if pubs[i], err = kp.PublicKey(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := worker.SealPassword(benchJobID, secret.New(benchPassword), pubs[i%len(pubs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkOpenPassword is the worker opening a chosen password sealed by
// the requester.
func BenchmarkOpenPassword(b *testing.B) {
	worker, requester, reqPub := benchKeys(b)
	sealed, err := wire.SealChosenPassword(requester, worker.PublicKey(), benchJobID, secret.New(benchPassword))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := worker.OpenPassword(secret.New(sealed), reqPub, benchJobID); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealParts splits a seal into its costs: the X25519 shared key
// (box.Precompute, paid on every seal by nkeys: two scalar
// multiplications; and the one the worker does), the payload encoding, and
// the sealing itself with a shared key computed once (what a cache of
// shared keys by reply key would leave per job).
func BenchmarkSealParts(b *testing.B) {
	var priv, peerPriv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		b.Fatal(err)
	}
	if _, err := rand.Read(peerPriv[:]); err != nil {
		b.Fatal(err)
	}
	peerPubSlice, err := curve25519.X25519(peerPriv[:], curve25519.Basepoint)
	if err != nil {
		b.Fatal(err)
	}
	var peerPub, shared [32]byte
	copy(peerPub[:], peerPubSlice)
	box.Precompute(&shared, &peerPub, &priv)
	type payload struct {
		JobID    *string `json:"job_id"`
		Password *string `json:"password"`
	}
	jobID, password := benchJobID, benchPassword
	plain, err := json.Marshal(payload{JobID: &jobID, Password: &password})
	if err != nil {
		b.Fatal(err)
	}

	b.Run("x25519_shared_key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			box.Precompute(&shared, &peerPub, &priv)
		}
	})
	b.Run("x25519_one_multiplication", func(b *testing.B) {
		// What the worker computes instead: our private key parsed once,
		// one ECDH per new reply key.
		me, err := ecdh.X25519().NewPrivateKey(priv[:])
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			peer, err := ecdh.X25519().NewPublicKey(peerPub[:])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := me.ECDH(peer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("payload_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(payload{JobID: &jobID, Password: &password}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal_with_cached_shared_key", func(b *testing.B) {
		out := make([]byte, 0, 4+24+len(plain)+box.Overhead)
		b.ReportAllocs()
		for b.Loop() {
			var nonce [24]byte
			if _, err := rand.Read(nonce[:]); err != nil {
				b.Fatal(err)
			}
			out = append(out[:0], "xkv1"...)
			out = append(out, nonce[:]...)
			out = box.SealAfterPrecomputation(out, plain, &nonce, &shared)
		}
	})
}
