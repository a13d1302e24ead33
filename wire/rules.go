package wire

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// CheckPassword applies the chosen-password rule: 24 to 64 characters, each
// printable ASCII 0x21–0x7E other than ' and " (a backslash is allowed). The
// message says which rule failed without echoing the password.
func CheckPassword(pw string) *Error {
	n := utf8.RuneCountInString(pw)
	if n < 24 || n > 64 {
		return Errorf(CodeInvalidPassword, "password has %s; 24 to 64 are allowed", characters(n))
	}
	pos := 0
	for _, r := range pw {
		pos++
		if r < 0x21 || r > 0x7e || r == '\'' || r == '"' {
			return Errorf(CodeInvalidPassword, "password character at position %d is not allowed (printable ASCII other than ' and \")", pos)
		}
	}
	return nil
}

// reservedReason says why a name is reserved, or "" when it is not. The
// comparison ignores case so that no variant of a server account's name is
// ever made (and "Root" is never mistaken for "root" by a reader). This is the
// one place the reserved names are kept.
func reservedReason(name string) string {
	switch {
	case strings.EqualFold(name, "root"):
		return "the server's superuser"
	case strings.EqualFold(name, "public"):
		return "MariaDB's PUBLIC role"
	case strings.EqualFold(name, "debian_sys_maint"):
		return "Debian's maintenance account"
	case strings.EqualFold(name, "healthcheck"):
		return "the health-check account of the MariaDB container image"
	case strings.EqualFold(name, "mariadb.sys"):
		return "MariaDB's system account"
	case hasPrefixFold(name, "mysql"):
		// mysql.sys, mysql.session, mysql.infoschema and whatever MySQL adds.
		return "names beginning with mysql belong to the server"
	case hasPrefixFold(name, "mariadb"):
		// mariadb.sys and whatever MariaDB adds.
		return "names beginning with mariadb belong to the server"
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// CheckUsername applies the username rule: ^[a-z][a-z0-9_]{5,31}$ and not a
// reserved account. The message says which rule failed and shows the name
// quoted and truncated.
func CheckUsername(name string) *Error {
	if name == "" {
		return Errorf(CodeInvalidUsername, "username is missing or empty")
	}
	if why := reservedReason(name); why != "" {
		return Errorf(CodeInvalidUsername, "username %s is reserved (%s)", Quote(name), why)
	}
	if n := utf8.RuneCountInString(name); n < 6 || n > 32 {
		return Errorf(CodeInvalidUsername, "username %s has %s; 6 to 32 are allowed", Quote(name), characters(n))
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return Errorf(CodeInvalidUsername, "username %s must begin with a lowercase letter a-z", Quote(name))
	}
	pos := 0
	for _, r := range name {
		pos++
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return Errorf(CodeInvalidUsername, "username %s: character at position %d is not allowed (only a-z, 0-9 and _)", Quote(name), pos)
		}
	}
	return nil
}

// maxQuoted bounds how much of a hostile string a message repeats.
const maxQuoted = 64

// characters counts n characters in words: "1 character", "5 characters".
func characters(n int) string {
	if n == 1 {
		return "1 character"
	}
	return strconv.Itoa(n) + " characters"
}

// Quote renders s for a message: escaped to ASCII so that control characters
// and lookalike letters show, and truncated so a message stays short.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.QuoteToASCII(s)
	}
	return strconv.QuoteToASCII(cut(s)) + "..."
}

// cut returns at most maxQuoted bytes of s, not splitting a rune.
func cut(s string) string {
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Truncate shortens s for a message without quoting it.
func Truncate(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return cut(s) + "..."
}
