package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

const (
	testIssuer   = "notify-test"
	testAudience = "notify"
)

// testSecret returns the HMAC secret shared by the HS256 tests.
func testSecret() []byte { return []byte("0123456789abcdef0123456789abcdef") }

// sign returns a token with the given method, key, header extras and claims.
func sign(t testing.TB, m jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// baseClaims returns valid claims for a guest, expiring in an hour.
func baseClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub":  "user-1",
		"role": "guest",
		"iss":  testIssuer,
		"aud":  testAudience,
		"iat":  now.Unix(),
		"exp":  now.Add(time.Hour).Unix(),
	}
}

// with returns a copy of c with the given claims set, or deleted when nil.
func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// rawToken assembles a token from literal header and payload JSON and a
// signature computed with HS256 over secret.
func rawToken(t testing.TB, header, payload string, secret []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(signing, secret)
	if err != nil {
		t.Fatalf("raw sign: %v", err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// newVerifier builds a Verifier or fails the test.
func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// writeFile writes data to a fresh file in t's temp dir and returns its path.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	return p
}

// pkixPEM encodes pub as a PEM "PUBLIC KEY" block.
func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// certPEM encodes a self-signed certificate for key as a PEM block.
func certPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "notify-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// rsaKey generates a 2048-bit RSA key.
func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("rsa key: %v", err)
	}
	return k
}

// ecKey generates a P-256 key.
func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("ec key: %v", err)
	}
	return k
}

// verifyCase is one row of a Verify table.
type verifyCase struct {
	name    string
	token   string
	want    Claims // checked when wantErr is nil; ExpiresAt only if non-zero
	wantErr error
	wantMsg string // exact error text, when non-empty
}

// runVerifyCases runs Verify over cases and checks each outcome.
func runVerifyCases(t *testing.T, v *Verifier, cases []verifyCase, secrets ...[]byte) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(tc.token)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: unexpected error %v", err)
				}
				checkClaims(t, got, tc.want)
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if got != (Claims{}) {
				t.Errorf("Verify returned claims %+v with an error", got)
			}
			if tc.wantMsg != "" && err.Error() != tc.wantMsg {
				t.Errorf("Verify error text = %q, want %q", err.Error(), tc.wantMsg)
			}
			checkNoLeak(t, err, tc.token, secrets...)
		})
	}
}

// checkClaims compares verified claims with the expected ones.
func checkClaims(t *testing.T, got, want Claims) {
	t.Helper()
	if got.Subject != want.Subject || got.Role != want.Role || got.RestaurantID != want.RestaurantID {
		t.Errorf("claims = %+v, want %+v", got, want)
	}
	if !want.ExpiresAt.IsZero() && !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want %v", got.ExpiresAt, want.ExpiresAt)
	}
}

// checkNoLeak fails if err's text contains the token or a secret.
func checkNoLeak(t testing.TB, err error, token string, secrets ...[]byte) {
	t.Helper()
	msg := err.Error()
	if len(token) > 8 && strings.Contains(msg, token) {
		t.Errorf("error %q contains the token", msg)
	}
	for _, s := range secrets {
		if len(s) > 0 && strings.Contains(msg, string(s)) {
			t.Errorf("error %q contains key material", msg)
		}
	}
}

