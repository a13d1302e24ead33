package jobs

import (
	"crypto/subtle"
	"math/big"

	"github.com/nats-io/nkeys"
)

// A reply_key of small order (one of a handful of curve points) gives the
// same shared secret whatever the worker's key: a password sealed to it
// could be opened by anyone who reads the vault. Such a key is refused
// with the job's other field errors, before anything is done.

// smallOrderPoints are the encodings of the X25519 points of order 1, 2,
// 4 and 8, canonical and not (as libsodium lists them): u = 0, 1, the two
// points of order 8, and p-1, p, p+1 for p = 2^255 - 19.
var smallOrderPoints = func() [][32]byte {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	order8a, _ := new(big.Int).SetString("325606250916557431795983626356110631294008115727848805560023387167927233504", 10)
	order8b, _ := new(big.Int).SetString("39382357235489614581723060781553021112529911719440698176882885853963445705823", 10)
	us := []*big.Int{big.NewInt(0), big.NewInt(1), order8a, order8b,
		new(big.Int).Sub(p, big.NewInt(1)), p, new(big.Int).Add(p, big.NewInt(1))}
	out := make([][32]byte, len(us))
	for i, u := range us {
		be := u.FillBytes(make([]byte, 32))
		for k := range 32 { // X25519 encodes u little-endian
			out[i][k] = be[31-k]
		}
	}
	return out
}()

// decodeReplyKey returns the 32 bytes of s, an encoded curve public key;
// ok is false for anything else. The length check refuses a well-formed
// encoding of the wrong size, which nkeys alone lets through.
func decodeReplyKey(s string) (raw []byte, ok bool) {
	if len(s) != 56 {
		return nil, false
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(s))
	return raw, err == nil && len(raw) == 32
}

// smallOrder reports whether raw, an X25519 public key, is a point of
// small order. The top bit is ignored, as X25519 ignores it.
func smallOrder(raw []byte) bool {
	var u [32]byte
	copy(u[:], raw)
	u[31] &= 0x7f
	for _, pt := range smallOrderPoints {
		if subtle.ConstantTimeCompare(u[:], pt[:]) == 1 {
			return true
		}
	}
	return false
}
