// Package ui is the node's web UI: the built front end (dist/, made from
// src/ by `make ui`: esbuild through npm, lockfile committed) embedded in
// the binary and served under a strict Content-Security-Policy: scripts,
// styles and connections from the node itself only, no inline script, no
// framing. The UI talks only to the node's API with the session cookie;
// it keeps no token in the browser's storage.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// CSP is the Content-Security-Policy of every UI response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Built reports whether the binary holds a built UI.
func Built() bool {
	_, err := fs.Stat(dist, "dist/index.html")
	return err == nil
}

// Handler serves the UI: the app at / and /ui/, its files under /ui/.
func Handler() http.Handler {
	files, _ := fs.Sub(dist, "dist")
	static := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if !Built() {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("The web UI is not built into this binary: run `make ui` (or `make build`) in the repository, then rebuild outpost. The API is at /api/v1/.\n"))
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/ui")
		name = strings.TrimPrefix(name, "/")
		if name == "" || name == "index.html" {
			h.Set("Cache-Control", "no-cache")
			http.ServeFileFS(w, r, files, "index.html")
			return
		}
		if _, err := fs.Stat(files, name); err != nil || strings.HasPrefix(name, ".") {
			http.NotFound(w, r)
			return
		}
		h.Set("Cache-Control", "no-cache")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		static.ServeHTTP(w, r2)
	})
}
