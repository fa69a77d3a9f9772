package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/stack"
)

// maxTokenLen bounds the size of a token Verify will parse.
const maxTokenLen = 16 << 10

// Config selects the keys and checks a Verifier applies. At least one of
// HMACSecret, PublicKeyFile and JWKSFile must be set.
type Config struct {
	// HMACSecret enables HS256 tokens signed with this secret.
	// Default (nil or empty): HS256 is refused.
	HMACSecret []byte
	// PublicKeyFile is a PEM file holding one or more "PUBLIC KEY",
	// "RSA PUBLIC KEY" or "CERTIFICATE" blocks. RSA keys (at least 2048
	// bits) enable RS256 and P-256 EC keys enable ES256.
	// Default (""): no PEM keys.
	PublicKeyFile string
	// JWKSFile is a JSON Web Key Set file. RSA keys enable RS256 and EC
	// P-256 keys enable ES256. A token without a "kid" header is tried
	// against every key of its type. A token with one is tried against the
	// keys of its type with that kid or, if none has it, against the keys
	// of its type without a kid (such as PEM keys). Default (""): no JWKS
	// keys.
	JWKSFile string
	// Issuer, when non-empty, must equal the token's "iss".
	// Default (""): iss is not checked.
	Issuer string
	// Audience, when non-empty, must be one of the token's "aud" values.
	// Default (""): aud is not checked.
	Audience string
	// Leeway is the clock skew allowed when checking exp, nbf and iat; it
	// must not be negative. A token whose "iat" is further in the future
	// than the leeway is refused. Default (0): no skew.
	Leeway time.Duration
	// RequireExpiry rejects tokens without an "exp" claim, except those of
	// the roles in NoExpiryRoles. Default (false): tokens without exp
	// never expire (notifyd always sets it).
	RequireExpiry bool
	// NoExpiryRoles are the roles whose tokens may omit "exp" when
	// RequireExpiry is set (such as long-lived service tokens). Default
	// (nil): none.
	NoExpiryRoles []notifyv1.Role
	// CacheSize bounds how many verified tokens the interceptors remember
	// (rounded up to a multiple of 16), so that a caller repeating a token
	// is not verified again until it expires (or for at most 10 minutes).
	// Tokens that fail are never remembered. Default (0):
	// DefaultCacheSize; negative: no cache, every call is verified.
	CacheSize int
}

// Verifier checks bearer tokens against the keys of a Config. Its keys and
// checks never change; it is safe for concurrent use.
type Verifier struct {
	hmacSecret []byte
	keys       keyRing
	methods    []string
	issuer     string
	audience   string
	leeway     time.Duration
	requireExp bool
	noExpRoles []notifyv1.Role
	// cache remembers verified tokens for the interceptors; nil: none.
	cache *tokenCache
	// now replaces time.Now in tests; nil means time.Now.
	now func() time.Time
}

// NewVerifier loads the keys named by cfg and returns a Verifier. It fails
// with ErrNoKey when cfg names no key source and with an error wrapping
// ErrInvalidKey when a key file cannot be read or holds unusable keys.
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: negative leeway")
	}
	v := &Verifier{
		hmacSecret: slices.Clone(cfg.HMACSecret),
		issuer:     cfg.Issuer,
		audience:   cfg.Audience,
		leeway:     cfg.Leeway,
		requireExp: cfg.RequireExpiry,
		noExpRoles: slices.Clone(cfg.NoExpiryRoles),
	}
	if cfg.PublicKeyFile != "" {
		if err := v.keys.loadPEMFile(cfg.PublicKeyFile); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	if cfg.JWKSFile != "" {
		if err := v.keys.loadJWKSFile(cfg.JWKSFile); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	if len(v.hmacSecret) > 0 {
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	}
	if len(v.keys.rsa) > 0 {
		v.methods = append(v.methods, jwt.SigningMethodRS256.Alg())
	}
	if len(v.keys.ec) > 0 {
		v.methods = append(v.methods, jwt.SigningMethodES256.Alg())
	}
	if len(v.methods) == 0 {
		return nil, fmt.Errorf("auth: %w: set HMACSecret, PublicKeyFile or JWKSFile", ErrNoKey)
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	if size > 0 {
		v.cache = newTokenCache(size, v.leeway)
	}
	return v, nil
}

// tokenClaims is the JSON shape of a token's payload.
type tokenClaims struct {
	jwt.RegisteredClaims
	Role         string `json:"role,omitempty"`
	RestaurantID string `json:"restaurant_id,omitempty"`
}

// Internal keyfunc failures, mapped to reasons by Verify.
var (
	errUnknownKey = errors.New("no key matches the token")
	errBadKid     = errors.New("kid header is not a string")
)

// Verify checks token's signature and claims and returns its Claims.
// It returns ErrMissingToken for an empty token, ErrTokenExpired for an
// expired but otherwise valid one, and otherwise an error wrapping
// ErrInvalidToken with a short reason. It never panics.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissingToken
	}
	if len(token) > maxTokenLen {
		return Claims{}, invalid("token too large")
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithLeeway(v.leeway),
		// A token issued in the future (beyond the clock skew) was minted
		// by a wrong clock or to outlive its exp's meaning: refused.
		jwt.WithIssuedAt(),
	}
	if v.now != nil {
		opts = append(opts, jwt.WithTimeFunc(v.now))
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	var tc tokenClaims
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, &tc, v.keyFunc)
	if err != nil {
		return Claims{}, v.classify(tok, &tc, err)
	}
	c := Claims{Subject: tc.Subject, RestaurantID: tc.RestaurantID}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
	}
	if c.Subject == "" {
		return Claims{}, invalid("missing subject")
	}
	if tc.Role == "" {
		return Claims{}, invalid("missing role")
	}
	if c.Role, err = ParseRole(tc.Role); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if v.requireExp && tc.ExpiresAt == nil && !slices.Contains(v.noExpRoles, c.Role) {
		return Claims{}, invalid("missing exp claim")
	}
	if err := c.validate(); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return c, nil
}