func TestParseRoleAndRoleName(t *testing.T) {
	tests := []struct {
		name    string
		role    notifyv1.Role
		wantErr bool
	}{
		{"admin", notifyv1.Role_ROLE_ADMIN, false},
		{"restaurant", notifyv1.Role_ROLE_RESTAURANT, false},
		{"cashier", notifyv1.Role_ROLE_CASHIER, false},
		{"guest", notifyv1.Role_ROLE_GUEST, false},
		{"service", notifyv1.Role_ROLE_SERVICE, false},
		{"", notifyv1.Role_ROLE_UNSPECIFIED, true},
		{"unspecified", notifyv1.Role_ROLE_UNSPECIFIED, true},
		{"Admin", notifyv1.Role_ROLE_UNSPECIFIED, true},
		{"ROLE_ADMIN", notifyv1.Role_ROLE_UNSPECIFIED, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRole(tc.name)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseRole(%q) error = %v, wantErr %v", tc.name, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnknownRole) {
				t.Errorf("ParseRole(%q) error %v does not wrap ErrUnknownRole", tc.name, err)
			}
			if got != tc.role {
				t.Errorf("ParseRole(%q) = %v, want %v", tc.name, got, tc.role)
			}
			if !tc.wantErr && RoleName(got) != tc.name {
				t.Errorf("RoleName(%v) = %q, want %q", got, RoleName(got), tc.name)
			}
		})
	}
	for _, r := range []notifyv1.Role{notifyv1.Role_ROLE_UNSPECIFIED, -1, 99} {
		if n := RoleName(r); n != "" {
			t.Errorf("RoleName(%d) = %q, want empty", r, n)
		}
	}
}

func TestNewVerifierErrors(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(ecKey(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     func(t *testing.T) Config
		wantErr error
	}{
		{"no key source", func(*testing.T) Config { return Config{Issuer: "x"} }, ErrNoKey},
		{"empty secret", func(*testing.T) Config { return Config{HMACSecret: []byte{}} }, ErrNoKey},
		{"missing PEM file", func(t *testing.T) Config {
			return Config{PublicKeyFile: filepath.Join(t.TempDir(), "nope.pem")}
		}, ErrInvalidKey},
		{"PEM without blocks", func(t *testing.T) Config {
			return Config{PublicKeyFile: writeFile(t, "k.pem", []byte("not a pem"))}
		}, ErrInvalidKey},
		{"PEM private key", func(t *testing.T) Config {
			return Config{PublicKeyFile: writeFile(t, "k.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))}
		}, ErrInvalidKey},
		{"PEM corrupt block", func(t *testing.T) Config {
			return Config{PublicKeyFile: writeFile(t, "k.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))}
		}, ErrInvalidKey},
		{"PEM weak RSA", func(t *testing.T) Config {
			return Config{PublicKeyFile: writeFile(t, "k.pem", pkixPEM(t, &weak.PublicKey))}
		}, ErrInvalidKey},
		{"PEM P-384", func(t *testing.T) Config {
			return Config{PublicKeyFile: writeFile(t, "k.pem", pkixPEM(t, &p384.PublicKey))}
		}, ErrInvalidKey},
		{"missing JWKS file", func(t *testing.T) Config {
			return Config{JWKSFile: filepath.Join(t.TempDir(), "nope.json")}
		}, ErrInvalidKey},
		{"JWKS not JSON", func(t *testing.T) Config {
			return Config{JWKSFile: writeFile(t, "k.json", []byte("{"))}
		}, ErrInvalidKey},
		{"JWKS without usable keys", func(t *testing.T) Config {
			return Config{JWKSFile: writeFile(t, "k.json", []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]}`))}
		}, ErrInvalidKey},
		{"JWKS bad RSA exponent", func(t *testing.T) Config {
			n := base64.RawURLEncoding.EncodeToString(rsaKey(t).N.Bytes())
			return Config{JWKSFile: writeFile(t, "k.json", []byte(`{"keys":[{"kty":"RSA","n":"`+n+`","e":"Ag"}]}`))}
		}, ErrInvalidKey},
		{"JWKS EC point off curve", func(t *testing.T) Config {
			b := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
			return Config{JWKSFile: writeFile(t, "k.json", []byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"`+b+`","y":"`+b+`"}]}`))}
		}, ErrInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.cfg(t))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("NewVerifier error = %v, want %v", err, tc.wantErr)
			}
			if v != nil {
				t.Errorf("NewVerifier returned a verifier with an error")
			}
		})
	}
	if _, err := NewVerifier(Config{HMACSecret: testSecret(), Leeway: -time.Second}); err == nil {
		t.Error("NewVerifier accepted a negative leeway")
	}
}

