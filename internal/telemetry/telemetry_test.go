package telemetry

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/wire"
)

// TestSeriesExistBeforeFirstUse: a fresh worker's /metrics already has,
// at zero, every series docs/operations.md documents, so that alert rules on
// retries, MySQL errors, hand-backs and failed jobs find them on a healthy
// worker; the first event then counts in the series created up front.
func TestSeriesExistBeforeFirstUse(t *testing.T) {
	t.Parallel()
	m := NewMetrics(func(context.Context) (float64, error) { return 0, nil })
	families := gather(t, m)

	type series struct {
		name   string
		labels map[string]string
	}
	var want []series
	for _, op := range wire.AllOps() {
		o := string(op)
		want = append(want,
			series{"dbusers_jobs_total", map[string]string{"op": o, "outcome": "ok", "code": ""}},
			series{"dbusers_jobs_total", map[string]string{"op": o, "outcome": "already_done", "code": ""}},
			series{"dbusers_job_duration_seconds", map[string]string{"op": o}},
			series{"dbusers_retries_total", map[string]string{"op": o, "class": "transient"}},
			series{"dbusers_retries_total", map[string]string{"op": o, "class": "unknown_outcome"}})
		for _, code := range wire.AllCodes() {
			want = append(want, series{"dbusers_jobs_total", map[string]string{"op": o, "outcome": "error", "code": string(code)}})
		}
	}
	for _, class := range []string{"transient", "unknown_outcome", "permanent"} {
		want = append(want, series{"dbusers_mysql_errors_total", map[string]string{"class": class}})
	}
	for _, reason := range jobs.HandBackReasons() {
		want = append(want, series{"dbusers_jobs_handed_back_total", map[string]string{"reason": reason}})
	}
	want = append(want, series{"dbusers_jobs_pending", nil})

	for _, w := range want {
		metric, ok := find(families, w.name, w.labels)
		if !ok {
			t.Errorf("no series %s%v on a fresh worker", w.name, w.labels)
			continue
		}
		if v := value(metric); v != 0 {
			t.Errorf("%s%v = %v on a fresh worker, want 0", w.name, w.labels, v)
		}
	}
	// None beyond: the series are the closed sets of labels, not a guess.
	total := 0
	for _, name := range []string{"dbusers_jobs_total", "dbusers_job_duration_seconds", "dbusers_retries_total",
		"dbusers_mysql_errors_total", "dbusers_jobs_handed_back_total", "dbusers_jobs_pending"} {
		total += len(families[name].GetMetric())
	}
	if total != len(want) {
		t.Errorf("%d dbusers series, want %d", total, len(want))
	}

	// The first events count in those series.
	m.Retry(wire.OpDelete, "transient")
	m.MySQLError("transient")
	m.HandedBack("publish the result")
	m.JobDone(wire.OpCreate, wire.StatusError, wire.CodeUnavailable, 0)
	families = gather(t, m)
	for _, w := range []series{
		{"dbusers_retries_total", map[string]string{"op": "user.delete", "class": "transient"}},
		{"dbusers_mysql_errors_total", map[string]string{"class": "transient"}},
		{"dbusers_jobs_handed_back_total", map[string]string{"reason": "publish the result"}},
		{"dbusers_jobs_total", map[string]string{"op": "user.create", "outcome": "error", "code": "unavailable"}},
	} {
		metric, ok := find(families, w.name, w.labels)
		if !ok || value(metric) != 1 {
			t.Errorf("%s%v after one event: found %t, value %v; want 1", w.name, w.labels, ok, value(metric))
		}
	}
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// find returns the metric of family name whose labels are exactly labels.
func find(families map[string]*dto.MetricFamily, name string, labels map[string]string) (*dto.Metric, bool) {
	for _, metric := range families[name].GetMetric() {
		if len(metric.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, lp := range metric.GetLabel() {
			if v, ok := labels[lp.GetName()]; !ok || v != lp.GetValue() {
				match = false
			}
		}
		if match {
			return metric, true
		}
	}
	return nil, false
}

// value is a counter's or gauge's value, or a histogram's count.
func value(m *dto.Metric) float64 {
	switch {
	case m == nil:
		return -1
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}