// verifyCached is Verify with the verification cache: a token that verified
// before and would still pass Verify's time checks now yields the Claims it
// gave then; any other token is verified, and remembered if it passes.
func (v *Verifier) verifyCached(token string) (Claims, error) {
	if v.cache == nil {
		return v.verifyAside(token)
	}
	now := v.clock()
	if c, ok := v.cache.get(token, now); ok {
		return c, nil
	}
	c, err := v.verifyAside(token)
	if err != nil {
		return Claims{}, err
	}
	v.cache.put(token, c, now)
	return c, nil
}

// verifyAside runs Verify aside (package stack): verification runs deep
// (JWT parsing, JSON decoding), and a stream's handler goroutine keeps its
// stack for the stream's whole life: a deep call there would leave every
// idle stream holding a larger stack.
func (v *Verifier) verifyAside(token string) (c Claims, err error) {
	stack.Aside(func() { c, err = v.Verify(token) })
	return c, err
}

func (v *Verifier) clock() time.Time {
	if v.now != nil {
		return v.now()
	}
	return time.Now()
}

// invalid wraps ErrInvalidToken with a fixed reason.
func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidToken, reason)
}

// keyFunc returns the key, or set of keys, that may verify t. The parser has
// already restricted t's algorithm to v.methods, and each algorithm only
// ever maps to keys of its own type.
func (v *Verifier) keyFunc(t *jwt.Token) (any, error) {
	var kid string
	if raw, ok := t.Header["kid"]; ok {
		s, ok := raw.(string)
		if !ok {
			return nil, errBadKid
		}
		kid = s
	}
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		if len(v.hmacSecret) == 0 {
			return nil, errUnknownKey
		}
		return v.hmacSecret, nil
	case jwt.SigningMethodRS256.Alg():
		return pickKeys(v.keys.rsa, kid)
	case jwt.SigningMethodES256.Alg():
		return pickKeys(v.keys.ec, kid)
	}
	return nil, errUnknownKey
}

// pickKeys selects the candidates for kid: the keys named kid if any, else
// the unnamed keys, plus every key when the token has no kid.
func pickKeys(keys []publicKey, kid string) (any, error) {
	var set []jwt.VerificationKey
	if kid != "" {
		for _, k := range keys {
			if k.kid == kid {
				set = append(set, k.key)
			}
		}
	}
	if len(set) == 0 {
		for _, k := range keys {
			if kid == "" || k.kid == "" {
				set = append(set, k.key)
			}
		}
	}
	switch len(set) {
	case 0:
		return nil, errUnknownKey
	case 1:
		return set[0], nil
	}
	return jwt.VerificationKeySet{Keys: set}, nil
}

// classify turns a jwt parse error into one of the package's errors with a
// fixed reason, so no library text, token content or key data leaks out.
// Claim problems that expiry would not fix take precedence over expiry.
func (v *Verifier) classify(tok *jwt.Token, tc *tokenClaims, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("malformed token")
	case errors.Is(err, errBadKid):
		return invalid("malformed kid header")
	case errors.Is(err, errUnknownKey):
		return invalid("no matching key")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalid("unsupported signing method")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok == nil || tok.Method == nil || !slices.Contains(v.methods, tok.Method.Alg()) {
			return invalid("signing method not allowed")
		}
		return invalid("signature is invalid")
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		return invalid("unverifiable token")
	}
	// The signature is good; only the registered claims failed.
	switch {
	case v.issuer != "" && tc.Issuer != v.issuer:
		return invalid("wrong issuer")
	case v.audience != "" && !slices.Contains(tc.Audience, v.audience):
		return invalid("wrong audience")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("token issued in the future")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalid("token not valid yet")
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrTokenExpired
	}
	return invalid("invalid claims")
}
