package gateway

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/improbable-eng/grpc-web/go/grpcweb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"

	notifyv1gw "github.com/maxloyalty/notify/gen/gw/notify/v1"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

//go:embed openapi/notify.swagger.json
var openAPI []byte

// Config configures the HTTP front door.
type Config struct {
	// AllowedOrigins lists the browser origins allowed to call grpc-web and
	// REST ("*" allows any). Empty: same-origin requests only.
	AllowedOrigins []string
	// WebDir is the directory of the built web app (clients/web/dist),
	// served at "/" with index.html for unknown paths. Empty, or without an
	// index.html: "/" says the app is not built and how to build it.
	WebDir string
	// AppGRPCWebURL is where the app sends its grpc-web calls, served to it
	// as GET /app.json ({"grpcWebUrl": ...}); empty: the page's origin.
	AppGRPCWebURL string
	// DevToken, when set, serves POST /dev/token, which mints tokens for the
	// demo app's sign-in. Only dev-mode nodes set it; otherwise the path is
	// 404.
	DevToken DevTokenFunc
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// MaxBodyBytes bounds a REST request body; larger ones get 413 before
	// they are read in full. Zero: 1 MiB.
	MaxBodyBytes int64
}

// Readiness reports whether the node can serve (broker and store reachable).
type Readiness func(ctx context.Context) error

// New returns the HTTP handler. srv is the gRPC server that grpc-web
// requests are handed to; conn is what the REST gateway calls the services
// through: an InProcess over a client connection to that same server (or
// the connection itself).
func New(ctx context.Context, cfg Config, srv *grpc.Server, conn grpc.ClientConnInterface, ready Readiness) (http.Handler, error) {
	allowed := originChecker(cfg.AllowedOrigins)
	// The improbable wrapper translates grpc-web requests for the gRPC
	// server; CORS and the websocket transport are this package's own
	// (cors, grpcWebCORS, wsTransport), so that grpc-web, its websocket
	// transport and REST follow one origin rule, grant no credentials and
	// carry messages up to the gRPC server's own size limit.
	web := grpcweb.WrapServer(srv)
	streams := webStreamsOf(conn) // nil: every grpc-web call goes to srv
	endpoints := grpcEndpoints(srv)
	ws := &wsTransport{
		grpc:      srv,
		origin:    func(r *http.Request) bool { return wsOriginAllowed(r, allowed) },
		endpoint:  endpoints,
		passOn:    grpcWebHeaders,
		headerMax: maxWSHeaderBytes,
	}

	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &jsonPb{runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		// The services read no request header but Authorization, which the
		// gateway always passes as "authorization" metadata: copying the
		// other standard headers into "grpcgateway-*" metadata on every
		// call would be work for nothing.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(restErrorHandler),
		// A known path with the wrong method is 405, not the default 501.
		runtime.WithRoutingErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, status int) {
			if status == http.StatusMethodNotAllowed {
				restError(w, status, 12, "method "+r.Method+" is not allowed on "+r.URL.Path)
				return
			}
			runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, status)
		}),
	)
	if err := notifyv1gw.RegisterNotificationServiceHandlerClient(ctx, mux, notifyv1.NewNotificationServiceClient(conn)); err != nil {
		return nil, err
	}
	if err := notifyv1gw.RegisterInboxServiceHandlerClient(ctx, mux, notifyv1.NewInboxServiceClient(conn)); err != nil {
		return nil, err
	}
	if err := notifyv1gw.RegisterDeliveryServiceHandlerClient(ctx, mux, notifyv1.NewDeliveryServiceClient(conn)); err != nil {
		return nil, err
	}
	if err := notifyv1gw.RegisterScheduleServiceHandlerClient(ctx, mux, notifyv1.NewScheduleServiceClient(conn)); err != nil {
		return nil, err
	}

	root := http.NewServeMux()
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = 1 << 20
	}
	root.Handle("/v1/", cors(allowed, checkRequest(maxBody, mux)))
	if cfg.Metrics != nil {
		root.Handle("GET /metrics", cfg.Metrics)
	}
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	root.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(r.Context()); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	root.Handle("/dev/token", devToken(cfg.DevToken))
	root.Handle("GET /app.json", appConfig(cfg.AppGRPCWebURL))
	root.Handle("/", webApp(cfg.WebDir))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case web.IsGrpcWebSocketRequest(r):
			ws.ServeHTTP(w, r)
		case isGrpcWebPreflight(r) && endpoints(r.URL.Path):
			grpcWebPreflight(w, r, allowed)
		case web.IsGrpcWebRequest(r):
			grantOrigin(w, r, allowed)
			if streams == nil || !streams.serve(w, r) {
				web.HandleGrpcWebRequest(w, r)
			}
		default:
			root.ServeHTTP(w, r)
		}
	}), nil
}

