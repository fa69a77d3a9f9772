package gateway

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc"

	"github.com/maxloyalty/notify/internal/grpchdr"
)

// grpcWebHeaders are the request headers a browser may send on a grpc-web
// call (what a grpc-web preflight grants), and the headers of a websocket
// upgrade request that are passed on to the call.
var grpcWebHeaders = grpchdr.WebRequestHeaders

// grpcEndpoints returns whether a path is one of srv's methods
// ("/package.Service/Method"), as registered when New runs.
func grpcEndpoints(srv *grpc.Server) func(path string) bool {
	paths := map[string]bool{}
	for name, info := range srv.GetServiceInfo() {
		for _, m := range info.Methods {
			paths["/"+name+"/"+m.Name] = true
		}
	}
	return func(p string) bool { return paths[p] }
}

// isGrpcWebPreflight reports a CORS preflight for a grpc-web call: OPTIONS
// announcing the x-grpc-web header.
func isGrpcWebPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions &&
		r.Header.Get("Access-Control-Request-Method") != "" &&
		strings.Contains(strings.ToLower(r.Header.Get("Access-Control-Request-Headers")), "x-grpc-web")
}

// grpcWebPreflight answers a grpc-web preflight: from an allowed origin, a
// grant of POST with grpcWebHeaders and no credentials (calls carry their
// token in a header, never a cookie); from any other origin, no grant.
func grpcWebPreflight(w http.ResponseWriter, r *http.Request, allowed func(string) bool) {
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	o := r.Header.Get("Origin")
	if o != "" && allowed(o) && r.Header.Get("Access-Control-Request-Method") == http.MethodPost {
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Allow-Methods", http.MethodPost)
		h.Set("Access-Control-Allow-Headers", strings.Join(grpcWebHeaders, ", "))
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// grantOrigin lets a browser on an allowed origin read a grpc-web response
// (the improbable wrapper adds Access-Control-Expose-Headers itself).
func grantOrigin(w http.ResponseWriter, r *http.Request, allowed func(string) bool) {
	h := w.Header()
	h.Add("Vary", "Origin")
	if o := r.Header.Get("Origin"); o != "" && allowed(o) {
		h.Set("Access-Control-Allow-Origin", o)
	}
}

// NativeWebOrigin returns the origin check of grpc-web calls on the
// native port (wire.Config.WebOrigin): an allowed origin (origins as
// Config.AllowedOrigins), or an https page of the host the call was made
// to, on any port: the HTTP port that served the page is another origin
// than the native port it calls.
func NativeWebOrigin(origins []string) func(origin, authority string) bool {
	allowed := originChecker(origins)
	return func(origin, authority string) bool {
		if allowed(origin) {
			return true
		}
		oh, _, ok := originHost(origin, "https")
		if !ok {
			return false
		}
		ah, _, ok := hostPort(authority, "https")
		return ok && strings.EqualFold(oh, ah)
	}
}

// wsOriginAllowed is the origin check of a websocket upgrade: no Origin
// (not a browser), a configured origin, or exactly the origin the request
// was made to.
func wsOriginAllowed(r *http.Request, allowed func(string) bool) bool {
	o := r.Header.Get("Origin")
	return o == "" || allowed(o) || sameOrigin(r, o)
}

// sameOrigin reports whether origin is the origin r was made to: the same
// scheme (https when r came over TLS, http otherwise), host and port, with
// a missing port taken as the scheme's default. An origin without a scheme
// or with anything but scheme, host and port is never the same.
func sameOrigin(r *http.Request, origin string) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	oh, op, ok := originHost(origin, scheme)
	if !ok {
		return false
	}
	rh, rp, ok := hostPort(r.Host, scheme)
	return ok && strings.EqualFold(oh, rh) && op == rp
}

// originHost reads the host and port of an origin of the given scheme; an
// origin of another scheme, without one, or with anything but scheme,
// host and port has none.
func originHost(origin, scheme string) (host, port string, ok bool) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || !strings.EqualFold(u.Scheme, scheme) {
		return "", "", false
	}
	return hostPort(u.Host, scheme)
}

// hostPort splits an authority into host and port, the port defaulting to
// the scheme's.
func hostPort(authority, scheme string) (host, port string, ok bool) {
	if authority == "" {
		return "", "", false
	}
	host, port, err := net.SplitHostPort(authority)
	if err != nil {
		// No port (or a bare IPv6 literal in brackets).
		host, port = strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]"), ""
		if strings.ContainsAny(host, "[]") {
			return "", "", false
		}
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return host, port, host != ""
}
