package node_test

// Helpers of the inbox states tests (inbox_states_test.go): the same calls
// through each of the node's doors (native gRPC, REST, grpc-web), and the
// live stream's inbox counts read through each.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// door is one way into a node: unary InboxService calls and a stream.
type door struct {
	name string
	// call makes a unary InboxService call; errors are gRPC statuses (for
	// REST, made from the HTTP error body, whose status is checked against
	// the code).
	call func(t *testing.T, ctx context.Context, tok, method string, req, resp proto.Message) error
	// open starts a Subscribe stream with the role's default rooms and
	// returns its messages, pumped by a goroutine that ends with ctx.
	open func(t *testing.T, ctx context.Context, tok string) <-chan streamMsg
}

// streamMsg is one message of a stream, or the error that ended it.
type streamMsg struct {
	m   *notifyv1.SubscribeResponse
	err error
}

// doors returns the three doors of n.
func doors(t *testing.T, n *testNode) []door {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	httpAddr := n.HTTPAddr()
	return []door{
		{
			name: "gRPC",
			call: func(_ *testing.T, ctx context.Context, tok, method string, req, resp proto.Message) error {
				return conn.Invoke(withToken(ctx, tok), "/notify.v1.InboxService/"+method, req, resp)
			},
			open: func(t *testing.T, ctx context.Context, tok string) <-chan streamMsg {
				st, err := notifyv1.NewNotificationServiceClient(conn).Subscribe(withToken(ctx, tok), &notifyv1.SubscribeRequest{})
				if err != nil {
					t.Fatalf("Subscribe: %v", err)
				}
				return pump(ctx, func() (*notifyv1.SubscribeResponse, error) { return st.Recv() })
			},
		},
		{
			name: "REST",
			call: func(t *testing.T, ctx context.Context, tok, method string, req, resp proto.Message) error {
				return restCall(t, ctx, "http://"+httpAddr, tok, method, req, resp)
			},
			open: func(t *testing.T, ctx context.Context, tok string) <-chan streamMsg {
				rs := restSubscribe(t, ctx, httpAddr, "", tok)
				if rs.resp.StatusCode != http.StatusOK {
					t.Fatalf("GET /v1/subscribe: HTTP %d", rs.resp.StatusCode)
				}
				return pump(ctx, func() (*notifyv1.SubscribeResponse, error) { return restLine(rs.rd) })
			},
		},
		{
			name: "grpc-web",
			call: func(t *testing.T, ctx context.Context, tok, method string, req, resp proto.Message) error {
				return webUnary(t, ctx, httpAddr, tok, method, req, resp)
			},
			open: func(t *testing.T, ctx context.Context, tok string) <-chan streamMsg {
				r := webCall(t, ctx, httpAddr, "Subscribe", tok, &notifyv1.SubscribeRequest{})
				if r.StatusCode != http.StatusOK {
					t.Fatalf("grpc-web Subscribe: HTTP %d", r.StatusCode)
				}
				return pump(ctx, func() (*notifyv1.SubscribeResponse, error) { return webMessage(r) })
			},
		},
	}
}

