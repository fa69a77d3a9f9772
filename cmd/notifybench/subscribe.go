package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// subscriber is one stream over one room. Its goroutine owns the tracker;
// last, received and the end state are read by the coordinator.
type subscriber struct {
	// Touched on every event, first: with thousands of subscribers each
	// event's accounting is bound by cache misses.
	tracker Tracker
	hist    *Histogram
	wire    bool // dec.wire

	id      int
	room    string
	token   string
	last    atomic.Uint64 // last offset received (or started from)
	started atomic.Bool   // Connected received
	ended   atomic.Bool   // the stream ended (for any reason)
	cut     atomic.Bool   // ended by the server as a slow consumer
	err     error         // why the stream ended early; read after done
	done    chan struct{}
	// stopping is set by the coordinator before it cancels the streams, so
	// that their cancellation is not taken for a failure.
	stopping *atomic.Bool
	dec      *decoder
}

// decode decodes one stream message for the subscriber.
func (s *subscriber) decode(b []byte) error {
	if s.wire {
		return decodeWire(b, s)
	}
	return s.dec.decode(b, s)
}

func (s *subscriber) connected(c *notifyv1.Connected) {
	for _, r := range c.Rooms {
		s.tracker.Start(r.Room, r.Epoch, r.Offset)
		if r.Room == s.room {
			s.last.Store(r.Offset)
		}
	}
	s.started.Store(true)
}

func (s *subscriber) event(room, epoch string, offset uint64, sent int64) {
	if !s.tracker.Observe(room, epoch, offset) {
		return
	}
	if room == s.room {
		s.last.Store(offset)
	}
	if sent > 0 {
		s.hist.Record(time.Duration(time.Now().UnixNano() - sent))
	}
}

func (s *subscriber) disconnected(d *notifyv1.Disconnected) {
	if d.Reason == notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER {
		s.tracker.Cut = true
		s.cut.Store(true)
	}
}

// finish records why the stream ended.
func (s *subscriber) finish(err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
		s.tracker.Cut = true
		s.cut.Store(true)
	}
	if !s.stopping.Load() && !s.cut.Load() {
		if err == nil {
			err = errors.New("stream ended by the server")
		}
		s.err = err
	}
	s.ended.Store(true)
	close(s.done)
}

// fleetConfig describes the streams to open.
type fleetConfig struct {
	transport  string // one of transports
	grpcAddr   string
	httpAddr   string
	tlsRoots   *x509.CertPool // the TLS transports: the server's certificate
	conns      int            // gRPC connections the streams are spread over
	parallel   int            // streams being opened at once
	window     int32
	connWindow int32
	decode     string
	shards     int // latency histogram shards
}

// fleet is a set of subscribers and the connections they use.
type fleet struct {
	cfg      fleetConfig
	subs     []*subscriber
	hist     *ShardedHistogram
	conns    []*grpc.ClientConn
	h2       []*h2conn
	web      *http.Client
	ctx      context.Context
	cancel   context.CancelFunc
	stopping atomic.Bool
}

