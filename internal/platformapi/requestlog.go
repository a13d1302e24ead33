package platformapi

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

// requestNote is what a handler tells the request log: the jobs it sent
// and why it failed. It never holds a body, a header or a password.
type requestNote struct {
	jobIDs []string
	code   string
	cause  error
}

type noteKey struct{}

// noteJob records a job id for the request's log line.
func noteJob(r *http.Request, jobID string) {
	if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok {
		n.jobIDs = append(n.jobIDs, jobID)
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// logRequest writes the request's line. It names the route pattern and
// the URL's database id and username, never the raw path of a request no
// route matched, the query, a header or a body: a token pasted into a URL
// by mistake must not land in the logs either.
func (s *Server) logRequest(r *http.Request, status int, took time.Duration, n *requestNote) {
	fields := []zap.Field{
		zap.String("method", r.Method),
		zap.Int("status", status),
		zap.Duration("took", took),
	}
	if r.Pattern != "" {
		fields = append(fields, zap.String("route", r.Pattern))
		if id := r.PathValue("id"); id != "" && databaseIDRe.MatchString(id) {
			fields = append(fields, zap.String("database", id))
		}
		// A username is at most 32 characters; anything much longer is
		// not one (a pasted token) and is not logged.
		if name := r.PathValue("name"); name != "" && len(name) <= 64 {
			fields = append(fields, zap.String("user", name))
		}
	}
	if len(n.jobIDs) > 0 {
		fields = append(fields, zap.Strings("jobs", n.jobIDs))
	}
	if n.code != "" {
		fields = append(fields, zap.String("code", n.code))
	}
	if n.cause != nil {
		fields = append(fields, zap.String("cause", n.cause.Error()))
	}
	switch {
	case status >= 500:
		s.log.Warn("request", fields...)
	default:
		s.log.Info("request", fields...)
	}
}
