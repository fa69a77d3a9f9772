package wire

// A connection's timed ends: MaxConnectionIdle, MaxConnectionAge and
// keepalive.

import (
	"errors"
	"math/rand/v2"
	"time"
)

// checkIdle drains a connection that has had no stream for
// MaxConnectionIdle.
func (c *conn) checkIdle() {
	limit := c.srv.cfg.MaxConnectionIdle
	c.mu.Lock()
	if c.closed || c.goaway {
		c.mu.Unlock()
		return
	}
	if c.idleSince.IsZero() {
		c.idle.Reset(limit)
		c.mu.Unlock()
		return
	}
	if d := time.Since(c.idleSince); d < limit {
		c.idle.Reset(limit - d)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.drain()
}

// aged drains a connection at its maximum age, and closes it when the
// grace period ends.
func (c *conn) aged() {
	c.drain()
	if g := c.srv.cfg.MaxConnectionAgeGrace; g > 0 {
		c.mu.Lock()
		if !c.closed {
			c.age = time.AfterFunc(g, func() { c.close(errAged) })
		}
		c.mu.Unlock()
	}
}

// keepalive pings a silent connection and closes one that stays silent;
// it returns when it is due next. The server's keepalive schedule runs it,
// for all its connections on one timer: a connection keeps a few fields
// there instead of a runtime timer.
func (c *conn) keepalive(now int64) (next int64) {
	cfg := &c.srv.cfg
	last := c.lastRead.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return now + int64(cfg.KeepaliveTime) // close removed it from the schedule
	}
	if c.pingPending {
		if last < c.pingAt {
			// On a goroutine of its own: the schedule's must not wait.
			go c.close(errors.New("wire: keepalive ping unanswered"))
			return now + int64(cfg.KeepaliveTimeout)
		}
		c.pingPending = false
	}
	idle := time.Duration(now - last)
	if idle < cfg.KeepaliveTime {
		return now + int64(cfg.KeepaliveTime-idle)
	}
	c.pingPending = true
	c.pingAt = now
	c.out = appendPing(c.outBuf(), false, [8]byte{'k', 'e', 'e', 'p', 'a', 'l', 'v', 'e'})
	c.wakeLocked()
	return now + int64(cfg.KeepaliveTimeout)
}

// jitter returns d changed by up to 10% either way, so that connections
// opened together do not all age out together.
func jitter(d time.Duration) time.Duration {
	span := int64(d / 10)
	if span <= 0 {
		return d
	}
	return d + time.Duration(rand.Int64N(2*span+1)-span)
}
