package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/gateway"
)

// fakeService answers Publish with what publish returns and records the
// request and context it got.
type fakeService struct {
	notifyv1.UnimplementedNotificationServiceServer
	publish func(ctx context.Context, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error)
	got     *notifyv1.PublishRequest
	ctx     context.Context
}

func (f *fakeService) Publish(ctx context.Context, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
	f.got, f.ctx = req, ctx
	return f.publish(ctx, req)
}

// fakeConn records the calls that InProcess passes on to the connection.
type fakeConn struct {
	invoked, streamed []string
}

func (c *fakeConn) Invoke(_ context.Context, method string, _, _ any, _ ...grpc.CallOption) error {
	c.invoked = append(c.invoked, method)
	return status.Error(codes.Unavailable, "fake conn")
}

func (c *fakeConn) NewStream(_ context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	c.streamed = append(c.streamed, method)
	return nil, status.Error(codes.Unavailable, "fake conn")
}

// recorder is an interceptor that appends name to *trace around the call.
func recorder(name string, trace *[]string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		*trace = append(*trace, name+">"+info.FullMethod)
		resp, err := h(ctx, req)
		*trace = append(*trace, "<"+name+":"+status.Code(err).String())
		return resp, err
	}
}

const publishMethod = "/notify.v1.NotificationService/Publish"

func newLocal(t *testing.T, svc *fakeService, maxRecv int, ints ...grpc.UnaryServerInterceptor) (notifyv1.NotificationServiceClient, *fakeConn) {
	t.Helper()
	conn := &fakeConn{}
	local := gateway.NewInProcess(conn, maxRecv, ints...)
	notifyv1.RegisterNotificationServiceServer(local, svc)
	return notifyv1.NewNotificationServiceClient(local), conn
}

func publishReq(desc string) *notifyv1.PublishRequest {
	return &notifyv1.PublishRequest{
		Room:    "guest:g1",
		Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{GuestId: "g1", Amount: 5, Description: desc}},
	}
}

