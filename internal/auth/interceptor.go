package auth

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Values of errdetails.ErrorInfo attached by StatusFromError.
const (
	// ErrorDomain is the ErrorInfo domain of authentication failures.
	ErrorDomain = "notify"
	// ReasonTokenMissing is the ErrorInfo reason for ErrMissingToken.
	ReasonTokenMissing = "TOKEN_MISSING"
	// ReasonTokenExpired is the ErrorInfo reason for ErrTokenExpired.
	ReasonTokenExpired = "TOKEN_EXPIRED"
	// ReasonTokenInvalid is the ErrorInfo reason for every other failure.
	ReasonTokenInvalid = "TOKEN_INVALID"
)

// authorizationKey is the gRPC metadata key carrying the bearer token.
const authorizationKey = "authorization"

// StatusFromError maps an authentication error to a gRPC status with code
// Unauthenticated and an errdetails.ErrorInfo detail in ErrorDomain:
// ErrMissingToken gives reason TOKEN_MISSING, ErrTokenExpired gives
// TOKEN_EXPIRED, and anything else TOKEN_INVALID. The message is err's text
// for the package's own errors and "invalid token" for foreign ones. A nil
// err gives an OK status.
func StatusFromError(err error) *status.Status {
	if err == nil {
		return status.New(codes.OK, "")
	}
	reason, msg := ReasonTokenInvalid, ErrInvalidToken.Error()
	switch {
	case errors.Is(err, ErrMissingToken):
		reason, msg = ReasonTokenMissing, err.Error()
	case errors.Is(err, ErrTokenExpired):
		reason, msg = ReasonTokenExpired, err.Error()
	case errors.Is(err, ErrInvalidToken):
		msg = err.Error()
	}
	st := status.New(codes.Unauthenticated, msg)
	withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain})
	if derr != nil {
		return st
	}
	return withInfo
}

// UnaryInterceptor returns an interceptor that verifies the bearer token in
// the "authorization" metadata and stores its Claims in the handler's
// context (see FromContext). Methods for which skip returns true (a nil
// skip skips nothing) pass through unauthenticated. Failures return the
// status of StatusFromError.
func (v *Verifier) UnaryInterceptor(skip func(fullMethod string) bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if skip != nil && skip(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := v.authenticate(ctx)
		if err != nil {
			return nil, StatusFromError(err).Err()
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor is the streaming counterpart of UnaryInterceptor: the
// handler's stream reports the context carrying the Claims.
func (v *Verifier) StreamInterceptor(skip func(fullMethod string) bool) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if skip != nil && skip(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, err := v.authenticate(ss.Context())
		if err != nil {
			return StatusFromError(err).Err()
		}
		return handler(srv, &claimsStream{ServerStream: ss, ctx: ctx})
	}
}

// claimsStream is a grpc.ServerStream whose Context carries Claims.
type claimsStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the caller's Claims.
func (s *claimsStream) Context() context.Context { return s.ctx }

// authenticate verifies the bearer token of ctx's incoming metadata and
// returns ctx with the resulting Claims.
func (v *Verifier) authenticate(ctx context.Context) (context.Context, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		return ctx, err
	}
	c, err := v.verifyCached(token)
	if err != nil {
		return ctx, err
	}
	return NewContext(ctx, c), nil
}

// bearerToken extracts the token from a single "authorization: Bearer
// <token>" metadata entry; the scheme is matched case-insensitively. Only
// that entry is read (copying the whole metadata would cost a map per call).
func bearerToken(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, authorizationKey)
	switch len(vals) {
	case 0:
		return "", ErrMissingToken
	case 1:
	default:
		return "", invalid("multiple authorization values")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if scheme == "" {
		return "", ErrMissingToken
	}
	if !strings.EqualFold(scheme, "bearer") {
		return "", invalid("authorization scheme is not Bearer")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", ErrMissingToken
	}
	return token, nil
}
