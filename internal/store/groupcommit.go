package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Group commit of Insert calls.
//
// Every Insert is queued for a committer goroutine. A committer takes the
// calls waiting at that moment (up to groupMaxItems rows; a larger call goes
// alone and is never split), writes each call's rows in one shared
// transaction, commits once, and answers every caller. Nothing waits to
// gather calls: while one transaction commits (an fsync), the next calls
// queue up, so batches grow with the load and a call on an idle store is
// committed at once.
//
// Guarantees, per call: nil only once the call's rows are committed (and,
// on SQLite, synced); an error only when they were not, except that a caller
// that gives up (its ctx ends) returns ctx's error at once while its rows
// may still be committed by the transaction it is in. Rows are unique per
// owner and event id, so retrying such a call stores nothing twice.
//
// When a shared transaction fails, no caller is answered from it. If the
// failure came from one call's rows, that call is retried in a transaction
// of its own and the others in a new shared one; a failure that belongs to
// no call (the commit itself) retries every call alone. Only when the
// database is unavailable, or the store is closing, do all calls of the
// batch fail with the same error.

const (
	// groupMaxItems bounds the rows of one shared transaction.
	groupMaxItems = 256
	// groupCloseGrace is how long Close lets the committers finish the
	// calls already queued before it aborts them.
	groupCloseGrace = 5 * time.Second
)

// errClosed is the error of an Insert after Close, or one that Close
// aborted.
var errClosed = fmt.Errorf("%w: store is closed", ErrUnavailable)

// insertCall is one Insert waiting for a committer.
type insertCall struct {
	ctx   context.Context
	items []NewItem
	// fn, when set, writes the call in tx instead of the committer's write
	// (the items and what goes with them, see InsertHook).
	fn       func(ctx context.Context, tx dbtx) error
	done     chan error // capacity 1: a committer never waits for the caller
	answered bool       // by the committer that took the call, or by close
}

// answer gives the call its result; only the first answer counts.
func (c *insertCall) answer(err error) {
	if !c.answered {
		c.answered = true
		c.done <- err
	}
}

// groupCommit runs Insert calls through shared transactions.
type groupCommit struct {
	eng      engine
	write    func(ctx context.Context, tx dbtx, items []NewItem) error
	maxItems int
	grace    time.Duration

	// ctx is the committers' context; Close cancels it when the grace
	// period runs out, aborting the transaction in progress.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu     sync.Mutex
	cond   *sync.Cond // signalled when the queue grows, closed or paused change
	queue  []*insertCall
	closed bool
	paused bool // tests: committers take nothing until unpaused or closed

	// Counters, for tests: transactions committed with more than one call,
	// and calls committed.
	shared, committed atomic.Int64
}

// newGroupCommit starts workers committers writing each call's items with
// write, in transactions of eng.
func newGroupCommit(eng engine, write func(ctx context.Context, tx dbtx, items []NewItem) error, workers int) *groupCommit {
	g := &groupCommit{eng: eng, write: write, maxItems: groupMaxItems, grace: groupCloseGrace}
	g.cond = sync.NewCond(&g.mu)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.wg.Add(workers)
	for range workers {
		go g.run()
	}
	return g
}

// insert queues items (validated, not empty) and waits for the result or
// for ctx to end.
func (g *groupCommit) insert(ctx context.Context, items []NewItem) error {
	return g.insertFunc(ctx, items, nil)
}

// insertFunc is insert with fn writing the call (nil: the committer's
// write of items); items still count towards a batch's bound.
func (g *groupCommit) insertFunc(ctx context.Context, items []NewItem, fn func(ctx context.Context, tx dbtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &insertCall{ctx: ctx, items: items, fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	g.queue = append(g.queue, c)
	g.cond.Signal()
	g.mu.Unlock()
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		// A result that is already there is the truer answer.
		select {
		case err := <-c.done:
			return err
		default:
		}
		// The call stays queued; a committer skips it unless its
		// transaction has already begun.
		return ctx.Err()
	}
}

// close stops taking calls, lets the committers finish the queued ones for
// up to the grace period, then aborts the transaction in progress and fails
// what is left, and waits for the committers to end. A second close does
// nothing.
func (g *groupCommit) close() {
	g.once.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.cond.Broadcast()
		g.mu.Unlock()

		ended := make(chan struct{})
		go func() {
			g.wg.Wait()
			close(ended)
		}()
		t := time.NewTimer(g.grace)
		defer t.Stop()
		select {
		case <-ended:
		case <-t.C:
			g.cancel()
			g.mu.Lock()
			for _, c := range g.queue {
				c.answer(errClosed)
			}
			g.queue = nil
			g.mu.Unlock()
			<-ended
		}
		g.cancel()
	})
}