// TestInProcessUnary: a unary call runs the interceptors in order around
// the service, with the caller's outgoing metadata as incoming metadata, a
// copy of the request, a copy of the response, and the headers and
// trailers the handler set.
func TestInProcessUnary(t *testing.T) {
	want := &notifyv1.PublishResponse{EventId: "e1", Positions: []*notifyv1.StreamPosition{{Room: "guest:g1", Offset: 7, Epoch: "ep"}}}
	svc := &fakeService{publish: func(ctx context.Context, _ *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
		if err := grpc.SetHeader(ctx, metadata.Pairs("x-h", "1")); err != nil {
			return nil, err
		}
		if err := grpc.SetTrailer(ctx, metadata.Pairs("x-t", "2")); err != nil {
			return nil, err
		}
		if m, ok := grpc.Method(ctx); !ok || m != publishMethod {
			t.Errorf("grpc.Method = %q, %v", m, ok)
		}
		return want, nil
	}}
	var trace []string
	c, conn := newLocal(t, svc, 1<<20, recorder("a", &trace), recorder("b", &trace))

	req := publishReq("hello")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer tok", "x-other", "v")
	var header, trailer metadata.MD
	got, err := c.Publish(ctx, req, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if !proto.Equal(want, got) {
		t.Errorf("response %v, want %v", got, want)
	}
	if got == want {
		t.Error("the response is the handler's message, not a copy")
	}
	if svc.got == req || !proto.Equal(svc.got, req) {
		t.Errorf("the service got %v (same pointer: %v), want a copy of %v", svc.got, svc.got == req, req)
	}
	md, _ := metadata.FromIncomingContext(svc.ctx)
	if a := md.Get("authorization"); !slices.Equal(a, []string{"Bearer tok"}) || md.Get("x-other")[0] != "v" {
		t.Errorf("incoming metadata %v", md)
	}
	if want := []string{"a>" + publishMethod, "b>" + publishMethod, "<b:OK", "<a:OK"}; !slices.Equal(trace, want) {
		t.Errorf("interceptors ran %v, want %v", trace, want)
	}
	if header.Get("x-h")[0] != "1" || trailer.Get("x-t")[0] != "2" {
		t.Errorf("header %v, trailer %v", header, trailer)
	}
	if len(conn.invoked)+len(conn.streamed) != 0 {
		t.Errorf("the connection was used: %v %v", conn.invoked, conn.streamed)
	}
}

// TestInProcessErrors: the codes a gRPC client would have seen.
func TestInProcessErrors(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		svc := &fakeService{publish: func(context.Context, *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
			t.Error("the service ran for an oversized request")
			return nil, nil
		}}
		var trace []string
		c, _ := newLocal(t, svc, 100, recorder("a", &trace))
		req := publishReq(strings.Repeat("x", 200))
		_, err := c.Publish(context.Background(), req)
		st := status.Convert(err)
		if want := "grpc: received message larger than max (" + strconv.Itoa(proto.Size(req)) + " vs. 100)"; st.Code() != codes.ResourceExhausted || st.Message() != want {
			t.Errorf("error %v, want ResourceExhausted %q", err, want)
		}
		// As in a gRPC server, the request is refused before the interceptors.
		if len(trace) != 0 {
			t.Errorf("interceptors ran: %v", trace)
		}
	})

	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"status", status.Error(codes.PermissionDenied, "no"), codes.PermissionDenied, "no"},
		{"plain error", errors.New("boom"), codes.Unknown, "boom"},
		{"canceled", context.Canceled, codes.Canceled, "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeService{publish: func(context.Context, *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
				return nil, tc.err
			}}
			c, _ := newLocal(t, svc, 1<<20)
			_, err := c.Publish(context.Background(), publishReq(""))
			if st := status.Convert(err); st.Code() != tc.code || st.Message() != tc.msg {
				t.Errorf("error %v, want %v %q", err, tc.code, tc.msg)
			}
		})
	}

	t.Run("context done", func(t *testing.T) {
		ran := false
		svc := &fakeService{publish: func(context.Context, *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
			ran = true
			return &notifyv1.PublishResponse{}, nil
		}}
		var trace []string
		c, _ := newLocal(t, svc, 1<<20, recorder("a", &trace))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Publish(ctx, publishReq(""))
		if status.Code(err) != codes.Canceled || ran || len(trace) != 0 {
			t.Errorf("error %v, service ran %v, interceptors %v: want Canceled before anything runs", err, ran, trace)
		}
	})

	t.Run("context ends during the call", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		svc := &fakeService{publish: func(context.Context, *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
			cancel()
			return nil, status.Error(codes.Unavailable, "store gave up")
		}}
		c, _ := newLocal(t, svc, 1<<20)
		if _, err := c.Publish(ctx, publishReq("")); status.Code(err) != codes.Canceled {
			t.Errorf("error %v, want Canceled as a gRPC client reports", err)
		}
	})
}

// TestInProcessPassesOn: streams and unregistered methods go over the
// connection.
func TestInProcessPassesOn(t *testing.T) {
	c, conn := newLocal(t, &fakeService{}, 1<<20)
	if _, err := c.Subscribe(context.Background(), &notifyv1.SubscribeRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("Subscribe: %v, want the fake connection's error", err)
	}
	local := gateway.NewInProcess(conn, 1<<20)
	inbox := notifyv1.NewInboxServiceClient(local)
	if _, err := inbox.GetUnreadCount(context.Background(), &notifyv1.GetUnreadCountRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("GetUnreadCount: %v, want the fake connection's error", err)
	}
	if want := []string{"/notify.v1.NotificationService/Subscribe"}; !slices.Equal(conn.streamed, want) {
		t.Errorf("streams over the connection %v, want %v", conn.streamed, want)
	}
	if want := []string{"/notify.v1.InboxService/GetUnreadCount"}; !slices.Equal(conn.invoked, want) {
		t.Errorf("unary calls over the connection %v, want %v", conn.invoked, want)
	}
}

// TestInProcessRegisterChecksType: like grpc.Server, registering an
// implementation of the wrong service panics.
func TestInProcessRegisterChecksType(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	gateway.NewInProcess(&fakeConn{}, 1<<20).RegisterService(&notifyv1.InboxService_ServiceDesc, &fakeService{})
}

