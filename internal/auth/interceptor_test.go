package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

const (
	checkMethod = "/grpc.health.v1.Health/Check"
	watchMethod = "/grpc.health.v1.Health/Watch"
)

// probe is what the interceptor chained after the auth interceptor saw.
type probe struct {
	method string
	claims Claims
	ok     bool
}

// startServer runs the standard health service behind v's interceptors,
// followed by interceptors that report FromContext on the returned channel.
func startServer(t *testing.T, v *Verifier, skip func(string) bool) (healthpb.HealthClient, <-chan probe) {
	t.Helper()
	probes := make(chan probe, 16)
	unaryProbe := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		c, ok := FromContext(ctx)
		probes <- probe{method: info.FullMethod, claims: c, ok: ok}
		return h(ctx, req)
	}
	streamProbe := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		c, ok := FromContext(ss.Context())
		probes <- probe{method: info.FullMethod, claims: c, ok: ok}
		return h(srv, ss)
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(v.UnaryInterceptor(skip), unaryProbe),
		grpc.ChainStreamInterceptor(v.StreamInterceptor(skip), streamProbe),
	)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn), probes
}

// callCtx returns a context with a deadline and, unless auth is empty,
// the given authorization metadata.
func callCtx(t *testing.T, auth string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	return ctx
}

// checkStatus asserts err's gRPC code and, for failures, its message and
// ErrorInfo reason.
func checkStatus(t *testing.T, err error, code codes.Code, msg, reason string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("code = %v (%v), want %v", st.Code(), err, code)
	}
	if code == codes.OK {
		return
	}
	if msg != "" && st.Message() != msg {
		t.Errorf("message = %q, want %q", st.Message(), msg)
	}
	if got := errorInfoReason(t, st); got != reason {
		t.Errorf("ErrorInfo reason = %q, want %q", got, reason)
	}
}

// errorInfoReason returns the reason of st's single ErrorInfo detail in
// the notify domain.
func errorInfoReason(t *testing.T, st *status.Status) string {
	t.Helper()
	var reasons []string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetDomain() != ErrorDomain {
				t.Errorf("ErrorInfo domain = %q, want %q", info.GetDomain(), ErrorDomain)
			}
			reasons = append(reasons, info.GetReason())
		}
	}
	if len(reasons) != 1 {
		t.Fatalf("status has %d ErrorInfo details (%v), want 1", len(reasons), st.Details())
	}
	return reasons[0]
}

// expectProbe checks the next probe report, or that there is none when
// want is nil.
func expectProbe(t *testing.T, probes <-chan probe, method string, want *Claims) {
	t.Helper()
	if want == nil {
		select {
		case p := <-probes:
			t.Fatalf("handler chain ran for a rejected call: %+v", p)
		default:
		}
		return
	}
	select {
	case p := <-probes:
		if p.method != method {
			t.Fatalf("probe method = %q, want %q", p.method, method)
		}
		if *want == (Claims{}) {
			if p.ok {
				t.Fatalf("FromContext = %+v, want no claims", p.claims)
			}
			return
		}
		if !p.ok {
			t.Fatalf("FromContext found no claims in the handler context")
		}
		checkClaims(t, p.claims, *want)
	case <-time.After(5 * time.Second):
		t.Fatal("handler chain never ran")
	}
}

// interceptorCase is one row of the interceptor tables.
type interceptorCase struct {
	name   string
	auth   string
	code   codes.Code
	msg    string
	reason string
	claims *Claims // nil: the handler must not run
}

