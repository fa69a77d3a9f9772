package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// The h1 REST publisher posts to /v1/events over plain keep-alive HTTP/1.1
// connections, without net/http's client: a call takes an idle connection,
// writes its request (head and JSON body) in one write from the
// connection's buffer, reads the response with the connection's
// bufio.Reader, and gives the connection back; one request at a time per
// connection, no pipelining. net/http's client costs about 75-80 µs of CPU
// per request here (its transport's reader and writer goroutines, header
// maps, a request and a response per call), about as much as the server's
// own REST handling, and on a shared machine that CPU is taken from the
// server being measured. The client is for a notifyd on loopback or a
// trusted network: no TLS, proxies or redirects.

const (
	// h1MaxBody bounds one response body, as h2MaxResponse does a gRPC
	// message.
	h1MaxBody = 64 << 20
	// h1DialTimeout is restPublisher's dial timeout.
	h1DialTimeout = 10 * time.Second
)

// h1StatusError is a response outside 2xx: its status code and (the start
// of) its body. Its text is restPublisher's.
type h1StatusError struct {
	Code int
	Body string
}

func (e *h1StatusError) Error() string {
	return fmt.Sprintf("POST /v1/events: HTTP %d: %.200s", e.Code, e.Body)
}

// errH1Closed is the error of calls after the publisher's close.
var errH1Closed = errors.New("h1 REST publisher closed")

// h1RESTPublisher publishes each request with POST /v1/events (JSON) over
// at most conns keep-alive HTTP/1.1 connections to httpAddr, dialled when
// first needed, with restPublisher's contract: the requests of a call are
// posted one after another on one connection and their responses returned
// in order; on an error the responses of the requests before it. The
// returned func closes the connections; calls after it fail.
func h1RESTPublisher(httpAddr, token string, conns int) (publishFunc, func()) {
	p := newH1Pool(httpAddr, "/v1/events", "Bearer "+token, max(1, conns))
	fn := func(ctx context.Context, reqs []*notifyv1.PublishRequest) ([]*notifyv1.PublishResponse, error) {
		c, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		defer p.put(c)
		out := make([]*notifyv1.PublishResponse, 0, len(reqs))
		for _, r := range reqs {
			body, err := protojson.MarshalOptions{}.MarshalAppend(c.body[:0], r)
			if err != nil {
				return out, err
			}
			c.body = body
			data, err := c.post(ctx, body)
			if err != nil {
				return out, err
			}
			pr := new(notifyv1.PublishResponse)
			if err := protojson.Unmarshal(data, pr); err != nil {
				return out, fmt.Errorf("POST /v1/events: response: %w", err)
			}
			out = append(out, pr)
		}
		return out, nil
	}
	return fn, p.close
}

// h1Pool is a fixed set of HTTP/1.1 connections to one address; a caller
// takes an idle one from the channel and puts it back when done, so a
// connection serves one request at a time.
type h1Pool struct {
	addr string
	// head is the request up to the Content-Length value: request line,
	// Host, Content-Type and Authorization.
	head []byte
	idle chan *h1conn

	mu       sync.Mutex // guards closed and every conn's nc assignments
	closed   bool
	isClosed atomic.Bool // closed, read without mu
	conns    []*h1conn
}

func newH1Pool(addr, path, auth string, n int) *h1Pool {
	p := &h1Pool{addr: addr, idle: make(chan *h1conn, n)}
	p.head = fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: %s\r\nContent-Length: ", path, addr, auth)
	for range n {
		c := &h1conn{p: p}
		p.conns = append(p.conns, c)
		p.idle <- c
	}
	return p
}

// get takes an idle connection, waiting for one if all are in use.
func (p *h1Pool) get(ctx context.Context) (*h1conn, error) {
	if p.isClosed.Load() {
		return nil, errH1Closed
	}
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *h1Pool) put(c *h1conn) { p.idle <- c }

// close closes every connection, in use or not; their calls fail and later
// calls fail with errH1Closed.
func (p *h1Pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.isClosed.Store(true)
	for _, c := range p.conns {
		if c.nc != nil {
			c.nc.Close()
		}
	}
}