// TestRESTBodies: a REST body that is one JSON value (with any JSON
// whitespace around it) reaches the service; data after the value is 400
// from the gateway's check; a syntax error is the gateway's 400 with the
// JSON decoder's message (protobuf's "proto:" prefix varies by build).
func TestRESTBodies(t *testing.T) {
	var peers []string
	svc := &fakeService{publish: func(ctx context.Context, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
		if p, ok := peer.FromContext(ctx); ok {
			peers = append(peers, p.Addr.String())
		}
		return &notifyv1.PublishResponse{EventId: req.GetPointsAdded().GetDescription()}, nil
	}}
	conn, err := grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	local := gateway.NewInProcess(conn, 1<<20)
	notifyv1.RegisterNotificationServiceServer(local, svc)
	h, err := gateway.New(context.Background(), gateway.Config{}, grpc.NewServer(), local, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnContext = gateway.ConnContext
	ts.Start()
	t.Cleanup(ts.Close)

	const event = `{"pointsAdded":{"guestId":"g1","description":"d"}}`
	for _, tc := range []struct {
		name, body string
		code       int
		want       string // in the response body
	}{
		{"one value", event, http.StatusOK, `"eventId":"d"`},
		{"JSON whitespace around", " \n\t" + event + "\r\n ", http.StatusOK, `"eventId":"d"`},
		{"empty", "", http.StatusOK, `{}`},
		{"two values", event + event, http.StatusBadRequest, "request body has data after its JSON value"},
		{"garbage after", event + " x", http.StatusBadRequest, "request body has data after its JSON value"},
		{"vertical tab after", event + "\v", http.StatusBadRequest, "request body has data after its JSON value"},
		{"truncated", `{"pointsAdded":`, http.StatusBadRequest, "unexpected EOF"},
		{"vertical tab before", "\v" + event, http.StatusBadRequest, "invalid character"},
		{"not an object", "\n [1]", http.StatusBadRequest, `(line 1:1): unexpected token [`},
		{"unknown field", "\n  {\"nope\":1}", http.StatusBadRequest, `(line 1:2): unknown field \"nope\"`},
		{"wrong type", `{"pointsAdded":{"guestId":1}}`, http.StatusBadRequest, `(line 1:27): invalid value for string field guestId: 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, http.MethodPost, ts.URL+"/v1/events", strings.NewReader(tc.body), map[string]string{"Content-Type": "application/json"})
			if a.code != tc.code || !strings.Contains(a.body, tc.want) {
				t.Errorf("POST %q: %d %s, want %d with %q", tc.body, a.code, a.body, tc.code, tc.want)
			}
		})
	}
	// The calls that reached the service had the HTTP client as their peer.
	if len(peers) != 3 {
		t.Fatalf("service saw peers %v, want 3 calls", peers)
	}
	for _, p := range peers {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("peer %q, want the client's loopback address", p)
		}
	}
}

// TestRESTBodyLengths: the body checkRequest reads is what the decoder gets, for
// bodies with and without a Content-Length.
func TestRESTBodyLengths(t *testing.T) {
	var got []string
	svc := &fakeService{publish: func(_ context.Context, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
		got = append(got, req.GetPointsAdded().GetDescription())
		return &notifyv1.PublishResponse{}, nil
	}}
	local := gateway.NewInProcess(&fakeConn{}, 1<<20)
	notifyv1.RegisterNotificationServiceServer(local, svc)
	h, err := gateway.New(context.Background(), gateway.Config{MaxBodyBytes: 4096}, grpc.NewServer(), local, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	for _, n := range []int{0, 1, 100, 4000} {
		body := `{"pointsAdded":{"description":"` + strings.Repeat("x", n) + `"}}`
		for _, chunked := range []bool{false, true} {
			req, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/events", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if chunked {
				req.Body = io.NopCloser(strings.NewReader(body))
				req.ContentLength = -1
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d bytes (chunked %v): %d %s", len(body), chunked, resp.StatusCode, b)
			}
			if last := got[len(got)-1]; last != strings.Repeat("x", n) {
				t.Errorf("%d bytes (chunked %v): description of %d bytes arrived", len(body), chunked, len(last))
			}
		}
	}
}
