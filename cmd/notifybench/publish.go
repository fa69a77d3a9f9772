package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// publishFunc publishes reqs in one call and returns the positions the
// server assigned (nil when the transport does not report them).
type publishFunc func(ctx context.Context, reqs []*notifyv1.PublishRequest) ([]*notifyv1.PublishResponse, error)

// grpcPublisher publishes over gRPC connections, one call per batch: Publish
// for a batch of one, PublishBatch otherwise.
func grpcPublisher(conns []*grpc.ClientConn, token string) publishFunc {
	clients := make([]notifyv1.NotificationServiceClient, len(conns))
	for i, c := range conns {
		clients[i] = notifyv1.NewNotificationServiceClient(c)
	}
	var next atomic.Uint64
	return func(ctx context.Context, reqs []*notifyv1.PublishRequest) ([]*notifyv1.PublishResponse, error) {
		c := clients[next.Add(1)%uint64(len(clients))]
		ctx = withToken(ctx, token)
		if len(reqs) == 1 {
			resp, err := c.Publish(ctx, reqs[0])
			if err != nil {
				return nil, err
			}
			return []*notifyv1.PublishResponse{resp}, nil
		}
		resp, err := c.PublishBatch(ctx, &notifyv1.PublishBatchRequest{Requests: reqs})
		if err != nil {
			return nil, err
		}
		return resp.Results, nil
	}
}

// restPublisher publishes each request with POST /v1/events (JSON) over a
// keep-alive HTTP client of at most conns connections.
func restPublisher(httpAddr, token string, conns int) (publishFunc, func()) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "http://" + httpAddr + "/v1/events"
	auth := "Bearer " + token
	fn := func(ctx context.Context, reqs []*notifyv1.PublishRequest) ([]*notifyv1.PublishResponse, error) {
		out := make([]*notifyv1.PublishResponse, 0, len(reqs))
		for _, r := range reqs {
			body, err := protojson.Marshal(r)
			if err != nil {
				return out, err
			}
			hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return out, err
			}
			hreq.Header.Set("Content-Type", "application/json")
			hreq.Header.Set("Authorization", auth)
			resp, err := client.Do(hreq)
			if err != nil {
				return out, err
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return out, err
			}
			if resp.StatusCode != http.StatusOK {
				return out, fmt.Errorf("POST /v1/events: HTTP %d: %.200s", resp.StatusCode, data)
			}
			var pr notifyv1.PublishResponse
			if err := protojson.Unmarshal(data, &pr); err != nil {
				return out, err
			}
			out = append(out, &pr)
		}
		return out, nil
	}
	return fn, tr.CloseIdleConnections
}

// pubPlan is a paced publishing run.
type pubPlan struct {
	// rate is the target in events per second; 0 publishes as fast as the
	// workers can.
	rate     float64
	duration time.Duration
	batch    int // events per call
	workers  int // concurrent calls
	// maxEvents bounds the events of the run whatever the rate.
	maxEvents int64
	// build returns the request for event i, stamped with the call's start.
	build   func(i int64, sent time.Time) *notifyv1.PublishRequest
	publish publishFunc
	// onResult sees every successful call's responses (positions).
	onResult func([]*notifyv1.PublishResponse)
}

// pubStats is what a publishing run did.
type pubStats struct {
	Published  int64
	Errors     int64
	FirstError string
	Calls      *Histogram // call latency
	Start, End time.Time  // first call start, last call end
}

// rate is the achieved publishing rate in events per second.
func (s *pubStats) rate() float64 {
	d := s.End.Sub(s.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(s.Published) / d
}

// runPublish publishes per plan until its duration or event count is
// reached, or ctx ends. Event k of the run is due at start + k/rate: a
// worker that falls behind calls again at once, so the achieved rate shows
// whether the server kept up.
func runPublish(ctx context.Context, p pubPlan) *pubStats {
	st := &pubStats{Calls: &Histogram{}}
	batch := int64(max(1, p.batch))
	maxEvents := p.maxEvents
	if maxEvents <= 0 {
		maxEvents = 1 << 40
	}
	if p.rate > 0 {
		maxEvents = min(maxEvents, int64(p.rate*p.duration.Seconds()+0.5))
	}
	start := time.Now()
	end := start.Add(p.duration)
	st.Start = start
	var (
		next    atomic.Int64
		pub     atomic.Int64
		errs    atomic.Int64
		lastEnd atomic.Int64
		errOnce sync.Once
		wg      sync.WaitGroup
	)
	for range max(1, p.workers) {
		wg.Go(func() {
			reqs := make([]*notifyv1.PublishRequest, 0, batch)
			for ctx.Err() == nil {
				k := next.Add(batch) - batch
				if k >= maxEvents {
					return
				}
				n := min(batch, maxEvents-k)
				if p.rate > 0 {
					due := start.Add(time.Duration(float64(k) / p.rate * float64(time.Second)))
					if !due.Before(end) {
						return
					}
					if wait := time.Until(due); wait > 0 {
						select {
						case <-time.After(wait):
						case <-ctx.Done():
							return
						}
					}
				}
				now := time.Now()
				if !now.Before(end) {
					return
				}
				reqs = reqs[:0]
				for j := range n {
					reqs = append(reqs, p.build(k+j, now))
				}
				resps, err := p.publish(ctx, reqs)
				done := time.Now()
				if err != nil {
					if ctx.Err() != nil && errors.Is(err, context.Canceled) {
						return
					}
					errs.Add(n)
					errOnce.Do(func() { st.FirstError = err.Error() })
					continue
				}
				st.Calls.Record(done.Sub(now))
				pub.Add(n)
				for {
					l := lastEnd.Load()
					if done.UnixNano() <= l || lastEnd.CompareAndSwap(l, done.UnixNano()) {
						break
					}
				}
				if p.onResult != nil {
					p.onResult(resps)
				}
			}
		})
	}
	wg.Wait()
	st.Published, st.Errors = pub.Load(), errs.Load()
	st.End = time.Unix(0, lastEnd.Load())
	if lastEnd.Load() == 0 {
		st.End = st.Start
	}
	return st
}

// roomTops records, per room, the highest offset the publisher was given.
type roomTops struct {
	index map[string]int
	tops  []atomic.Uint64
}

func newRoomTops(rooms []string) *roomTops {
	t := &roomTops{index: make(map[string]int, len(rooms)), tops: make([]atomic.Uint64, len(rooms))}
	for i, r := range rooms {
		t.index[r] = i
	}
	return t
}

// record is a pubPlan.onResult.
func (t *roomTops) record(resps []*notifyv1.PublishResponse) {
	for _, r := range resps {
		for _, p := range r.Positions {
			i, ok := t.index[p.Room]
			if !ok {
				continue
			}
			for {
				cur := t.tops[i].Load()
				if p.Offset <= cur || t.tops[i].CompareAndSwap(cur, p.Offset) {
					break
				}
			}
		}
	}
}

// top returns room's highest published offset (0 if none).
func (t *roomTops) top(room string) uint64 {
	if i, ok := t.index[room]; ok {
		return t.tops[i].Load()
	}
	return 0
}
