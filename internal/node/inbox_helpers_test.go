package node_test

// End-to-end tests of the durable inbox (InboxService, the stream's unread
// count, mutes) over real sockets on 127.0.0.1, on the embedded SQLite
// store and, when NOTIFY_TEST_POSTGRES_DSN is set, on PostgreSQL.

import (
	"context"
	"net/http"
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

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// inboxTimeout bounds every inbox test's blocking steps (a stream's whole
// life included); it is longer than testTimeout because one context serves
// a whole scenario, which runs slower under -race.
const inboxTimeout = 30 * time.Second

func inboxCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), inboxTimeout)
	t.Cleanup(cancel)
	return ctx
}

func guestID(id string) auth.Claims { return auth.Claims{Subject: id, Role: notifyv1.Role_ROLE_GUEST} }
func adminID(id string) auth.Claims { return auth.Claims{Subject: id, Role: notifyv1.Role_ROLE_ADMIN} }

// dialInbox opens one client connection to addr and returns both services
// on it; the connection is closed when the test ends.
func dialInbox(t *testing.T, addr string) (notifyv1.NotificationServiceClient, notifyv1.InboxServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return notifyv1.NewNotificationServiceClient(conn), notifyv1.NewInboxServiceClient(conn)
}

// ---- stream unread counts ----

// recvWithin receives the stream's next raw message (unread counts left
// on it), failing the test if none comes within testTimeout. After a
// failure the stream must not be read again.
func (s *stream) recvWithin(t *testing.T, what string) *notifyv1.SubscribeResponse {
	t.Helper()
	type result struct {
		m   *notifyv1.SubscribeResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := s.ServerStreamingClient.Recv()
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: Recv (last unread count %d): %v", what, s.unread, r.err)
		}
		return r.m
	case <-time.After(testTimeout):
		t.Fatalf("%s: nothing received within %v (last unread count %d)", what, testTimeout, s.unread)
		return nil
	}
}

// firstUnread reads the message right after Connected and requires it to be
// the initial unread count alone.
func (s *stream) firstUnread(t *testing.T) int64 {
	t.Helper()
	m := s.recvWithin(t, "initial unread count")
	if m.GetUnread() == nil || len(m.Events) != 0 {
		t.Fatalf("message after Connected = %v, want the initial unread count alone", m)
	}
	s.unread = m.GetUnread().Count
	return s.unread
}

// nextUnread reads until a message carries an unread count and returns it.
// Events read on the way are kept for next; heartbeats are counted.
func (s *stream) nextUnread(t *testing.T, what string) int64 {
	t.Helper()
	for range 10000 {
		m := s.recvWithin(t, what+": waiting for an unread count")
		s.pending = append(s.pending, m.Events...)
		switch {
		case m.GetUnread() != nil:
			s.unread = m.GetUnread().Count
			return s.unread
		case m.GetHeartbeat() != nil:
			s.heartbeats++
		case m.GetControl() != nil:
			t.Fatalf("%s: unexpected control message while waiting for an unread count: %v", what, m)
		}
	}
	t.Fatalf("%s: no unread count in 10000 messages", what)
	return 0
}

// awaitUnread waits until the stream's last unread count is want (it may
// already be) and returns the counts it read on the way, want included.
// Unread counts only come from the server, so a stream whose last count is
// want has been told want; callers wait for a value other than the last one
// they saw, or for one they know the server sends.
func (s *stream) awaitUnread(t *testing.T, want int64, what string) []int64 {
	t.Helper()
	if s.unread == want {
		return []int64{want}
	}
	var seen []int64
	for range 1000 {
		n := s.nextUnread(t, what)
		seen = append(seen, n)
		if n == want {
			return seen
		}
	}
	t.Fatalf("%s: unread counts %v never reached %d", what, seen, want)
	return nil
}

// ---- gRPC inbox helpers ----

func listAll(t *testing.T, ctx context.Context, ib notifyv1.InboxServiceClient, tok string, req *notifyv1.ListNotificationsRequest) *notifyv1.ListNotificationsResponse {
	t.Helper()
	if req == nil {
		req = &notifyv1.ListNotificationsRequest{}
	}
	if req.PageSize == 0 {
		req.PageSize = 200
	}
	resp, err := ib.ListNotifications(withToken(ctx, tok), req)
	if err != nil {
		t.Fatalf("ListNotifications(%v): %v", req, err)
	}
	if resp.NextPageToken != "" {
		t.Fatalf("ListNotifications(%v) has a next page; the test expects one page", req)
	}
	return resp
}

func unreadCount(t *testing.T, ctx context.Context, ib notifyv1.InboxServiceClient, tok string) int64 {
	t.Helper()
	resp, err := ib.GetUnreadCount(withToken(ctx, tok), &notifyv1.GetUnreadCountRequest{})
	if err != nil {
		t.Fatalf("GetUnreadCount: %v", err)
	}
	return resp.UnreadCount
}

