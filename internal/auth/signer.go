package auth

import (
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Signer mints HS256 tokens with a shared secret. It is immutable and safe
// for concurrent use.
type Signer struct {
	secret []byte
}

// NewSigner returns a Signer for secret, which it copies. An empty secret
// makes every Mint fail with ErrNoKey.
func NewSigner(secret []byte) *Signer {
	return &Signer{secret: slices.Clone(secret)}
}

// mintOptions collects the optional claims of one Mint call.
type mintOptions struct {
	issuer    string
	audience  string
	notBefore time.Time
	issuedAt  time.Time
}

// MintOption sets an optional claim of a minted token.
type MintOption func(*mintOptions)

// WithIssuer sets the "iss" claim.
func WithIssuer(iss string) MintOption {
	return func(o *mintOptions) { o.issuer = iss }
}

// WithAudience sets the "aud" claim.
func WithAudience(aud string) MintOption {
	return func(o *mintOptions) { o.audience = aud }
}

// WithNotBefore sets the "nbf" claim.
func WithNotBefore(t time.Time) MintOption {
	return func(o *mintOptions) { o.notBefore = t }
}

// WithIssuedAt sets the "iat" claim, and so the base of the expiry, in
// place of the current time; tests use it to mint already-expired tokens.
func WithIssuedAt(t time.Time) MintOption {
	return func(o *mintOptions) { o.issuedAt = t }
}

// Mint returns an HS256 token carrying c's subject, role and restaurant id,
// issued now (or at WithIssuedAt) and expiring ttl later; ttl <= 0 means no
// "exp". c.ExpiresAt is ignored. Claims that Verify would reject fail with
// an error wrapping ErrInvalidClaims.
func (s *Signer) Mint(c Claims, ttl time.Duration, opts ...MintOption) (string, error) {
	if len(s.secret) == 0 {
		return "", fmt.Errorf("auth: mint: %w", ErrNoKey)
	}
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("auth: mint: %w: %w", ErrInvalidClaims, err)
	}
	var o mintOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.issuedAt.IsZero() {
		o.issuedAt = time.Now()
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:  c.Subject,
			Issuer:   o.issuer,
			IssuedAt: jwt.NewNumericDate(o.issuedAt),
		},
		Role:         RoleName(c.Role),
		RestaurantID: c.RestaurantID,
	}
	if o.audience != "" {
		tc.Audience = jwt.ClaimStrings{o.audience}
	}
	if !o.notBefore.IsZero() {
		tc.NotBefore = jwt.NewNumericDate(o.notBefore)
	}
	if ttl > 0 {
		tc.ExpiresAt = jwt.NewNumericDate(o.issuedAt.Add(ttl))
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(s.secret)
	if err != nil {
		return "", fmt.Errorf("auth: mint: %w", err)
	}
	return tok, nil
}
