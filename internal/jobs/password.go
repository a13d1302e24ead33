package jobs

import (
	"crypto/rand"
	"fmt"

	"github.com/dbusers/dbusers/secret"
)

// GeneratedPasswordLength is the length of a password the worker generates.
const GeneratedPasswordLength = 64

// passwordAlphabet is contract §2's [A-Za-z0-9_]: no character needs
// quoting anywhere a password may be pasted.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

// passwordCutoff is the largest multiple of the alphabet's size that fits
// a byte: random bytes at or above it are dropped, so every character is
// equally likely (rejection sampling, no modulo bias).
const passwordCutoff = 256 - 256%len(passwordAlphabet)

// GeneratePassword returns a 64-character password of [A-Za-z0-9_] from
// crypto/rand: 64·log2(63) ≈ 382 bits of entropy.
//
// It draws bytes in one read and samples them itself instead of using
// sethvargo/go-password, whose per-character big.Int draws cost 22 µs and
// 507 allocations per password, a fifth of the worker's CPU budget per
// rotation job (make bench's goal, docs/benchmarks.md); this costs about
// 1 µs and one allocation.
func GeneratePassword() (secret.Secret, error) {
	var buf [GeneratedPasswordLength * 2]byte // 4/256 rejected: 128 bytes almost always suffice
	out := make([]byte, 0, GeneratedPasswordLength)
	for len(out) < GeneratedPasswordLength {
		if _, err := rand.Read(buf[:]); err != nil {
			return secret.Secret{}, fmt.Errorf("generate a password: %w", err)
		}
		for _, b := range buf {
			if int(b) < passwordCutoff {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
				if len(out) == GeneratedPasswordLength {
					break
				}
			}
		}
	}
	clear(buf[:])
	return secret.New(string(out)), nil
}
