package node_test

// End-to-end tests of the operational features: Prometheus metrics, the
// per-caller and per-port limits, TLS on both ports, CORS and health.
// Every helper of this file is prefixed "ops" so as not to collide with
// the helpers of the other test files of the package.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/certs"
	"github.com/maxloyalty/notify/internal/node"
)

// ---- TLS ----

// opsStartNode is startNode for a node whose readiness is polled with
// client at scheme://HTTPAddr/readyz (startNode polls plain HTTP).
func opsStartNode(t *testing.T, client *http.Client, scheme string, mutate func(*node.Config)) *testNode {
	t.Helper()
	tn := launchNode(t, mutate)
	waitReadyWith(t, tn, client, scheme)
	return tn
}

// opsTLSClient returns an HTTPS client trusting pool, HTTP/2 preferred.
func opsTLSClient(t *testing.T, pool *x509.CertPool) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// opsStartTLSNode starts a node with a self-signed certificate on both
// ports (and mutate, if any), and returns it with an HTTPS client and the
// pool that trust it.
func opsStartTLSNode(t *testing.T, mutate func(*node.Config)) (*testNode, *http.Client, *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := certs.SelfSigned(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	hc := opsTLSClient(t, pool)
	n := opsStartNode(t, hc, "https", func(c *node.Config) {
		c.TLSCertFile, c.TLSKeyFile = certFile, keyFile
		if mutate != nil {
			mutate(c)
		}
	})
	return n, hc, pool
}

// TestTLS: with a certificate configured both ports speak TLS only.
func TestTLS(t *testing.T) {
	t.Parallel()
	n, hc, pool := opsStartTLSNode(t, nil)
	ctx := testCtx(t)
	base := "https://" + n.HTTPAddr()
	svc := mint(t, serviceClaims)

	// Native gRPC over TLS: subscribe and receive a published event.
	c := dial(t, n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	s, _ := subscribe(t, ctx, c, mint(t, guestClaims), &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})
	pub := publish(t, ctx, c, opsReq("g1", "guest:g1", 1))
	if ev := s.next(t); ev.Id != pub.EventId {
		t.Fatalf("TLS stream got %s, want %s", ev.Id, pub.EventId)
	}

	// REST and /healthz over HTTPS.
	r, _ := opsDo(t, ctx, hc, http.MethodPost, base+"/v1/rooms/guest:g1/events", svc, nil, []byte(opsRESTEvent("g1", 2)))
	if r.status != http.StatusOK {
		t.Fatalf("HTTPS REST publish: HTTP %d %s", r.status, r.body)
	}
	var restResp notifyv1.PublishResponse
	unmarshalJSON(t, r.body, &restResp)
	if ev := s.next(t); ev.Id != restResp.EventId {
		t.Errorf("after the HTTPS publish the stream got %s, want %s", ev.Id, restResp.EventId)
	}
	r, _ = opsDo(t, ctx, hc, http.MethodGet, base+"/healthz", "", nil, nil)
	if r.status != http.StatusOK {
		t.Errorf("HTTPS /healthz: HTTP %d %s", r.status, r.body)
	}

	// grpc-web over HTTPS.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/notify.v1.NotificationService/Publish",
		bytes.NewReader(webFrame(t, opsReq("g1", "guest:g1", 3))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set("Authorization", "Bearer "+svc)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("grpc-web over HTTPS: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("grpc-web over HTTPS: HTTP %d", resp.StatusCode)
	}
	t.Logf("grpc-web over HTTPS spoke %s", resp.Proto)
	var webResp notifyv1.PublishResponse
	var webStatus string
	for range 10 {
		f, err := readWebFrame(resp.Body)
		if err != nil {
			t.Fatalf("grpc-web frame: %v", err)
		}
		if f.isTrailer() {
			webStatus = webTrailers(t, f.data).Get("Grpc-Status")
			break
		}
		if err := proto.Unmarshal(f.data, &webResp); err != nil {
			t.Fatalf("PublishResponse frame: %v", err)
		}
	}
	if webStatus != "0" || webResp.EventId == "" {
		t.Fatalf("grpc-web over HTTPS: status %q, response %v; want 0 and an event", webStatus, &webResp)
	}
	if ev := s.next(t); ev.Id != webResp.EventId {
		t.Errorf("after the grpc-web publish the stream got %s, want %s", ev.Id, webResp.EventId)
	}

	// Plaintext clients are refused on both ports.
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	defer pcancel()
	_, err = dial(t, n.GRPCAddr()).Publish(withToken(pctx, svc), opsReq("g1", "guest:g1", 4))
	wantCode(t, err, codes.Unavailable, "plaintext gRPC to a TLS port")
	presp, err := http.Get("http://" + n.HTTPAddr() + "/healthz")
	if err == nil {
		_, _ = io.Copy(io.Discard, presp.Body)
		presp.Body.Close()
		if presp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS port: HTTP 200, want a refusal")
		}
	}
	// A TLS client that does not trust the certificate is refused too.
	_, err = dial(t, n.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))).
		Publish(withToken(pctx, svc), opsReq("g1", "guest:g1", 5))
	wantCode(t, err, codes.Unavailable, "gRPC TLS client without the CA")
}

