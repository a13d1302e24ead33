package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/platformapi"
)

// devPlatform serves, for development only (make run), what the platform's
// CLI asks of the platform's own auth and main APIs, so that the unchanged
// `scalingo` binary can be pointed at a local dbusers-api. It stands in for
// the platform: it mints the tokens of contract §8 for the configured
// database ids. It accepts any API token, so it must never listen
// anywhere but on a developer's loopback.
func devPlatform(addr, dbURL string, key []byte, targets map[string]string, log *zap.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	self := "http://" + ln.Addr().String()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	addon := func(id string) map[string]any {
		return map[string]any{"id": id, "addon_provider": map[string]any{"id": "mysql", "name": "MySQL"}}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tokens/exchange", func(w http.ResponseWriter, r *http.Request) {
		// The CLI parses this JWT without checking it, but needs its exp.
		tok, _ := platformapi.SignToken([]byte(strings.Repeat("dev-platform-session", 2)), map[string]any{"exp": time.Now().Add(time.Hour).Unix()})
		reply(w, 200, map[string]any{"token": tok})
	})
	mux.HandleFunc("GET /v1/users/self", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"user": map[string]any{"username": "developer", "flags": map[string]any{}}})
	})
	mux.HandleFunc("GET /v1/regions", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]any{"regions": []any{map[string]any{"name": "local", "api": self, "database_api": dbURL, "default": true}}})
	})
	mux.HandleFunc("GET /v1/apps/{app}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 404, map[string]any{"resource": "app", "error": "not found"})
	})
	mux.HandleFunc("GET /v1/apps/{app}/addons", func(w http.ResponseWriter, r *http.Request) {
		list := []any{}
		for id := range targets {
			list = append(list, addon(id))
		}
		reply(w, 200, map[string]any{"addons": list})
	})
	known := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		id := r.PathValue("id")
		if _, ok := targets[id]; !ok {
			reply(w, 404, map[string]any{"resource": "addon", "error": "not found"})
			return "", false
		}
		return id, true
	}
	mux.HandleFunc("GET /v1/apps/{app}/addons/{id}", func(w http.ResponseWriter, r *http.Request) {
		if id, ok := known(w, r); ok {
			reply(w, 200, map[string]any{"addon": addon(id)})
		}
	})
	mux.HandleFunc("POST /v1/apps/{app}/addons/{id}/token", func(w http.ResponseWriter, r *http.Request) {
		id, ok := known(w, r)
		if !ok {
			return
		}
		tok, err := platformapi.SignToken(key, map[string]any{"sub": id, "exp": time.Now().Add(10 * time.Minute).Unix()})
		if err != nil {
			reply(w, 500, map[string]any{"error": "token"})
			return
		}
		reply(w, 200, map[string]any{"addon": map[string]any{"token": tok}})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("development stand-in of the platform's auth and main APIs", zap.String("listen", self))
	return srv, nil
}
