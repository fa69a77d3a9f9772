package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"nhooyr.io/websocket"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/gateway"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// devTokenFor mints a token on a dev node.
func devTokenFor(t *testing.T, base, role, sub string) string {
	t.Helper()
	a := devToken(t, base, `{"role":"`+role+`","sub":"`+sub+`","restaurantId":"r1"}`)
	var out struct {
		Token string `json:"token"`
	}
	if a.code != http.StatusOK || json.Unmarshal([]byte(a.body), &out) != nil || out.Token == "" {
		t.Fatalf("POST /dev/token %s %s: %d %s", role, sub, a.code, a.body)
	}
	return out.Token
}

// wsResult is what a grpc-web call over a websocket got back.
type wsResult struct {
	header   http.Header
	messages [][]byte
	trailer  http.Header
	close    websocket.StatusCode // -1: not closed by a close frame
	err      error                // how reading ended
}

func (r wsResult) code() codes.Code {
	s := r.trailer.Get("grpc-status")
	if s == "" {
		return codes.Code(1 << 20) // none
	}
	n, _ := strconv.Atoi(s)
	return codes.Code(n)
}

// wsCall makes one grpc-web call over the websocket transport, as
// improbable-eng's JavaScript client does: the headers, each request
// message in a data message of its own, the end of input; then it reads
// every message the server sends until the websocket closes. onMessage,
// when set, sees each gRPC message as it arrives and may end the call
// early by returning false (the client then closes the websocket).
func wsCall(t *testing.T, base, method, origin, token string, reqs []proto.Message, onMessage func([]byte) bool) wsResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+method, &websocket.DialOptions{
		Subprotocols: []string{"grpc-websockets"},
		HTTPHeader:   h,
	})
	if err != nil {
		t.Fatalf("websocket dial %s: %v", method, err)
	}
	defer c.Close(websocket.StatusNormalClosure, "")
	c.SetReadLimit(16 << 20)
	lines := "content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n"
	if token != "" {
		lines += "authorization: Bearer " + token + "\r\n"
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte(lines)); err != nil {
		t.Fatal(err)
	}
	for _, m := range reqs {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, 6, 6+len(b))
		binary.BigEndian.PutUint32(msg[2:], uint32(len(b)))
		if err := c.Write(ctx, websocket.MessageBinary, append(msg, b...)); err != nil {
			// The server may refuse and close before all is sent.
			return wsRead(ctx, t, c, nil)
		}
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte{1}); err != nil {
		t.Fatal(err)
	}
	return wsRead(ctx, t, c, onMessage)
}

// wsRead reads the grpc-web response stream until the websocket closes.
func wsRead(ctx context.Context, t *testing.T, c *websocket.Conn, onMessage func([]byte) bool) wsResult {
	t.Helper()
	res := wsResult{close: -1}
	var stream []byte
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			res.err = err
			res.close = websocket.CloseStatus(err)
			return res
		}
		stream = append(stream, b...)
		for len(stream) >= 5 {
			n := int(binary.BigEndian.Uint32(stream[1:5]))
			if len(stream) < 5+n {
				break
			}
			flag, body := stream[0], stream[5:5+n]
			stream = stream[5+n:]
			if flag&0x80 == 0 {
				res.messages = append(res.messages, bytes.Clone(body))
				if onMessage != nil && !onMessage(body) {
					c.Close(websocket.StatusNormalClosure, "done")
					res.close = websocket.StatusNormalClosure
					return res
				}
				continue
			}
			mh, err := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(body), strings.NewReader("\r\n")))).ReadMIMEHeader()
			if err != nil {
				t.Fatalf("malformed header frame %q: %v", body, err)
			}
			if res.header == nil && mh.Get("grpc-status") == "" {
				res.header = http.Header(mh)
			} else {
				res.trailer = http.Header(mh)
			}
		}
	}
}

func cardCreated(qrBytes int) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_CardCreated{CardCreated: &notifyv1.CardCreated{
		GuestId: "g1", CardId: "c1", RestaurantId: "r1", RestaurantName: "Chez Max",
		QrCode: "data:image/png;base64," + strings.Repeat("A", qrBytes),
	}}}
}

