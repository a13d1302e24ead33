// Package telemetry owns the worker's operations endpoint: Prometheus
// metrics (/metrics), liveness (/healthz) and readiness (/readyz).
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/wire"
)

// Metrics are the worker's Prometheus metrics. It implements jobs.Observer.
type Metrics struct {
	registry  *prometheus.Registry
	jobs      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	mysqlErrs *prometheus.CounterVec
	handBacks *prometheus.CounterVec
}

// NewMetrics registers the metrics on a registry of their own. pending,
// when not nil, is read at each scrape for the dbusers_jobs_pending gauge.
func NewMetrics(pending func(context.Context) (float64, error)) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dbusers_jobs_total",
			Help: "Jobs answered, by op, outcome (ok, error, already_done) and error code.",
		}, []string{"op", "outcome", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dbusers_job_duration_seconds",
			Help:    "Time from taking a job to publishing its result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dbusers_retries_total",
			Help: "Retried attempts, by op and the class of the MySQL error (transient, unknown_outcome).",
		}, []string{"op", "class"}),
		mysqlErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dbusers_mysql_errors_total",
			Help: "Failed attempts that MySQL failed, by class (transient, unknown_outcome, permanent).",
		}, []string{"class"}),
		handBacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dbusers_jobs_handed_back_total",
			Help: "Jobs returned to the stream unfinished, by reason.",
		}, []string{"reason"}),
	}
	m.registry.MustRegister(m.jobs, m.duration, m.retries, m.mysqlErrs, m.handBacks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.initSeries()
	if pending != nil {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dbusers_jobs_pending",
			Help: "Jobs in the jobs stream not yet answered (all partitions).",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			v, err := pending(ctx)
			if err != nil {
				return -1
			}
			return v
		}))
	}
	return m
}

// initSeries creates every series of the labelled metrics at zero. A
// series appears only once a label set is first used, and an alert rule
// such as rate(dbusers_retries_total[5m]) > 0 or absent(…) cannot tell a
// healthy worker from one that does not export the metric at all.
func (m *Metrics) initSeries() {
	for _, op := range wire.AllOps() {
		o := string(op)
		m.duration.WithLabelValues(o)
		for _, outcome := range jobs.Outcomes() {
			if outcome != wire.StatusError {
				m.jobs.WithLabelValues(o, outcome, "")
				continue
			}
			for _, code := range wire.AllCodes() {
				m.jobs.WithLabelValues(o, outcome, string(code))
			}
		}
		for _, class := range jobs.RetryClasses() {
			m.retries.WithLabelValues(o, class)
		}
	}
	for _, class := range jobs.MySQLErrorClasses() {
		m.mysqlErrs.WithLabelValues(class)
	}
	for _, reason := range jobs.HandBackReasons() {
		m.handBacks.WithLabelValues(reason)
	}
}

// JobDone counts an answered job.
func (m *Metrics) JobDone(op wire.Op, outcome string, code wire.Code, d time.Duration) {
	m.jobs.WithLabelValues(string(op), outcome, string(code)).Inc()
	m.duration.WithLabelValues(string(op)).Observe(d.Seconds())
}

// Retry counts a retried attempt.
func (m *Metrics) Retry(op wire.Op, class string) { m.retries.WithLabelValues(string(op), class).Inc() }

// MySQLError counts a failed attempt by the class of its MySQL error.
func (m *Metrics) MySQLError(class string) { m.mysqlErrs.WithLabelValues(class).Inc() }

// HandedBack counts a job returned unfinished.
func (m *Metrics) HandedBack(reason string) { m.handBacks.WithLabelValues(reason).Inc() }

// Check is one readiness check: nil means ready.
type Check func(ctx context.Context) error

// Server serves the operations endpoint.
type Server struct {
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

// Serve listens on addr and serves /metrics, /healthz and /readyz. The
// named checks all pass for /readyz to answer 200.
func Serve(addr string, m *Metrics, checks map[string]Check) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		status, report := runChecks(ctx, checks)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(report)
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// runChecks runs the checks in parallel and reports each.
func runChecks(ctx context.Context, checks map[string]Check) (int, map[string]string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	report := make(map[string]string, len(checks))
	status := http.StatusOK
	for name, check := range checks {
		wg.Go(func() {
			err := check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				report[name] = err.Error()
				status = http.StatusServiceUnavailable
				return
			}
			report[name] = "ok"
		})
	}
	wg.Wait()
	return status, report
}