// TestGRPCWebOnNativePort: over TLS, a browser's grpc-web stream may use
// the native port (HTTP/2): a page of the node's own host is granted by
// default, its stream gets the events published meanwhile, and its end
// comes as grpc-web trailers.
func TestGRPCWebOnNativePort(t *testing.T) {
	t.Parallel()
	n, hc, _ := opsStartTLSNode(t, func(c *node.Config) {
		c.GRPCTransport = "wire" // grpc-go's server serves no grpc-web
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	page := "https://" + n.HTTPAddr() // the app's origin: the HTTP port

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+n.GRPCAddr()+"/notify.v1.NotificationService/Subscribe",
		bytes.NewReader(webFrame(t, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set("Origin", page)
	req.Header.Set("Authorization", "Bearer "+mint(t, guestClaims))
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("grpc-web Subscribe to the native port: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.Header.Get("Content-Type") != "application/grpc-web+proto" {
		t.Fatalf("grpc-web Subscribe: %s %d %q", resp.Proto, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != page {
		t.Errorf("Access-Control-Allow-Origin %q, want the page's own host %q", got, page)
	}
	ws := &webStream{body: resp.Body}
	if m := ws.next(t); m.GetConnected() == nil {
		t.Fatalf("first message %v, want Connected", m)
	}
	r, _ := opsDo(t, ctx, hc, http.MethodPost, page+"/v1/rooms/guest:g1/events", mint(t, serviceClaims), nil, []byte(opsRESTEvent("g1", 7)))
	if r.status != http.StatusOK {
		t.Fatalf("REST publish: HTTP %d %s", r.status, r.body)
	}
	var pub notifyv1.PublishResponse
	unmarshalJSON(t, r.body, &pub)
	if m := ws.next(t); len(m.GetEvents()) != 1 || m.GetEvents()[0].GetId() != pub.EventId {
		t.Fatalf("the grpc-web stream got %v, want event %s", m, pub.EventId)
	}

	// A call refused by the node ends as Trailers-Only, its status
	// readable by the page.
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, "https://"+n.GRPCAddr()+"/notify.v1.NotificationService/Subscribe",
		bytes.NewReader(webFrame(t, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("Origin", page)
	refused, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, refused.Body)
	refused.Body.Close()
	if refused.Header.Get("Grpc-Status") != "16" || refused.Header.Get("Access-Control-Allow-Origin") != page ||
		!strings.Contains(refused.Header.Get("Access-Control-Expose-Headers"), "grpc-status") {
		t.Errorf("a Subscribe without a token: %d %v, want grpc-status 16 readable by the page", refused.StatusCode, refused.Header)
	}
}

// ---- CORS ----

// TestCORS: with AllowedOrigins ["https://app.example"], preflights from
// that origin are answered with Access-Control-Allow-Origin, others not.
func TestCORS(t *testing.T) {
	t.Parallel()
	const good, bad = "https://app.example", "https://evil.example"
	n := startNode(t, func(c *node.Config) { c.AllowedOrigins = []string{good} })
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()
	hc := http.DefaultClient

	preflight := func(path, origin, headers string) (restResult, http.Header) {
		t.Helper()
		h := http.Header{}
		h.Set("Origin", origin)
		h.Set("Access-Control-Request-Method", "POST")
		h.Set("Access-Control-Request-Headers", headers)
		return opsDo(t, ctx, hc, http.MethodOptions, base+path, "", h, nil)
	}

	// REST.
	r, h := preflight("/v1/events", good, "authorization,content-type")
	if r.status >= 300 || h.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("REST preflight from %s: HTTP %d, Allow-Origin %q; want 2xx and %q", good, r.status, h.Get("Access-Control-Allow-Origin"), good)
	}
	if am := h.Get("Access-Control-Allow-Methods"); !strings.Contains(am, "POST") {
		t.Errorf("REST preflight Allow-Methods %q lacks POST", am)
	}
	if ah := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(ah, "authorization") || !strings.Contains(ah, "content-type") {
		t.Errorf("REST preflight Allow-Headers %q lacks authorization or content-type", ah)
	}
	r, h = preflight("/v1/events", bad, "authorization,content-type")
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("REST preflight from %s: Allow-Origin %q, want none", bad, got)
	}
	t.Logf("REST preflight from a disallowed origin: HTTP %d", r.status)

	// An actual REST request from the allowed origin carries the header.
	ah := http.Header{}
	ah.Set("Origin", good)
	r, h = opsDo(t, ctx, hc, http.MethodPost, base+"/v1/rooms/guest:g1/events", mint(t, serviceClaims), ah, []byte(opsRESTEvent("g1", 1)))
	if r.status != http.StatusOK || h.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("REST POST from %s: HTTP %d, Allow-Origin %q; want 200 and %q", good, r.status, h.Get("Access-Control-Allow-Origin"), good)
	}
	ah.Set("Origin", bad)
	_, h = opsDo(t, ctx, hc, http.MethodPost, base+"/v1/rooms/guest:g1/events", mint(t, serviceClaims), ah, []byte(opsRESTEvent("g1", 2)))
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("REST POST from %s: Allow-Origin %q, want none", bad, got)
	}

	// grpc-web.
	const webPath = "/notify.v1.NotificationService/Publish"
	webHeaders := "authorization,content-type,x-grpc-web"
	r, h = preflight(webPath, good, webHeaders)
	if r.status >= 300 || h.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("grpc-web preflight from %s: HTTP %d, Allow-Origin %q; want 2xx and %q", good, r.status, h.Get("Access-Control-Allow-Origin"), good)
	}
	r, h = preflight(webPath, bad, webHeaders)
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("grpc-web preflight from %s: Allow-Origin %q, want none (refused)", bad, got)
	}
	if got := h.Get("Access-Control-Allow-Headers"); got != "" {
		t.Errorf("grpc-web preflight from %s: Allow-Headers %q, want none", bad, got)
	}
	t.Logf("grpc-web preflight from a disallowed origin: HTTP %d", r.status)
}

// ---- health ----

// TestHealth: /healthz and /readyz answer 200 and gRPC health reports
// SERVING while the node serves; cancelling the node's context turns
// health NOT_SERVING before the connection goes.
func TestHealth(t *testing.T) {
	t.Parallel()
	const drain = 2 * time.Second
	n := startNode(t, func(c *node.Config) { c.ShutdownDrain = drain })
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()

	for _, path := range []string{"/healthz", "/readyz"} {
		r := restDo(t, ctx, http.MethodGet, base+path, "", "")
		if r.status != http.StatusOK {
			t.Errorf("GET %s: HTTP %d %s, want 200", path, r.status, r.body)
		}
	}

	conn, err := grpc.NewClient("passthrough:///"+n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for _, svcName := range []string{"", "notify.v1.NotificationService"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svcName})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v; want SERVING", svcName, resp, err)
		}
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	wantCode(t, err, codes.NotFound, "Check of an unknown service")

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first message %v, %v; want SERVING", m, err)
	}

	start := time.Now()
	n.cancel()

	// The watcher is told NOT_SERVING (or its stream ends) first.
	m, err := w.Recv()
	switch {
	case err == nil && m.Status == healthpb.HealthCheckResponse_NOT_SERVING:
		t.Logf("after cancel: Watch reported NOT_SERVING after %v", time.Since(start))
	case err != nil:
		wantCode(t, err, codes.Unavailable, "Watch after cancel")
		t.Logf("after cancel: Watch ended with %v", err)
	default:
		t.Fatalf("Watch after cancel: %v, want NOT_SERVING", m)
	}

	// A Check now: NOT_SERVING while the server drains, Unavailable once it
	// has stopped.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
	switch {
	case err == nil && resp.Status == healthpb.HealthCheckResponse_NOT_SERVING:
		t.Logf("after cancel: Check reported NOT_SERVING")
	case err != nil:
		wantCode(t, err, codes.Unavailable, "Check after cancel")
		t.Logf("after cancel: Check failed with %v", err)
	default:
		t.Errorf("Check after cancel = %v, want NOT_SERVING or Unavailable", resp)
	}

	// /readyz is 503 or the port is closed.
	if resp, err := http.Get(base + "/readyz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("/readyz after cancel: 200 %s, want 503 or a closed port", b)
		}
		t.Logf("after cancel: /readyz HTTP %d %s", resp.StatusCode, bytes.TrimSpace(b))
	} else {
		t.Logf("after cancel: /readyz: %v", err)
	}

	// The watch, still open, holds GracefulStop; it is ended by the client
	// here and the node stops well within the drain time.
	wcancel()
	select {
	case <-n.done:
		t.Logf("Run returned %v after cancel", time.Since(start))
	case <-time.After(drain + 3*time.Second):
		t.Fatalf("Run did not return within %v of cancel", drain+3*time.Second)
	}
}
