package mysqlops

import "errors"

// This file keeps an account's old password working beside a new one
// (rotation without downtime, contract §9), ends it again, and reads which
// accounts hold one. docs/rotation.md shows the statements.
//
// MariaDB (tested on 10.11) has no RETAIN CURRENT PASSWORD, but an account
// may hold several authentication methods joined by OR, the same plugin
// twice included, and any of them logs in:
//
//	ALTER USER 'u'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('new') OR mysql_native_password USING '<old hash>'
//
// The first method is the password in force; every method after it is an
// old password. The old hash is the account's stored authentication string
// (mysql.global_priv), so the clear old password is never needed. A plain
// ALTER USER … IDENTIFIED BY replaces every method (checked: the old
// password is refused at once), so a reset that keeps nothing needs
// nothing more. Discarding re-states the first method alone.
//
// MySQL 8.0.14 and later (written from its manual, not run here) keep one
// secondary password: IDENTIFIED BY … RETAIN CURRENT PASSWORD makes the
// current password the secondary, DISCARD OLD PASSWORD drops it, and a
// plain IDENTIFIED BY leaves the secondary in place, so a reset that keeps
// nothing discards it too. To keep the password from before the job, not
// whatever is current (a redelivered job's own new one), the old hash is
// first made the primary again (IDENTIFIED WITH <plugin> AS <hash>), then
// retained.

// authMethods counts the authentication methods of a SHOW GRANTS line's
// options (the tokens after the grantee): MariaDB prints
// IDENTIFIED BY PASSWORD '<hash>' for one native password, and otherwise
// IDENTIFIED VIA <plugin> [USING '<string>'] [OR <plugin> [USING '<string>']]…
// (MySQL 8 prints none: 0). IDENTIFIED WITH … AS and USING PASSWORD('…')
// are read too. An IDENTIFIED clause of another shape is an error, so the
// line is not understood (an account's, foreign; the admin's, an excess).
// The strings are passed over, never kept; the errors never quote them.
func authMethods(toks []token) (int, error) {
	i := 0
	for i < len(toks) && !toks[i].is(tWord, "IDENTIFIED") {
		i++
	}
	if i == len(toks) {
		return 0, nil
	}
	p := &parser{toks: toks, i: i + 1}
	bad := errors.New("an IDENTIFIED clause the worker does not read")
	if p.word("BY") {
		if !p.word("PASSWORD") {
			return 0, bad
		}
		if t, ok := p.next(); !ok || t.kind != tString {
			return 0, bad
		}
		return 1, nil
	}
	if !p.word("VIA") && !p.word("WITH") {
		return 0, bad
	}
	n := 0
	for {
		t, ok := p.next()
		if !ok || (t.kind != tWord && t.kind != tIdent && t.kind != tString) || t.is(tWord, "OR") {
			return 0, bad // a plugin name
		}
		if p.word("USING") || p.word("AS") {
			s, ok := p.next()
			switch {
			case ok && s.kind == tString:
			case ok && s.is(tWord, "PASSWORD") && p.punct("("):
				if s, ok := p.next(); !ok || s.kind != tString || !p.punct(")") {
					return 0, bad
				}
			default:
				return 0, bad
			}
		}
		n++
		if !p.word("OR") {
			return n, nil
		}
	}
}
