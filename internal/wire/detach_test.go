package wire_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/stack"
	"github.com/maxloyalty/notify/internal/testenv"
	"github.com/maxloyalty/notify/internal/wire"
)

// detachService's streaming handler lets its goroutine go and hands the
// call to the test: the stream to send on and the end to give.
type detachService struct {
	testpb.UnimplementedTestServiceServer
	calls chan detachedCall
}

type detachedCall struct {
	stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]
	end    func(error)
	md     metadata.MD // the request's, as the handler saw it
}

func (s *detachService) StreamingOutputCall(_ *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	ctx := stream.Context()
	d, ok := grpc.ServerTransportStreamFromContext(ctx).(interface {
		Detach() (end func(error), ok bool)
	})
	if !ok {
		return status.Error(codes.Internal, "the transport stream has no Detach")
	}
	end, ok := d.Detach()
	if !ok {
		return status.Error(codes.FailedPrecondition, "not detached")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	onCancel := func(f func()) { context.AfterFunc(ctx, f) }
	if len(md.Get("x-on-cancel")) > 0 {
		onCancel = grpc.ServerTransportStreamFromContext(ctx).(interface{ OnCancel(func()) }).OnCancel
	}
	if len(md.Get("x-late")) > 0 {
		<-ctx.Done() // registered once the call was interrupted
	}
	if len(md.Get("x-replaced")) > 0 {
		onCancel(func() { end(errors.New("the replaced registration ran")) })
	}
	onCancel(func() { end(ctx.Err()) })
	if len(md.Get("x-end-first")) > 0 {
		// The end comes before the handler returned, and before the
		// interceptor registered its own end.
		end(status.Error(codes.Aborted, "ended first"))
	}
	s.calls <- detachedCall{stream, end, md}
	return stack.ErrDetached
}

// serveDetach starts a wire server whose one stream interceptor records
// each call's end as a detached call's OnEnd gives it.
func serveDetach(t *testing.T, detach bool) (*detachService, testpb.TestServiceClient, chan error) {
	t.Helper()
	svc, conn, ends := serveDetachConn(t, detach)
	return svc, testpb.NewTestServiceClient(conn), ends
}

// serveDetachConn is serveDetach giving the client's connection.
func serveDetachConn(t *testing.T, detach bool) (*detachService, *grpc.ClientConn, chan error) {
	t.Helper()
	ends := make(chan error, 10)
	icept := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		if errors.Is(err, stack.ErrDetached) {
			n := grpc.ServerTransportStreamFromContext(ss.Context()).(interface{ OnEnd(func(error)) bool })
			if n.OnEnd(func(err error) { ends <- err }) {
				return err
			}
		}
		ends <- err
		return err
	}
	svc := &detachService{calls: make(chan detachedCall, 10)}
	_, conn := serveService(t, wire.Config{Detach: detach, StreamInterceptors: []grpc.StreamServerInterceptor{icept}}, svc)
	return svc, conn, ends
}

func recvCall(t *testing.T, svc *detachService) detachedCall {
	t.Helper()
	select {
	case c := <-svc.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not run")
	}
	return detachedCall{}
}

func recvEnd(t *testing.T, ends chan error) error {
	t.Helper()
	select {
	case err := <-ends:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the interceptor was not told the call ended")
	}
	return nil
}