func TestVerifyHS256(t *testing.T) {
	secret := testSecret()
	v := newVerifier(t, Config{HMACSecret: secret, Issuer: testIssuer, Audience: testAudience})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, nil, c) }
	now := time.Now()
	exp := time.Unix(now.Add(time.Hour).Unix(), 0)
	base := with(baseClaims(), "exp", exp.Unix())
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, base)
	tampered := hs(base)
	tampered = tampered[:len(tampered)-4] + "AAAA"

	cases := []verifyCase{
		{name: "good guest", token: hs(base),
			want: Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_GUEST, ExpiresAt: exp}},
		{name: "good cashier", token: hs(with(base, "role", "cashier", "restaurant_id", "r-9")),
			want: Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r-9"}},
		{name: "audience list", token: hs(with(base, "aud", []string{"other", testAudience}, "role", "admin")),
			want: Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_ADMIN}},
		{name: "no exp", token: hs(with(base, "exp", nil, "role", "service")),
			want: Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_SERVICE}},
		{name: "expired", token: hs(with(base, "exp", now.Add(-time.Minute).Unix())),
			wantErr: ErrTokenExpired, wantMsg: "token expired"},
		{name: "nbf in future", token: hs(with(base, "nbf", now.Add(time.Hour).Unix())),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: token not valid yet"},
		{name: "wrong secret", token: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), nil, base),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "tampered signature", token: tampered,
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "alg none", token: none,
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "HS384 with same secret", token: sign(t, jwt.SigningMethodHS384, secret, nil, base),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "unregistered alg", token: rawToken(t, `{"alg":"XX999","typ":"JWT"}`, `{"sub":"a","role":"admin"}`, secret),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: unsupported signing method"},
		{name: "wrong issuer", token: hs(with(base, "iss", "evil")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: wrong issuer"},
		{name: "missing issuer", token: hs(with(base, "iss", nil)),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: wrong issuer"},
		{name: "wrong audience", token: hs(with(base, "aud", "billing")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: wrong audience"},
		{name: "missing audience", token: hs(with(base, "aud", nil)),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: wrong audience"},
		{name: "wrong audience beats expiry", token: hs(with(base, "aud", "billing", "exp", now.Add(-time.Hour).Unix())),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: wrong audience"},
		{name: "unknown role", token: hs(with(base, "role", "x")),
			wantErr: ErrInvalidToken, wantMsg: `invalid token: unknown role "x"`},
		{name: "long unknown role is truncated", token: hs(with(base, "role", strings.Repeat("z", 100))),
			wantErr: ErrInvalidToken, wantMsg: `invalid token: unknown role "` + strings.Repeat("z", 32) + `..."`},
		{name: "missing role", token: hs(with(base, "role", nil)),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: missing role"},
		{name: "numeric role", token: hs(with(base, "role", 1)),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed token"},
		{name: "missing sub", token: hs(with(base, "sub", nil)),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: missing subject"},
		{name: "cashier without restaurant", token: hs(with(base, "role", "cashier")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: missing restaurant_id for role cashier"},
		{name: "restaurant without restaurant", token: hs(with(base, "role", "restaurant", "restaurant_id", "")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: missing restaurant_id for role restaurant"},
		{name: "exp as string", token: hs(with(base, "exp", "tomorrow")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed token"},
		{name: "non-string kid", token: sign(t, jwt.SigningMethodHS256, secret, map[string]any{"kid": 7}, base),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed kid header"},
		{name: "empty", token: "", wantErr: ErrMissingToken, wantMsg: "missing bearer token"},
		{name: "garbage word", token: "garbage", wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed token"},
		{name: "garbage dots", token: "a.b.c", wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed token"},
		{name: "only dots", token: "..", wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed token"},
		{name: "four segments", token: hs(base) + ".x", wantErr: ErrInvalidToken},
		{name: "bearer prefix", token: "Bearer " + hs(base), wantErr: ErrInvalidToken},
		{name: "header not JSON", token: rawToken(t, `not json`, `{}`, secret), wantErr: ErrInvalidToken},
		{name: "payload not object", token: rawToken(t, `{"alg":"HS256"}`, `[1,2]`, secret), wantErr: ErrInvalidToken},
		{name: "huge", token: strings.Repeat("a", maxTokenLen+1), wantErr: ErrInvalidToken, wantMsg: "invalid token: token too large"},
	}
	runVerifyCases(t, v, cases, secret)
}

func TestVerifyOptions(t *testing.T) {
	secret := testSecret()
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, secret, nil, c) }
	now := time.Now()
	recent := with(baseClaims(), "exp", now.Add(-30*time.Second).Unix())
	noExp := with(baseClaims(), "exp", nil)
	guest := Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_GUEST}

	t.Run("leeway", func(t *testing.T) {
		v := newVerifier(t, Config{HMACSecret: secret, Leeway: time.Minute})
		runVerifyCases(t, v, []verifyCase{
			{name: "expired within leeway", token: hs(recent), want: guest},
			{name: "nbf within leeway", token: hs(with(noExp, "nbf", now.Add(30*time.Second).Unix())), want: guest},
			{name: "expired beyond leeway", token: hs(with(noExp, "exp", now.Add(-2*time.Minute).Unix())), wantErr: ErrTokenExpired},
		})
	})
	t.Run("no leeway", func(t *testing.T) {
		v := newVerifier(t, Config{HMACSecret: secret})
		runVerifyCases(t, v, []verifyCase{
			{name: "recently expired", token: hs(recent), wantErr: ErrTokenExpired},
			{name: "issuer and audience ignored", token: hs(with(noExp, "iss", "any", "aud", "any")), want: guest},
		})
	})
	t.Run("require expiry", func(t *testing.T) {
		v := newVerifier(t, Config{HMACSecret: secret, RequireExpiry: true})
		runVerifyCases(t, v, []verifyCase{
			{name: "no exp", token: hs(noExp), wantErr: ErrInvalidToken, wantMsg: "invalid token: missing exp claim"},
			{name: "with exp", token: hs(baseClaims()), want: guest},
			{name: "service without exp", token: hs(with(noExp, "role", "service")), wantErr: ErrInvalidToken, wantMsg: "invalid token: missing exp claim"},
		})
	})
	t.Run("require expiry except services", func(t *testing.T) {
		v := newVerifier(t, Config{HMACSecret: secret, RequireExpiry: true, NoExpiryRoles: []notifyv1.Role{notifyv1.Role_ROLE_SERVICE}})
		runVerifyCases(t, v, []verifyCase{
			{name: "service without exp", token: hs(with(noExp, "role", "service")), want: Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_SERVICE}},
			{name: "guest without exp", token: hs(noExp), wantErr: ErrInvalidToken, wantMsg: "invalid token: missing exp claim"},
			{name: "admin without exp", token: hs(with(noExp, "role", "admin")), wantErr: ErrInvalidToken, wantMsg: "invalid token: missing exp claim"},
			{name: "expired service token", token: hs(with(baseClaims(), "role", "service", "exp", now.Add(-time.Hour).Unix())), wantErr: ErrTokenExpired},
		})
	})
	t.Run("issued in the future", func(t *testing.T) {
		v := newVerifier(t, Config{HMACSecret: secret, Leeway: time.Minute})
		runVerifyCases(t, v, []verifyCase{
			{name: "iat within leeway", token: hs(with(baseClaims(), "iat", now.Add(30*time.Second).Unix())), want: guest},
			{name: "iat beyond leeway", token: hs(with(baseClaims(), "iat", now.Add(2*time.Minute).Unix())), wantErr: ErrInvalidToken, wantMsg: "invalid token: token issued in the future"},
			{name: "iat a year ahead, no exp", token: hs(with(noExp, "iat", now.AddDate(1, 0, 0).Unix())), wantErr: ErrInvalidToken, wantMsg: "invalid token: token issued in the future"},
			{name: "no iat", token: hs(with(baseClaims(), "iat", nil)), want: guest},
		})
	})
	t.Run("clock", func(t *testing.T) {
		v := newVerifier(t, Config{HMACSecret: secret})
		v.now = func() time.Time { return now.Add(2 * time.Hour) }
		runVerifyCases(t, v, []verifyCase{
			{name: "expired by clock", token: hs(baseClaims()), wantErr: ErrTokenExpired},
		})
	})
}

func TestVerifyPEM(t *testing.T) {
	rsa1, rsa2, rsaOther := rsaKey(t), rsaKey(t), rsaKey(t)
	ec1, ecCert, ecOther := ecKey(t), ecKey(t), ecKey(t)
	var pemData []byte
	pemData = append(pemData, pkixPEM(t, &rsa1.PublicKey)...)
	pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsa2.PublicKey)})...)
	pemData = append(pemData, pkixPEM(t, &ec1.PublicKey)...)
	pemData = append(pemData, certPEM(t, ecCert)...)
	path := writeFile(t, "keys.pem", pemData)

	v := newVerifier(t, Config{PublicKeyFile: path, Audience: testAudience})
	both := newVerifier(t, Config{PublicKeyFile: path, HMACSecret: testSecret()})
	claims := with(baseClaims(), "role", "restaurant", "restaurant_id", "r-1")
	want := Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_RESTAURANT, RestaurantID: "r-1"}
	// The HS/RS confusion attack: HS256 keyed with the public key file.
	confused := sign(t, jwt.SigningMethodHS256, pemData, nil, claims)
	confusedDER := sign(t, jwt.SigningMethodHS256, x509.MarshalPKCS1PublicKey(&rsa1.PublicKey), nil, claims)

	runVerifyCases(t, v, []verifyCase{
		{name: "RS256 PKIX key", token: sign(t, jwt.SigningMethodRS256, rsa1, nil, claims), want: want},
		{name: "RS256 PKCS1 key", token: sign(t, jwt.SigningMethodRS256, rsa2, nil, claims), want: want},
		{name: "RS256 with unknown kid", token: sign(t, jwt.SigningMethodRS256, rsa2, map[string]any{"kid": "k9"}, claims), want: want},
		{name: "ES256 PKIX key", token: sign(t, jwt.SigningMethodES256, ec1, nil, claims), want: want},
		{name: "ES256 certificate key", token: sign(t, jwt.SigningMethodES256, ecCert, nil, claims), want: want},
		{name: "RS256 foreign key", token: sign(t, jwt.SigningMethodRS256, rsaOther, nil, claims),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "ES256 foreign key", token: sign(t, jwt.SigningMethodES256, ecOther, nil, claims),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "RS384 known key", token: sign(t, jwt.SigningMethodRS384, rsa1, nil, claims),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "PS256 known key", token: sign(t, jwt.SigningMethodPS256, rsa1, nil, claims),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "ES384 token", token: sign(t, jwt.SigningMethodES384, ecKey384(t), nil, claims),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "HS256 keyed with PEM file", token: confused,
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "HS256 keyed with DER key", token: confusedDER,
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
		{name: "wrong audience", token: sign(t, jwt.SigningMethodRS256, rsa1, nil, with(claims, "aud", "x")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: wrong audience"},
	}, pemData)

	runVerifyCases(t, both, []verifyCase{
		{name: "HS256 with real secret", token: sign(t, jwt.SigningMethodHS256, testSecret(), nil, claims), want: want},
		{name: "RS256 alongside HMAC", token: sign(t, jwt.SigningMethodRS256, rsa1, nil, claims), want: want},
		{name: "HS256 keyed with PEM file", token: confused,
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "HS256 keyed with DER key", token: confusedDER,
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
	}, pemData, testSecret())
}

// ecKey384 generates a P-384 key.
func ecKey384(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatalf("ec key: %v", err)
	}
	return k
}

// rsaJWK returns the JWK of an RSA public key.
func rsaJWK(kid string, pub *rsa.PublicKey) map[string]string {
	enc := base64.RawURLEncoding
	return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": enc.EncodeToString(pub.N.Bytes()), "e": enc.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}
}

// ecJWK returns the JWK of a P-256 public key.
func ecJWK(t testing.TB, kid string, pub *ecdsa.PublicKey) map[string]string {
	t.Helper()
	b, err := pub.Bytes()
	if err != nil {
		t.Fatalf("ec bytes: %v", err)
	}
	enc := base64.RawURLEncoding
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256",
		"x": enc.EncodeToString(b[1:33]), "y": enc.EncodeToString(b[33:])}
}

func TestVerifyJWKS(t *testing.T) {
	r1, r2, rPEM := rsaKey(t), rsaKey(t), rsaKey(t)
	e1 := ecKey(t)
	set := map[string]any{"keys": []any{
		rsaJWK("r1", &r1.PublicKey),
		rsaJWK("r2", &r2.PublicKey),
		ecJWK(t, "e1", &e1.PublicKey),
		map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "skipped"},
		map[string]string{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
	}}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	jwksPath := writeFile(t, "jwks.json", data)
	pemPath := writeFile(t, "keys.pem", pkixPEM(t, &rPEM.PublicKey))

	claims := with(baseClaims(), "role", "admin")
	want := Claims{Subject: "user-1", Role: notifyv1.Role_ROLE_ADMIN}
	kid := func(k any) map[string]any { return map[string]any{"kid": k} }
	rs := func(key *rsa.PrivateKey, hdr map[string]any) string {
		return sign(t, jwt.SigningMethodRS256, key, hdr, claims)
	}

	v := newVerifier(t, Config{JWKSFile: jwksPath})
	runVerifyCases(t, v, []verifyCase{
		{name: "kid r1", token: rs(r1, kid("r1")), want: want},
		{name: "kid r2", token: rs(r2, kid("r2")), want: want},
		{name: "no kid tries every RSA key", token: rs(r2, nil), want: want},
		{name: "ES256 kid e1", token: sign(t, jwt.SigningMethodES256, e1, kid("e1"), claims), want: want},
		{name: "ES256 no kid", token: sign(t, jwt.SigningMethodES256, e1, nil, claims), want: want},
		{name: "kid selects r1 only", token: rs(r2, kid("r1")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "kid of EC key on RS256 token", token: rs(r1, kid("e1")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: no matching key"},
		{name: "unknown kid", token: rs(r1, kid("zz")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: no matching key"},
		{name: "skipped enc key", token: rs(r1, kid("enc")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: no matching key"},
		{name: "numeric kid", token: rs(r1, kid(1)),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: malformed kid header"},
		{name: "HS256 without secret", token: sign(t, jwt.SigningMethodHS256, data, kid("r1"), claims),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signing method not allowed"},
	})

	mixed := newVerifier(t, Config{JWKSFile: jwksPath, PublicKeyFile: pemPath})
	runVerifyCases(t, mixed, []verifyCase{
		{name: "unknown kid falls back to PEM key", token: rs(rPEM, kid("zz")), want: want},
		{name: "known kid does not fall back", token: rs(rPEM, kid("r1")),
			wantErr: ErrInvalidToken, wantMsg: "invalid token: signature is invalid"},
		{name: "JWKS key without kid header", token: rs(r1, nil), want: want},
		{name: "PEM key without kid header", token: rs(rPEM, nil), want: want},
	})
}

func TestSignerMint(t *testing.T) {
	secret := testSecret()
	s := NewSigner(secret)
	v := newVerifier(t, Config{HMACSecret: secret, Issuer: testIssuer, Audience: testAudience})
	iat := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	cashier := Claims{Subject: "u-7", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r-3"}

	tests := []struct {
		name    string
		signer  *Signer
		claims  Claims
		ttl     time.Duration
		opts    []MintOption
		mintErr error
		verErr  error
		wantExp time.Time
	}{
		{name: "round trip", signer: s, claims: cashier, ttl: time.Hour,
			opts: []MintOption{WithIssuer(testIssuer), WithAudience(testAudience), WithIssuedAt(iat)}, wantExp: iat.Add(time.Hour)},
		{name: "no ttl means no exp", signer: s, claims: cashier, ttl: 0,
			opts: []MintOption{WithIssuer(testIssuer), WithAudience(testAudience)}},
		{name: "expired via issued at", signer: s, claims: cashier, ttl: time.Minute,
			opts: []MintOption{WithIssuer(testIssuer), WithAudience(testAudience), WithIssuedAt(iat)}, verErr: ErrTokenExpired},
		{name: "not before", signer: s, claims: cashier, ttl: time.Hour,
			opts: []MintOption{WithIssuer(testIssuer), WithAudience(testAudience), WithNotBefore(time.Now().Add(time.Hour))}, verErr: ErrInvalidToken},
		{name: "missing issuer", signer: s, claims: cashier, ttl: time.Hour,
			opts: []MintOption{WithAudience(testAudience)}, verErr: ErrInvalidToken},
		{name: "empty subject", signer: s, claims: Claims{Role: notifyv1.Role_ROLE_GUEST}, ttl: time.Hour, mintErr: ErrInvalidClaims},
		{name: "unspecified role", signer: s, claims: Claims{Subject: "u"}, ttl: time.Hour, mintErr: ErrInvalidClaims},
		{name: "out of range role", signer: s, claims: Claims{Subject: "u", Role: 42}, ttl: time.Hour, mintErr: ErrInvalidClaims},
		{name: "cashier without restaurant", signer: s, claims: Claims{Subject: "u", Role: notifyv1.Role_ROLE_CASHIER}, ttl: time.Hour, mintErr: ErrInvalidClaims},
		{name: "empty secret", signer: NewSigner(nil), claims: cashier, ttl: time.Hour, mintErr: ErrNoKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := tc.signer.Mint(tc.claims, tc.ttl, tc.opts...)
			if tc.mintErr != nil {
				if !errors.Is(err, tc.mintErr) || tok != "" {
					t.Fatalf("Mint = %q, %v; want error %v", tok, err, tc.mintErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			got, err := v.Verify(tok)
			if tc.verErr != nil {
				if !errors.Is(err, tc.verErr) {
					t.Fatalf("Verify error = %v, want %v", err, tc.verErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := tc.claims
			want.ExpiresAt = tc.wantExp
			checkClaims(t, got, want)
			if tc.ttl <= 0 && !got.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt = %v, want zero", got.ExpiresAt)
			}
		})
	}
}

func TestSignerCopiesSecret(t *testing.T) {
	secret := testSecret()
	s := NewSigner(secret)
	v := newVerifier(t, Config{HMACSecret: secret})
	secret[0] ^= 0xff // neither copy may see this
	tok, err := s.Mint(Claims{Subject: "u", Role: notifyv1.Role_ROLE_ADMIN}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("Verify after caller mutated secret: %v", err)
	}
}

func TestContext(t *testing.T) {
	ctx := t.Context()
	if _, ok := FromContext(ctx); ok {
		t.Fatal("FromContext found claims in a bare context")
	}
	want := Claims{Subject: "u", Role: notifyv1.Role_ROLE_GUEST, ExpiresAt: time.Unix(100, 0)}
	got, ok := FromContext(NewContext(ctx, want))
	if !ok || got != want {
		t.Fatalf("FromContext = %+v, %v; want %+v, true", got, ok, want)
	}
}