// openFleet connects one subscriber per (room, token) pair and returns once
// every stream has its Connected message, or fails when ctx ends first or
// a stream cannot open. On error everything opened is closed.
func openFleet(ctx context.Context, cfg fleetConfig, rooms, tokens []string, progress func(string)) (*fleet, error) {
	f := &fleet{cfg: cfg, hist: NewShardedHistogram(cfg.shards)}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	switch cfg.transport {
	case "grpc", "grpc-tls":
		if cfg.transport == "grpc-tls" && cfg.tlsRoots == nil {
			return nil, errors.New("--transport grpc-tls: the server's gRPC port must serve TLS (use --spawn)")
		}
		for range max(1, cfg.conns) {
			c, err := dialGRPC(cfg.grpcAddr, cfg.window, cfg.connWindow, cfg.tlsRoots)
			if err != nil {
				f.close()
				return nil, err
			}
			f.conns = append(f.conns, c)
		}
	case "h2":
		for range max(1, cfg.conns) {
			c, err := dialH2(cfg.grpcAddr, cfg.window, cfg.connWindow)
			if err != nil {
				f.close()
				return nil, err
			}
			f.h2 = append(f.h2, c)
		}
	case "grpcweb":
		f.web = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
			ReadBufferSize:      64 << 10,
			WriteBufferSize:     4 << 10,
		}}
	case "grpcweb-h2c":
		// Each stream's client is made by readWeb, as for the next three.
	case "grpcweb-h2", "grpcweb-native", "grpcweb-tls":
		if cfg.tlsRoots == nil {
			return nil, fmt.Errorf("--transport %s: the server's ports must serve TLS (use --spawn)", cfg.transport)
		}
	default:
		return nil, fmt.Errorf("--transport: %q is not %s", cfg.transport, strings.Join(transports, ", "))
	}

	sem := make(chan struct{}, max(1, cfg.parallel))
	var opened sync.WaitGroup
	failed := make(chan error, 1)
	for i := range rooms {
		dec, err := newDecoder(cfg.decode)
		if err != nil {
			f.close()
			return nil, err
		}
		s := &subscriber{
			id: i, room: rooms[i], token: tokens[i],
			hist: f.hist.Shard(i), wire: dec.wire,
			done: make(chan struct{}), stopping: &f.stopping, dec: dec,
		}
		f.subs = append(f.subs, s)
		opened.Add(1)
		go f.run(s, sem, &opened, failed)
	}
	all := make(chan struct{})
	go func() { opened.Wait(); close(all) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-all:
			select {
			case err := <-failed:
				f.close()
				return nil, err
			default:
			}
			return f, nil
		case err := <-failed:
			f.close()
			return nil, err
		case <-ctx.Done():
			f.close()
			return nil, fmt.Errorf("opening %d streams: %w (%d connected)", len(rooms), ctx.Err(), f.startedCount())
		case <-tick.C:
			if progress != nil {
				progress(fmt.Sprintf("%d/%d streams connected", f.startedCount(), len(rooms)))
			}
		}
	}
}

func (f *fleet) startedCount() int {
	n := 0
	for _, s := range f.subs {
		if s.started.Load() {
			n++
		}
	}
	return n
}

// run opens s's stream (holding a slot of sem while it does), reports it
// open, then reads until the stream ends.
func (f *fleet) run(s *subscriber, sem chan struct{}, opened *sync.WaitGroup, failed chan<- error) {
	var once sync.Once
	markOpen := func(err error) {
		once.Do(func() {
			<-sem
			if err != nil {
				select {
				case failed <- fmt.Errorf("stream %d (%s): %w", s.id, s.room, err):
				default:
				}
			}
			opened.Done()
		})
	}
	select {
	case sem <- struct{}{}:
	case <-f.ctx.Done():
		opened.Done()
		s.finish(f.ctx.Err())
		return
	}
	var err error
	switch f.cfg.transport {
	case "grpcweb", "grpcweb-tls", "grpcweb-h2", "grpcweb-native", "grpcweb-h2c":
		err = f.readWeb(s, markOpen)
	case "h2":
		err = f.readH2(s, markOpen)
	default:
		err = f.readGRPC(s, markOpen)
	}
	markOpen(err) // a stream that ended before its Connected failed to open
	s.finish(err)
}

func (f *fleet) readGRPC(s *subscriber, markOpen func(error)) error {
	conn := f.conns[s.id%len(f.conns)]
	ctx := withToken(f.ctx, s.token)
	cs, err := conn.NewStream(ctx, &notifyv1.NotificationService_ServiceDesc.Streams[0], subscribeMethod,
		grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&notifyv1.SubscribeRequest{Rooms: []string{s.room}}); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	var msg rawMsg
	for {
		if err := cs.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.decode(msg.b); err != nil {
			return err
		}
		if s.started.Load() {
			markOpen(nil)
		}
	}
}

