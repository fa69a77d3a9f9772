package auth

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// Bounds of the verification cache.
const (
	// DefaultCacheSize is the number of verified tokens a Verifier
	// remembers when Config.CacheSize is zero.
	DefaultCacheSize = 4096
	// cacheShards spreads the cache over this many locks.
	cacheShards = 16
	// maxCachedTokenLen is the longest token remembered: longer ones (far
	// above any ordinary JWT) are verified on every call, so the cache's
	// memory stays within its entry bound times this.
	maxCachedTokenLen = 4 << 10
	// maxCacheAge bounds how long a verification is reused, even for a
	// token whose exp is further away or absent.
	maxCacheAge = 10 * time.Minute
)

// tokenCache remembers the Claims of tokens that verified, keyed by the raw
// token, so that a caller presenting the same token again skips the
// signature check and the JSON decoding. It holds at most a fixed number of
// entries; a lookup returns an entry only while its token would still pass
// Verify's time checks (exp with the leeway) and for at most maxCacheAge
// after it was verified. Only successful verifications are stored: a token
// that failed is verified again, and fails again, every time.
//
// The cache is sharded by a hash of the token; a shard that is full drops
// its expired entries, then an arbitrary one. Safe for concurrent use.
type tokenCache struct {
	seed     maphash.Seed
	leeway   time.Duration
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	claims Claims
	// until is when the entry stops being used regardless of exp
	// (verification time + maxCacheAge).
	until time.Time
}

// newTokenCache returns a cache of about size entries (rounded up to a
// multiple of the shard count) for a verifier with the given leeway.
func newTokenCache(size int, leeway time.Duration) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed(), leeway: leeway, perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(token string) *cacheShard {
	return &c.shards[maphash.String(c.seed, token)%cacheShards]
}

// live reports whether e may still stand for a verification at now: the
// same exp test as the verifier's (now - leeway before exp), and the age
// bound.
func (c *tokenCache) live(e cacheEntry, now time.Time) bool {
	if !now.Before(e.until) {
		return false
	}
	return e.claims.ExpiresAt.IsZero() || now.Add(-c.leeway).Before(e.claims.ExpiresAt)
}

// get returns the Claims of token if it verified and is still live at now.
// A stale entry is removed.
func (c *tokenCache) get(token string, now time.Time) (Claims, bool) {
	s := c.shard(token)
	s.mu.RLock()
	e, ok := s.m[token]
	s.mu.RUnlock()
	if !ok {
		return Claims{}, false
	}
	if c.live(e, now) {
		return e.claims, true
	}
	s.mu.Lock()
	if cur, ok := s.m[token]; ok && cur.until.Equal(e.until) {
		delete(s.m, token)
	}
	s.mu.Unlock()
	return Claims{}, false
}

// put remembers that token verified at now with claims cl.
func (c *tokenCache) put(token string, cl Claims, now time.Time) {
	if len(token) > maxCachedTokenLen {
		return
	}
	e := cacheEntry{claims: cl, until: now.Add(maxCacheAge)}
	if !c.live(e, now) {
		return
	}
	s := c.shard(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[token]; !ok && len(s.m) >= c.perShard {
		for k, old := range s.m {
			if !c.live(old, now) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, k)
		}
	}
	// A copy, so the entry does not keep the request's header alive.
	s.m[strings.Clone(token)] = e
}

// len returns the number of entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
