package auth

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify checks that Verify never panics, only returns the package's
// sentinel errors, never echoes the token, and only accepts claims that
// satisfy the package's invariants.
func FuzzVerify(f *testing.F) {
	secret := testSecret()
	rk, ek := rsaKey(f), ecKey(f)
	dir := f.TempDir()
	pemPath := filepath.Join(dir, "keys.pem")
	pemData := append(pkixPEM(f, &rk.PublicKey), pkixPEM(f, &ek.PublicKey)...)
	if err := os.WriteFile(pemPath, pemData, 0o600); err != nil {
		f.Fatal(err)
	}
	v := newVerifier(f, Config{HMACSecret: secret, PublicKeyFile: pemPath, Leeway: time.Second})

	good := with(baseClaims(), "exp", time.Now().Add(24*time.Hour).Unix())
	f.Add("")
	f.Add("garbage")
	f.Add("..")
	f.Add("a.b.c.d")
	f.Add(sign(f, jwt.SigningMethodHS256, secret, nil, good))
	f.Add(sign(f, jwt.SigningMethodRS256, rk, map[string]any{"kid": "x"}, good))
	f.Add(sign(f, jwt.SigningMethodES256, ek, nil, with(good, "role", "cashier", "restaurant_id", "r")))
	f.Add(sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil, good))
	f.Add(sign(f, jwt.SigningMethodHS256, pemData, nil, good))
	f.Add(sign(f, jwt.SigningMethodHS256, secret, map[string]any{"kid": []int{1}, "crit": "x", "typ": 5}, good))
	f.Add(sign(f, jwt.SigningMethodHS256, secret, nil, with(good, "aud", []any{1, nil}, "iss", map[string]any{})))
	f.Add(sign(f, jwt.SigningMethodHS256, secret, nil, with(good, "exp", 1e300, "nbf", -1e300)))
	f.Add(sign(f, jwt.SigningMethodHS256, secret, nil, with(good, "role", "restaurant", "sub", "")))
	f.Add(rawToken(f, `{"alg":["HS256"]}`, `{"sub":"a","role":"admin"}`, secret))
	f.Add(rawToken(f, `{"alg":"HS256"}`, `{"sub":"a","role":"admin","exp":"1"}`, secret))
	f.Add(rawToken(f, `{"alg":"HS256","kid":null}`, `{"sub":"a","ROLE":"admin","Sub":"b"}`, secret))
	f.Add(rawToken(f, `{"alg":"HS256"}`, `null`, secret))
	f.Add(rawToken(f, `{"alg":"RS256"}`, `{"sub":"a","role":"admin"}`, secret))

	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrMissingToken) && !errors.Is(err, ErrTokenExpired) && !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify returned a foreign error: %v", err)
			}
			if c != (Claims{}) {
				t.Fatalf("Verify returned claims %+v with error %v", c, err)
			}
			checkNoLeak(t, err, token, secret)
			return
		}
		if verr := c.validate(); verr != nil {
			t.Fatalf("Verify accepted claims %+v that break invariants: %v", c, verr)
		}
	})
}
