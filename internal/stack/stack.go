// Package stack keeps long-lived goroutines' stacks small.
//
// A goroutine's stack grows to the deepest call it makes and shrinks back
// only at a garbage collection, when less than a quarter of it is in use;
// an idle server rarely collects. A stream's handler goroutine lives as
// long as the stream, so one deep call on it (JWT parsing, a database
// driver, a history read) would make every idle stream hold a stack two or
// four times the size it needs to wait. Aside runs such calls on a
// short-lived goroutine instead.
package stack

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