// h1conn is one connection of a pool, used by the caller that took it from
// the pool: nc and br are nil until the first request and after a failure.
type h1conn struct {
	p    *h1Pool
	nc   net.Conn
	br   *bufio.Reader
	wbuf []byte // the request being written
	body []byte // the caller's JSON body
	rbuf []byte // the last response's body
	// reused is set once a response has been read on nc.
	reused bool
}

// dial connects c unless the pool is closed.
func (c *h1conn) dial(ctx context.Context) error {
	nc, err := (&net.Dialer{Timeout: h1DialTimeout}).DialContext(ctx, "tcp", c.p.addr)
	if err != nil {
		return err
	}
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if c.p.closed {
		nc.Close()
		return errH1Closed
	}
	c.nc, c.reused = nc, false
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 8<<10)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

// drop closes c's connection; the next request dials again.
func (c *h1conn) drop() {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// post sends body as one request and returns the response's body, valid
// until c's next request. A request on a kept-alive connection that the
// server closed before answering (EOF or reset before the first byte of a
// response, as when its idle timeout ends the connection while the request
// is on its way) is sent once more on a new connection, as net/http does
// for a connection the server closed while idle. A failed connection is
// closed; the next request dials a new one.
func (c *h1conn) post(ctx context.Context, body []byte) ([]byte, error) {
	c.wbuf = append(c.wbuf[:0], c.p.head...)
	c.wbuf = strconv.AppendInt(c.wbuf, int64(len(body)), 10)
	c.wbuf = append(c.wbuf, "\r\n\r\n"...)
	c.wbuf = append(c.wbuf, body...)
	for attempt := 0; ; attempt++ {
		if c.nc == nil {
			if err := c.dial(ctx); err != nil {
				return nil, fmt.Errorf("POST /v1/events: %w", err)
			}
		}
		reused := c.reused
		data, started, err := c.roundTrip(ctx)
		if err == nil {
			return data, nil
		}
		var se *h1StatusError
		if errors.As(err, &se) {
			return nil, err
		}
		c.drop()
		if c.p.isClosed.Load() {
			return nil, errH1Closed
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("POST /v1/events: %w", cerr)
		}
		if reused && !started && attempt == 0 && serverClosed(err) {
			continue
		}
		return nil, fmt.Errorf("POST /v1/events: %w", err)
	}
}

// serverClosed reports whether err is the end of a connection by its peer.
func serverClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// roundTrip writes c.wbuf and reads the response. started reports whether
// any byte of the response was read. On an error other than an
// *h1StatusError (returned once the whole response is read) the connection
// must be dropped.
func (c *h1conn) roundTrip(ctx context.Context) (data []byte, started bool, err error) {
	nc := c.nc
	if ctx.Done() != nil {
		// The context's end unblocks the write or read in progress.
		stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
		defer func() {
			if !stop() {
				// The deadline may be set: the connection is spoilt
				// for the next request, even if this one succeeded.
				c.drop()
			}
		}()
	}
	if _, err := nc.Write(c.wbuf); err != nil {
		return nil, false, err
	}
	code, keep, started, err := c.readResponse()
	if err != nil {
		return nil, started, err
	}
	if !keep {
		c.drop()
	} else {
		c.reused = true
	}
	if code < 200 || code > 299 {
		return nil, true, &h1StatusError{Code: code, Body: string(c.rbuf)}
	}
	return c.rbuf, true, nil
}

// readResponse reads one response into c.rbuf (its body) and returns its
// status code and whether the connection may carry another request.
// Informational (1xx) responses are skipped.
func (c *h1conn) readResponse() (code int, keep, started bool, err error) {
	br := c.br
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, len(line) > 0 || started, err
		}
		started = true
		// HTTP/1.x SP 3DIGIT [SP reason] CRLF
		if len(line) < 13 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, false, true, fmt.Errorf("malformed status line %q", trimCRLF(line))
		}
		keep = line[7] == '1'
		code = 0
		for _, d := range line[9:12] {
			code = code*10 + int(d-'0')
			if d < '0' || d > '9' {
				code = -1000
			}
		}
		if code < 100 || (line[12] != ' ' && line[12] != '\r' && line[12] != '\n') {
			return 0, false, true, fmt.Errorf("malformed status line %q", trimCRLF(line))
		}
		length, chunked := int64(-1), false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				if errors.Is(err, bufio.ErrBufferFull) {
					err = errors.New("response header line too long")
				}
				return 0, false, true, err
			}
			line = trimCRLF(line)
			if len(line) == 0 {
				break
			}
			i := bytes.IndexByte(line, ':')
			if i <= 0 {
				return 0, false, true, fmt.Errorf("malformed header line %q", line)
			}
			name, value := line[:i], bytes.TrimSpace(line[i+1:])
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || n < 0 || (length >= 0 && n != length) {
					return 0, false, true, fmt.Errorf("bad Content-Length %q", value)
				}
				length = n
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				if !bytes.EqualFold(value, []byte("chunked")) {
					return 0, false, true, fmt.Errorf("unsupported Transfer-Encoding %q", value)
				}
				chunked = true
			case bytes.EqualFold(name, []byte("Connection")):
				if hasToken(value, "close") {
					keep = false
				} else if hasToken(value, "keep-alive") {
					keep = true
				}
			}
		}
		if code >= 100 && code < 200 {
			if code == 101 {
				return 0, false, true, errors.New("unexpected 101 Switching Protocols")
			}
			continue
		}
		c.rbuf = c.rbuf[:0]
		switch {
		case code == 204 || code == 304:
		case chunked:
			if c.rbuf, err = readChunked(br, c.rbuf); err != nil {
				return 0, false, true, err
			}
		case length >= 0:
			if length > h1MaxBody {
				return 0, false, true, fmt.Errorf("response of %d bytes (at most %d)", length, h1MaxBody)
			}
			if c.rbuf, err = readN(br, c.rbuf, int(length)); err != nil {
				return 0, false, true, err
			}
		default:
			// No length: the body ends with the connection.
			keep = false
			if c.rbuf, err = readAllMax(br, c.rbuf); err != nil {
				return 0, false, true, err
			}
		}
		return code, keep, true, nil
	}
}

