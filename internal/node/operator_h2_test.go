package node_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// h2Probe is a raw HTTP/2 client of the native port, for what grpc-go's
// client hides: the server's SETTINGS, GOAWAY frames, refused streams, and
// requests a well-behaved client would not send. One goroutine (the
// test's) writes and reads; reading answers the server's SETTINGS and
// PINGs and returns the flow-control credit of the DATA it reads.
type h2Probe struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	addr string
	next uint32 // the next stream id

	settings   map[http2.SettingID]uint32 // the server's first SETTINGS; nil until read
	connWindow int64                      // the server's connection window: 65535 and its WINDOW_UPDATEs
	pingAcks   int
	goaways    []h2GoAway
	calls      map[uint32]*h2Call
	closed     error // the read error that ended the connection
}

// h2GoAway is one GOAWAY frame received.
type h2GoAway struct {
	lastStreamID uint32
	code         http2.ErrCode
}

// h2Call is what the server sent on one stream.
type h2Call struct {
	fields    []hpack.HeaderField // response headers, then trailers
	data      []byte              // the DATA received, gRPC messages with their prefixes
	ended     bool                // END_STREAM or RST_STREAM received
	reset     bool
	resetCode http2.ErrCode
}

// dialH2Probe connects to addr and sends the client preface and empty
// SETTINGS; the connection is closed when the test ends.
func dialH2Probe(t *testing.T, addr string) *h2Probe {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &h2Probe{t: t, conn: conn, fr: http2.NewFramer(conn, conn), addr: addr, next: 1,
		connWindow: 65535, calls: map[uint32]*h2Call{}}
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.enc = hpack.NewEncoder(&p.hbuf)
	p.must(conn.SetWriteDeadline(time.Now().Add(testTimeout)))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatalf("client preface: %v", err)
	}
	p.must(p.fr.WriteSettings())
	return p
}

func (p *h2Probe) must(err error) {
	p.t.Helper()
	if err != nil {
		p.t.Fatalf("h2 probe write: %v", err)
	}
}

// call opens a stream to the gRPC method path ("/service/Method") with a
// bearer token, sends msg as its only message and ends its side.
func (p *h2Probe) call(path, tok string, msg proto.Message, extra ...hpack.HeaderField) uint32 {
	p.t.Helper()
	id := p.next
	p.next += 2
	p.hbuf.Reset()
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path},
		{Name: ":authority", Value: p.addr},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "authorization", Value: "Bearer " + tok},
	}
	for _, f := range append(fields, extra...) {
		p.must(p.enc.WriteField(f))
	}
	p.calls[id] = &h2Call{}
	p.must(p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: p.hbuf.Bytes(), EndHeaders: true}))
	b, err := proto.Marshal(msg)
	if err != nil {
		p.t.Fatalf("marshal: %v", err)
	}
	frame := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(b)))
	p.must(p.fr.WriteData(id, true, append(frame, b...)))
	return id
}

// subscribe opens a Subscribe call with tok's default rooms.
func (p *h2Probe) subscribe(tok string) uint32 {
	p.t.Helper()
	return p.call("/notify.v1.NotificationService/Subscribe", tok, &notifyv1.SubscribeRequest{})
}

// cancel resets stream id, as a client abandoning its call does.
func (p *h2Probe) cancel(id uint32) {
	p.t.Helper()
	p.must(p.fr.WriteRSTStream(id, http2.ErrCodeCancel))
}

// ping sends a PING; its ACK tells that the server has written everything
// it wrote before reading the PING.
func (p *h2Probe) ping() {
	p.t.Helper()
	p.must(p.fr.WritePing(false, [8]byte{'o', 'p', 'e', 'r', 'a', 't', 'o', 'r'}))
}

