package platformapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// ContentSecurityPolicy is sent with every response. No inline script and
// no source but the API's own: a name that slipped through unescaped still
// could not run.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Options configure a Server.
type Options struct {
	// Users is the dbusers client.
	Users Users
	// Verifier checks the bearer tokens.
	Verifier *Verifier
	// Databases maps the platform's database ids to the worker's targets.
	Databases map[string]string
	// Timeout bounds a request's wait for the worker.
	Timeout time.Duration
	// Dashboard, when set, is served at / (GET only).
	Dashboard http.Handler
	// Logger gets one line per request; nil logs nothing.
	Logger *zap.Logger
}

// Server is the API's http.Handler.
type Server struct {
	users     Users
	verifier  *Verifier
	databases map[string]string
	timeout   time.Duration
	log       *zap.Logger
	mux       *http.ServeMux
}

var _ http.Handler = (*Server)(nil)

// New returns the API's handler.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Users == nil:
		return nil, errors.New("platformapi: no Users")
	case opts.Verifier == nil:
		return nil, errors.New("platformapi: no Verifier")
	case opts.Timeout <= 0:
		return nil, errors.New("platformapi: Timeout must be positive")
	}
	s := &Server{users: opts.Users, verifier: opts.Verifier, databases: opts.Databases, timeout: opts.Timeout,
		log: opts.Logger, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	const base = "/api/databases/{id}/users"
	s.mux.HandleFunc("GET "+base, s.authorized(func(w http.ResponseWriter, r *http.Request, _, target string) {
		s.list(w, r, target)
	}))
	s.mux.HandleFunc("POST "+base, s.authorized(s.create))
	s.mux.HandleFunc("PATCH "+base+"/{name}", s.authorized(s.update))
	s.mux.HandleFunc("DELETE "+base+"/{name}", s.authorized(func(w http.ResponseWriter, r *http.Request, _, target string) {
		s.remove(w, r, target)
	}))
	s.mux.HandleFunc("POST "+base+"/{name}/reset_password", s.authorized(func(w http.ResponseWriter, r *http.Request, _, target string) {
		s.reset(w, r, target)
	}))
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, simple(http.StatusNotFound, "no_route", "There is no such endpoint"), nil)
	})
	if opts.Dashboard != nil {
		s.mux.Handle("/", opts.Dashboard)
	}
	return s, nil
}

// ServeHTTP sets the security headers every response carries, serves the
// request and logs one line for it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	note := &requestNote{}
	r = r.WithContext(context.WithValue(r.Context(), noteKey{}, note))
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	s.logRequest(r, rec.status, time.Since(start), note)
}

// authorized checks the bearer token against the URL's database id before
// anything else happens, then finds the database's target.
func (s *Server) authorized(next func(w http.ResponseWriter, r *http.Request, databaseID, target string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Password-carrying answers must never be cached; the others hold
		// account lists, which no cache needs either.
		w.Header().Set("Cache-Control", "no-store")
		id := r.PathValue("id")
		token, err := bearer(r.Header.Get("Authorization"))
		if err == nil {
			err = s.verifier.Verify(token, id)
		}
		if err != nil {
			msg := "No bearer token: send Authorization: Bearer <token>"
			if te, ok := errors.AsType[*TokenError](err); ok {
				msg = capitalize(te.Reason)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="dbusers"`)
			s.fail(w, r, simple(http.StatusUnauthorized, "unauthorized", "%s", msg), nil)
			return
		}
		target, ok := s.databases[id]
		if !ok {
			s.fail(w, r, &apiError{Status: http.StatusNotFound, Resource: "database", code: "unknown_database",
				Message: "This database is not served by this API"}, nil)
			return
		}
		next(w, r, id, target)
	}
}

// fail writes e; cause, when set, is logged (client and worker errors hold
// no password).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, e *apiError, cause error) {
	if n, ok := r.Context().Value(noteKey{}).(*requestNote); ok {
		n.code, n.cause = e.code, cause
	}
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"the answer could not be encoded"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