// readN appends n bytes of br to buf.
func readN(br *bufio.Reader, buf []byte, n int) ([]byte, error) {
	l := len(buf)
	if cap(buf)-l < n {
		buf = append(buf[:cap(buf)], make([]byte, l+n-cap(buf))...)
	}
	buf = buf[:l+n]
	if _, err := io.ReadFull(br, buf[l:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf[:l], err
	}
	return buf, nil
}

// readChunked appends a chunked body of br to buf and reads its trailer.
func readChunked(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return buf, chunkErr(err)
		}
		line = trimCRLF(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 63)
		if err != nil {
			return buf, fmt.Errorf("malformed chunk size %q", line)
		}
		if n == 0 {
			// Trailer fields, up to an empty line.
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return buf, chunkErr(err)
				}
				if len(trimCRLF(line)) == 0 {
					return buf, nil
				}
			}
		}
		if uint64(len(buf))+n > h1MaxBody {
			return buf, fmt.Errorf("chunked response over %d bytes", h1MaxBody)
		}
		if buf, err = readN(br, buf, int(n)); err != nil {
			return buf, err
		}
		line, err = br.ReadSlice('\n')
		if err != nil {
			return buf, chunkErr(err)
		}
		if len(trimCRLF(line)) != 0 {
			return buf, errors.New("malformed chunked body: no CRLF after a chunk")
		}
	}
}

func chunkErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		return errors.New("malformed chunked body: line too long")
	}
	return err
}

// readAllMax appends br's bytes to buf up to EOF, at most h1MaxBody.
func readAllMax(br *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := br.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > h1MaxBody {
			return buf, fmt.Errorf("response over %d bytes", h1MaxBody)
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func trimCRLF(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// hasToken reports whether the comma-separated list v holds token (ASCII
// case-insensitively).
func hasToken(v []byte, token string) bool {
	for part := range bytes.SplitSeq(v, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
			return true
		}
	}
	return false
}