// TestDetachedCall: a call whose handler let its goroutine go stays open,
// is sent on from another goroutine, and ends with the status its end
// gives; the interceptor is told then, not when the handler returned.
func TestDetachedCall(t *testing.T) {
	svc, c, ends := serveDetach(t, true)
	s, err := c.StreamingOutputCall(ctx(t), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	call := recvCall(t, svc)
	for i := range 3 {
		if err := call.stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil || r.GetPayload().GetBody()[0] != byte(i) {
			t.Fatalf("message %d: %v, %v", i, r, err)
		}
	}
	select {
	case err := <-ends:
		t.Fatalf("the interceptor saw the call end (%v) while it was open", err)
	default:
	}
	call.end(status.Error(codes.Aborted, "bye"))
	call.end(status.Error(codes.Internal, "a second end is ignored"))
	if _, err := s.Recv(); status.Code(err) != codes.Aborted {
		t.Fatalf("the call ended with %v, want Aborted", err)
	}
	if err := recvEnd(t, ends); status.Code(err) != codes.Aborted {
		t.Fatalf("the interceptor saw %v, want Aborted", err)
	}
}

// TestDetachedCallLetsMetadataGo: the handler sees the request's
// metadata; once it has returned stack.ErrDetached, the call's context
// no longer holds it (an idle stream would keep the map and the token for
// nothing), and everything else in the context stays: the transport
// stream, sending, the client's cancel.
func TestDetachedCallLetsMetadataGo(t *testing.T) {
	svc, c, ends := serveDetach(t, true)
	cctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	s, err := c.StreamingOutputCall(metadata.AppendToOutgoingContext(cctx, "x-token", "secret"), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	call := recvCall(t, svc)
	if got := call.md.Get("x-token"); len(got) != 1 || got[0] != "secret" {
		t.Fatalf("the handler saw x-token %q, want the request's", got)
	}
	sctx := call.stream.Context()
	testenv.Eventually(t, 10*time.Second, "the detached call's context without the request's metadata", func() bool {
		_, ok := metadata.FromIncomingContext(sctx)
		return !ok
	})
	if grpc.ServerTransportStreamFromContext(sctx) == nil {
		t.Fatal("the detached call's context lost its transport stream")
	}
	if err := call.stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if sctx.Err() != nil {
		t.Fatalf("the call's context ended (%v) while the call is open", sctx.Err())
	}
	cancel()
	<-sctx.Done()
	if err := recvEnd(t, ends); !errors.Is(err, context.Canceled) {
		t.Fatalf("the interceptor saw %v, want the context's cancel", err)
	}
}

// TestDetachedCallEndsFirst: an end given before the handler returned
// waits for it, and for the interceptor's registration on the way out.
func TestDetachedCallEndsFirst(t *testing.T) {
	svc, c, ends := serveDetach(t, true)
	s, err := c.StreamingOutputCall(metadata.AppendToOutgoingContext(ctx(t), "x-end-first", "1"), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvCall(t, svc)
	if _, err := s.Recv(); status.Code(err) != codes.Aborted {
		t.Fatalf("the call ended with %v, want Aborted", err)
	}
	if err := recvEnd(t, ends); status.Code(err) != codes.Aborted {
		t.Fatalf("the interceptor saw %v, want Aborted", err)
	}
}

// TestDetachedCallCancelled: the client's cancel reaches a detached call
// through its context.
func TestDetachedCallCancelled(t *testing.T) {
	svc, c, ends := serveDetach(t, true)
	cctx, cancel := context.WithCancel(ctx(t))
	if _, err := c.StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{}); err != nil {
		t.Fatal(err)
	}
	recvCall(t, svc)
	cancel()
	if err := recvEnd(t, ends); !errors.Is(err, context.Canceled) {
		t.Fatalf("the interceptor saw %v, want the context's cancel", err)
	}
}

// TestOnCancel: the transport stream's OnCancel runs once the call is
// interrupted however it is (the client's cancel, its connection's close,
// the call's deadline), and at once when the call was interrupted before
// it registered; a later registration replaces an earlier one. The call's
// context is not its connection's child, so the connection's close
// reaching it is the transport's doing.
func TestOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		md   []string
		want error
		// interrupt interrupts the call, given the client's call context's
		// cancel and its connection.
		interrupt func(cancel func(), conn *grpc.ClientConn)
	}{
		{"client cancel", nil, context.Canceled, func(cancel func(), _ *grpc.ClientConn) { cancel() }},
		{"connection closed", nil, context.Canceled, func(_ func(), conn *grpc.ClientConn) { conn.Close() }},
		{"deadline", nil, context.DeadlineExceeded, func(func(), *grpc.ClientConn) {}},
		{"registered after", []string{"x-late", "1"}, context.Canceled, func(cancel func(), _ *grpc.ClientConn) { cancel() }},
		{"replaced", []string{"x-replaced", "1"}, context.Canceled, func(cancel func(), _ *grpc.ClientConn) { cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc, conn, ends := serveDetachConn(t, true)
			// No deadline but the case's: the call's context then has none,
			// and OnCancel does not fall back to context.AfterFunc.
			cctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.want == context.DeadlineExceeded {
				cctx, cancel = context.WithTimeout(cctx, 300*time.Millisecond)
				defer cancel()
			}
			cctx = metadata.AppendToOutgoingContext(cctx, append([]string{"x-on-cancel", "1"}, tc.md...)...)
			if _, err := testpb.NewTestServiceClient(conn).StreamingOutputCall(cctx, &testpb.StreamingOutputCallRequest{}); err != nil {
				t.Fatal(err)
			}
			late := len(tc.md) > 0 && tc.md[0] == "x-late"
			if !late {
				recvCall(t, svc) // the handler registered and let its goroutine go
			}
			tc.interrupt(cancel, conn)
			err := recvEnd(t, ends)
			if tc.want == context.DeadlineExceeded && errors.Is(err, context.Canceled) {
				// The client's cancel at its own deadline may arrive before
				// the server's deadline passes: OnCancel ran either way.
				err = context.DeadlineExceeded
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("the interceptor saw %v, want %v", err, tc.want)
			}
			if late {
				recvCall(t, svc)
			}
		})
	}
}

// TestDetachOff: a server not configured to detach refuses Detach, and
// the handler's goroutine is the call's as always.
func TestDetachOff(t *testing.T) {
	_, c, ends := serveDetach(t, false)
	s, err := c.StreamingOutputCall(ctx(t), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the call ended with %v, want FailedPrecondition", err)
	}
	if err := recvEnd(t, ends); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("the interceptor saw %v", err)
	}
}