// originChecker returns whether an Origin header value is allowed.
func originChecker(origins []string) func(string) bool {
	any := slices.Contains(origins, "*")
	return func(o string) bool {
		return any || slices.Contains(origins, o)
	}
}

// restMethods are the HTTP methods the REST gateway routes, read from the
// OpenAPI document generated from the same HTTP bindings as the routes,
// with OPTIONS for preflights: what a REST preflight grants.
var restMethods = func() string {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		panic("gateway: the embedded OpenAPI document does not parse: " + err.Error())
	}
	seen := map[string]bool{}
	for _, ops := range doc.Paths {
		for m := range ops {
			if m = strings.ToUpper(m); slices.Contains(routable, m) {
				seen[m] = true
			}
		}
	}
	var out []string
	for _, m := range routable { // a stable order
		if seen[m] {
			out = append(out, m)
		}
	}
	return strings.Join(append(out, http.MethodOptions), ", ")
}()

// routable are the methods an HTTP binding can name.
var routable = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// cors answers preflight requests and sets CORS headers for allowed origins.
// No credentials are granted: calls authenticate with the Authorization
// header, never cookies.
func cors(allowed func(string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := r.Header.Get("Origin")
		if o != "" && allowed(o) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", restMethods)
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// checkRequest guards the REST gateway: a body larger than max gets 413
// (with or without a Content-Length) before it is read in full; a body that
// is not exactly one JSON value (trailing data after it) and a path or
// query that is not valid UTF-8 get 400, instead of being half-read or
// failing inside the gRPC client.
func checkRequest(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !utf8.ValidString(r.URL.Path) || !validQuery(r.URL.Query()) {
			restError(w, http.StatusBadRequest, 3, "the path or query is not valid UTF-8")
			return
		}
		if r.ContentLength > max {
			restError(w, http.StatusRequestEntityTooLarge, 8, fmt.Sprintf("request body of %d bytes is larger than %d", r.ContentLength, max))
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		b, err := readBody(r, max)
		if err != nil {
			restError(w, http.StatusBadRequest, 3, "reading the request body failed")
			return
		}
		if int64(len(b)) > max {
			restError(w, http.StatusRequestEntityTooLarge, 8, fmt.Sprintf("request body larger than %d bytes", max))
			return
		}
		// One valid JSON value passes at once; otherwise a decoder tells
		// trailing data (400 here) from a syntax error, which is left to
		// the gateway to report.
		if len(bytes.TrimSpace(b)) > 0 && !json.Valid(b) {
			dec := json.NewDecoder(bytes.NewReader(b))
			var v json.RawMessage
			if err := dec.Decode(&v); err == nil {
				if _, err := dec.Token(); err != io.EOF {
					restError(w, http.StatusBadRequest, 3, "request body has data after its JSON value")
					return
				}
			}
		}
		r.Body = &bodyBytes{Reader: bytes.NewReader(b), b: b}
		r.ContentLength = int64(len(b))
		next.ServeHTTP(w, r)
	})
}

// ConnContext is the http.Server ConnContext hook of the HTTP port: the
// requests of a connection carry its client's address as their gRPC peer,
// which the log line of a REST call run in process reports (set once per
// connection, not per request).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return peer.NewContext(ctx, &peer.Peer{Addr: c.RemoteAddr(), LocalAddr: c.LocalAddr()})
}

// readBody reads r's body, up to max+1 bytes (as io.ReadAll over a
// LimitReader), into a buffer of its Content-Length when it has one.
func readBody(r *http.Request, max int64) ([]byte, error) {
	body := io.LimitReader(r.Body, max+1)
	if r.ContentLength <= 0 {
		return io.ReadAll(body)
	}
	b := make([]byte, r.ContentLength+1)
	n, err := io.ReadFull(body, b)
	switch {
	case err == nil:
		// More than announced (net/http stops at the length, but the body
		// reader may be another's): read on.
		rest, err := io.ReadAll(body)
		return append(b, rest...), err
	case err == io.ErrUnexpectedEOF && int64(n) == r.ContentLength:
		return b[:n], nil // the announced length, then EOF
	}
	return b[:n], err
}

// bodyBytes is a REST request body read by checkRequest: the bytes, for
// the JSON decoder to take without copying them, and a reader over them.
type bodyBytes struct {
	*bytes.Reader
	b []byte
}

func (*bodyBytes) Close() error { return nil }

func validQuery(q url.Values) bool {
	for k, vs := range q {
		if !utf8.ValidString(k) {
			return false
		}
		for _, v := range vs {
			if !utf8.ValidString(v) {
				return false
			}
		}
	}
	return true
}

// restError writes an error in the gateway's JSON shape.
func restError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	_, _ = w.Write(append(b, '\n'))
}
