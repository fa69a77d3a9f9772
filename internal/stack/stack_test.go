package stack

import "testing"

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