// interceptorCases returns the cases shared by the unary and stream tests.
func interceptorCases(t *testing.T) []interceptorCase {
	t.Helper()
	s := NewSigner(testSecret())
	want := Claims{Subject: "cashier-1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r-1"}
	good, err := s.Mint(want, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.Mint(want, time.Minute, WithIssuedAt(time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	forged, err := NewSigner([]byte("not-the-secret-not-the-secret-xx")).Mint(want, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return []interceptorCase{
		{name: "no token", code: codes.Unauthenticated, msg: "missing bearer token", reason: ReasonTokenMissing},
		{name: "empty bearer", auth: "Bearer ", code: codes.Unauthenticated, msg: "missing bearer token", reason: ReasonTokenMissing},
		{name: "other scheme", auth: "Basic " + good, code: codes.Unauthenticated,
			msg: "invalid token: authorization scheme is not Bearer", reason: ReasonTokenInvalid},
		{name: "token without scheme", auth: good, code: codes.Unauthenticated, reason: ReasonTokenInvalid},
		{name: "expired", auth: "Bearer " + expired, code: codes.Unauthenticated, msg: "token expired", reason: ReasonTokenExpired},
		{name: "forged", auth: "Bearer " + forged, code: codes.Unauthenticated,
			msg: "invalid token: signature is invalid", reason: ReasonTokenInvalid},
		{name: "garbage", auth: "Bearer x.y.z", code: codes.Unauthenticated,
			msg: "invalid token: malformed token", reason: ReasonTokenInvalid},
		{name: "good", auth: "Bearer " + good, code: codes.OK, claims: &want},
		{name: "good lowercase scheme", auth: "bearer " + good, code: codes.OK, claims: &want},
		{name: "good upper scheme extra spaces", auth: "  BEARER   " + good + " ", code: codes.OK, claims: &want},
	}
}

func TestUnaryInterceptor(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret()})
	client, probes := startServer(t, v, nil)
	for _, tc := range interceptorCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Check(callCtx(t, tc.auth), &healthpb.HealthCheckRequest{})
			checkStatus(t, err, tc.code, tc.msg, tc.reason)
			if tc.code == codes.OK && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health status = %v, want SERVING", resp.GetStatus())
			}
			expectProbe(t, probes, checkMethod, tc.claims)
		})
	}
}

func TestStreamInterceptor(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret()})
	client, probes := startServer(t, v, nil)
	for _, tc := range interceptorCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := client.Watch(callCtx(t, tc.auth), &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			resp, err := stream.Recv()
			checkStatus(t, err, tc.code, tc.msg, tc.reason)
			if tc.code == codes.OK && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health status = %v, want SERVING", resp.GetStatus())
			}
			expectProbe(t, probes, watchMethod, tc.claims)
		})
	}
}

func TestInterceptorSkip(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret()})
	client, probes := startServer(t, v, func(m string) bool { return m == checkMethod })
	noClaims := &Claims{}

	if _, err := client.Check(callCtx(t, ""), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("skipped Check without token: %v", err)
	}
	expectProbe(t, probes, checkMethod, noClaims)

	// A skipped method ignores even a bad token.
	if _, err := client.Check(callCtx(t, "Bearer junk"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("skipped Check with bad token: %v", err)
	}
	expectProbe(t, probes, checkMethod, noClaims)

	stream, err := client.Watch(callCtx(t, ""), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	_, err = stream.Recv()
	checkStatus(t, err, codes.Unauthenticated, "missing bearer token", ReasonTokenMissing)
	expectProbe(t, probes, watchMethod, nil)
}

func TestInterceptorMultipleAuthorization(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret()})
	client, probes := startServer(t, v, nil)
	tok, err := NewSigner(testSecret()).Mint(Claims{Subject: "a", Role: notifyv1.Role_ROLE_ADMIN}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(callCtx(t, ""), "authorization", "Bearer "+tok, "authorization", "Bearer "+tok)
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{})
	checkStatus(t, err, codes.Unauthenticated, "invalid token: multiple authorization values", ReasonTokenInvalid)
	expectProbe(t, probes, checkMethod, nil)
}

func TestStatusFromError(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		msg    string
		reason string
	}{
		{"nil", nil, codes.OK, "", ""},
		{"missing", ErrMissingToken, codes.Unauthenticated, "missing bearer token", ReasonTokenMissing},
		{"expired", ErrTokenExpired, codes.Unauthenticated, "token expired", ReasonTokenExpired},
		{"wrapped expired", fmt.Errorf("ctx: %w", ErrTokenExpired), codes.Unauthenticated, "ctx: token expired", ReasonTokenExpired},
		{"invalid", invalid("wrong audience"), codes.Unauthenticated, "invalid token: wrong audience", ReasonTokenInvalid},
		{"foreign error is not echoed", errors.New("db password is hunter2"), codes.Unauthenticated, "invalid token", ReasonTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := StatusFromError(tc.err)
			if st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("StatusFromError = %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
			if tc.code == codes.OK {
				if st.Err() != nil || len(st.Details()) != 0 {
					t.Fatalf("OK status carries an error or details: %v", st.Details())
				}
				return
			}
			if got := errorInfoReason(t, st); got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
		})
	}
}
