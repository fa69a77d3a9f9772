package stack

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"
)

type testKey struct{}

// TestIncoming: the context answers with the metadata until Drop, and
// with its parent's values, deadline and cancel before and after.
func TestIncoming(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), testKey{}, "v"))
	defer cancel()
	in := NewIncoming(parent, metadata.Pairs("authorization", "Bearer t"))
	child, stop := context.WithCancel(context.WithValue(in, struct{}{}, 1))
	defer stop()

	if md, ok := metadata.FromIncomingContext(child); !ok || md.Get("authorization")[0] != "Bearer t" {
		t.Fatalf("metadata before Drop: %v, %v", md, ok)
	}
	DropIncoming(child)
	if md, ok := metadata.FromIncomingContext(child); ok {
		t.Fatalf("metadata after Drop: %v", md)
	}
	if child.Value(testKey{}) != "v" {
		t.Fatal("the parent's value is lost")
	}
	cancel()
	<-child.Done() // a child made below Incoming is its parent's
	if child.Err() != context.Canceled {
		t.Fatalf("child's Err %v", child.Err())
	}
	DropIncoming(context.Background())
}
