package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// testClock is a settable clock for Verifier.now, safe for concurrent use.
type testClock struct{ ns atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.set(t)
	return c
}

func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *testClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// cachedVerifier returns an HS256 verifier with a cache of size entries
// whose clock is clk.
func cachedVerifier(t testing.TB, size int, leeway time.Duration, clk *testClock) *Verifier {
	t.Helper()
	v := newVerifier(t, Config{HMACSecret: testSecret(), Leeway: leeway, CacheSize: size})
	v.now = clk.now
	return v
}

// guestToken signs an HS256 guest token for sub with the given claims
// overrides.
func guestToken(t testing.TB, sub string, kv ...any) string {
	t.Helper()
	return sign(t, jwt.SigningMethodHS256, testSecret(), nil, with(baseClaims(), append([]any{"sub", sub, "iss", nil, "aud", nil}, kv...)...))
}

// authCtx is an incoming context carrying "authorization: Bearer tok".
func authCtx(tok string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
}

// authenticated runs the interceptors' authentication and returns the
// Claims it put in the context.
func authenticated(v *Verifier, tok string) (Claims, error) {
	ctx, err := v.authenticate(authCtx(tok))
	if err != nil {
		return Claims{}, err
	}
	c, ok := FromContext(ctx)
	if !ok {
		return Claims{}, errors.New("no claims in the context")
	}
	return c, nil
}

// TestCacheExpiry: a cached token stops being accepted exactly when Verify
// would stop accepting it (exp plus the leeway), with ErrTokenExpired, and
// its entry is dropped.
func TestCacheExpiry(t *testing.T) {
	for _, leeway := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprintf("leeway=%v", leeway), func(t *testing.T) {
			start := time.Now().Truncate(time.Second)
			clk := newTestClock(start)
			v := cachedVerifier(t, 64, leeway, clk)
			exp := start.Add(time.Minute)
			tok := guestToken(t, "g1", "exp", exp.Unix(), "iat", start.Unix())

			if c, err := authenticated(v, tok); err != nil || c.Subject != "g1" || !c.ExpiresAt.Equal(exp) {
				t.Fatalf("first call: %+v, %v", c, err)
			}
			if n := v.cache.len(); n != 1 {
				t.Fatalf("cache holds %d entries after one good token, want 1", n)
			}
			// Just before the end of validity: still accepted (from the cache).
			clk.set(exp.Add(leeway - time.Millisecond))
			if _, err := authenticated(v, tok); err != nil {
				t.Fatalf("at exp+leeway-1ms: %v, want accepted", err)
			}
			if _, err := v.Verify(tok); err != nil {
				t.Fatalf("Verify at exp+leeway-1ms: %v; the cache must agree with it", err)
			}
			// At and after it: rejected as expired, as Verify does.
			for _, at := range []time.Duration{leeway, leeway + time.Millisecond, leeway + time.Hour} {
				clk.set(exp.Add(at))
				_, err := authenticated(v, tok)
				if !errors.Is(err, ErrTokenExpired) {
					t.Fatalf("at exp+%v: %v, want ErrTokenExpired", at, err)
				}
				if _, verr := v.Verify(tok); !errors.Is(verr, ErrTokenExpired) {
					t.Fatalf("Verify at exp+%v: %v", at, verr)
				}
			}
			if n := v.cache.len(); n != 0 {
				t.Errorf("cache holds %d entries after the token expired, want 0", n)
			}
		})
	}
}

// TestCacheMaxAge: a token without exp is verified again after maxCacheAge.
func TestCacheMaxAge(t *testing.T) {
	start := time.Now()
	clk := newTestClock(start)
	v := cachedVerifier(t, 64, 0, clk)
	tok := guestToken(t, "g1", "exp", nil)
	if _, err := authenticated(v, tok); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.cache.get(tok, start.Add(maxCacheAge-time.Second)); !ok {
		t.Fatal("entry not found before maxCacheAge")
	}
	if _, ok := v.cache.get(tok, start.Add(maxCacheAge)); ok {
		t.Fatal("entry still used at maxCacheAge")
	}
	clk.add(maxCacheAge)
	if _, err := authenticated(v, tok); err != nil {
		t.Fatalf("after maxCacheAge: %v, want verified again", err)
	}
	if n := v.cache.len(); n != 1 {
		t.Errorf("cache holds %d entries, want 1", n)
	}
}

