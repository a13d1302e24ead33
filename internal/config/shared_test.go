package config

import (
	"slices"
	"testing"

	"github.com/dbusers/dbusers/secret"
)

// TestSharedAdminDatabases: the targets that log in as the same user to
// the same server address share their databases; another user, another
// address or another network does not, whatever the password.
func TestSharedAdminDatabases(t *testing.T) {
	t.Parallel()
	tg := func(name, dsn, db string) Target {
		return Target{Name: name, DSN: secret.New(dsn), Database: db}
	}
	c := &Config{Targets: []Target{
		tg("a", "adm:pw1@tcp(10.0.0.7:3306)/", "db_a"),
		tg("b", "adm@tcp(10.0.0.7:3306)/", "db_b"),                // password from a file
		tg("c", "adm:other@tcp(10.0.0.7:3306)/?tls=true", "db_c"), // same account, other options
		tg("d", "adm:pw1@tcp(10.0.0.8:3306)/", "db_d"),            // another server
		tg("e", "other:pw1@tcp(10.0.0.7:3306)/", "db_e"),          // another account
		tg("f", "adm:pw1@tcp(10.0.0.7:3307)/", "db_f"),            // another port
		tg("g", "adm:pw1@unix(/run/mysqld/mysqld.sock)/", "db_g"), // another network
		tg("h", "adm:pw1@tcp(10.0.0.8)/", "db_h"),                 // the driver's default port
	}}
	tests := []struct {
		i    int
		want []string
	}{
		{0, []string{"db_b", "db_c"}},
		{1, []string{"db_a", "db_c"}},
		{3, []string{"db_h"}},
		{4, nil},
		{6, nil},
		{7, []string{"db_d"}},
		{8, nil}, // out of range
	}
	for _, tt := range tests {
		if got := c.SharedAdminDatabases(tt.i); !slices.Equal(got, tt.want) {
			t.Errorf("targets[%d]: %q, want %q", tt.i, got, tt.want)
		}
	}
}
