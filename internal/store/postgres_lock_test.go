package store

import (
	"context"
	"testing"
	"time"
)

// TestPostgresItemLockLetsStateRowsIn checks the lock an action by id
// takes on its items: a concurrent bulk action of another viewer inserts
// state rows referencing the same items (its foreign key check takes a
// KEY SHARE lock on each), and must not wait for it. With FOR UPDATE it
// would, and a bulk action that had inserted the row the first action
// wants next would deadlock with it.
func TestPostgresItemLockLetsStateRowsIn(t *testing.T) {
	s := openTestPostgres(t, newPostgresSchema(t))
	ctx := t.Context()
	mustInsert(t, s, items("group:admin", "g", "t", 1)...)
	a1 := user("a1", "group:admin")
	id, err := parseID(idOf(t, s, a1, "g0"))
	if err != nil {
		t.Fatal(err)
	}
	vw, err := checkViewer(a1)
	if err != nil {
		t.Fatal(err)
	}
	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.c.eng.inTx(ctx, func(tx dbtx) error {
			if _, _, err := s.c.visible(ctx, tx, vw, []int64{id}, time.Now()); err != nil {
				return err
			}
			close(locked)
			<-release
			return nil
		})
	}()
	select {
	case <-locked:
	case err := <-done:
		t.Fatalf("locking the item: %v", err)
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	n, err := s.UpdateWhere(bctx, user("a2", "group:admin"), Filter{}, Change{Action: ActionSeen})
	cancel()
	close(release)
	if lerr := <-done; lerr != nil {
		t.Errorf("the locking transaction: %v", lerr)
	}
	if err != nil || n != 1 {
		t.Fatalf("a2's bulk seen while a1's action holds the item = %d, %v; want 1 at once", n, err)
	}
}
