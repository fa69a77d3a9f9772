//go:build !linux

package wire

// poller is Linux's (epoll) only: elsewhere every idle connection's reader
// waits on a goroutine of its own.
type poller struct{}

func newPoller() *poller          { return nil }
func (*poller) park(c *conn) bool { return false }
func (*poller) drop(c *conn)      {}
func (*poller) stop()             {}
