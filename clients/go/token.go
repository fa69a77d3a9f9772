package notify

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TokenSource supplies the bearer token (a JWT) sent with calls. It is asked
// before every call and every (re)connection of a subscription, so it may
// return a fresh token each time, or a cached one it refreshes before it
// expires. It must be safe for concurrent use. When it fails, a call fails
// with Unauthenticated, and a subscription retries after its backoff.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenFunc adapts a function to a TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

type staticToken string

func (t staticToken) Token(context.Context) (string, error) { return string(t), nil }

// tokenKey carries a token already fetched for a call (a subscription fetches
// its own before connecting, to tell token errors from stream errors).
type tokenKey struct{}

func withToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// tokenCredentials puts the token in the authorization metadata of every
// call attempt.
type tokenCredentials struct {
	src    TokenSource
	secure bool
}

func (t tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, ok := ctx.Value(tokenKey{}).(string)
	if !ok {
		var err error
		tok, err = t.src.Token(ctx)
		if err != nil {
			if _, isStatus := status.FromError(err); isStatus {
				return nil, err
			}
			return nil, status.Errorf(codes.Unauthenticated, "notify: token source: %v", err)
		}
	}
	if tok == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity is false only for WithInsecure clients.
func (t tokenCredentials) RequireTransportSecurity() bool { return t.secure }

var _ credentials.PerRPCCredentials = tokenCredentials{}
