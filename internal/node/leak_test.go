package node_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine started by them is
// still running once they have all finished.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// github.com/desertbit/timer (used by improbable-eng/grpc-web for
		// its websocket timers) starts one global timer goroutine in its
		// package init; it runs for the life of the process by design.
		goleak.IgnoreTopFunction("github.com/desertbit/timer.timerRoutine"),
	)
}
