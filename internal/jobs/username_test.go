package jobs

import (
	"strings"
	"testing"
	"unicode"

	"github.com/dbusers/dbusers/wire"
)

func TestHostileUsernames(t *testing.T) {
	k := testKeys(t)
	tests := []struct {
		name     string
		username string
		want     string // part of the message
	}{
		{"empty", "", "empty"},
		{"single quote", "app'user", "position 4"},
		{"double quote", `app"user`, "position 4"},
		{"backtick", "app`user", "position 4"},
		{"percent", "app_user%", "position 9"},
		{"percent only tail", "abcdef%", "position 7"},
		{"underscore wildcard first", "_abcdef", "begin with a lowercase letter"},
		{"sql injection", "'; DROP USER root; --", "begin with a lowercase letter"},
		{"cyrillic a", "аdmin_user", "begin with a lowercase letter"},
		{"cyrillic o inside", "admin_usеr", "not allowed"},
		{"newline", "app_user\n", "position 9"},
		{"newline inside", "app\nuser", "position 4"},
		{"NUL", "app_user\x00", "position 9"},
		{"tab", "app\tuser", "position 4"},
		{"space", "app user", "position 4"},
		{"hyphen", "app-user", "position 4"},
		{"dot", "app.user", "position 4"},
		{"at sign", "app_user@localhost", "position 9"},
		{"33 characters", strings.Repeat("a", 33), "33 characters"},
		{"5 characters", "abcde", "5 characters"},
		{"very long", strings.Repeat("a", 5000), "5000 characters"},
		{"uppercase", "App_user", "begin with a lowercase letter"},
		{"uppercase inside", "app_User", "position 5"},
		{"leading digit", "1app_user", "begin with a lowercase letter"},
		{"root", "root", "reserved"},
		{"Root", "Root", "reserved"},
		{"public", "public", "reserved"},
		{"healthcheck", "healthcheck", "reserved"},
		{"debian_sys_maint", "debian_sys_maint", "reserved"},
		{"mariadb.sys", "mariadb.sys", "reserved"},
		{"mysql", "mysql", "reserved"},
		{"mysql_admin", "mysql_admin", "reserved"},
		{"mysqlx_user", "mysqlx_user", "reserved"},
		{"MySQL_user", "MySQL_user", "reserved"},
		{"mariadb_x1", "mariadb_x1", "reserved"},
		{"MARIADB_x1", "MARIADB_x1", "reserved"},
		{"right-to-left override", "app\u202euser", "not allowed"},
		{"replacement character", "app_\ufffduser", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wire.CheckUsername(tt.username)
			if err == nil || err.Code != wire.CodeInvalidUsername {
				t.Fatalf("CheckUsername = %v, want invalid_username", err)
			}
			if !strings.Contains(err.Message, tt.want) {
				t.Fatalf("message %q does not contain %q", err.Message, tt.want)
			}
			// The name is quoted and escaped: no control or non-ASCII
			// character reaches a message, and a long name is cut.
			for _, r := range err.Message {
				if r > unicode.MaxASCII || unicode.IsControl(r) {
					t.Fatalf("message %q carries %U", err.Message, r)
				}
			}
			if len(err.Message) > 200 {
				t.Fatalf("message is %d bytes long", len(err.Message))
			}

			// Through Parse the same name gives the same error.
			body := `{"id":"j1","username":` + jsonString(tt.username) + `,"reply_key":"` + k.curve + `"}`
			_, perr := Parse("dbusers", subjCreate, "", []byte(body))
			if perr == nil || *perr != *err {
				t.Fatalf("Parse = %v, want %v", perr, err)
			}
		})
	}
}

func TestCheckUsernameValid(t *testing.T) {
	for _, name := range []string{
		"abcdef",
		"a_____",
		"app_user",
		"my_app_4553",
		"z" + strings.Repeat("9", 31),
		"rootuser",    // only "root" itself is reserved
		"my_mysql_db", // the prefix rule is a prefix rule
	} {
		t.Run(name, func(t *testing.T) {
			if err := wire.CheckUsername(name); err != nil {
				t.Fatal(err)
			}
		})
	}
}
