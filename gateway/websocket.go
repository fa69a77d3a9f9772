package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"nhooyr.io/websocket"
)

// The grpc-web websocket transport (improbable-eng's "grpc-websockets"
// subprotocol), served by wsTransport:
//
//   - the client's first message is the call's headers, as HTTP header
//     lines; each later one is a control byte, 0 followed by bytes of the
//     gRPC request stream (length-prefixed messages, split anywhere), or a
//     lone 1 when the client has finished sending;
//   - the server sends the grpc-web response stream: a header frame (flag
//     0x80, length, header lines), gRPC messages, and a trailer frame with
//     grpc-status, then closes the websocket normally.
//
// Request bytes are streamed into the gRPC server as they arrive, never
// buffered a whole websocket message at a time: the gRPC server's own
// message size limit (--max-message-bytes) applies, as on every other door,
// and a message over it gets RESOURCE_EXHAUSTED in the trailers instead of
// a websocket close.

// wsProtocol is the websocket subprotocol of the transport.
const wsProtocol = "grpc-websockets"

// maxWSHeaderBytes bounds the first message, the call's headers; a larger
// one closes the websocket with 1009 (message too big).
const maxWSHeaderBytes = 64 << 10

// Control bytes that start a client message.
const (
	wsData       = 0
	wsEndOfInput = 1
)

// wsTransport serves grpc-web calls over websockets to a gRPC server's
// ServeHTTP.
type wsTransport struct {
	grpc      http.Handler
	origin    func(*http.Request) bool
	endpoint  func(path string) bool
	passOn    []string // upgrade request headers passed on to the call
	headerMax int64
}

func (t *wsTransport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !t.origin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if !t.endpoint(r.URL.Path) {
		http.Error(w, "unknown method "+r.URL.Path, http.StatusNotFound)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // checked above
		Subprotocols:       []string{wsProtocol},
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered
	}
	defer c.Close(websocket.StatusInternalError, "") // a no-op once closed

	// The call ends with the handler, or when the client goes away.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	c.SetReadLimit(t.headerMax)
	typ, b, err := c.Read(ctx)
	if err != nil {
		return
	}
	if typ != websocket.MessageBinary {
		c.Close(websocket.StatusUnsupportedData, "the headers must be a binary message")
		return
	}
	hdr, err := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(b), strings.NewReader("\r\n")))).ReadMIMEHeader()
	if err != nil {
		c.Close(websocket.StatusProtocolError, "malformed headers")
		return
	}
	ct := hdr.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc-web") || strings.HasPrefix(ct, "application/grpc-web-text") {
		c.Close(websocket.StatusUnsupportedData, "content-type must be application/grpc-web[+proto]")
		return
	}
	// Each message is streamed (see above): the gRPC server bounds it.
	c.SetReadLimit(math.MaxInt64 - 1)

	h := make(http.Header, len(hdr)+len(t.passOn))
	for _, name := range t.passOn {
		if v := r.Header.Values(name); len(v) > 0 {
			h[http.CanonicalHeaderKey(name)] = v
		}
	}
	for k, v := range hdr {
		h[k] = v
	}
	h.Set("Content-Type", "application/grpc"+strings.TrimPrefix(ct, "application/grpc-web"))
	h.Del("Content-Length")

	resp := &wsResponse{c: c, ctx: ctx, header: http.Header{}}
	body := &wsBody{c: c, ctx: ctx, cancel: cancel, resp: resp}
	req := r.Clone(ctx)
	req.Method = http.MethodPost
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/2.0", 2, 0
	req.Header = h
	req.Body = body
	req.ContentLength = -1
	t.grpc.ServeHTTP(resp, req)
	// The gRPC server closes the body once the status is written, and
	// returns once its reader of the body is done; if it answered without
	// a call (stopping), the body is closed here.
	body.Close()
	body.drain.Stop()
	c.Close(websocket.StatusNormalClosure, "")
}

// wsDrainTimeout bounds how long the rest of a request message is read and
// dropped once the call has its status (see wsBody.discard).
const wsDrainTimeout = 5 * time.Second

// wsBody is the call's request body: the bytes of the client's data
// messages, streamed.
type wsBody struct {
	c      *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	resp   *wsResponse

	msg  io.Reader // the data message being read
	done bool      // the client has finished sending

	// discard is set once the call has its status: the rest of the
	// message being read is read and dropped, so that a client still
	// sending it can finish and read the status.
	discard atomic.Bool
	drain   *time.Timer // cancels the call after wsDrainTimeout of that
	closed  bool        // Close ran (on the gRPC server's goroutine)
}

// errWSProtocol is a client message the transport does not define.
var errWSProtocol = errors.New("grpc-websockets: malformed client message")

