package delivery

import (
	"log/slog"
	"testing"

	"github.com/maxloyalty/notify/internal/store"
)

// TestLivePendingUntilWritten: a live step counts as seen from the moment
// it is buffered, through its write, and then from the database.
func TestLivePendingUntilWritten(t *testing.T) {
	st := openSQLite(t)
	l := newLiveRecorder(st, 16, newMetrics(), slog.New(slog.DiscardHandler))
	l.add(store.Status{ID: newStatusID(), EventID: "e1", UserID: "g1", Channel: store.ChannelLive, State: StateDelivered})
	if !l.pending("e1", "g1") {
		t.Fatal("a buffered live step is not pending")
	}
	if l.pending("e1", "g2") || l.pending("e2", "g1") {
		t.Fatal("another user's or event's step is pending")
	}
	l.flush(t.Context())
	if l.pending("e1", "g1") {
		t.Error("a written live step is still pending")
	}
	if ok, err := st.LiveDelivered(t.Context(), "e1", "g1"); err != nil || !ok {
		t.Errorf("LiveDelivered = %v, %v after the write", ok, err)
	}
}
