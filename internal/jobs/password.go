package jobs

import (
	"fmt"

	"github.com/sethvargo/go-password/password"
)

// GeneratedPasswordLength is the length of a password the worker generates.
const GeneratedPasswordLength = 64

// NewPasswordGenerator returns a function that generates 64-character
// passwords of [A-Za-z0-9_] from crypto/rand (contract §2). Only "_" is
// allowed as a symbol, so a generated password needs no quoting anywhere.
func NewPasswordGenerator() (func() (string, error), error) {
	gen, err := password.NewGenerator(&password.GeneratorInput{Symbols: "_"})
	if err != nil {
		return nil, fmt.Errorf("password generator: %w", err)
	}
	return func() (string, error) {
		// 12 digits and 2 underscores, the rest letters of both cases:
		// over 360 bits of entropy.
		return gen.Generate(GeneratedPasswordLength, 12, 2, false, true)
	}, nil
}
