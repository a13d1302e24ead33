package platformapi

import (
	"bytes"
	"fmt"
	"os"

	"github.com/dbusers/dbusers/secret"
)

// MinKeyLen is the shortest HS256 key accepted: a shorter one could be
// guessed from tokens the platform hands out.
const MinKeyLen = 32

// LoadKey reads the token key file: its bytes with trailing newlines
// removed (an editor's or echo's final newline is not part of the key),
// at least MinKeyLen of them. The file must be open to neither group nor
// others, since whoever reads it can mint tokens for every database.
// Errors name the file, never its content.
func LoadKey(path string) ([]byte, error) {
	if err := secret.CheckFile(path); err != nil {
		return nil, fmt.Errorf("auth.token_key_file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth.token_key_file: %w", err)
	}
	key := bytes.TrimRight(b, "\r\n")
	if len(key) < MinKeyLen {
		clear(b)
		return nil, fmt.Errorf("auth.token_key_file: %s holds %d bytes (trailing newlines not counted); the key must have at least %d", path, len(key), MinKeyLen)
	}
	return key, nil
}
