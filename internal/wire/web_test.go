package wire_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	gproto "google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/wire"
)

const webOrigin = "https://app.example"

// webServer starts a wire server over TLS that serves grpc-web to pages on
// webOrigin (or with web false, none), and returns its address with an
// HTTP/2 client and a gRPC client of its own.
func webServer(t *testing.T, web bool) (base string, hc *http.Client, conn *grpc.ClientConn) {
	t.Helper()
	var cfg wire.Config
	if web {
		cfg.WebOrigin = func(origin, authority string) bool { return origin == webOrigin && authority != "" }
	}
	addr, pool, conn := serveTLS(t, cfg, &testService{})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return "https://" + addr, &http.Client{Transport: tr}, conn
}

// webResponse is a grpc-web response, read whole.
type webResponse struct {
	status   int
	header   http.Header
	msgs     [][]byte
	trailers map[string]string
	proto    string
}

// webCall posts msg to method as a grpc-web call from origin (none: "")
// and reads the response to its end.
func webCall(t *testing.T, hc *http.Client, base, method, contentType, origin string, msg gproto.Message, extra ...string) webResponse {
	t.Helper()
	b, err := gproto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	body := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, base+"/grpc.testing.TestService/"+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Grpc-Web", "1")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Add(extra[i], extra[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	all, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	r := webResponse{status: resp.StatusCode, header: resp.Header, proto: resp.Proto}
	for len(all) > 0 {
		if len(all) < 5 || len(all) < 5+int(binary.BigEndian.Uint32(all[1:5])) {
			t.Fatalf("a cut frame at the body's end: % x", all)
		}
		n := int(binary.BigEndian.Uint32(all[1:5]))
		frame := all[5 : 5+n]
		switch all[0] {
		case 0:
			if r.trailers != nil {
				t.Fatal("a message after the trailers")
			}
			r.msgs = append(r.msgs, frame)
		case 0x80:
			if r.trailers != nil {
				t.Fatal("two trailer frames")
			}
			r.trailers = map[string]string{}
			for _, line := range strings.Split(string(frame), "\r\n") {
				if line == "" {
					continue
				}
				k, v, ok := strings.Cut(line, ": ")
				if !ok {
					t.Fatalf("trailer line %q", line)
				}
				r.trailers[k] = v
			}
		default:
			t.Fatalf("frame flag %#x", all[0])
		}
		all = all[5+n:]
	}
	return r
}

