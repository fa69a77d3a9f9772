package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/testenv"
)

// Group commit behaviour, on every implementation (suiteCases) and, for
// what needs a closed and reopened store, through testGroupClose.

func groupCases() []suiteCase {
	return []suiteCase{
		{"GroupConcurrentInserts", testGroupConcurrentInserts},
		{"GroupOneTransaction", testGroupOneTransaction},
		{"GroupBatchBound", testGroupBatchBound},
		{"GroupFailingCall", testGroupFailingCall},
		{"GroupFailingItemHook", testGroupFailingItemHook},
		{"GroupDuplicatesInBatch", testGroupDuplicatesInBatch},
		{"GroupCancelWhileQueued", testGroupCancelWhileQueued},
		{"GroupCancelDuringTx", testGroupCancelDuringTx},
		{"GroupPanic", testGroupPanic},
	}
}

// groupOf returns the store's group committer.
func groupOf(t *testing.T, s Store) (*groupCommit, *core) {
	t.Helper()
	_, c := rawDB(t, s)
	if c.gc == nil {
		t.Fatal("store has no group committer")
	}
	return c.gc, c
}

// waitQueued waits until n calls wait in g's queue.
func waitQueued(t *testing.T, g *groupCommit, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d calls queued", n), func() bool { return g.queued() >= n })
}

// goInsert starts an Insert and returns where its result will arrive.
func goInsert(ctx context.Context, s Store, its ...NewItem) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.Insert(ctx, its) }()
	return ch
}

// result waits for an Insert's result.
func result(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Insert did not return")
		return nil
	}
}

func item(owner, eventID string) NewItem {
	return NewItem{Owner: owner, EventID: eventID, EventType: "t", Event: []byte(owner + "/" + eventID), CreatedAt: baseTime()}
}

