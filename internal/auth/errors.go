package auth

import "errors"

// ErrMissingToken reports that a request carried no bearer token.
var ErrMissingToken = errors.New("missing bearer token")

// ErrTokenExpired reports a well-signed token whose exp has passed
// (allowing for the configured leeway).
var ErrTokenExpired = errors.New("token expired")

// ErrInvalidToken reports a token that is malformed, badly signed, or whose
// claims are unacceptable. Verify wraps it with a short reason, for example
// "invalid token: signature is invalid".
var ErrInvalidToken = errors.New("invalid token")

// ErrUnknownRole reports a role name that ParseRole does not know.
var ErrUnknownRole = errors.New("unknown role")

// ErrNoKey reports a Config without any key source, or a Signer without a
// secret.
var ErrNoKey = errors.New("no key configured")

// ErrInvalidKey reports key material that NewVerifier cannot use: an
// unreadable PEM or JWKS file, an unsupported key type or curve, or an RSA
// key shorter than 2048 bits.
var ErrInvalidKey = errors.New("invalid key")

// ErrInvalidClaims reports claims that Mint refuses to sign because Verify
// would reject them (empty subject, unknown role, missing restaurant id).
var ErrInvalidClaims = errors.New("invalid claims")