// TestWebsocketMessageLimit: the websocket transport carries messages up to
// the gRPC server's limit (--max-message-bytes, 256 KiB by default) like
// every other door, and one over it gets RESOURCE_EXHAUSTED in the
// trailers, then a normal close, instead of a 1009 close.
func TestWebsocketMessageLimit(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Dev = true })
	base := "http://" + n.HTTPAddr()
	svc := devTokenFor(t, base, "service", "loyalty-backend")
	const publish = "/notify.v1.NotificationService/Publish"

	res := wsCall(t, base, publish, "", svc, []proto.Message{cardCreated(60_000)}, nil)
	if res.code() != codes.OK || len(res.messages) != 1 {
		t.Fatalf("60 KB CardCreated over the websocket: status %v %q, %d messages, close %v (%v); want OK and a response",
			res.code(), res.trailer.Get("grpc-message"), len(res.messages), res.close, res.err)
	}
	var pr notifyv1.PublishResponse
	if err := proto.Unmarshal(res.messages[0], &pr); err != nil || pr.GetEventId() == "" {
		t.Errorf("publish response %x: %v", res.messages[0], err)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc-web") {
		t.Errorf("header frame Content-Type %q, want application/grpc-web...", ct)
	}
	if res.close != websocket.StatusNormalClosure {
		t.Errorf("close %v after the call, want a normal closure", res.close)
	}

	// Just under the limit once framed as a PublishRequest, and well over it.
	for _, size := range []int{300_000, 2 << 20} {
		res = wsCall(t, base, publish, "", svc, []proto.Message{cardCreated(size)}, nil)
		if res.close == websocket.StatusMessageTooBig {
			t.Fatalf("%d-byte message: websocket closed 1009 (message too big), want a gRPC status", size)
		}
		if res.code() != codes.ResourceExhausted {
			t.Fatalf("%d-byte message: status %v %q (close %v, %v), want ResourceExhausted", size, res.code(), res.trailer.Get("grpc-message"), res.close, res.err)
		}
		if len(res.messages) != 0 {
			t.Errorf("%d-byte message: %d response messages", size, len(res.messages))
		}
	}

	// The same 60 KB message over grpc-web's HTTP door and REST, for
	// comparison: accepted too.
	b, _ := proto.Marshal(cardCreated(60_000))
	frame := append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
	a := do(t, http.MethodPost, base+publish, bytes.NewReader(frame), map[string]string{
		"Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1", "Authorization": "Bearer " + svc,
	})
	if a.code != http.StatusOK || !strings.Contains(a.body, "grpc-status: 0") {
		t.Errorf("60 KB CardCreated over grpc-web HTTP: %d %q", a.code, a.body[max(0, len(a.body)-80):])
	}
}

// TestWebsocketSubscribe: a stream over the websocket transport delivers
// events, and a client that goes away ends it on the server.
func TestWebsocketSubscribe(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Dev = true })
	base := "http://" + n.HTTPAddr()
	svc := devTokenFor(t, base, "service", "loyalty-backend")
	guest := devTokenFor(t, base, "guest", "g1")

	published := false
	res := wsCall(t, base, "/notify.v1.NotificationService/Subscribe", "", guest,
		[]proto.Message{&notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}}},
		func(b []byte) bool {
			var m notifyv1.SubscribeResponse
			if err := proto.Unmarshal(b, &m); err != nil {
				t.Errorf("stream message %x: %v", b, err)
				return false
			}
			if m.GetConnected() != nil && !published {
				published = true
				if a := do(t, http.MethodPost, base+"/v1/events", strings.NewReader(`{"pointsAdded":{"guestId":"g1","cardId":"c1","restaurantId":"r1","amount":5,"newBalance":5}}`),
					map[string]string{"Authorization": "Bearer " + svc}); a.code != http.StatusOK {
					t.Errorf("publish: %d %s", a.code, a.body)
					return false
				}
			}
			return len(m.GetEvents()) == 0 // stop at the first event
		})
	last := res.messages[len(res.messages)-1]
	var m notifyv1.SubscribeResponse
	if err := proto.Unmarshal(last, &m); err != nil || len(m.GetEvents()) != 1 || m.GetEvents()[0].GetPointsAdded().GetNewBalance() != 5 {
		t.Fatalf("last stream message %v (%v), want the PointsAdded event; result %+v", &m, err, res)
	}

	// The client closed the websocket: the server's stream ends.
	var body string
	closed := false
	defer func() {
		if !closed { // Eventually failed the test
			i := strings.Index(body, "notify_grpc_streams_open ")
			t.Logf("metrics: %.40s", body[max(i, 0):])
		}
	}()
	testenv.Eventually(t, testTimeout, "the stream to end on the server after the client left", func() bool {
		body = get(t, base+"/metrics").body
		closed = strings.Contains(body, "\nnotify_grpc_streams_open 0\n")
		return closed
	})
}

