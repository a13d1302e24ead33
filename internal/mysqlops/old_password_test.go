package mysqlops

import (
	"slices"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/secret"
)

// Hashes as MariaDB prints them; none may reach an error, an excess or a fix.
const (
	newHash = "*FB40FA7FD4E3B175310CFE850865E1C4C543AB64"
	oldHash = "*2274FDB39FA9335B6A776C3ADFD42853AD8B83A5"
)

// TestGrantLinesWithOldPasswords parses the USAGE lines MariaDB 10.11
// prints for accounts with one and several authentication methods (each
// seen on this machine's server unless marked), and refuses an IDENTIFIED
// clause of another shape: an account whose line is not understood is
// foreign, as before.
func TestGrantLinesWithOldPasswords(t *testing.T) {
	const db = "my_app"
	to := "GRANT USAGE ON *.* TO `u`@`%`"
	grant := "GRANT ALL PRIVILEGES ON `my\\_app`.* TO `u`@`%`"
	const native = "mysql_native_password"
	tests := []struct {
		name    string
		line    string
		methods int // -1: the line does not parse
		// The credential in force, as the line shows it; known: whole.
		plugin, hash string
		known        bool
	}{
		{"one native password", to + " IDENTIFIED BY PASSWORD '" + newHash + "'", 1, native, newHash, true},
		{"MySQL 8 prints none", to, 0, "", "", false},
		{"keep-old reset", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR mysql_native_password USING '" + oldHash + "'", 2, native, newHash, true},
		{"three methods", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR mysql_native_password USING '" +
			oldHash + "' OR mysql_native_password USING '*FDD369C6B7C3C64C7C07EDE4DC5C01BF8970B24D'", 3, native, newHash, true},
		{"one method via", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "'", 1, native, newHash, true},
		{"empty old password", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR mysql_native_password REQUIRE SSL", 2, native, newHash, true},
		{"socket first, options after", to + " IDENTIFIED VIA unix_socket OR mysql_native_password USING '" + newHash +
			"' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 5", 2, "unix_socket", "", true},
		{"socket alone", to + " IDENTIFIED VIA unix_socket REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 5", 1, "unix_socket", "", true},
		{"ed25519 (not run here)", to + " IDENTIFIED VIA ed25519 USING 'ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY'", 1, "ed25519", "ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY", true},
		{"WITH … AS (not printed by 10.11)", to + " IDENTIFIED WITH mysql_native_password AS '" + newHash + "'", 1, native, newHash, true},
		{"a plugin name as written", to + " IDENTIFIED VIA Mysql_Native_Password USING '" + newHash + "'", 1, "Mysql_Native_Password", newHash, true},
		{"an escaped string is not shown whole", to + " IDENTIFIED VIA pam USING 'it\\'s'", 1, "pam", "it's", false},
		{"a doubled quote neither", to + " IDENTIFIED VIA pam USING 'it''s'", 1, "pam", "it's", false},
		{"a quoted plugin name neither", to + " IDENTIFIED VIA `pam` USING 'x'", 1, "", "x", false},
		{"USING PASSWORD() (not printed by 10.11)", to + " IDENTIFIED VIA mysql_native_password USING PASSWORD('x') OR mysql_native_password USING '" + oldHash + "'", 2, native, "", false},

		{"nothing after VIA", to + " IDENTIFIED VIA", -1, "", "", false},
		{"nothing after USING", to + " IDENTIFIED VIA mysql_native_password USING", -1, "", "", false},
		{"nothing after OR", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR", -1, "", "", false},
		{"OR OR", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR OR unix_socket", -1, "", "", false},
		{"a bare string after BY", to + " IDENTIFIED BY '" + newHash + "'", -1, "", "", false},
		{"an unknown way", to + " IDENTIFIED SOMEHOW '" + newHash + "'", -1, "", "", false},
		{"USING a number", to + " IDENTIFIED VIA mysql_native_password USING 12", -1, "", "", false},
		{"an unclosed PASSWORD(", to + " IDENTIFIED VIA mysql_native_password USING PASSWORD('x'", -1, "", "", false},
		{"an unterminated hash", to + " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR mysql_native_password USING '*44AF", -1, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := parseGrant(tt.line)
			if tt.methods < 0 {
				if err == nil {
					t.Fatalf("parsed, %d methods; want an error", g.methods)
				}
				for _, h := range []string{newHash, oldHash, "*44AF"} {
					if strings.Contains(err.Error(), h) {
						t.Fatalf("the error %q quotes a hash", err)
					}
				}
			} else if err != nil || g.methods != tt.methods {
				t.Fatalf("methods %d, err %v; want %d", g.methods, err, tt.methods)
			} else if g.currentKnown != tt.known || g.current.Plugin != tt.plugin || g.current.Hash.Reveal() != tt.hash {
				t.Fatalf("credential in force %q %q (whole: %v), want %q %q (%v)",
					g.current.Plugin, g.current.Hash.Reveal(), g.currentKnown, tt.plugin, tt.hash, tt.known)
			}

			st := classifyGrants([]string{tt.line, grant}, db, `my\_app`, false)
			want := state{granted: true, oldPassword: tt.methods > 1, currentKnown: tt.known}
			if tt.methods > 0 {
				want.current = Credential{Plugin: tt.plugin, Hash: secret.New(tt.hash)}
			}
			if tt.methods < 0 {
				want = state{granted: true, foreign: true}
			}
			if st != want {
				t.Fatalf("classified %+v, want %+v (credentials compared above)", st.withoutCredential(), want.withoutCredential())
			}
		})
	}
}

// TestAdminWithOldPasswordPassesTheCheck: the admin account's own lines
// with two passwords are within §5.7 when their privileges are, and an
// excess on such a line is named without its hashes.
func TestAdminWithOldPasswordPassesTheCheck(t *testing.T) {
	auth := " IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR mysql_native_password USING '" + oldHash + "'"
	dbs := []string{"my_app_4553"}
	for _, line := range []string{
		"GRANT PROCESS, CREATE USER, CONNECTION ADMIN ON *.* TO `adm`@`%`" + auth,
		"GRANT USAGE ON *.* TO `adm`@`%`" + auth + " REQUIRE SSL",
	} {
		excess, _ := auditLines([]string{line, "GRANT SELECT ON `mysql`.* TO `adm`@`%`"}, principal{user: "adm", host: "%", hasHost: true}, "", dbs, flavorMariaDB)
		if len(excess) != 0 {
			t.Errorf("%d excess for a §5.7 admin with two passwords: %v", len(excess), excess)
		}
	}
	for _, line := range []string{
		"GRANT FILE, CREATE USER ON *.* TO `adm`@`%`" + auth,
		"GRANT USAGE ON *.* TO `adm`@`%` IDENTIFIED VIA mysql_native_password USING '" + newHash + "' OR OR mysql_native_password USING '" + oldHash + "'",
	} {
		excess, _ := auditLines([]string{line}, principal{user: "adm", host: "%", hasHost: true}, "", dbs, flavorMariaDB)
		if len(excess) != 1 {
			t.Fatalf("excess %v, want one", excess)
		}
		shown := excess[0].String() + strings.Join(excess[0].Fix, " ")
		if strings.Contains(shown, newHash) || strings.Contains(shown, oldHash) {
			t.Errorf("the excess shows a hash: %s", shown)
		}
	}
}

// TestParsePrivAuth reads mysql.global_priv.Priv values as MariaDB 10.11
// wrote them on this machine.
func TestParsePrivAuth(t *testing.T) {
	tests := []struct {
		name, priv   string
		plugin, hash string
		old          bool
	}{
		{"one password", `{"access":0,"plugin":"mysql_native_password","authentication_string":"` + newHash + `","password_last_changed":1}`,
			"mysql_native_password", newHash, false},
		{"keep-old reset", `{"access":0,"plugin":"mysql_native_password","authentication_string":"` + newHash +
			`","auth_or":[{},{"plugin":"mysql_native_password","authentication_string":"` + oldHash + `"}]}`,
			"mysql_native_password", newHash, true},
		{"after a plain reset", `{"access":0,"plugin":"mysql_native_password","authentication_string":"` + newHash + `","auth_or":[{}]}`,
			"mysql_native_password", newHash, false},
		{"the top level's method second", `{"plugin":"mysql_native_password","authentication_string":"` + newHash +
			`","auth_or":[{"plugin":"unix_socket"},{}]}`, "unix_socket", "", true},
		{"no plugin named", `{"access":0,"authentication_string":"` + newHash + `"}`, "mysql_native_password", newHash, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := parsePrivAuth([]byte(tt.priv))
			if err != nil {
				t.Fatal(err)
			}
			if a.current.Plugin != tt.plugin || a.current.Hash.Reveal() != tt.hash || a.old != tt.old {
				t.Fatalf("got %s %q old=%v, want %s %q old=%v", a.current.Plugin, a.current.Hash.Reveal(), a.old, tt.plugin, tt.hash, tt.old)
			}
		})
	}
	if _, err := parsePrivAuth([]byte(`{"authentication_string":"` + newHash)); err == nil || strings.Contains(err.Error(), newHash) {
		t.Fatalf("broken JSON: %v", err)
	}
}

// TestOldPasswordSQL pins the statements of both flavours: MariaDB's are
// run against the server by TestKeepOld… (old_password_db_test.go), MySQL
// 8's are only written down here (no server on this machine).
func TestOldPasswordSQL(t *testing.T) {
	pw := secret.New("new-password")
	native := Credential{Plugin: "mysql_native_password", Hash: secret.New(oldHash)}
	sha2 := Credential{Plugin: "caching_sha2_password", Hash: secret.New("$A$005$\x01\x7f'x")}
	accounts := []keepOld{{"a", pw, native}, {"b", pw, sha2}}

	type want struct {
		query string
		args  []any
	}
	check := func(t *testing.T, got []stmt, wants []want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%d statements, want %d", len(got), len(wants))
		}
		for i, w := range wants {
			if got[i].query != w.query || !slices.Equal(got[i].args, w.args) {
				t.Errorf("statement %d:\n got %s %v\nwant %s %v", i, got[i].query, got[i].args, w.query, w.args)
			}
		}
	}
	t.Run("MariaDB keep old", func(t *testing.T) {
		check(t, flavorMariaDB.keepOldSQL(accounts), []want{{
			"ALTER USER ?@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD(?) OR mysql_native_password USING ?, " +
				"?@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD(?) OR caching_sha2_password USING ?",
			[]any{"a", "new-password", oldHash, "b", "new-password", sha2.Hash.Reveal()}}})
	})
	t.Run("MySQL 8 keep old", func(t *testing.T) {
		check(t, flavorMySQL.keepOldSQL(accounts), []want{
			{"ALTER USER ?@'%' IDENTIFIED WITH mysql_native_password AS 0x2A32323734464442333946413933333542364137373643334144464434323835334144384238334135, " +
				"?@'%' IDENTIFIED WITH caching_sha2_password AS 0x24412430303524017F2778", []any{"a", "b"}},
			{"ALTER USER ?@'%' IDENTIFIED BY ? RETAIN CURRENT PASSWORD, ?@'%' IDENTIFIED BY ? RETAIN CURRENT PASSWORD",
				[]any{"a", "new-password", "b", "new-password"}},
		})
	})
	discard := []discardOf{{"a", Credential{Plugin: "mysql_native_password", Hash: secret.New(newHash)}}, {"b", Credential{Plugin: "unix_socket"}}}
	t.Run("MariaDB discard", func(t *testing.T) {
		check(t, []stmt{flavorMariaDB.discardSQL(discard)}, []want{{
			"ALTER USER ?@'%' IDENTIFIED VIA mysql_native_password USING ?, ?@'%' IDENTIFIED VIA unix_socket USING ?",
			[]any{"a", newHash, "b", ""}}})
	})
	t.Run("MySQL 8 discard", func(t *testing.T) {
		check(t, []stmt{flavorMySQL.discardSQL(discard)}, []want{{
			"ALTER USER ?@'%' DISCARD OLD PASSWORD, ?@'%' DISCARD OLD PASSWORD", []any{"a", "b"}}})
	})
	t.Run("old password queries", func(t *testing.T) {
		if got := flavorMariaDB.oldPasswordQuery(2); got != "SELECT User FROM mysql.global_priv WHERE Host = '%' AND User IN (?, ?) AND JSON_EXISTS(Priv, '$.auth_or[1]')" {
			t.Errorf("MariaDB: %s", got)
		}
		if got := flavorMySQL.oldPasswordQuery(1); got != "SELECT User FROM mysql.user WHERE Host = '%' AND User IN (?) AND "+
			"COALESCE(JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.additional_password')), '') <> ''" {
			t.Errorf("MySQL 8: %s", got)
		}
	})
	if got := hexLiteral(secret.New("")); got != "''" {
		t.Errorf("empty hash: %s", got)
	}
}

// TestCredentialCheck: only a plain plugin name is ever written into a
// statement.
func TestCredentialCheck(t *testing.T) {
	for _, p := range []string{"mysql_native_password", "ed25519", "caching_sha2_password"} {
		if err := (Credential{Plugin: p}).check(); err != nil {
			t.Errorf("%s refused: %v", p, err)
		}
	}
	for _, p := range []string{"", "mysql_native_password USING 'x' OR unix_socket", "a;b", "`x`", "p'"} {
		err := (Credential{Plugin: p, Hash: secret.New(oldHash)}).check()
		if err == nil {
			t.Errorf("%q accepted", p)
		} else if strings.Contains(err.Error(), oldHash) || p != "" && strings.Contains(err.Error(), p) {
			t.Errorf("the error quotes the credential: %v", err)
		}
	}
}
