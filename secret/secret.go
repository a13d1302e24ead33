// Package secret owns the Secret type: a string that must never be shown.
// Passwords, sealed passwords and DSNs travel through dbusers as Secrets, so
// that printing, logging or encoding one by mistake yields "[redacted]"
// instead of its value. Only Reveal gives the value, and only code that
// hands it to MySQL, to a seal or to the user calls it.
package secret

import (
	"fmt"
	"log/slog"
)

// Redacted is what every rendering of a non-empty Secret shows.
const Redacted = "[redacted]"

// Secret holds a sensitive string. Its zero value is the empty secret.
//
// String, GoString, Format, MarshalJSON, MarshalText, MarshalYAML and
// LogValue all redact, so fmt, encoding/json, YAML encoders, zap (through
// fmt.Stringer or reflection) and log/slog never see the value.
type Secret struct {
	v string
}

// New wraps s.
func New(s string) Secret { return Secret{v: s} }

// Reveal returns the value. Call it only where the value is used.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// Len is the value's length in bytes, which is safe to show.
func (s Secret) Len() int { return len(s.v) }

// Equal reports whether two secrets hold the same value.
func (s Secret) Equal(o Secret) bool { return s.v == o.v }

func (s Secret) shown() string {
	if s.v == "" {
		return ""
	}
	return Redacted
}

// String redacts.
func (s Secret) String() string { return s.shown() }

// GoString redacts, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("secret.Secret(%q)", s.shown()) }

// Format redacts for every verb, including %x and %+v, which would
// otherwise reach the unexported field.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'v':
		if f.Flag('#') {
			fmt.Fprint(f, s.GoString())
			return
		}
		fmt.Fprint(f, s.shown())
	case 'q':
		fmt.Fprintf(f, "%q", s.shown())
	default:
		fmt.Fprint(f, s.shown())
	}
}

// MarshalJSON redacts; a Secret never leaves the process through JSON.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.shown() + `"`), nil }

// MarshalText redacts; encoders that use encoding.TextMarshaler (YAML,
// zap's reflection encoder for map keys) see "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// MarshalYAML redacts.
func (s Secret) MarshalYAML() (any, error) { return s.shown(), nil }

// UnmarshalText reads a value, so configuration decoders can fill a Secret.
func (s *Secret) UnmarshalText(b []byte) error {
	s.v = string(b)
	return nil
}

// LogValue redacts for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.shown()) }
