//go:build race

package wire

// raceEnabled: the race detector makes sync.Pool drop some of what is
// put in it, so allocation counts do not hold.
const raceEnabled = true
