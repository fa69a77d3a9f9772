package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// minRSABits is the smallest RSA modulus NewVerifier accepts.
const minRSABits = 2048

// publicKey is one verification key, optionally named by a JWKS kid.
type publicKey struct {
	kid string
	key any // *rsa.PublicKey or *ecdsa.PublicKey (P-256)
}

// keyRing holds the public keys of each supported type.
type keyRing struct {
	rsa []publicKey
	ec  []publicKey
}

// add files pub under its type after checking it is usable.
func (kr *keyRing) add(kid string, pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < minRSABits {
			return fmt.Errorf("%w: RSA key shorter than %d bits", ErrInvalidKey, minRSABits)
		}
		kr.rsa = append(kr.rsa, publicKey{kid: kid, key: k})
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: EC key is not on curve P-256", ErrInvalidKey)
		}
		kr.ec = append(kr.ec, publicKey{kid: kid, key: k})
	default:
		return fmt.Errorf("%w: unsupported public key type %T", ErrInvalidKey, pub)
	}
	return nil
}

// loadPEMFile reads RSA and EC public keys from a PEM file into kr.
func (kr *keyRing) loadPEMFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: public key file: %w", ErrInvalidKey, err)
	}
	if err := kr.addPEM(data); err != nil {
		return fmt.Errorf("public key file %s: %w", path, err)
	}
	return nil
}

// addPEM parses every PEM block of data. Blocks may be "PUBLIC KEY"
// (PKIX), "RSA PUBLIC KEY" (PKCS #1) or "CERTIFICATE"; any other block type
// is an error, as is data without any block.
func (kr *keyRing) addPEM(data []byte) error {
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		n++
		var (
			pub any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				pub = cert.PublicKey
			}
		default:
			return fmt.Errorf("%w: PEM block %d: unsupported type %q", ErrInvalidKey, n, truncate(block.Type))
		}
		if err != nil {
			return fmt.Errorf("%w: PEM block %d: %w", ErrInvalidKey, n, err)
		}
		if err := kr.add("", pub); err != nil {
			return fmt.Errorf("PEM block %d: %w", n, err)
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: no PEM blocks found", ErrInvalidKey)
	}
	return nil
}

// jwk is the subset of an RFC 7517 JSON Web Key that the verifier uses.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// loadJWKSFile reads a JSON Web Key Set file into kr.
func (kr *keyRing) loadJWKSFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: JWKS file: %w", ErrInvalidKey, err)
	}
	if err := kr.addJWKS(data); err != nil {
		return fmt.Errorf("JWKS file %s: %w", path, err)
	}
	return nil
}

// addJWKS parses a JSON Web Key Set. Keys that are not for signing, are
// labelled for another algorithm, or have an unsupported type or curve are
// skipped; a malformed RSA or P-256 key is an error, and so is a set
// without any usable key.
func (kr *keyRing) addJWKS(data []byte) error {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Errorf("%w: malformed JSON: %w", ErrInvalidKey, err)
	}
	used := 0
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var (
			pub any
			err error
		)
		switch {
		case k.Kty == "RSA" && (k.Alg == "" || k.Alg == "RS256"):
			pub, err = k.rsaKey()
		case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == "ES256"):
			pub, err = k.ecKey()
		default:
			continue
		}
		if err == nil {
			err = kr.add(k.Kid, pub)
		}
		if err != nil {
			return fmt.Errorf("key %d (kid %q): %w", i, truncate(k.Kid), err)
		}
		used++
	}
	if used == 0 {
		return fmt.Errorf("%w: no usable RS256 or ES256 keys", ErrInvalidKey)
	}
	return nil
}

// rsaKey decodes the n and e members of an RSA JWK.
func (k jwk) rsaKey() (*rsa.PublicKey, error) {
	n, err := decodeB64URL("n", k.N)
	if err != nil {
		return nil, err
	}
	e, err := decodeB64URL("e", k.E)
	if err != nil {
		return nil, err
	}
	eInt := new(big.Int).SetBytes(e)
	if !eInt.IsInt64() || eInt.Int64() < 3 || eInt.Int64() > 1<<31-1 || eInt.Bit(0) == 0 {
		return nil, fmt.Errorf("%w: bad RSA exponent", ErrInvalidKey)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eInt.Int64())}, nil
}

// ecKey decodes the x and y members of a P-256 JWK and checks that the
// point is on the curve.
func (k jwk) ecKey() (*ecdsa.PublicKey, error) {
	x, err := decodeB64URL("x", k.X)
	if err != nil {
		return nil, err
	}
	y, err := decodeB64URL("y", k.Y)
	if err != nil {
		return nil, err
	}
	const size = 32
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("%w: P-256 coordinates must be %d bytes", ErrInvalidKey, size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(point, 4)
	point = append(point, x...)
	point = append(point, y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return pub, nil
}

// decodeB64URL decodes a base64url JWK member, with or without padding.
func decodeB64URL(name, s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: missing %q", ErrInvalidKey, name)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%w: bad base64url in %q", ErrInvalidKey, name)
	}
	return b, nil
}
