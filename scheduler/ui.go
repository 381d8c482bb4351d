package scheduler

import (
	"embed"
	"io/fs"
	"net/http"
)

// The web UI (docs/ui.md): static assets embedded in the binary, served
// under /ui/ with no token, like a login page: it holds no data. The page
// asks for a token, keeps it in the browser tab's sessionStorage, and
// reads everything through the API below, which checks the token as it
// does for the CLI. No CDN, no build step: plain HTML, CSS and
// JavaScript, so it works offline.

//go:embed ui
var uiFiles embed.FS

// UIPath is where the web UI is served.
const UIPath = "/ui/"

// uiHandler serves the embedded assets, with headers that keep the page
// to itself: only its own scripts, styles and API (no inline script, no
// other origin), never framed, types never sniffed.
func uiHandler() http.HandlerFunc {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the directory is embedded at compile time
	}
	files := http.StripPrefix(UIPath, http.FileServerFS(sub))
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}
}

// uiRedirect sends the API's root to the web UI.
func uiRedirect(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, UIPath, http.StatusFound)
}
