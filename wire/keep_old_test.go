package wire

import (
	"testing"
	"time"
)

func TestParseKeepOld(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"15m", 15 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"1m", time.Minute, true},
		{"24h", 24 * time.Hour, true},
		{"59s", 0, false},
		{"24h1s", 0, false},
		{"-5m", 0, false},
		{"15", 0, false},
		{"", 0, false},
		{"fifteen minutes", 0, false},
	}
	for _, c := range cases {
		got, err := ParseKeepOld(c.in)
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("ParseKeepOld(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
		if err != nil && err.Code != CodeInvalidJob {
			t.Errorf("ParseKeepOld(%q): code %s, want invalid_job", c.in, err.Code)
		}
	}
}
