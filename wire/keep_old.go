package wire

import (
	"fmt"
	"time"
)

// The range of a reset's keep_old_for: how long the password in force
// before the reset keeps working beside the new one.
const (
	MinKeepOld = time.Minute
	MaxKeepOld = 24 * time.Hour
)

// ParseKeepOld reads a keep_old_for duration ("90s", "15m", "2h"; any Go
// duration) and checks its range.
func ParseKeepOld(s string) (time.Duration, *Error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, Errorf(CodeInvalidJob, "keep_old_for %s is not a duration such as \"90s\", \"15m\" or \"2h\"", Quote(s))
	}
	if d < MinKeepOld || d > MaxKeepOld {
		return 0, Errorf(CodeInvalidJob, "keep_old_for %s is outside %s to %s", Quote(s), MinKeepOld, MaxKeepOld)
	}
	return d, nil
}

// FormatKeepOld writes d as keep_old_for: the shortest form time.Duration
// prints ("15m0s").
func FormatKeepOld(d time.Duration) string { return fmt.Sprint(d) }
