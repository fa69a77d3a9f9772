package channeltest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// jwtHeader and jwtClaims are the JWT fields the peers check.
type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type jwtClaims struct {
	Aud   string `json:"aud"`
	Sub   string `json:"sub"`
	Iss   string `json:"iss"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// verifyJWT checks a compact JWS signed with ES256 (ecdsa key) or RS256 (rsa key), as
// RFC 7515 and RFC 7518 define them, and returns its header and claims. The peers
// verify tokens with this code rather than a JWT library, so that a sender's library
// cannot agree with itself.
func verifyJWT(token string, key crypto.PublicKey) (jwtHeader, jwtClaims, error) {
	var h jwtHeader
	var c jwtClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, c, errors.New("jwt: not three parts")
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return h, c, fmt.Errorf("jwt: base64url: %w", err)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, c, fmt.Errorf("jwt: header: %w", err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if h.Alg != "ES256" {
			return h, c, fmt.Errorf("jwt: alg %q, want ES256", h.Alg)
		}
		// RFC 7518 section 3.4: R and S, 32 bytes each, not ASN.1.
		if len(sig) != 64 {
			return h, c, fmt.Errorf("jwt: ES256 signature is %d bytes", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(k, digest[:], r, s) {
			return h, c, errors.New("jwt: bad ES256 signature")
		}
	case *rsa.PublicKey:
		if h.Alg != "RS256" {
			return h, c, fmt.Errorf("jwt: alg %q, want RS256", h.Alg)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig); err != nil {
			return h, c, errors.New("jwt: bad RS256 signature")
		}
	default:
		return h, c, fmt.Errorf("jwt: unsupported key %T", key)
	}
	if err := json.Unmarshal(cb, &c); err != nil {
		return h, c, fmt.Errorf("jwt: claims: %w", err)
	}
	return h, c, nil
}
