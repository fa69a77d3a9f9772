package gateway

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/improbable-eng/grpc-web/go/grpcweb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

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
// requests are handed to; conn is a client connection to that same server
// used by the REST gateway.
func New(ctx context.Context, cfg Config, srv *grpc.Server, conn *grpc.ClientConn, ready Readiness) (http.Handler, error) {
	allowed := originChecker(cfg.AllowedOrigins)
	web := grpcweb.WrapServer(srv,
		grpcweb.WithOriginFunc(allowed),
		grpcweb.WithWebsockets(true),
		grpcweb.WithWebsocketOriginFunc(func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return o == "" || allowed(o) || sameOrigin(r, o)
		}),
		grpcweb.WithAllowedRequestHeaders([]string{"authorization", "x-grpc-web", "content-type", "x-user-agent", "grpc-timeout"}),
	)

	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	if err := notifyv1.RegisterNotificationServiceHandler(ctx, mux, conn); err != nil {
		return nil, err
	}
	if err := notifyv1.RegisterInboxServiceHandler(ctx, mux, conn); err != nil {
		return nil, err
	}

	root := http.NewServeMux()
	maxBody := cfg.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = 1 << 20
	}
	root.Handle("/v1/", cors(allowed, limitBody(maxBody, mux)))
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
	root.Handle("/", webApp(cfg.WebDir))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if web.IsGrpcWebRequest(r) || web.IsAcceptableGrpcCorsRequest(r) || web.IsGrpcWebSocketRequest(r) {
			web.ServeHTTP(w, r)
			return
		}
		root.ServeHTTP(w, r)
	}), nil
}

// originChecker returns whether an Origin header value is allowed.
func originChecker(origins []string) func(string) bool {
	any := slices.Contains(origins, "*")
	return func(o string) bool {
		return any || slices.Contains(origins, o)
	}
}

func sameOrigin(r *http.Request, origin string) bool {
	o := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
	return o == r.Host
}

// cors answers preflight requests and sets CORS headers for allowed origins.
func cors(allowed func(string) bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := r.Header.Get("Origin")
		if o != "" && allowed(o) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody answers 413 to a request whose body is larger than max,
// without reading past it.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			fmt.Fprintf(w, `{"code":8,"message":"request body of %d bytes is larger than %d"}`+"\n", r.ContentLength, max)
			return
		}
		if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
			// Chunked: read up to the bound here, so an oversized body gets
			// the same 413 as one that announced its length.
			b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
			if err != nil {
				http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
				return
			}
			if int64(len(b)) > max {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				fmt.Fprintf(w, `{"code":8,"message":"request body larger than %d bytes"}`+"\n", max)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		next.ServeHTTP(w, r)
	})
}
