package platformapi

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestVerifyClock: exp is allowed exactly MaxClockSkew of lateness and not
// a second more; nbf the same the other way.
func TestVerifyClock(t *testing.T) {
	t.Parallel()
	key := []byte(strings.Repeat("k", 32))
	now := time.Unix(1_800_000_000, 0)
	v, err := NewVerifier(key, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	sign := func(claims map[string]any) string {
		tok, err := SignToken(key, claims)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	unix := now.Unix()
	tests := []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"exp in the future", map[string]any{"sub": "db", "exp": unix + 1}, true},
		{"exp now", map[string]any{"sub": "db", "exp": unix}, true},
		{"exp 60 s ago", map[string]any{"sub": "db", "exp": unix - 60}, true},
		{"exp 61 s ago", map[string]any{"sub": "db", "exp": unix - 61}, false},
		{"exp fractional", map[string]any{"sub": "db", "exp": float64(unix) + 0.5}, true},
		{"exp null", map[string]any{"sub": "db", "exp": nil}, false},
		{"exp negative", map[string]any{"sub": "db", "exp": -1}, false},
		{"nbf 60 s ahead", map[string]any{"sub": "db", "exp": unix + 600, "nbf": unix + 60}, true},
		{"nbf 61 s ahead", map[string]any{"sub": "db", "exp": unix + 600, "nbf": unix + 61}, false},
		{"sub empty", map[string]any{"sub": "", "exp": unix + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Verify(sign(tt.claims), "db")
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok {
				if _, isToken := errors.AsType[*TokenError](err); !isToken {
					t.Fatalf("error %v, want a *TokenError", err)
				}
			}
		})
	}
	if _, err := NewVerifier(key[:31], nil); err == nil {
		t.Error("a 31-byte key was accepted")
	}
}

func TestBearer(t *testing.T) {
	t.Parallel()
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc",
		"": "", "Bearer": "", "Bearer ": "", "Basic abc": "", "abc": "",
	} {
		got, err := bearer(header)
		if want == "" && err == nil || want != "" && got != want {
			t.Errorf("bearer(%q) = %q, %v; want %q", header, got, err, want)
		}
	}
}
