package main

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// TestH2FollowsHeaderTableSize opens a second stream on an h2 connection
// after the server has emptied the connection's header table (it does so
// for a connection that carries one stream at idle): the second stream's
// header block must not refer to the table the server no longer keeps,
// or the server ends the connection with COMPRESSION_ERROR.
func TestH2FollowsHeaderTableSize(t *testing.T) {
	n := startTestNodeWith(t, func(c *node.Config) { c.GRPCTransport = "wire" })
	c, err := dialH2(n.GRPCAddr(), 1<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	m := newMinter(node.DevSecret)
	var stopping atomic.Bool
	defer stopping.Store(true)
	open := func(i int) *subscriber {
		t.Helper()
		room := "guest:g" + strconv.Itoa(i)
		tok, err := m.subscriberToken(room, i)
		if err != nil {
			t.Fatal(err)
		}
		dec, err := newDecoder("wire")
		if err != nil {
			t.Fatal(err)
		}
		s := &subscriber{id: i, room: room, token: tok, hist: NewShardedHistogram(1).Shard(0), wire: dec.wire,
			done: make(chan struct{}), stopping: &stopping, dec: dec}
		started := make(chan error, 1)
		mark := func(err error) {
			select {
			case started <- err:
			default:
			}
		}
		done, err := c.open(s, mark)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-started:
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
		case err := <-done:
			t.Fatalf("stream %d ended before it started: %v", i, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d did not start", i)
		}
		return s
	}

	open(1)
	testenv.Eventually(t, 10*time.Second, "the server empties the header table of a one-stream connection", func() bool {
		return c.tableSize.Load() == 0
	})
	open(2)
	open(3)
}
