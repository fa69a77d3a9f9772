package node_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/testenv"
)

// TestHTTPConnectionsCountTakenOver: a grpc-web stream over HTTP/1.1 takes
// its connection over from the HTTP server, and stays in
// notify_connections_open{transport="http"} until it closes, as a
// connection the server serves does.
func TestHTTPConnectionsCountTakenOver(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := testCtx(t)
	base := "http://" + n.HTTPAddr()
	// One connection per request, closed with it: the count moves with the
	// streams and this test's scrapes only.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	open := func() float64 {
		return opsScrape(t, ctx, client, base).must(t, "notify_connections_open", "transport", "http")
	}
	// The readiness probes' connections close as their responses end: wait
	// until the count no longer moves.
	before, prev := 0.0, -1.0
	testenv.Eventually(t, 10*time.Second, "connections_open{http} to settle", func() bool {
		before = open()
		settled := before == prev
		prev = before
		return settled
	})

	const streams = 3
	var bodies []io.Closer
	for range streams {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/notify.v1.NotificationService/Subscribe",
			bytes.NewReader(webFrame(t, &notifyv1.SubscribeRequest{Rooms: []string{"guest:g1"}})))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("Authorization", "Bearer "+mint(t, guestClaims))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		ws := &webStream{body: resp.Body}
		if ws.next(t).GetConnected() == nil {
			t.Fatal("the stream's first message is not Connected")
		}
		bodies = append(bodies, resp.Body)
	}
	if got := open(); got != before+streams {
		t.Errorf("connections_open{http} = %v with %d grpc-web streams open, want %v", got, streams, before+streams)
	}
	for _, b := range bodies {
		b.Close()
	}
	testenv.Eventually(t, 10*time.Second, "the closed streams' connections to leave connections_open{http}", func() bool {
		return open() == before
	})
}