// TestWebsocketOrigin: an upgrade passes with no Origin (not a browser), a
// configured origin, or exactly the origin it was made to (scheme, host
// and port); anything else is 403.
func TestWebsocketOrigin(t *testing.T) {
	const allowed = "https://app.example"
	n := startNode(t, func(c *node.Config) {
		c.Dev = true
		c.AllowedOrigins = []string{allowed}
	})
	hostPort := n.HTTPAddr()
	base := "http://" + hostPort
	guest := devTokenFor(t, base, "guest", "g1")
	_, port, _ := strings.Cut(hostPort, ":")
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{allowed, true},
		{"http://" + hostPort, true},
		{"HTTP://" + hostPort, true},
		{"https://" + hostPort, false},
		{hostPort, false},
		{"ws://" + hostPort, false},
		{"http://" + hostPort + "/", false},
		{"http://user@" + hostPort, false},
		{"http://localhost:" + port, false},
		{"http://127.0.0.1", false},
		{"http://evil.example", false},
		{"null", false},
		{"http://app.example", false},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, resp, err := websocket.Dial(ctx, "ws://"+hostPort+"/notify.v1.NotificationService/GetStats", &websocket.DialOptions{
			Subprotocols: []string{"grpc-websockets"},
			HTTPHeader:   h,
		})
		cancel()
		if c != nil {
			c.Close(websocket.StatusNormalClosure, "")
		}
		switch {
		case tc.ok && err != nil:
			t.Errorf("Origin %q: %v, want the upgrade", tc.origin, err)
		case !tc.ok && err == nil:
			t.Errorf("Origin %q: upgraded, want 403", tc.origin)
		case !tc.ok && (resp == nil || resp.StatusCode != http.StatusForbidden):
			t.Errorf("Origin %q: %v, want 403", tc.origin, err)
		}
	}
	// And an allowed one makes calls.
	res := wsCall(t, base, "/notify.v1.InboxService/GetUnreadCount", "http://"+hostPort, guest, []proto.Message{&notifyv1.GetUnreadCountRequest{}}, nil)
	if res.code() != codes.OK || len(res.messages) != 1 {
		t.Errorf("GetUnreadCount over a same-origin websocket: %v %q (%v)", res.code(), res.trailer.Get("grpc-message"), res.err)
	}
}