// readH2 opens s's stream on its h2 connection and waits for its end; the
// connection's reader goroutine decodes its messages meanwhile. Closing
// the connection (f.close) ends every stream on it.
func (f *fleet) readH2(s *subscriber, markOpen func(error)) error {
	done, err := f.h2[s.id%len(f.h2)].open(s, markOpen)
	if err != nil {
		return err
	}
	return <-done
}

// grpc-web frame flags.
const (
	webTrailerFlag = 0x80
	webFrameHeader = 5
)

// webFrame returns msg as one grpc-web data frame.
func webFrame(msg proto.Message) ([]byte, error) {
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, err
	}
	out := make([]byte, webFrameHeader, webFrameHeader+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...), nil
}

// readWeb runs s over grpc-web: HTTP/1.1 through the fleet's client, or
// HTTP/2 over TLS (to the HTTP port, or to the native one) through a
// client of its own, so that it has a connection of its own.
func (f *fleet) readWeb(s *subscriber, markOpen func(error)) error {
	req := &notifyv1.SubscribeRequest{Rooms: []string{s.room}}
	client, base := f.web, "http://"+f.cfg.httpAddr
	switch f.cfg.transport {
	case "grpcweb-h2", "grpcweb-native":
		addr := f.cfg.httpAddr
		if f.cfg.transport == "grpcweb-native" {
			addr = f.cfg.grpcAddr
		}
		tr := &http.Transport{
			TLSClientConfig:    &tls.Config{RootCAs: f.cfg.tlsRoots},
			ForceAttemptHTTP2:  true,
			DisableCompression: true,
		}
		defer tr.CloseIdleConnections()
		client, base = &http.Client{Transport: tr}, "https://"+addr
	case "grpcweb-tls":
		// HTTP/1.1 only (ALPN offers nothing else), as to a server
		// that serves grpc-web over HTTP/1.1 alone.
		tr := &http.Transport{
			TLSClientConfig:    &tls.Config{RootCAs: f.cfg.tlsRoots, NextProtos: []string{"http/1.1"}},
			TLSNextProto:       map[string]func(string, *tls.Conn) http.RoundTripper{},
			DisableCompression: true,
		}
		defer tr.CloseIdleConnections()
		client, base = &http.Client{Transport: tr}, "https://"+f.cfg.httpAddr
	case "grpcweb-h2c":
		// As a proxy that ends the browser's TLS and passes its HTTP/2
		// on: prior knowledge, no TLS.
		tr := &http.Transport{Protocols: new(http.Protocols), DisableCompression: true}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		client, base = &http.Client{Transport: tr}, "http://"+f.cfg.grpcAddr
	}
	origin := ""
	if f.cfg.transport == "grpcweb-native" || f.cfg.transport == "grpcweb-h2c" {
		// As a browser's page from the HTTP port: another origin, so its
		// connection carries a preflight before the stream.
		origin = "https://" + f.cfg.httpAddr
		if err := webPreflight(f.ctx, client, base, origin); err != nil {
			return err
		}
	}
	return webSubscribe(f.ctx, client, base, s.token, origin, req, func(msg []byte) error {
		if err := s.decode(msg); err != nil {
			return err
		}
		if s.started.Load() {
			markOpen(nil)
		}
		return nil
	})
}

