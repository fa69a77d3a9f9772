//go:build linux

package poll

import (
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waker counts its wake-ups and signals each.
type waker struct {
	n  atomic.Int32
	ch chan struct{}
}

func (w *waker) Wake() {
	w.n.Add(1)
	w.ch <- struct{}{}
}

// pair is a connected loopback pair: the server side's raw connection
// and the client side.
func pair(t *testing.T, l net.Listener) (syscall.RawConn, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	rc, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc, c
}

func wait(t *testing.T, w *waker, what string) {
	t.Helper()
	select {
	case <-w.ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake-up after %s", what)
	}
}

// TestPoller: a parked connection is woken once by its client's bytes,
// once by its client's close, never after Unpark took it; Stop wakes the
// rest and refuses later parks; Drop gives an id back.
func TestPoller(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := New()
	defer p.Stop()

	var (
		es [4]Entry
		ws [4]*waker
		cs [4]net.Conn
	)
	for i := range es {
		ws[i] = &waker{ch: make(chan struct{}, 4)}
		var rc syscall.RawConn
		rc, cs[i] = pair(t, l)
		if !p.Park(&es[i], rc, ws[i]) {
			t.Fatalf("connection %d: Park refused", i)
		}
	}
	if n := p.Parked(); n != 4 {
		t.Fatalf("%d parked, want 4", n)
	}

	// Bytes wake the first, a close the second; once each.
	_, _ = cs[0].Write([]byte("x"))
	wait(t, ws[0], "the client's bytes")
	cs[1].Close()
	wait(t, ws[1], "the client's close")
	_, _ = cs[0].Write([]byte("y"))
	// Unpark takes the third; its client's bytes then wake nobody.
	if !es[2].Unpark() {
		t.Fatal("Unpark of a parked entry reported false")
	}
	if es[2].Unpark() {
		t.Fatal("a second Unpark reported true")
	}
	_, _ = cs[2].Write([]byte("z"))

	// Stop wakes the one still parked, and later parks are refused.
	p.Stop()
	wait(t, ws[3], "Stop")
	for i, w := range ws {
		want := int32(1)
		if i == 2 {
			want = 0
		}
		if n := w.n.Load(); n != want {
			t.Errorf("connection %d woken %d times, want %d", i, n, want)
		}
	}
	rc, _ := pair(t, l)
	if p.Park(new(Entry), rc, ws[0]) {
		t.Error("Park after Stop took the connection")
	}
}

// TestDropGivesIDBack: an entry dropped no longer holds its id, and a new
// entry may take it.
func TestDropGivesIDBack(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := New()
	defer p.Stop()
	w := &waker{ch: make(chan struct{}, 4)}
	var a, b Entry
	rc, _ := pair(t, l)
	if !p.Park(&a, rc, w) {
		t.Fatal("Park refused")
	}
	rc2, _ := pair(t, l)
	if !p.Park(&b, rc2, w) {
		t.Fatal("Park refused")
	}
	p.Drop(&a)
	if n := p.Len(); n != 1 {
		t.Errorf("%d ids held after a Drop, want 1", n)
	}
	p.Drop(&a) // twice: nothing
	p.Drop(new(Entry))
	if n := p.Len(); n != 1 {
		t.Errorf("%d ids held, want 1", n)
	}
}