// TestCacheFailuresNotCached: tokens that fail are never remembered, and a
// token that was not yet valid is accepted once it is.
func TestCacheFailuresNotCached(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	clk := newTestClock(start)
	v := cachedVerifier(t, 64, 0, clk)
	good := guestToken(t, "g1", "exp", start.Add(time.Hour).Unix())
	tampered := tamper(good)
	bad := []struct {
		name, token string
		want        error
	}{
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), nil, with(baseClaims(), "iss", nil, "aud", nil)), ErrInvalidToken},
		{"tampered", tampered, ErrInvalidToken},
		{"expired", guestToken(t, "g1", "exp", start.Add(-time.Minute).Unix()), ErrTokenExpired},
		{"no role", guestToken(t, "g1", "role", nil), ErrInvalidToken},
		{"malformed", "not.a.token", ErrInvalidToken},
	}
	for range 3 {
		for _, b := range bad {
			if _, err := authenticated(v, b.token); !errors.Is(err, b.want) {
				t.Errorf("%s: %v, want %v", b.name, err, b.want)
			}
		}
	}
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries after failures only, want 0", n)
	}

	// A good token cached first does not make a tampered copy pass.
	if _, err := authenticated(v, good); err != nil {
		t.Fatal(err)
	}
	if _, err := authenticated(v, tampered); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("tampered copy of a cached token: %v, want ErrInvalidToken", err)
	}

	// nbf in the future: refused, not remembered; accepted once valid.
	early := guestToken(t, "g2", "nbf", start.Add(time.Minute).Unix(), "exp", start.Add(time.Hour).Unix())
	if _, err := authenticated(v, early); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token before nbf: %v, want ErrInvalidToken", err)
	}
	clk.add(2 * time.Minute)
	if c, err := authenticated(v, early); err != nil || c.Subject != "g2" {
		t.Fatalf("token after nbf: %+v, %v", c, err)
	}
}

// tamper changes one character in the middle of tok's signature. (Its
// last two characters will not do: set to "xx", they are sometimes what
// they were, or decode to the same bytes, the last character's low bits
// being padding.)
func tamper(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == c {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// TestCacheDistinctTokens: each token gets its own claims back, however
// often the tokens alternate.
func TestCacheDistinctTokens(t *testing.T) {
	clk := newTestClock(time.Now())
	v := cachedVerifier(t, 64, 0, clk)
	toks := map[string]Claims{
		guestToken(t, "g1"): {Subject: "g1", Role: notifyv1.Role_ROLE_GUEST},
		guestToken(t, "g2"): {Subject: "g2", Role: notifyv1.Role_ROLE_GUEST},
		guestToken(t, "c1", "role", "cashier", "restaurant_id", "r1"):                    {Subject: "c1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r1"},
		guestToken(t, "c1", "role", "cashier", "restaurant_id", "r2"):                    {Subject: "c1", Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: "r2"},
		guestToken(t, "svc", "role", "service"):                                          {Subject: "svc", Role: notifyv1.Role_ROLE_SERVICE},
		guestToken(t, "adm", "role", "admin", "exp", time.Now().Add(2*time.Hour).Unix()): {Subject: "adm", Role: notifyv1.Role_ROLE_ADMIN},
	}
	for range 3 {
		for tok, want := range toks {
			got, err := authenticated(v, tok)
			if err != nil {
				t.Fatalf("%s: %v", want.Subject, err)
			}
			checkClaims(t, got, want)
		}
	}
	if n := v.cache.len(); n != len(toks) {
		t.Errorf("cache holds %d entries, want %d", n, len(toks))
	}
}

// TestCacheBound: many distinct good tokens never grow the cache past its
// size, and every one still verifies to its own claims.
func TestCacheBound(t *testing.T) {
	const size = 32
	clk := newTestClock(time.Now())
	v := cachedVerifier(t, size, 0, clk)
	toks := make([]string, 500)
	for i := range toks {
		toks[i] = guestToken(t, fmt.Sprintf("g%d", i))
	}
	for round := range 2 {
		for i, tok := range toks {
			c, err := authenticated(v, tok)
			if err != nil || c.Subject != fmt.Sprintf("g%d", i) {
				t.Fatalf("round %d token %d: %+v, %v", round, i, c, err)
			}
			if n := v.cache.len(); n > size {
				t.Fatalf("cache holds %d entries, bound %d", n, size)
			}
		}
	}
	// Expired entries are swept before live ones are dropped.
	clk.add(2 * time.Hour)
	fresh := guestToken(t, "late", "exp", clk.now().Add(time.Hour).Unix())
	if _, err := authenticated(v, fresh); err != nil {
		t.Fatal(err)
	}
	if n := v.cache.len(); n > size {
		t.Fatalf("cache holds %d entries, bound %d", n, size)
	}

	// A token longer than maxCachedTokenLen is verified but not kept.
	long := guestToken(t, "long", "pad", strings.Repeat("x", maxCachedTokenLen))
	v2 := cachedVerifier(t, size, 0, newTestClock(time.Now()))
	if _, err := authenticated(v2, long); err != nil {
		t.Fatal(err)
	}
	if n := v2.cache.len(); n != 0 {
		t.Errorf("a %d-byte token was cached", len(long))
	}
}

// TestCacheDisabled: a negative CacheSize verifies every call.
func TestCacheDisabled(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: testSecret(), CacheSize: -1})
	if v.cache != nil {
		t.Fatal("cache present with CacheSize -1")
	}
	if c, err := authenticated(v, guestToken(t, "g1")); err != nil || c.Subject != "g1" {
		t.Fatalf("%+v, %v", c, err)
	}
	if v := newVerifier(t, Config{HMACSecret: testSecret()}); v.cache == nil || v.cache.perShard*cacheShards != DefaultCacheSize {
		t.Errorf("default cache missing or not of DefaultCacheSize")
	}
}

