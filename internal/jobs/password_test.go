package jobs

import (
	"regexp"
	"testing"
)

func TestGeneratedPasswords(t *testing.T) {
	gen, err := NewPasswordGenerator()
	if err != nil {
		t.Fatal(err)
	}
	shape := regexp.MustCompile(`^[A-Za-z0-9_]{64}$`)
	seen := map[string]bool{}
	for range 200 {
		pw, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(pw) {
			t.Fatalf("generated password has the wrong shape (len %d)", len(pw))
		}
		if CheckPassword(pw) != nil {
			t.Fatal("a generated password breaks the chosen-password rule")
		}
		if seen[pw] {
			t.Fatal("the generator repeated a password")
		}
		seen[pw] = true
	}
}
