package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// DevTokenRequest is the JSON body of POST /dev/token.
type DevTokenRequest struct {
	// Role is admin, restaurant, cashier, guest or service.
	Role string `json:"role"`
	// Sub is the token's subject (the user id).
	Sub string `json:"sub"`
	// RestaurantID is required for the restaurant and cashier roles.
	RestaurantID string `json:"restaurantId"`
	// TTLSeconds is the token's lifetime; 0 means the minter's default.
	TTLSeconds int64 `json:"ttlSeconds"`
}

// DevTokenFunc mints a token for a dev-mode sign-in. An error means the
// request was bad (unknown role, missing subject...): it is answered 400.
type DevTokenFunc func(req DevTokenRequest) (string, error)

// maxDevTokenBody bounds the body of POST /dev/token.
const maxDevTokenBody = 4 << 10

// devToken serves POST /dev/token with mint, or 404 when mint is nil.
func devToken(mint DevTokenFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mint == nil {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		var req DevTokenRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxDevTokenBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body: " + err.Error()})
			return
		}
		if req.TTLSeconds < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "ttlSeconds must not be negative"})
			return
		}
		tok, err := mint(req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, map[string]string{"token": tok})
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// notBuilt is what "/" answers when there is no built web app.
const notBuilt = `notify: the web app is not built.

Build it with
    make web
(npm ci and vite build in clients/web, output in clients/web/dist), then
start notifyd with --web-dir clients/web/dist (NOTIFY_WEB_DIR), or run
    make run
which does both. The APIs are served regardless: grpc-web, REST under /v1/,
/openapi.json, /healthz and /readyz.
`

// extraTypes are content types Go's table may lack on a machine without
// /etc/mime.types.
var extraTypes = map[string]string{
	".ico":         "image/x-icon",
	".map":         "application/json",
	".txt":         "text/plain; charset=utf-8",
	".webmanifest": "application/manifest+json",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
}

// appConfig serves the app's runtime settings (GET /app.json): where its
// grpc-web calls go ("": the page's origin).
func appConfig(grpcWebURL string) http.Handler {
	body, _ := json.Marshal(struct {
		GRPCWebURL string `json:"grpcWebUrl"`
	}{strings.TrimSuffix(grpcWebURL, "/")})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

// webApp serves the single-page app built into dir: its files as they are,
// and index.html for any other path without a file extension (the app's
// client-side routes). Missing files with an extension are 404.
func webApp(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		index := filepath.Join(dir, "index.html")
		if dir == "" || !isFile(index) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, notBuilt)
			return
		}
		name := path.Clean("/" + r.URL.Path)
		if name != "/" && name != "/index.html" {
			f, info, err := openFile(dir, name)
			if err == nil {
				defer f.Close()
				cache := "no-cache"
				if strings.HasPrefix(name, "/assets/") {
					// Vite puts a content hash in every asset's name.
					cache = "public, max-age=31536000, immutable"
				}
				serveFile(w, r, name, info, f, cache)
				return
			}
			if path.Ext(name) != "" {
				http.NotFound(w, r)
				return
			}
		}
		f, info, err := openFile(dir, "/index.html")
		if err != nil {
			http.Error(w, "web app unavailable", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		serveFile(w, r, "/index.html", info, f, "no-cache")
	})
}

func isFile(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular()
}

// openFile opens a regular file under dir; http.Dir refuses names that
// would leave it.
func openFile(dir, name string) (http.File, fs.FileInfo, error) {
	f, err := http.Dir(dir).Open(name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, nil, err
	}
	return f, info, nil
}

func serveFile(w http.ResponseWriter, r *http.Request, name string, info fs.FileInfo, f io.ReadSeeker, cache string) {
	h := w.Header()
	ext := strings.ToLower(path.Ext(name))
	ct := mime.TypeByExtension(ext)
	if ct == "" {
		ct = extraTypes[ext]
	}
	if ct != "" {
		h.Set("Content-Type", ct)
	}
	h.Set("Cache-Control", cache)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, info.ModTime(), f)
}
