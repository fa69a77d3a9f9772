// Package auth authenticates callers of the notification server with JSON
// Web Tokens.
//
// A [Verifier] checks bearer tokens signed with HS256 (shared secret),
// RS256 (RSA public keys) or ES256 (P-256 public keys). Each algorithm is
// pinned to its own key type, so a token can never choose how it is
// verified: "none" is always refused and an HS256 token is never checked
// against public-key bytes. A verified token yields [Claims], which the
// gRPC interceptors ([Verifier.UnaryInterceptor],
// [Verifier.StreamInterceptor]) place in the request context for
// [FromContext]. A [Signer] mints HS256 tokens for tools and tests.
//
// Time claims: exp and nbf are checked with the configured leeway, and so
// is iat: a token issued further in the future than the leeway is refused.
// With [Config.RequireExpiry] (notifyd's setting) a token without exp is
// refused unless its role is one of [Config.NoExpiryRoles].
//
// Errors are plain values: [ErrMissingToken], [ErrTokenExpired] and
// [ErrInvalidToken] (wrapped with a short reason) from verification, and
// [StatusFromError] turns them into Unauthenticated gRPC statuses. Error
// messages never contain the token or key material. The package logs
// nothing.
//
// The interceptors remember the Claims of tokens that verified, in a cache
// bounded in entries ([Config.CacheSize]) and keyed by the raw token, so a
// caller repeating its token skips the signature check and the JSON
// decoding. An entry is used only while its token would still pass
// [Verifier.Verify]'s expiry check (exp plus the leeway), and for at most
// ten minutes; tokens that fail are never remembered. [Verifier.Verify]
// itself always verifies.
//
// Concurrency: a [Verifier] and a [Signer] are safe for concurrent use by
// any number of goroutines; a Verifier's keys are read once, by
// [NewVerifier], and never reloaded, and its cache is sharded, each shard
// behind its own lock. [Claims] are plain values. All functions of the
// package are safe for concurrent use.
package auth
