package stack

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestAside: fn runs to completion before Aside returns, and a panic in fn
// is raised again on the caller's goroutine instead of ending the process.
func TestAside(t *testing.T) {
	ran := false
	Aside(func() { ran = true })
	if !ran {
		t.Fatal("Aside returned before fn ran")
	}
	defer func() {
		if r := recover(); r != "boom" {
			t.Fatalf("recovered %v, want the panic of fn", r)
		}
	}()
	Aside(func() { panic("boom") })
	t.Fatal("Aside returned after fn panicked")
}

// TestDetached: the call ends once both the handler returned and its end
// was given, in either order, with the first end given; the interceptors'
// ends run last registered first, before the transport's.
func TestDetached(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	var got []string
	record := func(name string) func(error) {
		return func(err error) { got = append(got, fmt.Sprint(name, ":", err)) }
	}
	for _, c := range []struct {
		name  string
		steps func(d *Detached)
		want  []string
	}{
		{"returned then end", func(d *Detached) {
			d.OnEnd(record("inner"))
			d.OnEnd(record("outer"))
			d.Returned(ErrDetached)
			d.End(errA)
			d.End(errB)
		}, []string{"outer:a", "inner:a", "close:a"}},
		{"end then returned", func(d *Detached) {
			d.End(errA)
			d.OnEnd(record("icept"))
			d.Returned(ErrDetached)
		}, []string{"icept:a", "close:a"}},
		{"handler returned an error", func(d *Detached) {
			d.Returned(errB)
			d.End(errA)
		}, []string{"close:b"}},
		{"registered too late", func(d *Detached) {
			d.Returned(ErrDetached)
			if d.OnEnd(record("late")) {
				t.Error("OnEnd after the handler returned registered")
			}
			d.End(nil)
		}, []string{"close:<nil>"}},
	} {
		got = nil
		d := NewDetached(record("close"))
		c.steps(d)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	var none *Detached
	if none.OnEnd(func(error) {}) {
		t.Error("OnEnd registered on a call not detached")
	}
}