// TestCORSGrants: REST preflights grant every method the gateway routes;
// grpc-web's grant POST; neither grants credentials (tokens travel in the
// Authorization header, never cookies).
func TestCORSGrants(t *testing.T) {
	const good = "https://app.example"
	n := startNode(t, func(c *node.Config) {
		c.Dev = true
		c.AllowedOrigins = []string{good}
	})
	base := "http://" + n.HTTPAddr()
	preflight := func(path, method, headers string) answer {
		return do(t, http.MethodOptions, base+path, nil, map[string]string{
			"Origin": good, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers,
		})
	}
	for _, tc := range []struct{ path, method string }{
		{"/v1/inbox/notifications/n1", http.MethodDelete},
		{"/v1/inbox/preferences", http.MethodPut},
		{"/v1/events", http.MethodPost},
		{"/v1/stats", http.MethodGet},
		{"/v1/delivery/profile", http.MethodPatch},
	} {
		a := preflight(tc.path, tc.method, "authorization,content-type")
		methods := strings.Split(a.hdr.Get("Access-Control-Allow-Methods"), ", ")
		if a.code >= 300 || a.hdr.Get("Access-Control-Allow-Origin") != good || !contains(methods, tc.method) {
			t.Errorf("REST preflight %s %s: %d, Allow-Origin %q, Allow-Methods %q; want %s granted",
				tc.method, tc.path, a.code, a.hdr.Get("Access-Control-Allow-Origin"), a.hdr.Get("Access-Control-Allow-Methods"), tc.method)
		}
		if c := a.hdr.Get("Access-Control-Allow-Credentials"); c != "" {
			t.Errorf("REST preflight: Allow-Credentials %q", c)
		}
	}
	// Exactly the methods routes use (PATCH since /v1/delivery/profile).
	if m := preflight("/v1/inbox/preferences", http.MethodPut, "").hdr.Get("Access-Control-Allow-Methods"); m != "GET, POST, PUT, DELETE, PATCH, OPTIONS" {
		t.Errorf("REST preflight grants %q", m)
	}

	const webPath = "/notify.v1.NotificationService/Publish"
	a := preflight(webPath, http.MethodPost, "authorization,content-type,x-grpc-web,x-user-agent")
	if a.code >= 300 || a.hdr.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("grpc-web preflight: %d, Allow-Origin %q", a.code, a.hdr.Get("Access-Control-Allow-Origin"))
	}
	for _, h := range []string{"authorization", "content-type", "x-grpc-web", "x-user-agent"} {
		if !strings.Contains(strings.ToLower(a.hdr.Get("Access-Control-Allow-Headers")), h) {
			t.Errorf("grpc-web preflight Allow-Headers %q lacks %s", a.hdr.Get("Access-Control-Allow-Headers"), h)
		}
	}
	if c := a.hdr.Get("Access-Control-Allow-Credentials"); c != "" {
		t.Errorf("grpc-web preflight: Access-Control-Allow-Credentials %q, want none", c)
	}
	call := do(t, http.MethodPost, base+webPath, bytes.NewReader([]byte{0, 0, 0, 0, 0}), map[string]string{
		"Origin": good, "Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1",
	})
	if call.hdr.Get("Access-Control-Allow-Origin") != good || call.hdr.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("grpc-web call from %s: Allow-Origin %q, Allow-Credentials %q; want the origin and no credentials",
			good, call.hdr.Get("Access-Control-Allow-Origin"), call.hdr.Get("Access-Control-Allow-Credentials"))
	}
	if !strings.Contains(strings.ToLower(call.hdr.Get("Access-Control-Expose-Headers")), "grpc-status") {
		t.Errorf("grpc-web call: Expose-Headers %q lacks grpc-status", call.hdr.Get("Access-Control-Expose-Headers"))
	}
	// Another origin: no grant.
	if a := do(t, http.MethodOptions, base+webPath, nil, map[string]string{
		"Origin": "https://evil.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-grpc-web",
	}); a.hdr.Get("Access-Control-Allow-Origin") != "" || a.hdr.Get("Access-Control-Allow-Headers") != "" {
		t.Errorf("grpc-web preflight from another origin granted: %v", a.hdr)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestRESTStreamIsNDJSON: /v1/subscribe is served as
// application/x-ndjson, one JSON object per line; unary routes and
// errors stay application/json.
func TestRESTStreamIsNDJSON(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Dev = true })
	base := "http://" + n.HTTPAddr()
	guest := devTokenFor(t, base, "guest", "g1")
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"rooms":["guest:g1"]}`)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+"/v1/subscribe?rooms=guest:g1", body)
		req.Header.Set("Authorization", "Bearer "+guest)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
		if err != nil || !json.Valid(line) || !strings.Contains(string(line), `"connected"`) {
			t.Errorf("%s /v1/subscribe first line %q: %v", method, line, err)
		}
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/x-ndjson" {
			t.Errorf("%s /v1/subscribe: %d, Content-Type %q; want 200 application/x-ndjson", method, resp.StatusCode, ct)
		}
		cancel()
		resp.Body.Close()
	}
	// A refused stream is one JSON error.
	a := do(t, http.MethodGet, base+"/v1/subscribe?rooms=guest:g2", nil, map[string]string{"Authorization": "Bearer " + guest})
	if a.code != http.StatusForbidden || a.hdr.Get("Content-Type") != "application/json" {
		t.Errorf("refused stream: %d %q %s", a.code, a.hdr.Get("Content-Type"), a.body)
	}
	if a := do(t, http.MethodGet, base+"/v1/inbox/unread-count", nil, map[string]string{"Authorization": "Bearer " + guest}); a.code != http.StatusOK || a.hdr.Get("Content-Type") != "application/json" {
		t.Errorf("unary GET: %d %q", a.code, a.hdr.Get("Content-Type"))
	}
}

// TestOpenAPIDocument: /openapi.json names its API, says how to
// authenticate (a bearer JWT in the Authorization header) on every
// operation, and describes /v1/subscribe as newline-delimited JSON.
func TestOpenAPIDocument(t *testing.T) {
	base := newGateway(t, gateway.Config{})
	a := get(t, base+"/openapi.json")
	var doc struct {
		Info struct {
			Title, Version string
		}
		SecurityDefinitions map[string]struct {
			Type, Name, In string
		}
		Security []map[string][]string
		Paths    map[string]map[string]struct {
			Security  []map[string][]string
			Produces  []string
			Responses map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(a.body), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Info.Title != "notify API" || doc.Info.Version == "" || strings.Contains(doc.Info.Version, "not set") {
		t.Errorf("info: title %q, version %q", doc.Info.Title, doc.Info.Version)
	}
	bearer, ok := doc.SecurityDefinitions["bearer"]
	if !ok || bearer.Type != "apiKey" || bearer.In != "header" || bearer.Name != "Authorization" {
		t.Errorf("securityDefinitions %+v, want bearer: apiKey in the Authorization header", doc.SecurityDefinitions)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
		t.Errorf("root security %v", doc.Security)
	}
	ops := 0
	for path, methods := range doc.Paths {
		for m, op := range methods {
			ops++
			if len(op.Security) != 1 || op.Security[0]["bearer"] == nil {
				t.Errorf("%s %s: security %v, want bearer", m, path, op.Security)
			}
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s %s: no 401 response", m, path)
			}
			want := []string(nil)
			if path == "/v1/subscribe" {
				want = []string{"application/x-ndjson"}
			}
			if strings.Join(op.Produces, ",") != strings.Join(want, ",") {
				t.Errorf("%s %s: produces %v, want %v", m, path, op.Produces, want)
			}
		}
	}
	if ops < 16 {
		t.Errorf("%d operations, want every route (16)", ops)
	}
}

// TestRESTErrorsQuoteWholeCharacters: an error about a non-ASCII
// character names that character ('ü'), not the first byte of its UTF-8
// encoding read as Latin-1 ('Ã'), and a quoted value is never cut inside a
// character.
func TestRESTErrorsQuoteWholeCharacters(t *testing.T) {
	n := startNode(t, func(c *node.Config) { c.Dev = true })
	base := "http://" + n.HTTPAddr()
	svc := devTokenFor(t, base, "service", "loyalty-backend")
	auth := map[string]string{"Authorization": "Bearer " + svc, "Content-Type": "application/json"}
	for _, tc := range []struct{ name, path, body, want string }{
		{"room in the path", "/v1/rooms/guest:g%C3%BC/events", `{"systemAlert":{"level":"ALERT_LEVEL_INFO","title":"t"}}`, `id has character 'ü'`},
		{"id in the body", "/v1/events", `{"pointsAdded":{"guestId":"gü","restaurantId":"r1","amount":1,"newBalance":1}}`, `id has character 'ü'`},
		{"date in the body", "/v1/events", `{"pointsExpired":{"guestId":"g1","amount":1,"expiryDate":"x` + strings.Repeat("ü", 40) + `"}}`, `got \"x` + strings.Repeat("ü", 15) + `...\"`},
	} {
		a := do(t, http.MethodPost, base+tc.path, strings.NewReader(tc.body), auth)
		if a.code != http.StatusBadRequest || !strings.Contains(a.body, tc.want) || strings.Contains(a.body, "Ã") || strings.Contains(a.body, `\ufffd`) {
			t.Errorf("%s: %d %s, want 400 with %s", tc.name, a.code, a.body, tc.want)
		}
	}
}
