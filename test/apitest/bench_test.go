package apitest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/mysqltest"
)

// The goals of what dbusers-api adds to a job (docs/api.md, "Tests and
// measurements"), checked by make bench (not by make test: they are time
// ratios that a loaded machine would decide).

// benchClient is a client of the env's worker on a connection of its own,
// the direct path the API is compared with.
func benchClient(b *testing.B, e *env) *client.Client {
	b.Helper()
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	c, err := client.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkAPIAddedLatency: one list job of a small database, straight
// through the client and through GET …/users, interleaved; the metric is
// the difference of the medians (goal: at most 1 ms).
func BenchmarkAPIAddedLatency(b *testing.B) {
	e := newEnv(b, envOptions{})
	for i := range 3 {
		e.makeAccount(mysqltest.Username(fmt.Sprintf("bl%d_", i)), i%2 == 0)
	}
	c := benchClient(b, e)
	token := e.token(dbID)
	ctx := context.Background()
	var direct, viaAPI []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := c.ListUsersPage(ctx, "app", client.ListPageRequest{}); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))
		start = time.Now()
		if r := e.do("GET", users(dbID), token, nil); r.status != 200 {
			b.Fatalf("status %d: %s", r.status, r.body)
		}
		viaAPI = append(viaAPI, time.Since(start))
	}
	d, a := median(direct), median(viaAPI)
	b.ReportMetric(float64(d.Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64(a.Microseconds()), "api-p50-µs")
	b.ReportMetric(float64((a - d).Microseconds()), "added-p50-µs")
}

// BenchmarkList10000: 10,000 accounts listed through GET …/users and by
// the list jobs themselves (client.ListUsers, every page), interleaved;
// the metric is the ratio of the medians (goal: at most 1.5).
func BenchmarkList10000(b *testing.B) {
	e := newEnv(b, envOptions{timeout: 5 * time.Minute})
	const n = 10_000
	makeAccountsFast(b, e, n)
	c := benchClient(b, e)
	token := e.token(dbID)
	ctx := context.Background()
	var direct, viaAPI []time.Duration
	for b.Loop() {
		start := time.Now()
		accounts, err := c.ListUsers(ctx, "app")
		if err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))
		if len(accounts) != n+1 {
			b.Fatalf("listed %d accounts, want %d", len(accounts), n+1)
		}
		start = time.Now()
		r := e.do("GET", users(dbID), token, nil)
		viaAPI = append(viaAPI, time.Since(start))
		if r.status != 200 || strings.Count(string(r.body), `"name"`) != n+1 {
			b.Fatalf("status %d, %d names", r.status, strings.Count(string(r.body), `"name"`))
		}
	}
	d, a := median(direct), median(viaAPI)
	b.ReportMetric(float64(d.Milliseconds()), "jobs-p50-ms")
	b.ReportMetric(float64(a.Milliseconds()), "api-p50-ms")
	b.ReportMetric(float64(a)/float64(d), "ratio")
}

// makeAccountsFast creates n read-write accounts of the fixture's
// database, 50 per statement (FACTS: about 1,900 accounts/s).
func makeAccountsFast(b *testing.B, e *env, n int) {
	b.Helper()
	const batch = 50
	grant := "GRANT ALL PRIVILEGES ON `" + mysqltest.EscapePattern(e.f.Database) + "`.* TO "
	prefix := "bk" + mysqltest.Token(6) + "_"
	var all []string
	for i := 0; i < n; i += batch {
		var names, create []string
		for j := i; j < min(i+batch, n); j++ {
			u := fmt.Sprintf("%s%05d", prefix, j)
			names = append(names, "'"+u+"'@'%'")
			create = append(create, "'"+u+"'@'%' IDENTIFIED BY 'pw-"+u+"'")
			all = append(all, u)
		}
		e.f.Exec("CREATE USER " + strings.Join(create, ", "))
		e.f.Exec(grant + strings.Join(names, ", "))
	}
	b.Cleanup(func() {
		for i := 0; i < len(all); i += batch {
			var names []string
			for _, u := range all[i:min(i+batch, len(all))] {
				names = append(names, "'"+u+"'@'%'")
			}
			_, _ = e.f.Root.Exec("DROP USER IF EXISTS " + strings.Join(names, ", "))
		}
	})
}