// TestWeb: with WebOrigin set, grpc-web calls over HTTP/2 get their
// messages as body frames and their status and trailers as the body's last
// frame, with the CORS grant for a granted origin only; gRPC is served on
// the same port as before.
func TestWeb(t *testing.T) {
	base, hc, conn := webServer(t, true)

	out := &testpb.StreamingOutputCallRequest{ResponseParameters: params(3, 100<<10)} // past the stream's window
	r := webCall(t, hc, base, "StreamingOutputCall", "application/grpc-web+proto", webOrigin, out)
	if r.proto != "HTTP/2.0" || r.status != 200 {
		t.Fatalf("%s %d", r.proto, r.status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/grpc-web+proto" {
		t.Errorf("content-type %q", ct)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != webOrigin {
		t.Errorf("Access-Control-Allow-Origin %q, want %q", got, webOrigin)
	}
	if got := r.header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "grpc-status") {
		t.Errorf("Access-Control-Expose-Headers %q", got)
	}
	if len(r.msgs) != 3 || r.trailers["grpc-status"] != "0" {
		t.Fatalf("%d messages, trailers %v", len(r.msgs), r.trailers)
	}
	for i, m := range r.msgs {
		var resp testpb.StreamingOutputCallResponse
		if err := gproto.Unmarshal(m, &resp); err != nil || len(resp.GetPayload().GetBody()) != 100<<10 {
			t.Fatalf("message %d: %v", i, err)
		}
	}

	// Metadata: headers as headers, trailers in the trailer frame
	// (binary ones base64); an origin not granted gets no grant.
	r = webCall(t, hc, base, "UnaryCall", "application/grpc-web", "https://evil.example", &testpb.SimpleRequest{ResponseSize: 5}, "x-echo", "v1")
	if r.status != 200 || len(r.msgs) != 1 || r.trailers["grpc-status"] != "0" {
		t.Fatalf("unary: %d, %d messages, trailers %v", r.status, len(r.msgs), r.trailers)
	}
	if r.header.Get("X-Echo-Header") != "v1" || r.trailers["x-echo-trailer"] != "v1" || r.trailers["x-bin"] != "AAH/" {
		t.Errorf("metadata: header %q, trailers %v", r.header.Get("X-Echo-Header"), r.trailers)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" || r.header.Get("Vary") != "Origin" {
		t.Errorf("from an origin not granted: Access-Control-Allow-Origin %q, Vary %q", got, r.header.Get("Vary"))
	}

	// An error before any message: Trailers-Only, the status in the
	// headers, which the granted page may read.
	r = webCall(t, hc, base, "UnaryCall", "application/grpc-web+proto", webOrigin, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: 5, Message: "no such thing"}})
	if r.status != 200 || len(r.msgs) != 0 || r.trailers != nil {
		t.Fatalf("error: %d, %d messages, trailers %v", r.status, len(r.msgs), r.trailers)
	}
	if r.header.Get("Grpc-Status") != "5" || r.header.Get("Grpc-Message") != "no such thing" || r.header.Get("Access-Control-Allow-Origin") != webOrigin {
		t.Errorf("error headers: %v", r.header)
	}

	// gRPC on the same port.
	if _, err := testpb.NewTestServiceClient(conn).UnaryCall(ctx(t), &testpb.SimpleRequest{ResponseSize: 5}); err != nil {
		t.Fatalf("gRPC beside grpc-web: %v", err)
	}
}

// TestWebRefused: the base64 format, and grpc-web on a server that does
// not serve it, get 415 and a status saying why (the first readable by a
// granted page).
func TestWebRefused(t *testing.T) {
	base, hc, _ := webServer(t, true)
	r := webCall(t, hc, base, "UnaryCall", "application/grpc-web-text", webOrigin, &testpb.SimpleRequest{})
	if r.status != 415 || r.header.Get("Grpc-Status") != "3" || !strings.Contains(r.header.Get("Grpc-Message"), "grpc-web-text") {
		t.Errorf("grpc-web-text: %d %v", r.status, r.header)
	}
	if r.header.Get("Access-Control-Allow-Origin") != webOrigin || r.header.Get("Content-Type") != "application/grpc-web+proto" {
		t.Errorf("grpc-web-text's refusal is not readable by the page: %v", r.header)
	}

	base, hc, _ = webServer(t, false)
	r = webCall(t, hc, base, "UnaryCall", "application/grpc-web+proto", webOrigin, &testpb.SimpleRequest{})
	if r.status != 415 || r.header.Get("Grpc-Status") != "3" || !strings.Contains(r.header.Get("Grpc-Message"), "content-type") {
		t.Errorf("grpc-web not served: %d %v", r.status, r.header)
	}
}

// TestWebPreflight: a grpc-web preflight from a granted origin is granted
// POST and the headers a grpc-web client sends; from another origin, or
// for another method, nothing is granted.
func TestWebPreflight(t *testing.T) {
	base, hc, _ := webServer(t, true)
	preflight := func(origin, method string) *http.Response {
		req, err := http.NewRequestWithContext(ctx(t), http.MethodOptions, base+"/grpc.testing.TestService/UnaryCall", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-grpc-web")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := preflight(webOrigin, "POST")
	h := resp.Header
	if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != webOrigin || h.Get("Access-Control-Allow-Methods") != "POST" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "authorization") || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "x-grpc-web") {
		t.Errorf("granted preflight: %d %v", resp.StatusCode, h)
	}
	for _, c := range []struct{ origin, method string }{{"https://evil.example", "POST"}, {webOrigin, "DELETE"}} {
		resp := preflight(c.origin, c.method)
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Vary") == "" {
			t.Errorf("preflight from %s for %s: %d %v", c.origin, c.method, resp.StatusCode, resp.Header)
		}
	}
}