// testGroupConcurrentInserts: many goroutines insert at once; every call
// succeeds and every row is there once.
func testGroupConcurrentInserts(t *testing.T, s Store) {
	const workers, each = 64, 20
	g, _ := groupOf(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			u := "w" + strconv.Itoa(w)
			for i := range each {
				e := strconv.Itoa(i)
				// A personal row and a shared one, as a publish writes.
				if err := s.Insert(t.Context(), []NewItem{item(u, e), item("group:all", u+"-"+e)}); err != nil {
					errs <- fmt.Errorf("%s/%d: %w", u, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range workers {
		u := "w" + strconv.Itoa(w)
		if got := listAll(t, s, user(u)); len(got) != each {
			t.Errorf("%s has %d items, want %d", u, len(got), each)
		}
	}
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_items"); n != 2*workers*each {
		t.Errorf("%d rows, want %d", n, 2*workers*each)
	}
	if n := g.committed.Load(); n != workers*each {
		t.Errorf("%d calls committed, want %d", n, workers*each)
	}
	t.Logf("%d calls in %d shared transactions (and alone)", g.committed.Load(), g.shared.Load())
}

// testGroupOneTransaction: the calls waiting together are committed in one
// transaction, in queue order.
func testGroupOneTransaction(t *testing.T, s Store) {
	const calls = 100
	g, _ := groupOf(t, s)
	g.setPaused(true)
	res := make([]<-chan error, calls)
	for i := range calls {
		res[i] = goInsert(t.Context(), s, item("u"+strconv.Itoa(i%7), "e"+strconv.Itoa(i)), item("group:g", "e"+strconv.Itoa(i)))
		waitQueued(t, g, i+1) // queue order is i
	}
	if got := listAll(t, s, user("u0")); len(got) != 0 {
		t.Fatalf("rows visible before the commit: %v", eventIDs(got))
	}
	g.setPaused(false)
	for i, ch := range res {
		if err := result(t, ch); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if g.shared.Load() != 1 || g.committed.Load() != calls {
		t.Errorf("%d shared transactions, %d calls committed; want 1 and %d", g.shared.Load(), g.committed.Load(), calls)
	}
	got, _ := mustList(t, s, user("x", "group:g"), ListQuery{Limit: MaxPageSize})
	want := make([]string, calls)
	for i := range want {
		want[i] = "e" + strconv.Itoa(calls-1-i)
	}
	wantEvents(t, "group rows newest first", got, want...)
}

// testGroupBatchBound: a batch holds at most maxItems rows; a larger call is
// committed whole, alone.
func testGroupBatchBound(t *testing.T, s Store) {
	g, _ := groupOf(t, s)
	g.mu.Lock()
	g.maxItems = 10
	g.mu.Unlock()
	g.setPaused(true)
	var res []<-chan error
	for i := range 25 {
		res = append(res, goInsert(t.Context(), s, item("u1", "e"+strconv.Itoa(i))))
		waitQueued(t, g, i+1)
	}
	res = append(res, goInsert(t.Context(), s, items("u2", "big", "t", 15)...))
	waitQueued(t, g, 26)
	g.setPaused(false)
	for i, ch := range res {
		if err := result(t, ch); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	// 10 + 10 + 5 single rows, then the 15 rows alone.
	if got, want := g.shared.Load(), int64(3); got != want {
		t.Errorf("%d shared transactions, want %d", got, want)
	}
	if n := len(listAll(t, s, user("u1"))); n != 25 {
		t.Errorf("u1 has %d rows, want 25", n)
	}
	if n := len(listAll(t, s, user("u2"))); n != 15 {
		t.Errorf("u2 has %d rows, want 15", n)
	}
}

// badOwner passes the store's checks, but both databases refuse it: SQLite's
// length() stops at the NUL (CHECK length(owner) > 0 fails) and PostgreSQL
// text cannot hold a NUL.
const badOwner = "\x00bad"

// testGroupFailingCall: a call whose rows the database refuses fails alone;
// the calls that shared its transaction are committed.
func testGroupFailingCall(t *testing.T, s Store) {
	g, _ := groupOf(t, s)
	g.setPaused(true)
	type call struct {
		items []NewItem
		bad   bool
	}
	calls := []call{
		{items: []NewItem{item("u1", "a")}},
		{items: []NewItem{item("u2", "ok-first"), item(badOwner, "x")}, bad: true},
		{items: []NewItem{item("u1", "b"), item("u3", "b")}},
		{items: []NewItem{item(badOwner, "y")}, bad: true},
		{items: []NewItem{item("u1", "c")}},
	}
	res := make([]<-chan error, len(calls))
	for i, c := range calls {
		res[i] = goInsert(t.Context(), s, c.items...)
		waitQueued(t, g, i+1)
	}
	g.setPaused(false)
	for i, c := range calls {
		err := result(t, res[i])
		if c.bad && err == nil {
			t.Errorf("call %d with a refused row succeeded", i)
		}
		if !c.bad && err != nil {
			t.Errorf("call %d failed with another call's bad row: %v", i, err)
		}
	}
	wantEvents(t, "u1", listAll(t, s, user("u1")), "c", "b", "a")
	wantEvents(t, "u3", listAll(t, s, user("u3")), "b")
	// The failed call is all or none: its good row is not stored either.
	wantEvents(t, "u2", listAll(t, s, user("u2")))
	if g.shared.Load() < 1 {
		t.Error("the good calls were not committed together")
	}
	if n := rawCount(t, s, "SELECT COUNT(*) FROM inbox_items"); n != 4 {
		t.Errorf("%d rows, want 4", n)
	}
}

// testGroupFailingItemHook: the same with a failure injected after an item
// is written (the third item of a call), for any cause the database might
// have.
func testGroupFailingItemHook(t *testing.T, s Store) {
	g, c := groupOf(t, s)
	boom := errors.New("boom")
	c.afterInsert = func(_ context.Context, i int) error {
		if i == 2 {
			return boom
		}
		return nil
	}
	defer func() { c.afterInsert = nil }()
	g.setPaused(true)
	res := []<-chan error{goInsert(t.Context(), s, item("u1", "a"))}
	waitQueued(t, g, 1)
	res = append(res, goInsert(t.Context(), s, items("u2", "x", "t", 3)...))
	waitQueued(t, g, 2)
	res = append(res, goInsert(t.Context(), s, item("u1", "b"), item("u3", "b")))
	waitQueued(t, g, 3)
	g.setPaused(false)
	for i, ch := range res {
		err := result(t, ch)
		if i == 1 {
			wantErr(t, "the failing call", err, boom)
		} else if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	wantEvents(t, "u1", listAll(t, s, user("u1")), "b", "a")
	wantEvents(t, "u2", listAll(t, s, user("u2")))
	if g.shared.Load() != 1 {
		t.Errorf("%d shared transactions, want 1 (the two good calls)", g.shared.Load())
	}
}

// testGroupDuplicatesInBatch: the same owner and event id from two calls of
// one batch (a publish and its retry) is stored once, as the first call
// wrote it; a row already stored is skipped too.
func testGroupDuplicatesInBatch(t *testing.T, s Store) {
	g, _ := groupOf(t, s)
	stored := item("u1", "idem:old")
	mustInsert(t, s, stored)
	g.setPaused(true)
	first := item("u1", "idem:k")
	first.Event = []byte("first")
	retry := first
	retry.Event = []byte("retry")
	again := stored
	again.Event = []byte("again")
	var res []<-chan error
	for i, its := range [][]NewItem{{first}, {retry, item("u2", "idem:k")}, {again}, {retry}} {
		res = append(res, goInsert(t.Context(), s, its...))
		waitQueued(t, g, i+1)
	}
	g.setPaused(false)
	for i, ch := range res {
		if err := result(t, ch); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	got := listAll(t, s, user("u1"))
	wantEvents(t, "u1", got, "idem:k", "idem:old")
	if string(got[0].Event) != "first" || string(got[1].Event) != string(stored.Event) {
		t.Errorf("stored events %q, %q; want the first writes", got[0].Event, got[1].Event)
	}
	wantEvents(t, "u2", listAll(t, s, user("u2")), "idem:k")
	if g.shared.Load() != 1 {
		t.Errorf("%d shared transactions, want 1", g.shared.Load())
	}
}

// testGroupCancelWhileQueued: a caller that gives up while queued returns
// its context's error at once, and its rows are not written; the calls
// around it are.
func testGroupCancelWhileQueued(t *testing.T, s Store) {
	g, _ := groupOf(t, s)
	g.setPaused(true)
	before := goInsert(t.Context(), s, item("u1", "before"))
	waitQueued(t, g, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancelled := goInsert(ctx, s, item("u1", "cancelled"))
	waitQueued(t, g, 2)
	dctx, dcancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer dcancel()
	expired := goInsert(dctx, s, item("u1", "expired"))
	waitQueued(t, g, 3)
	after := goInsert(t.Context(), s, item("u1", "after"))
	waitQueued(t, g, 4)

	cancel()
	wantErr(t, "cancelled while queued", result(t, cancelled), context.Canceled)
	wantErr(t, "deadline while queued", result(t, expired), context.DeadlineExceeded)
	g.setPaused(false)
	for _, ch := range []<-chan error{before, after} {
		if err := result(t, ch); err != nil {
			t.Error(err)
		}
	}
	wantEvents(t, "u1", listAll(t, s, user("u1")), "after", "before")
}

// testGroupCancelDuringTx: a caller that gives up once its shared
// transaction is under way returns at once; its rows are committed with
// the others (the documented case: a retry is a no-op). A transaction whose
// callers have all given up is abandoned.
func testGroupCancelDuringTx(t *testing.T, s Store) {
	g, c := groupOf(t, s)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var first atomic.Bool
	c.afterInsert = func(ctx context.Context, _ int) error {
		if !first.CompareAndSwap(false, true) {
			return nil
		}
		entered <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { c.afterInsert = nil }()

	// Shared: one of two callers gives up; the other keeps it going.
	g.setPaused(true)
	ctx, cancel := context.WithCancel(t.Context())
	quitter := goInsert(ctx, s, item("u1", "quitter"))
	waitQueued(t, g, 1)
	stayer := goInsert(t.Context(), s, item("u1", "stayer"))
	waitQueued(t, g, 2)
	g.setPaused(false)
	<-entered
	cancel()
	wantErr(t, "gave up during the transaction", result(t, quitter), context.Canceled)
	close(release)
	if err := result(t, stayer); err != nil {
		t.Fatal(err)
	}
	wantEvents(t, "u1", listAll(t, s, user("u1")), "stayer", "quitter")
	// The quitter's retry stores nothing more.
	mustInsert(t, s, item("u1", "quitter"))
	wantEvents(t, "u1 after retry", listAll(t, s, user("u1")), "stayer", "quitter")

	// Alone: the only caller gives up; the transaction is rolled back.
	c.afterInsert = func(ctx context.Context, _ int) error {
		if !first.CompareAndSwap(false, true) {
			return nil
		}
		entered <- struct{}{}
		<-ctx.Done() // a statement that only ends when cancelled
		return ctx.Err()
	}
	first.Store(false)
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	lone := goInsert(ctx, s, item("u1", "lone"))
	<-entered
	cancel()
	wantErr(t, "alone, gave up", result(t, lone), context.Canceled)
	// The committer is free again and the row was not written.
	mustInsert(t, s, item("u1", "next"))
	wantEvents(t, "u1 after the abandoned one", listAll(t, s, user("u1")), "next", "stayer", "quitter")
}

// testGroupPanic: a panic while writing a batch fails that batch's calls,
// not the process; the committer and the writer connection go on.
func testGroupPanic(t *testing.T, s Store) {
	g, c := groupOf(t, s)
	c.afterInsert = func(context.Context, int) error { panic("driver bug") }
	g.setPaused(true)
	var res []<-chan error
	for i := range 3 {
		res = append(res, goInsert(t.Context(), s, item("u1", "p"+strconv.Itoa(i))))
		waitQueued(t, g, i+1)
	}
	g.setPaused(false)
	for i, ch := range res {
		if err := result(t, ch); err == nil {
			t.Errorf("call %d succeeded through a panic", i)
		}
	}
	c.afterInsert = nil
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := s.Insert(ctx, []NewItem{item("u1", "after")}); err != nil {
		t.Fatalf("Insert after the panic: %v", err)
	}
	wantEvents(t, "u1", listAll(t, s, user("u1")), "after")
}

// testGroupClose: Close with calls queued commits them before it returns;
// Insert after Close fails; reopen shows the rows. s is open on an empty
// database; reopen opens it again.
func testGroupClose(t *testing.T, s Store, reopen func(t *testing.T) Store) {
	const calls = 50
	g, _ := groupOf(t, s)
	g.setPaused(true)
	res := make([]<-chan error, calls)
	for i := range calls {
		res[i] = goInsert(t.Context(), s, item("u1", "e"+strconv.Itoa(i)))
	}
	waitQueued(t, g, calls)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for i, ch := range res {
		if err := result(t, ch); err != nil {
			t.Errorf("call %d queued at Close: %v", i, err)
		}
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
	wantErr(t, "Insert after Close", s.Insert(t.Context(), []NewItem{item("u1", "late")}), ErrUnavailable)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s2 := reopen(t)
	if got := listAll(t, s2, user("u1")); len(got) != calls {
		t.Fatalf("%d rows after reopen, want %d", len(got), calls)
	}
}

// testGroupCloseAbort: a transaction that does not finish within the grace
// period is aborted by Close, which returns; every call is answered, and a
// call that returned nil is stored while one that failed is not.
func testGroupCloseAbort(t *testing.T, s Store, reopen func(t *testing.T) Store) {
	g, c := groupOf(t, s)
	g.grace = 300 * time.Millisecond
	entered := make(chan struct{})
	var first atomic.Bool
	c.afterInsert = func(ctx context.Context, _ int) error {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-ctx.Done() // a statement that only ends when cancelled
			return ctx.Err()
		}
		return nil
	}
	committed := g.committed.Load()
	stuck := goInsert(t.Context(), s, item("u1", "stuck"))
	<-entered
	const calls = 10
	var res []<-chan error
	for i := range calls {
		res = append(res, goInsert(t.Context(), s, item("u1", "q"+strconv.Itoa(i))))
	}
	// Each call queued behind the stuck one (SQLite), or taken and
	// committed by another committer.
	testenv.Eventually(t, 10*time.Second, "every call queued or committed", func() bool {
		return g.queued()+int(g.committed.Load()-committed) == calls
	})
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v with a grace of %v", d, g.grace)
	}
	wantErr(t, "the aborted call", result(t, stuck), ErrUnavailable)
	var ok []string
	for i, ch := range res {
		if err := result(t, ch); err == nil {
			ok = append(ok, "q"+strconv.Itoa(i))
		} else if !errors.Is(err, ErrUnavailable) {
			t.Errorf("call %d: %v, want nil or ErrUnavailable", i, err)
		}
	}
	c.afterInsert = nil
	got := eventIDs(listAll(t, reopen(t), user("u1")))
	slices.Sort(got)
	slices.Sort(ok)
	if !slices.Equal(got, ok) {
		t.Errorf("stored %v, want exactly the calls that returned nil: %v", got, ok)
	}
}

// ---- the committer's failure handling, over a scripted engine ----

// fakeEngine stores rows in memory; a transaction is the rows its fn
// wrote, kept when commit says so.
type fakeEngine struct {
	mu     sync.Mutex
	rows   []string // owner/event id, committed
	txs    [][]int  // per transaction: the row counts of its calls
	commit func(calls int) error
	// writeErr fails the write of an item with this owner.
	writeErr map[string]error
}

type fakeTx struct {
	rows  []string
	calls []int
}

func (e *fakeEngine) reader() dbtx { return nil }

func (e *fakeEngine) inTx(ctx context.Context, fn func(tx dbtx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tx := &fakeTx{}
	runner := fakeRunner{tx}
	err := fn(runner)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.txs = append(e.txs, tx.calls)
	if err != nil {
		return err
	}
	if e.commit != nil {
		if err := e.commit(len(tx.calls)); err != nil {
			return err
		}
	}
	e.rows = append(e.rows, tx.rows...)
	return nil
}

func (e *fakeEngine) lockMigrations(context.Context, dbtx) error { return nil }
func (e *fakeEngine) timeArg(t time.Time) any                    { return t }
func (e *fakeEngine) newTimeDest() timeDest                      { return &pgTimeDest{} }
func (e *fakeEngine) newNullTimeDest() timeDest                  { return &pgNullTimeDest{} }
func (e *fakeEngine) classify(err error) error                   { return err }

type fakeRunner struct{ tx *fakeTx }

func (fakeRunner) exec(context.Context, string, ...any) (int64, error) { return 0, nil }
func (fakeRunner) query(context.Context, string, ...any) (rows, error) { return nil, nil }

// write is the committer's write function over the fake engine.
func (e *fakeEngine) write(_ context.Context, tx dbtx, items []NewItem) error {
	t := tx.(fakeRunner).tx
	t.calls = append(t.calls, len(items))
	for _, it := range items {
		if err := e.writeErr[it.Owner]; err != nil {
			return err
		}
		t.rows = append(t.rows, it.Owner+"/"+it.EventID)
	}
	return nil
}

// runFake queues one call per owner on a paused committer over e, releases
// it, and returns the calls' results.
func runFake(t *testing.T, e *fakeEngine, owners ...string) []error {
	t.Helper()
	g := newGroupCommit(e, e.write, 1)
	defer g.close()
	g.setPaused(true)
	res := make([]chan error, len(owners))
	for i, o := range owners {
		res[i] = make(chan error, 1)
		go func() { res[i] <- g.insert(t.Context(), []NewItem{{Owner: o, EventID: "e", EventType: "t"}}) }()
		waitQueued(t, g, i+1)
	}
	g.setPaused(false)
	out := make([]error, len(owners))
	for i, ch := range res {
		out[i] = result(t, ch)
	}
	return out
}

func TestGroupCommitFailures(t *testing.T) {
	boom := errors.New("boom")

	t.Run("commit fails: every call alone", func(t *testing.T) {
		e := &fakeEngine{commit: func(calls int) error {
			if calls > 1 {
				return boom
			}
			return nil
		}}
		for i, err := range runFake(t, e, "a", "b", "c") {
			if err != nil {
				t.Errorf("call %d: %v", i, err)
			}
		}
		if want := [][]int{{1, 1, 1}, {1}, {1}, {1}}; !slices.EqualFunc(e.txs, want, slices.Equal) {
			t.Errorf("transactions %v, want %v", e.txs, want)
		}
		if want := []string{"a/e", "b/e", "c/e"}; !slices.Equal(e.rows, want) {
			t.Errorf("rows %v, want %v", e.rows, want)
		}
	})

	t.Run("failing calls alone, the rest together", func(t *testing.T) {
		e := &fakeEngine{writeErr: map[string]error{"bad1": boom, "bad2": boom}}
		errs := runFake(t, e, "a", "bad1", "b", "bad2", "c")
		for i, err := range errs {
			if bad := i == 1 || i == 3; bad != errors.Is(err, boom) || (!bad && err != nil) {
				t.Errorf("call %d: %v", i, err)
			}
		}
		// Shared (fails at bad1), shared without bad1 (fails at bad2),
		// shared a, b, c (commits), then bad1 and bad2 alone.
		want := [][]int{{1, 1}, {1, 1, 1}, {1, 1, 1}, {1}, {1}}
		if !slices.EqualFunc(e.txs, want, slices.Equal) {
			t.Errorf("transactions %v, want %v", e.txs, want)
		}
		if want := []string{"a/e", "b/e", "c/e"}; !slices.Equal(e.rows, want) {
			t.Errorf("rows %v, want %v", e.rows, want)
		}
	})

	t.Run("unavailable: every call fails, no retries", func(t *testing.T) {
		unavailable := fmt.Errorf("%w: gone", ErrUnavailable)
		e := &fakeEngine{commit: func(int) error { return unavailable }}
		for i, err := range runFake(t, e, "a", "b", "c") {
			wantErr(t, fmt.Sprintf("call %d", i), err, ErrUnavailable)
		}
		if len(e.txs) != 1 || len(e.rows) != 0 {
			t.Errorf("transactions %v, rows %v; want one failed transaction", e.txs, e.rows)
		}
	})

	t.Run("after close", func(t *testing.T) {
		e := &fakeEngine{}
		g := newGroupCommit(e, e.write, 2)
		g.close()
		g.close()
		err := g.insert(t.Context(), []NewItem{{Owner: "a", EventID: "e", EventType: "t"}})
		wantErr(t, "insert after close", err, ErrUnavailable)
	})
}