// setPaused holds the committers (tests): queued calls wait until unpaused
// or closed.
func (g *groupCommit) setPaused(p bool) {
	g.mu.Lock()
	g.paused = p
	g.cond.Broadcast()
	g.mu.Unlock()
}

// queued returns how many calls wait for a committer (tests).
func (g *groupCommit) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// run is one committer: it commits batches until the store is closed and
// the queue is empty.
func (g *groupCommit) run() {
	defer g.wg.Done()
	for {
		batch := g.next()
		if batch == nil {
			return
		}
		g.commit(batch)
	}
}

// next waits for calls and takes the next batch: the calls at the head of
// the queue, as many as fit in maxItems rows, at least one. It returns nil
// once the store is closed and the queue is empty.
func (g *groupCommit) next() []*insertCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	for (len(g.queue) == 0 || g.paused) && !g.closed {
		g.cond.Wait()
	}
	if len(g.queue) == 0 {
		return nil
	}
	n, rows := 1, len(g.queue[0].items)
	for n < len(g.queue) && rows+len(g.queue[n].items) <= g.maxItems {
		rows += len(g.queue[n].items)
		n++
	}
	batch := make([]*insertCall, n)
	copy(batch, g.queue)
	clear(g.queue[:n])
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil
	} else {
		// Another committer may take the rest meanwhile.
		g.cond.Signal()
	}
	return batch
}

// commit writes a batch and answers each of its calls exactly once. A panic
// (a driver's, say) fails the calls not answered yet instead of the process,
// as it would have failed only its caller's RPC before calls were shared.
func (g *groupCommit) commit(batch []*insertCall) {
	all := slices.Clone(batch)
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("store: panic in a shared transaction: %v", p)
			for _, c := range all {
				c.answer(err)
			}
		}
	}()
	var alone []*insertCall // calls whose rows failed a shared transaction
	defer func() {
		for _, c := range alone {
			c.answer(g.alone(c))
		}
	}()
	for {
		// Calls whose callers gave up before their transaction began are
		// not written.
		live := batch[:0]
		for _, c := range batch {
			if err := c.ctx.Err(); err != nil {
				c.answer(err)
				continue
			}
			live = append(live, c)
		}
		switch len(live) {
		case 0:
			return
		case 1:
			alone = append(alone, live[0])
			return
		}
		k, err := g.sharedTx(live)
		switch {
		case err == nil:
			g.shared.Add(1)
			g.committed.Add(int64(len(live)))
			for _, c := range live {
				c.answer(nil)
			}
			return
		case g.ctx.Err() != nil:
			for _, c := range live {
				c.answer(errClosed)
			}
			return
		case errors.Is(g.eng.classify(err), ErrUnavailable):
			// Retrying each call would only wait for the database once
			// per call.
			for _, c := range live {
				c.answer(err)
			}
			return
		case k < 0:
			// Not any one call's rows (the commit itself failed): each
			// call alone.
			alone = append(alone, live...)
			return
		}
		// Call k's rows failed: it goes alone, the others again together.
		alone = append(alone, live[k])
		batch = append(live[:k:k], live[k+1:]...)
	}
}

// sharedTx writes the calls' rows in one transaction, which is abandoned
// only when every caller has given up (or on Close). On failure, k is the
// index of the call whose rows failed, or -1 when the failure was not in
// writing rows.
func (g *groupCommit) sharedTx(calls []*insertCall) (k int, err error) {
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(calls)))
	for _, c := range calls {
		stop := context.AfterFunc(c.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	k = -1
	err = g.eng.inTx(ctx, func(tx dbtx) error {
		for i, c := range calls {
			if err := g.writeCall(ctx, tx, c); err != nil {
				k = i
				return err
			}
		}
		k = -1
		return nil
	})
	return k, err
}

// alone writes one call's rows in a transaction of their own, abandoned
// when the caller gives up (or on Close).
func (g *groupCommit) alone(c *insertCall) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	defer context.AfterFunc(g.ctx, cancel)()
	err := g.eng.inTx(ctx, func(tx dbtx) error { return g.writeCall(ctx, tx, c) })
	switch {
	case err == nil:
		g.committed.Add(1)
		return nil
	case g.ctx.Err() != nil && c.ctx.Err() == nil:
		return errClosed
	}
	return err
}

// writeCall writes one call's part of a transaction.
func (g *groupCommit) writeCall(ctx context.Context, tx dbtx, c *insertCall) error {
	if c.fn != nil {
		return c.fn(ctx, tx)
	}
	return g.write(ctx, tx, c.items)
}