// TestCacheConcurrent: goroutines sharing a small cache over more tokens
// than it holds, with some expiring, always get the right outcome (run
// with -race).
func TestCacheConcurrent(t *testing.T) {
	start := time.Now().Truncate(time.Second)
	clk := newTestClock(start)
	v := cachedVerifier(t, 16, 0, clk)
	type tc struct {
		tok     string
		sub     string
		expires time.Time
	}
	var toks []tc
	for i := range 48 {
		exp := start.Add(time.Hour)
		if i%4 == 0 {
			exp = start.Add(time.Duration(1+i%3) * time.Second)
		}
		sub := fmt.Sprintf("g%d", i)
		toks = append(toks, tc{guestToken(t, sub, "exp", exp.Unix()), sub, exp})
	}
	bad := guestToken(t, "g1")[:20] + "garbage"
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				if w == 0 && i%500 == 499 {
					clk.add(time.Second)
				}
				now := clk.now()
				k := toks[(i*7+w)%len(toks)]
				c, err := authenticated(v, k.tok)
				switch {
				case err == nil && c.Subject != k.sub:
					failures.Add(1)
				case err == nil && !now.Before(k.expires):
					// The clock read before the call may lag the one used;
					// only a token expired before the call started counts.
					failures.Add(1)
				case err != nil && !errors.Is(err, ErrTokenExpired):
					failures.Add(1)
				}
				if _, err := authenticated(v, bad); err == nil {
					failures.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d wrong outcomes", n)
	}
	if n := v.cache.len(); n > 16 {
		t.Fatalf("cache holds %d entries, bound 16", n)
	}
}

// BenchmarkAuthenticate compares a repeated token with and without the
// cache.
func BenchmarkAuthenticate(b *testing.B) {
	tok := sign(b, jwt.SigningMethodHS256, testSecret(), nil, with(baseClaims(), "iss", nil, "aud", nil, "role", "service"))
	for _, size := range []int{-1, 0} {
		name := "cached"
		if size < 0 {
			name = "uncached"
		}
		b.Run(name, func(b *testing.B) {
			v := newVerifier(b, Config{HMACSecret: testSecret(), CacheSize: size})
			ctx := authCtx(tok)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := v.authenticate(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
