// Package dashboard is the dbusers dashboard: one HTML page, a script and
// a style sheet, embedded in the binary and served by dbusers-api at /.
// The page holds no data: the script signs in with the platform's token
// and calls the database-users API of the same origin, putting every name
// in the page as text, never as HTML.
//
// The server that mounts it sets the security headers (a
// Content-Security-Policy without inline script, X-Frame-Options: DENY):
// the page's script is a file of its own for that reason.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the page at / and its assets under /static/; any other
// path is 404.
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(static, "index.html")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	})
	assets := http.FileServerFS(static)
	mux.HandleFunc("GET /static/{file}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("file") == "index.html" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.StripPrefix("/static", assets).ServeHTTP(w, r)
	})
	return mux
}