// Read returns the next bytes of the request stream; io.EOF once the client
// has finished sending. A connection that fails or closes cancels the call.
func (b *wsBody) Read(p []byte) (int, error) {
	for {
		if b.discard.Load() {
			if b.msg != nil {
				_, _ = io.Copy(io.Discard, b.msg)
				b.msg = nil
			}
			// The close handshake reads what follows.
			return 0, io.EOF
		}
		if b.msg != nil {
			n, err := b.msg.Read(p)
			if err == io.EOF {
				b.msg = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				b.cancel()
			}
			return n, err
		}
		if b.done {
			return 0, io.EOF
		}
		typ, r, err := b.c.Reader(b.ctx)
		if err != nil {
			b.cancel() // the client is gone, or the call has ended
			return 0, err
		}
		var ctl [2]byte
		n, err := io.ReadFull(r, ctl[:])
		switch {
		case typ != websocket.MessageBinary || n == 0:
			return 0, b.fail(websocket.StatusUnsupportedData)
		case n == 2 && ctl[0] == wsData:
			b.msg = io.MultiReader(bytes.NewReader(ctl[1:]), r)
		case n == 1 && err == io.ErrUnexpectedEOF && ctl[0] == wsData:
			// An empty data message.
		case n == 1 && err == io.ErrUnexpectedEOF && ctl[0] == wsEndOfInput:
			b.done = true
			// Nothing more is read as the request: watch the connection
			// for the client going away (and answer its pings and close).
			context.AfterFunc(b.c.CloseRead(b.ctx), b.cancel)
			return 0, io.EOF
		case err != nil && err != io.ErrUnexpectedEOF:
			b.cancel()
			return 0, err
		default:
			return 0, b.fail(websocket.StatusProtocolError)
		}
	}
}

func (b *wsBody) fail(code websocket.StatusCode) error {
	b.c.Close(code, errWSProtocol.Error())
	b.cancel()
	return errWSProtocol
}

// Close sends the trailers and stops passing request bytes on: the reader
// drops the rest of the message it is in (for at most wsDrainTimeout) and
// ends, so the gRPC server can return and the websocket be closed. The
// gRPC server calls it once the status is written, from the goroutine that
// writes the response.
func (b *wsBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.discard.Store(true)
	b.drain = time.AfterFunc(wsDrainTimeout, b.cancel)
	b.resp.finish()
	return nil
}

// wsResponse writes the grpc-web response stream to the websocket. The
// gRPC server writes from one goroutine at a time.
type wsResponse struct {
	c      *websocket.Conn
	ctx    context.Context
	header http.Header

	sent     map[string]bool // keys of the header frame
	status   int             // the HTTP status, when not 200
	errBody  []byte          // what an HTTP error said
	buf      []byte          // written since the last Flush
	finished bool
	err      error
}

func (w *wsResponse) Header() http.Header { return w.header }

// WriteHeader sends the header frame, once. A status other than 200 is the
// gRPC server refusing the request before any call: it becomes the
// trailers' status.
func (w *wsResponse) WriteHeader(code int) {
	if w.sent != nil || w.status != 0 {
		return
	}
	if code != http.StatusOK {
		w.status = code
		return
	}
	w.sent = map[string]bool{}
	h := make(http.Header, len(w.header))
	for k, v := range w.header {
		if k == "Trailer" || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		w.sent[k] = true
		h[k] = v
	}
	if ct := h.Get("Content-Type"); strings.HasPrefix(ct, "application/grpc") {
		h.Set("Content-Type", "application/grpc-web"+strings.TrimPrefix(ct, "application/grpc"))
	}
	w.frame(h)
}

func (w *wsResponse) Write(p []byte) (int, error) {
	if w.sent == nil && w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != 0 {
		w.errBody = append(w.errBody, p[:min(len(p), 512-len(w.errBody))]...)
		return len(p), nil
	}
	if w.err != nil {
		return 0, w.err
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Flush sends what was written since the last Flush as one websocket
// message (the gRPC server flushes after each message it writes).
func (w *wsResponse) Flush() {
	if len(w.buf) == 0 || w.err != nil {
		return
	}
	w.send(w.buf)
	if cap(w.buf) > 64<<10 {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
}

// finish flushes and sends the trailer frame: the headers set since the
// header frame (grpc-status, grpc-message, ...), lower-case. Without a
// header frame it is a trailers-only response holding them all.
func (w *wsResponse) finish() {
	if w.finished {
		return
	}
	w.finished = true
	w.Flush()
	t := http.Header{}
	for k, v := range w.header {
		if k == "Trailer" || w.sent[k] {
			continue
		}
		t[strings.ToLower(strings.TrimPrefix(k, http.TrailerPrefix))] = v
	}
	if w.status != 0 {
		// The gRPC server's HTTP error (a request it cannot serve).
		t = http.Header{"grpc-status": {"13"}, "grpc-message": {fmt.Sprintf("HTTP %d: %s", w.status, strings.TrimSpace(string(w.errBody)))}}
	} else if len(t["grpc-status"]) == 0 && !w.sent["Grpc-Status"] {
		// The gRPC server returned without a call: it is stopping.
		t["grpc-status"] = []string{"14"}
		t["grpc-message"] = []string{"the server is stopping"}
	}
	w.frame(t)
}

// frame sends a header or trailer frame: flag 0x80, the length, the lines.
func (w *wsResponse) frame(h http.Header) {
	var b bytes.Buffer
	b.Write([]byte{1 << 7, 0, 0, 0, 0})
	_ = h.Write(&b)
	binary.BigEndian.PutUint32(b.Bytes()[1:5], uint32(b.Len()-5))
	if w.err == nil {
		w.send(b.Bytes())
	}
}

func (w *wsResponse) send(p []byte) {
	if err := w.c.Write(w.ctx, websocket.MessageBinary, p); err != nil {
		w.err = err
	}
}
