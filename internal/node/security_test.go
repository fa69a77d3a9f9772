package node_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor
	"google.golang.org/grpc/metadata"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/node"
)

// TestCompressedBomb: a gzip message that inflates past the message bound
// is refused by size after decompression, not accepted because it was
// small on the wire.
func TestCompressedBomb(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.MaxMessageBytes = 64 << 10 })
	ctx := testCtx(t)
	conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.UseCompressor("gzip")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := notifyv1.NewNotificationServiceClient(conn)
	p := pointsAdded("g1", "r1", 1)
	p.Description = strings.Repeat("0", 4<<20) // ~4 KiB of gzip, 4 MiB inflated
	_, err = c.Publish(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+mint(t, serviceClaims)), pointsReq(p))
	wantCode(t, err, codes.ResourceExhausted, "gzip bomb")

	// The node is unharmed.
	publish(t, ctx, c, pointsReq(pointsAdded("g1", "r1", 2)))
}

// TestSlowHeadersAreCut: an HTTP client that trickles its headers is
// disconnected after the header timeout instead of holding the socket.
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *node.Config) { c.HTTPReadHeaderTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(c).ReadString('\n')
	if err == nil {
		// A 408 line is allowed; the connection must close right after.
		_, err = bufio.NewReader(c).ReadString('\n')
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v with headers unfinished", time.Since(start))
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("cut after %v, want about the 300ms header timeout", took)
	}
}
