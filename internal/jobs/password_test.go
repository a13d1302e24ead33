package jobs

import (
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/wire"
)

func TestGeneratedPasswords(t *testing.T) {
	shape := regexp.MustCompile(`^[A-Za-z0-9_]{64}$`)
	const n = 4000
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range n {
		s, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		pw := s.Reveal()
		if !shape.MatchString(pw) {
			t.Fatalf("generated password has the wrong shape (len %d)", len(pw))
		}
		if wire.CheckPassword(pw) != nil {
			t.Fatal("a generated password breaks the chosen-password rule")
		}
		if seen[pw] {
			t.Fatal("the generator repeated a password")
		}
		seen[pw] = true
		for _, c := range pw {
			counts[c]++
		}
	}
	// Every character of the alphabet appears, each about equally often:
	// a modulo bias or a lost character class would show here. Expected
	// per character: n·64/63 ≈ 4063; ±25% is over 15 standard deviations.
	if len(counts) != len(passwordAlphabet) {
		t.Fatalf("%d distinct characters, want %d", len(counts), len(passwordAlphabet))
	}
	want := float64(n*GeneratedPasswordLength) / float64(len(passwordAlphabet))
	for c, got := range counts {
		if !strings.ContainsRune(passwordAlphabet, c) {
			t.Fatalf("character %q outside the alphabet", c)
		}
		if math.Abs(float64(got)-want) > want/4 {
			t.Errorf("character %q appears %d times, want about %.0f", c, got, want)
		}
	}
}