// wantStatus requires err to carry code and a message containing each of
// substrs, and never the opaque "internal error".
func wantStatus(t *testing.T, err error, code codes.Code, what string, substrs ...string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: code %v (message %q), want %v", what, st.Code(), st.Message(), code)
		return
	}
	for _, s := range substrs {
		if !strings.Contains(st.Message(), s) {
			t.Errorf("%s: message %q does not mention %q", what, st.Message(), s)
		}
	}
}

// eventIDs lists the notifications' event ids.
func eventIDs(ns []*notifyv1.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.GetEvent().GetId()
	}
	return out
}

// notifIDs lists the notifications' ids.
func notifIDs(ns []*notifyv1.Notification) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Id
	}
	return out
}

func findNotif(ns []*notifyv1.Notification, id string) *notifyv1.Notification {
	for _, n := range ns {
		if n.Id == id {
			return n
		}
	}
	return nil
}

// ---- REST inbox helpers ----

// restOK checks for a 200 and decodes the body into m (if not nil). A
// failure is reported without stopping the test, so that a broken REST
// route does not hide what the rest of a scenario checks.
func restOK(t *testing.T, r restResult, what string, m proto.Message) bool {
	t.Helper()
	if r.status != http.StatusOK {
		t.Errorf("%s: HTTP %d %s, want 200", what, r.status, r.body)
		return false
	}
	if m != nil {
		unmarshalJSON(t, r.body, m)
	}
	return true
}

// wantREST requires an error response with the HTTP status, a gRPC code in
// the body matching it, and a message containing each of substrs.
func wantREST(t *testing.T, r restResult, httpStatus int, code codes.Code, what string, substrs ...string) {
	t.Helper()
	if r.status != httpStatus {
		t.Errorf("%s: HTTP %d %s, want %d", what, r.status, r.body, httpStatus)
		return
	}
	e := parseRestError(t, r.body)
	if codes.Code(e.Code) != code {
		t.Errorf("%s: body code %d (%s), want %v", what, e.Code, r.body, code)
	}
	if e.Message == "" || strings.Contains(e.Message, "internal error") {
		t.Errorf("%s: unclear message %q", what, e.Message)
	}
	for _, s := range substrs {
		if !strings.Contains(e.Message, s) {
			t.Errorf("%s: message %q does not mention %q", what, e.Message, s)
		}
	}
}

// restList lists over REST; ok is false (and the test marked failed) when
// the call did not succeed.
func restList(t *testing.T, ctx context.Context, base, tok, query string) (resp *notifyv1.ListNotificationsResponse, raw string, ok bool) {
	t.Helper()
	u := base + "/v1/inbox/notifications"
	if query != "" {
		u += "?" + query
	}
	r := restDo(t, ctx, http.MethodGet, u, tok, "")
	resp = &notifyv1.ListNotificationsResponse{}
	ok = restOK(t, r, "GET /v1/inbox/notifications?"+query, resp)
	return resp, string(r.body), ok
}

// restUnread gets the unread count over REST; ok as for restList.
func restUnread(t *testing.T, ctx context.Context, base, tok string) (n int64, ok bool) {
	t.Helper()
	var resp notifyv1.GetUnreadCountResponse
	ok = restOK(t, restDo(t, ctx, http.MethodGet, base+"/v1/inbox/unread-count", tok, ""), "GET /v1/inbox/unread-count", &resp)
	return resp.UnreadCount, ok
}

func jsonBody(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("protojson.Marshal: %v", err)
	}
	return string(b)
}

func idsJSON(ids ...string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = strconv.Quote(id)
	}
	return `{"ids":[` + strings.Join(q, ",") + `]}`
}

// ---- events ----

func cardCreated(gid, rid string, initial int64) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_CardCreated{CardCreated: &notifyv1.CardCreated{
		GuestId: gid, CardId: "card-" + gid, RestaurantId: rid, RestaurantName: "Chez " + rid, InitialPoints: initial,
	}}}
}

func systemAlert(title string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{
		Level: notifyv1.AlertLevel_ALERT_LEVEL_WARNING, Title: title, Message: "disk " + title, Source: notifyv1.AlertSource_ALERT_SOURCE_SYSTEM,
	}}}
}

func adminNotification(title string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_AdminNotification{AdminNotification: &notifyv1.AdminNotification{
		NotificationId: "n-" + title, Type: notifyv1.AdminNotificationType_ADMIN_NOTIFICATION_TYPE_FRAUD_DETECTED,
		Title: title, Priority: notifyv1.Priority_PRIORITY_HIGH,
	}}}
}

func publishAs(t *testing.T, ctx context.Context, c notifyv1.NotificationServiceClient, tok string, req *notifyv1.PublishRequest) *notifyv1.PublishResponse {
	t.Helper()
	resp, err := c.Publish(withToken(ctx, tok), req)
	if err != nil {
		t.Fatalf("Publish(%v): %v", req, err)
	}
	return resp
}