// step reads and records one frame before deadline.
func (p *h2Probe) step(deadline time.Time) error {
	if p.closed != nil {
		return p.closed
	}
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		return err
	}
	f, err := p.fr.ReadFrame()
	if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			p.closed = err
		}
		return err
	}
	_ = p.conn.SetWriteDeadline(time.Now().Add(testTimeout))
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			break
		}
		if p.settings == nil {
			p.settings = map[http2.SettingID]uint32{}
			_ = f.ForeachSetting(func(s http2.Setting) error {
				p.settings[s.ID] = s.Val
				return nil
			})
		}
		// As any client must before it acknowledges: the server may
		// shrink the header table its blocks are encoded against.
		_ = f.ForeachSetting(func(s http2.Setting) error {
			if s.ID == http2.SettingHeaderTableSize {
				p.enc.SetMaxDynamicTableSizeLimit(s.Val)
			}
			return nil
		})
		return p.fr.WriteSettingsAck()
	case *http2.PingFrame:
		if f.IsAck() {
			p.pingAcks++
			break
		}
		return p.fr.WritePing(true, f.Data)
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			p.connWindow += int64(f.Increment)
		}
	case *http2.GoAwayFrame:
		p.goaways = append(p.goaways, h2GoAway{lastStreamID: f.LastStreamID, code: f.ErrCode})
	case *http2.MetaHeadersFrame:
		if c := p.calls[f.StreamID]; c != nil {
			c.fields = append(c.fields, f.Fields...)
			c.ended = c.ended || f.StreamEnded()
		}
	case *http2.DataFrame:
		n := uint32(len(f.Data()))
		c := p.calls[f.StreamID]
		if c != nil {
			c.data = append(c.data, f.Data()...)
			c.ended = c.ended || f.StreamEnded()
		}
		if n > 0 {
			if err := p.fr.WriteWindowUpdate(0, n); err != nil {
				return err
			}
			if c != nil && !c.ended {
				return p.fr.WriteWindowUpdate(f.StreamID, n)
			}
		}
	case *http2.RSTStreamFrame:
		if c := p.calls[f.StreamID]; c != nil {
			c.ended, c.reset, c.resetCode = true, true, f.ErrCode
		}
	}
	return nil
}

// await reads frames until cond holds, failing the test if testTimeout
// passes first or the connection ends without cond holding (cond may look
// at p.closed).
func (p *h2Probe) await(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if err := p.step(deadline); err != nil && !cond() {
			p.t.Fatalf("waiting for %s: %v (%s)", what, err, p)
		}
	}
}

// quiet reads frames for d, failing the test if bad becomes true or the
// connection ends.
func (p *h2Probe) quiet(d time.Duration, what string, bad func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if bad() {
			p.t.Fatalf("%s (%s)", what, p)
		}
		err := p.step(deadline)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return
		case err != nil:
			p.t.Fatalf("connection ended while %s should not have happened: %v (%s)", what, err, p)
		}
	}
}

// awaitClosed reads frames until the server closes the connection,
// failing the test if testTimeout passes first.
func (p *h2Probe) awaitClosed(what string) {
	p.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for p.closed == nil {
		err := p.step(deadline)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			p.t.Fatalf("%s: connection still open after %v (%s)", what, testTimeout, p)
		}
	}
}

// settled reads until the server has answered a PING: everything it wrote
// at the start of the connection (SETTINGS, WINDOW_UPDATE) has been read.
func (p *h2Probe) settled() {
	p.t.Helper()
	p.await("the server's SETTINGS", func() bool { return p.settings != nil })
	acks := p.pingAcks
	p.ping()
	p.await("the PING's ACK", func() bool { return p.pingAcks > acks })
}

// messages splits a call's DATA into its gRPC messages, failing the test
// on a compressed or truncated one.
func (p *h2Probe) messages(id uint32) [][]byte {
	p.t.Helper()
	var out [][]byte
	b := p.calls[id].data
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if b[0] != 0 {
			p.t.Fatalf("stream %d: compressed message (flag %d) on an uncompressed call", id, b[0])
		}
		if len(b) < 5+n {
			break // the rest is on its way
		}
		out = append(out, b[5:5+n])
		b = b[5+n:]
	}
	return out
}

// responses decodes a Subscribe call's messages.
func (p *h2Probe) responses(id uint32) []*notifyv1.SubscribeResponse {
	p.t.Helper()
	var out []*notifyv1.SubscribeResponse
	for _, m := range p.messages(id) {
		var r notifyv1.SubscribeResponse
		if err := proto.Unmarshal(m, &r); err != nil {
			p.t.Fatalf("stream %d: message: %v", id, err)
		}
		out = append(out, &r)
	}
	return out
}

// connected reports whether call id has received its Connected message.
func (p *h2Probe) connected(id uint32) bool {
	for _, r := range p.responses(id) {
		if r.GetConnected() != nil {
			return true
		}
	}
	return false
}

// events returns the events call id received.
func (p *h2Probe) events(id uint32) []*notifyv1.Event {
	var out []*notifyv1.Event
	for _, r := range p.responses(id) {
		out = append(out, r.Events...)
	}
	return out
}

// field returns the last value of header name on call id.
func (p *h2Probe) field(id uint32, name string) string {
	v := ""
	for _, f := range p.calls[id].fields {
		if f.Name == name {
			v = f.Value
		}
	}
	return v
}

// String sums up the connection for failure messages.
func (p *h2Probe) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "settings %v, goaways %v, closed %v", p.settings, p.goaways, p.closed)
	for id := uint32(1); id < p.next; id += 2 {
		c := p.calls[id]
		fmt.Fprintf(&b, "; stream %d: ended %v, reset %v %v, %d data bytes, fields %v", id, c.ended, c.reset, c.resetCode, len(c.data), c.fields)
	}
	return b.String()
}