// webSubscribe runs a Subscribe call over grpc-web: an HTTP/1.1 POST whose
// response body is a sequence of frames (1 flag byte, 4 bytes big-endian
// length, message), the last one a trailer frame (flag 0x80) holding the
// status as headers. It calls onMsg with each message (valid until it
// returns) and returns the trailer's status, nil for OK. origin, when
// set, is sent as a browser's page on it would.
func webSubscribe(ctx context.Context, client *http.Client, base, token, origin string, req *notifyv1.SubscribeRequest, onMsg func([]byte) error) error {
	body, err := webFrame(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+subscribeMethod, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("Accept", "application/grpc-web+proto")
	hreq.Header.Set("X-Grpc-Web", "1")
	hreq.Header.Set("Authorization", "Bearer "+token)
	if origin != "" {
		hreq.Header.Set("Origin", origin)
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("grpc-web: HTTP %s", resp.Status)
	}
	if err := webStatus(resp.Header); err != nil {
		return err // trailers-only response
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var hdr [webFrameHeader]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("grpc-web: stream ended without a trailer")
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > 64<<20 {
			return fmt.Errorf("grpc-web: frame of %d bytes", n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		if hdr[0]&webTrailerFlag != 0 {
			h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(buf, "\r\n"...)))).ReadMIMEHeader()
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("grpc-web trailer: %w", err)
			}
			return webStatus(http.Header(h))
		}
		if err := onMsg(buf); err != nil {
			return err
		}
	}
}

// webStatus turns grpc-status / grpc-message headers into an error.
func webStatus(h http.Header) error {
	code := strings.TrimSpace(h.Get("Grpc-Status"))
	if code == "" || code == "0" {
		return nil
	}
	var c uint32
	if _, err := fmt.Sscan(code, &c); err != nil {
		return fmt.Errorf("grpc-web: bad grpc-status %q", code)
	}
	return status.Error(codes.Code(c), h.Get("Grpc-Message"))
}

// waitCaughtUp waits until every live subscriber has reached the top
// offset of its room (top returns it), or until timeout. It returns how
// many were still behind.
func (f *fleet) waitCaughtUp(top func(room string) uint64, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		behind := 0
		for _, s := range f.subs {
			if !s.ended.Load() && s.last.Load() < top(s.room) {
				behind++
			}
		}
		if behind == 0 || time.Now().After(deadline) {
			return behind
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends every stream and waits (at most timeout) for their goroutines.
func (f *fleet) stop(timeout time.Duration) {
	f.stopping.Store(true)
	f.close()
	deadline := time.After(timeout)
	for _, s := range f.subs {
		select {
		case <-s.done:
		case <-deadline:
			return
		}
	}
}

func (f *fleet) close() {
	f.cancel()
	for _, c := range f.conns {
		_ = c.Close()
	}
	for _, c := range f.h2 {
		_ = c.close()
	}
	if f.web != nil {
		f.web.CloseIdleConnections()
	}
}

// fleetTotals sums the subscribers' accounts once they have ended.
type fleetTotals struct {
	Delivered, Lost, Duplicated, Unknown, EpochChanges int64
	Cut, CutMissed                                     int64
	Errors                                             int
	FirstError                                         string
	Unfinished                                         int // goroutines that did not end in time
}

// totals finishes each subscriber's account against top and sums them.
func (f *fleet) totals(top func(room string) uint64) fleetTotals {
	var t fleetTotals
	for _, s := range f.subs {
		select {
		case <-s.done:
		default:
			t.Unfinished++
			continue
		}
		tr := &s.tracker
		tr.Finish(s.room, top(s.room))
		t.Delivered += tr.Delivered
		t.Lost += tr.Lost
		t.Duplicated += tr.Duplicated
		t.Unknown += tr.Unknown
		t.EpochChanges += tr.EpochChanges
		if tr.Cut {
			t.Cut++
			t.CutMissed += tr.Missed
		}
		if s.err != nil {
			t.Errors++
			if t.FirstError == "" {
				t.FirstError = s.err.Error()
			}
		}
	}
	return t
}

// webPreflight sends the CORS preflight a browser's page on origin sends
// before its first grpc-web call to base, and checks that it is granted.
func webPreflight(ctx context.Context, client *http.Client, base, origin string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, base+subscribeMethod, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPost)
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,x-grpc-web")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		return fmt.Errorf("grpc-web preflight from %s: HTTP %s, Access-Control-Allow-Origin %q", origin, resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	return nil
}
