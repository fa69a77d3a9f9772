// Package stack keeps long-lived goroutines' stacks small.
//
// A goroutine's stack grows to the deepest call it makes and shrinks back
// only at a garbage collection, when less than a quarter of it is in use;
// an idle server rarely collects. A stream's handler goroutine lives as
// long as the stream, so one deep call on it (JWT parsing, a database
// driver, a history read) would make every idle stream hold a stack two or
// four times the size it needs to wait. Aside runs such calls on a
// short-lived goroutine instead. A transport that lets a handler's
// goroutine go while its call goes on (internal/wire's Detach) saves the
// stack altogether; ErrDetached is the handler's return then, and
// Incoming lets the call's request metadata go once it is.
package stack

import (
	"errors"
	"sync"
)

// Aside runs fn on a short-lived goroutine and waits for it. A panic in fn
// is raised again on the caller's goroutine, so that a recovery further up
// (gRPC's recovery interceptor) sees it as it would without the hop.
func Aside(fn func()) {
	var (
		panicked any
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		fn()
	}()
	<-done
	if panicked != nil {
		panic(panicked)
	}
}

// ErrDetached is what a streaming handler returns when its transport let
// its goroutine go while the call goes on (internal/wire's Detach): the
// call ends later, when the handler's end function is called. An
// interceptor that sees it returned must not take the call for ended; it
// registers what it does at the end with the transport instead (OnEnd).
var ErrDetached = errors.New("stack: the call goes on without its handler's goroutine")

// Detached is the end of a call whose handler let its goroutine go: the
// call ends once both its handler has returned and its end was given,
// run by whichever of End and Returned comes second (the lock orders
// them, so exactly one sees both). The
// end may come first, from another goroutine, while the interceptors are
// still registering theirs on the handler's way out.
type Detached struct {
	close func(error) // the transport's end of the call

	mu    sync.Mutex
	back  bool          // the handler returned
	ended bool          // End was called, or the handler returned anything but ErrDetached
	err   error         // the call's end
	onEnd []func(error) // the interceptors', run last registered first
}

// NewDetached returns the end of a detached call that close ends.
func NewDetached(close func(error)) *Detached { return &Detached{close: close} }

// End gives the call's end, from any goroutine; the first one given wins.
func (d *Detached) End(err error) {
	d.mu.Lock()
	if d.ended {
		d.mu.Unlock()
		return
	}
	d.ended, d.err = true, err
	ready := d.back
	d.mu.Unlock()
	if ready {
		d.run()
	}
}

// Returned is the handler's return: ErrDetached, or any other error, which
// ends the call with it as a handler's return always does.
func (d *Detached) Returned(err error) {
	d.mu.Lock()
	d.back = true
	if !errors.Is(err, ErrDetached) && !d.ended {
		d.ended, d.err = true, err
	}
	ready := d.ended
	d.mu.Unlock()
	if ready {
		d.run()
	}
}

// OnEnd registers fn to run at the call's end, with its end, before close;
// the last registered runs first, as deferred calls do. It is for the
// interceptors, on the handler's goroutine before it returns to the
// transport, and reports whether fn was registered: not on a nil Detached
// (a call not detached), nor once the handler has returned.
func (d *Detached) OnEnd(fn func(error)) bool {
	if d == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.back {
		return false
	}
	d.onEnd = append(d.onEnd, fn)
	return true
}

// run ends the call; End or Returned calls it once, when both have come.
// onEnd no longer changes: registering stops once the handler returned.
func (d *Detached) run() {
	for i := len(d.onEnd) - 1; i >= 0; i-- {
		d.onEnd[i](d.err)
	}
	d.close(d.err)
}