// pump reads a stream's messages on a goroutine of its own until recv
// fails (the stream's context ends, or its body is closed).
func pump(ctx context.Context, recv func() (*notifyv1.SubscribeResponse, error)) <-chan streamMsg {
	ch := make(chan streamMsg, 1024)
	go func() {
		defer close(ch)
		for {
			m, err := recv()
			select {
			case ch <- streamMsg{m, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// restLine reads one line of a REST stream.
func restLine(rd *bufio.Reader) (*notifyv1.SubscribeResponse, error) {
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var env struct {
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(line, &env); err != nil {
		return nil, fmt.Errorf("line %q: %w", line, err)
	}
	if env.Result == nil {
		return nil, fmt.Errorf("line %q has no result", line)
	}
	var m notifyv1.SubscribeResponse
	if err := protojson.Unmarshal(env.Result, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// webMessage reads one message of a grpc-web stream.
func webMessage(r *http.Response) (*notifyv1.SubscribeResponse, error) {
	f, err := readWebFrame(r.Body)
	if err != nil {
		return nil, err
	}
	if f.isTrailer() {
		return nil, fmt.Errorf("trailers %q", f.data)
	}
	var m notifyv1.SubscribeResponse
	return &m, proto.Unmarshal(f.data, &m)
}

// webUnary makes a unary InboxService call over grpc-web.
func webUnary(t *testing.T, ctx context.Context, httpAddr, tok, method string, req, resp proto.Message) error {
	t.Helper()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/notify.v1.InboxService/"+method, bytes.NewReader(webFrame(t, req)))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/grpc-web+proto")
	hr.Header.Set("X-Grpc-Web", "1")
	hr.Header.Set("Authorization", "Bearer "+tok)
	r, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatalf("grpc-web %s: %v", method, err)
	}
	defer r.Body.Close()
	if s := r.Header.Get("Grpc-Status"); s != "" && s != "0" {
		code, _ := strconv.Atoi(s)
		msg, _ := url.PathUnescape(r.Header.Get("Grpc-Message"))
		return status.Error(codes.Code(code), msg)
	}
	got := false
	for range 3 {
		f, err := readWebFrame(r.Body)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("grpc-web %s: %v", method, err)
		}
		if !f.isTrailer() {
			if err := proto.Unmarshal(f.data, resp); err != nil {
				t.Fatalf("grpc-web %s: %v", method, err)
			}
			got = true
			continue
		}
		tr := webTrailers(t, f.data)
		if s := tr.Get("Grpc-Status"); s != "0" {
			code, _ := strconv.Atoi(s)
			msg, _ := url.PathUnescape(tr.Get("Grpc-Message"))
			return status.Error(codes.Code(code), msg)
		}
	}
	if !got {
		t.Fatalf("grpc-web %s: no message and no error", method)
	}
	return nil
}

// restRoutes are the REST routes of the InboxService methods the tests
// call: verb and path under /v1/inbox (or /v1/users/{user_id}/inbox).
var restRoutes = map[string][2]string{
	"ListNotifications": {http.MethodGet, "/notifications"},
	"GetCounts":         {http.MethodGet, "/counts"},
	"GetUnreadCount":    {http.MethodGet, "/unread-count"},
	"MarkRead":          {http.MethodPost, "/notifications:markRead"},
	"MarkUnread":        {http.MethodPost, "/notifications:markUnread"},
	"MarkAllRead":       {http.MethodPost, "/notifications:markAllRead"},
	"MarkSeen":          {http.MethodPost, "/notifications:markSeen"},
	"MarkUnseen":        {http.MethodPost, "/notifications:markUnseen"},
	"Archive":           {http.MethodPost, "/notifications:archive"},
	"Unarchive":         {http.MethodPost, "/notifications:unarchive"},
	"Snooze":            {http.MethodPost, "/notifications:snooze"},
	"Unsnooze":          {http.MethodPost, "/notifications:unsnooze"},
	"BulkUpdate":        {http.MethodPost, "/notifications:bulkUpdate"},
}

// restCall makes an InboxService call over REST, and checks that an
// error's HTTP status is the one of its gRPC code.
func restCall(t *testing.T, ctx context.Context, base, tok, method string, req, resp proto.Message) error {
	t.Helper()
	httpStatus, err := restInvoke(ctx, base, tok, method, req, resp)
	if st, ok := status.FromError(err); ok && err != nil && httpStatus != httpStatusOf(st.Code()) {
		t.Errorf("REST %s: HTTP %d for %v, want %d", method, httpStatus, st.Code(), httpStatusOf(st.Code()))
	}
	if err != nil && httpStatus == 0 {
		t.Fatalf("REST %s: %v", method, err)
	}
	return err
}

// restInvoke makes an InboxService call over REST: a request with a
// user_id goes to /v1/users/{user_id}/inbox/..., a GET carries the
// request's fields as query parameters, other verbs a JSON body. A gRPC
// error comes with the HTTP status that carried it; any other error (no
// answer) with status 0. It never stops the test, so that goroutines use it.
func restInvoke(ctx context.Context, base, tok, method string, req, resp proto.Message) (int, error) {
	route, ok := restRoutes[method]
	if !ok {
		return 0, fmt.Errorf("no REST route for %s", method)
	}
	req = proto.Clone(req)
	prefix := "/v1/inbox"
	if fd := req.ProtoReflect().Descriptor().Fields().ByName("user_id"); fd != nil {
		if u := req.ProtoReflect().Get(fd).String(); u != "" {
			prefix = "/v1/users/" + url.PathEscape(u) + "/inbox"
			req.ProtoReflect().Clear(fd)
		}
	}
	u := base + prefix + route[1]
	var body io.Reader
	if route[0] == http.MethodGet {
		if q := queryOf(req); q != "" {
			u += "?" + q
		}
	} else {
		b, err := protojson.Marshal(req)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, route[0], u, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Authorization", "Bearer "+tok)
	r, err := http.DefaultClient.Do(hr)
	if err != nil {
		return 0, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	if r.StatusCode == http.StatusOK {
		return r.StatusCode, protojson.Unmarshal(b, resp)
	}
	var e restError
	if err := json.Unmarshal(b, &e); err != nil || e.Code == 0 {
		return 0, fmt.Errorf("HTTP %d %q", r.StatusCode, b)
	}
	return r.StatusCode, status.Error(codes.Code(e.Code), e.Message)
}

// httpStatusOf is the gateway's HTTP status of a gRPC code.
func httpStatusOf(c codes.Code) int {
	switch c {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// queryOf encodes the set fields of a flat request as query parameters:
// repeated fields repeat, enums by name.
func queryOf(m proto.Message) string {
	q := url.Values{}
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		str := func(v protoreflect.Value) string {
			if fd.Kind() == protoreflect.EnumKind {
				if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
					return string(ev.Name())
				}
				return strconv.Itoa(int(v.Enum()))
			}
			return v.String()
		}
		if fd.IsList() {
			for i := 0; i < v.List().Len(); i++ {
				q.Add(string(fd.Name()), str(v.List().Get(i)))
			}
		} else {
			q.Set(string(fd.Name()), str(v))
		}
		return true
	})
	return q.Encode()
}

// live is a user's stream as the tests follow it: its inbox counts and the
// notifications announced back from snooze.
type live struct {
	door     string
	msgs     <-chan streamMsg
	last     *notifyv1.UnreadCount
	returned []*notifyv1.ReturnedNotification
}

// openLive opens a stream through d and reads Connected and the first
// counts, which come right after.
func openLive(t *testing.T, ctx context.Context, d door, tok string) *live {
	t.Helper()
	l := &live{door: d.name, msgs: d.open(t, ctx, tok)}
	first := l.recv(t, "Connected")
	if first.GetConnected() == nil {
		t.Fatalf("%s stream: first message %v, want Connected", d.name, first)
	}
	if m := l.recv(t, "the first counts"); m.GetUnread() == nil {
		t.Fatalf("%s stream: second message %v, want the counts", d.name, m)
	} else {
		l.last = m.GetUnread()
	}
	return l
}

// recv returns the stream's next message, failing after testTimeout.
func (l *live) recv(t *testing.T, what string) *notifyv1.SubscribeResponse {
	t.Helper()
	select {
	case sm, ok := <-l.msgs:
		if !ok || sm.err != nil {
			t.Fatalf("%s stream, waiting for %s: ended (%v)", l.door, what, sm.err)
		}
		return sm.m
	case <-time.After(testTimeout):
		t.Fatalf("%s stream: no %s within %v (last counts %v)", l.door, what, testTimeout, l.last)
		return nil
	}
}

// await reads the stream until a counts message satisfies ok, and returns
// it; events and heartbeats on the way are skipped, returned notifications
// kept.
func (l *live) await(t *testing.T, what string, ok func(u *notifyv1.UnreadCount) bool) *notifyv1.UnreadCount {
	t.Helper()
	if l.last != nil && ok(l.last) {
		return l.last
	}
	for range 10000 {
		m := l.recv(t, what)
		u := m.GetUnread()
		if u == nil {
			continue
		}
		l.last = u
		l.returned = append(l.returned, u.Returned...)
		if ok(u) {
			return u
		}
	}
	t.Fatalf("%s stream: %s never came (last counts %v)", l.door, what, l.last)
	return nil
}

// awaitCounts waits for the stream's counts to be unread and unseen.
func (l *live) awaitCounts(t *testing.T, unread, unseen int64) {
	t.Helper()
	l.await(t, fmt.Sprintf("counts unread %d, unseen %d", unread, unseen), func(u *notifyv1.UnreadCount) bool {
		return u.Count == unread && u.Unseen == unseen
	})
}

// callOK makes a call that must succeed.
func callOK[R proto.Message](t *testing.T, ctx context.Context, d door, tok, method string, req proto.Message, resp R) R {
	t.Helper()
	if err := d.call(t, ctx, tok, method, req, resp); err != nil {
		t.Fatalf("%s %s(%v): %v", d.name, method, req, err)
	}
	return resp
}

// wantCall requires a call to fail with code and a message naming each
// of substrs.
func wantCall(t *testing.T, ctx context.Context, d door, tok, method string, req proto.Message, code codes.Code, substrs ...string) {
	t.Helper()
	resp := newResponse(t, method)
	err := d.call(t, ctx, tok, method, req, resp)
	wantStatus(t, err, code, d.name+" "+method+"("+strings.TrimSpace(fmt.Sprint(req))+")", substrs...)
}

// newResponse is an empty response message of an InboxService method.
func newResponse(t *testing.T, method string) proto.Message {
	t.Helper()
	md := notifyv1.File_notify_v1_inbox_proto.Services().ByName("InboxService").Methods().ByName(protoreflect.Name(method))
	if md == nil {
		t.Fatalf("InboxService has no method %s", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}

// inboxCounts lists every state of the user's inbox and counts them the
// way InboxCounts does, to check the counts against the lists.
func inboxCounts(t *testing.T, ctx context.Context, d door, tok string) *notifyv1.InboxCounts {
	t.Helper()
	list := func(st notifyv1.NotificationState) []*notifyv1.Notification {
		resp := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{PageSize: 200, State: st}, &notifyv1.ListNotificationsResponse{})
		if resp.NextPageToken != "" {
			t.Fatalf("more than a page in state %v", st)
		}
		return resp.Notifications
	}
	out := &notifyv1.InboxCounts{}
	for _, n := range list(notifyv1.NotificationState_NOTIFICATION_STATE_INBOX) {
		out.Inbox++
		if !n.Seen {
			out.Unseen++
		}
		if !n.Read {
			out.Unread++
		}
	}
	out.Archived = int64(len(list(notifyv1.NotificationState_NOTIFICATION_STATE_ARCHIVED)))
	out.Snoozed = int64(len(list(notifyv1.NotificationState_NOTIFICATION_STATE_SNOOZED)))
	return out
}

func getCounts(t *testing.T, ctx context.Context, d door, tok, user string) *notifyv1.InboxCounts {
	t.Helper()
	return callOK(t, ctx, d, tok, "GetCounts", &notifyv1.GetCountsRequest{UserId: user}, &notifyv1.GetCountsResponse{}).Counts
}

// listIDs lists the ids of the user's notifications in a state, newest first.
func listIDs(t *testing.T, ctx context.Context, d door, tok string, st notifyv1.NotificationState) []string {
	t.Helper()
	resp := callOK(t, ctx, d, tok, "ListNotifications", &notifyv1.ListNotificationsRequest{PageSize: 200, State: st}, &notifyv1.ListNotificationsResponse{})
	return notifIDs(resp.Notifications)
}
