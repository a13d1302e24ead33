package config

import "github.com/go-sql-driver/mysql"

// SharedAdminDatabases returns the databases of the targets other than
// targets[i] that log in as the same admin user to the same server as
// targets[i]: the same user, network and address in their DSNs. A hosting
// platform often gives one least-privilege admin every database of a
// server; that admin then holds each of those databases' privileges, which
// are within contract §5.7 for every target it serves here. Anything else
// it holds stays excess. Addresses are compared as written (after the
// driver's defaults), so two spellings of one server count as two: the
// check then refuses, as it would without the sharing.
func (c *Config) SharedAdminDatabases(i int) []string {
	if i < 0 || i >= len(c.Targets) {
		return nil
	}
	self, ok := adminEndpoint(c.Targets[i])
	if !ok {
		return nil
	}
	var dbs []string
	for j, tg := range c.Targets {
		if j == i || tg.Database == c.Targets[i].Database {
			continue
		}
		if other, ok := adminEndpoint(tg); ok && other == self {
			dbs = append(dbs, tg.Database)
		}
	}
	return dbs
}

// endpoint is who logs in where: the admin user and the server address.
type endpoint struct{ user, net, addr string }

func adminEndpoint(t Target) (endpoint, bool) {
	cfg, err := mysql.ParseDSN(t.DSN.Reveal())
	if err != nil {
		return endpoint{}, false
	}
	return endpoint{user: cfg.User, net: cfg.Net, addr: cfg.Addr}, true
}
