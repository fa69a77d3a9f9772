package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRedisPublishGivenUp publishes with deadlines from 0 to 2 ms: a
// publish whose context ends may fail, but only before its script reached
// Redis; every message delivered was answered with its result, so the
// caller (the service) can store it.
func TestRedisPublishGivenUp(t *testing.T) {
	var mu sync.Mutex
	delivered := map[string]bool{}
	lastIn := make(chan struct{})
	r := newTestRedis(t, redisURL(t), Limits{Size: 10, TTL: time.Hour}, func(m Message) {
		mu.Lock()
		delivered[string(m.Data)] = true
		mu.Unlock()
		if string(m.Data) == "last" {
			close(lastIn)
		}
	}, nil)
	if err := r.Listen(context.Background(), "r"); err != nil {
		t.Fatal(err)
	}
	answered := map[string]bool{}
	const n = 400
	for i := range n {
		id := fmt.Sprintf("e%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%40)*50*time.Microsecond)
		if _, err := r.Publish(ctx, Publication{EventID: id, Rooms: []string{"r"}, Data: []byte(id)}); err == nil {
			answered[id] = true
		}
		cancel()
	}
	// A last publish, answered: every earlier delivery is in by then.
	if _, err := r.Publish(context.Background(), Publication{EventID: "last", Rooms: []string{"r"}, Data: []byte("last")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lastIn:
	case <-time.After(5 * time.Second):
		t.Fatal("the last message was not delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range delivered {
		if id != "last" && !answered[id] {
			t.Errorf("message %s was delivered but its publish returned an error", id)
		}
	}
	t.Logf("%d publishes: %d answered, %d delivered", n, len(answered), len(delivered)-1)
}
