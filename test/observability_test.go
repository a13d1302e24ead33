package test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMetricsHealthAndReadiness: /metrics counts jobs by op and outcome,
// /healthz answers, and /readyz names the target that does not answer.
func TestMetricsHealthAndReadiness(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	dead := deadTarget(t, "dead")
	e := startWorker(t, []config.Target{target("app", f), dead}, func(c *config.Config) {
		c.HTTP.Listen = "127.0.0.1:0"
		c.Retry.Budget = time.Second
	})
	base := "http://" + e.svc.HTTPAddr()

	wantOK(t, e.job("app", "list", map[string]any{}))
	wantCode(t, e.job("app", "delete", map[string]any{"username": "ghost_user"}), "user_not_found")
	wantCode(t, e.job("dead", "delete", map[string]any{"username": "ghost_user"}), "unavailable")

	// A job is counted right after its result is published: poll. Every
	// series exists from the start, at zero, so the poll waits for values.
	want := []string{
		`dbusers_jobs_total{code="",op="user.list",outcome="ok"} 1`,
		`dbusers_jobs_total{code="user_not_found",op="user.delete",outcome="error"} 1`,
		`dbusers_jobs_total{code="unavailable",op="user.delete",outcome="error"} 1`,
		`dbusers_job_duration_seconds_count{op="user.list"} 1`,
		`dbusers_jobs_pending 0`,
	}
	var code int
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, body = get(t, base+"/metrics")
		missing := 0
		for _, line := range want {
			if !strings.Contains(body, line+"\n") {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range want {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if v := metricValue(t, body, `dbusers_retries_total{class="transient",op="user.delete"}`); v < 1 {
		t.Errorf("/metrics counts %v retries of the unavailable job", v)
	}
	if v := metricValue(t, body, `dbusers_mysql_errors_total{class="transient"}`); v < 1 {
		t.Errorf("/metrics counts %v transient MySQL errors", v)
	}
	if v := metricValue(t, body, `dbusers_mysql_errors_total{class="permanent"}`); v != 0 {
		t.Errorf("user_not_found was counted as a MySQL error (%v permanent)", v)
	}
	// Counted from the start, at zero: an alert rule finds them on a
	// healthy worker.
	for _, series := range []string{
		`dbusers_jobs_handed_back_total{reason="publish the result"} 0`,
		`dbusers_retries_total{class="unknown_outcome",op="user.create"} 0`,
		`dbusers_jobs_total{code="internal",op="user.create",outcome="error"} 0`,
	} {
		if !strings.Contains(body, series+"\n") {
			t.Errorf("/metrics lacks %s", series)
		}
	}

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	code, report := readyz(t, e)
	if code != http.StatusServiceUnavailable || report["target dead"] == "ok" || report["target app"] != "ok" ||
		report["nats"] != "ok" || report["streams"] != "ok" {
		t.Fatalf("/readyz = %d %v, want 503 naming the dead target only", code, report)
	}
}

// TestMicroServiceDiscovery: the worker shows up to `nats micro ls` as the
// dbusers service with its info endpoint.
func TestMicroServiceDiscovery(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	msg, err := e.nc.Request("$SRV.INFO.dbusers", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Name      string
		Version   string
		Endpoints []struct{ Name, Subject string }
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "dbusers" || len(info.Endpoints) != 1 || info.Endpoints[0].Subject != prefix+".info" {
		t.Fatalf("service info %+v", info)
	}
}

// metricValue is the value of series (name{labels}, as /metrics writes
// it) in body; the test fails when body has no such series.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no series %s", series)
	return 0
}
