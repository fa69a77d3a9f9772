package main

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The reading side of the h2 publisher: the connection's reader goroutine,
// its frames, and the responses and trailers turned into call results.

// readLoop is the connection's reader goroutine.
func (c *h2pubConn) readLoop() {
	err := c.readFrames()
	c.mu.Lock()
	switch {
	case c.err != nil:
	case c.closed:
		c.err = status.Error(codes.Unavailable, "h2: connection closed")
	case c.goaway != nil:
		c.err = status.Errorf(codes.Unavailable, "h2: connection to %s lost after GOAWAY: %v", c.authority, err)
	default:
		c.err = status.Errorf(codes.Unavailable, "h2: connection to %s lost: %v", c.authority, err)
	}
	calls := c.calls
	c.calls = map[uint32]*h2call{}
	c.active = 0
	c.cond.Broadcast()
	err = c.err
	c.mu.Unlock()
	c.nc.Close()
	for _, call := range calls {
		call.done <- err
	}
	close(c.dead)
}

func (c *h2pubConn) readFrames() error {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.write(func() error { return c.fr.WriteGoAway(0, http2.ErrCode(ce), nil) })
			}
			return err
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if err := c.onData(f); err != nil {
				return err
			}
		case *http2.HeadersFrame:
			c.hdrID, c.hdrEnd, c.hs = f.StreamID, f.StreamEnded(), h2headers{}
			if err := c.onHeaderBlock(f.HeaderBlockFragment(), f.HeadersEnded()); err != nil {
				return err
			}
		case *http2.ContinuationFrame:
			if err := c.onHeaderBlock(f.HeaderBlockFragment(), f.HeadersEnded()); err != nil {
				return err
			}
		case *http2.SettingsFrame:
			if err := c.onSettings(f); err != nil {
				return err
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				if err := c.write(func() error { return c.fr.WritePing(true, data) }); err != nil {
					return err
				}
			}
		case *http2.WindowUpdateFrame:
			c.mu.Lock()
			if f.StreamID == 0 {
				c.sendWin += int64(f.Increment)
			} else if call := c.calls[f.StreamID]; call != nil {
				call.sendWin += int64(f.Increment)
			}
			c.wake()
			c.mu.Unlock()
		case *http2.RSTStreamFrame:
			if call := c.lookup(f.StreamID); call != nil {
				c.complete(f.StreamID, call, rstStatus(f.ErrCode, call.deadline))
			}
		case *http2.GoAwayFrame:
			c.onGoAway(f)
		case *http2.PushPromiseFrame:
			return errors.New("h2: PUSH_PROMISE with push disabled")
		}
	}
}

// onData collects a response's bytes and gives the flow-control windows
// back once half of them is used; flow control counts the frame's whole
// length, padding included.
func (c *h2pubConn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	if call := c.lookup(id); call != nil {
		call.resp = append(call.resp, f.Data()...)
		switch {
		case len(call.resp) > h2MaxResponse:
			if err := c.completeReset(id, call, status.Errorf(codes.ResourceExhausted,
				"h2: response larger than %d bytes", h2MaxResponse)); err != nil {
				return err
			}
		case f.StreamEnded():
			c.complete(id, call, status.Error(codes.Internal, "h2: server ended the stream without trailers"))
		default:
			call.recvUnack += f.Length
			if call.recvUnack > c.window/2 {
				n := call.recvUnack
				call.recvUnack = 0
				if err := c.write(func() error { return c.fr.WriteWindowUpdate(id, n) }); err != nil {
					return err
				}
			}
		}
	}
	c.unacked += f.Length
	if c.unacked > c.connWindow/2 {
		n := c.unacked
		c.unacked = 0
		return c.write(func() error { return c.fr.WriteWindowUpdate(0, n) })
	}
	return nil
}

// emit is the hpack decoder's callback: it keeps the fields a response
// needs.
func (c *h2pubConn) emit(f hpack.HeaderField) {
	switch f.Name {
	case ":status":
		c.hs.status = f.Value
	case "content-type":
		c.hs.contentType = f.Value
	case "grpc-status":
		c.hs.grpcStatus, c.hs.hasGrpcStatus = f.Value, true
	case "grpc-message":
		c.hs.grpcMessage = f.Value
	case "grpc-status-details-bin":
		c.hs.details = append(c.hs.details, f.Value)
	}
}

// onHeaderBlock decodes a fragment of the current header block; at its end
// it handles the block. Every block is decoded, whatever its stream: the
// decoder's table depends on it.
func (c *h2pubConn) onHeaderBlock(frag []byte, end bool) error {
	if _, err := c.dec.Write(frag); err != nil {
		return fmt.Errorf("h2: decoding headers: %w", err)
	}
	if !end {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return fmt.Errorf("h2: decoding headers: %w", err)
	}
	id := c.hdrID
	c.hdrID = 0
	call := c.lookup(id)
	if call == nil {
		return nil
	}
	hs := &c.hs
	isGRPC := call.gotHeaders || grpcContentType(hs.contentType)
	if !isGRPC {
		// Not a gRPC response: the HTTP status says what went wrong (as
		// grpc-go's client decides).
		code, msg := httpStatus(hs.status, hs.contentType)
		if code == codes.OK {
			return nil // informational
		}
		return c.completeReset(id, call, status.Error(code, msg))
	}
	if !c.hdrEnd {
		if call.gotHeaders {
			return c.completeReset(id, call, status.Error(codes.Internal, "h2: a second header block without END_STREAM"))
		}
		call.gotHeaders = true
		return nil
	}
	c.complete(id, call, trailerStatus(hs))
	return nil
}

// onSettings applies the server's SETTINGS and acknowledges them.
func (c *h2pubConn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	tableSize := int64(-1)
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			// A change applies to every open stream's window.
			delta := int64(s.Val) - c.peerInitWin
			for _, call := range c.calls {
				call.sendWin += delta
			}
			c.peerInitWin = int64(s.Val)
		case http2.SettingMaxFrameSize:
			c.maxFrame = s.Val
		case http2.SettingHeaderTableSize:
			tableSize = int64(s.Val)
		}
		return nil
	})
	c.wake()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.write(func() error {
		if tableSize >= 0 {
			c.enc.SetMaxDynamicTableSizeLimit(uint32(min(tableSize, 4096)))
		}
		return c.fr.WriteSettingsAck()
	}); err != nil {
		return err
	}
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	return nil
}

// onGoAway stops new streams and fails the calls the server will not
// process (ids above its last); the others may still complete.
func (c *h2pubConn) onGoAway(f *http2.GoAwayFrame) {
	msg := fmt.Sprintf("h2: server %s sent GOAWAY (%v", c.authority, f.ErrCode)
	if d := f.DebugData(); len(d) > 0 {
		msg += ", " + strconv.Quote(string(d))
	}
	msg += ")"
	c.mu.Lock()
	c.goaway = status.Error(codes.Unavailable, msg)
	var failed []*h2call
	for id, call := range c.calls {
		if id > f.LastStreamID {
			failed = append(failed, call)
			c.remove(id)
		}
	}
	c.wake()
	c.mu.Unlock()
	for _, call := range failed {
		call.done <- status.Error(codes.Unavailable, msg+": call not processed")
	}
}

// decodeUnary decodes a unary response's one gRPC message into resp.
func decodeUnary(b []byte, resp proto.Message) error {
	if len(b) < 5 {
		return status.Error(codes.Internal, "h2: response without a message")
	}
	if b[0] != 0 {
		return status.Error(codes.Internal, "h2: compressed response (none was asked for)")
	}
	if n := binary.BigEndian.Uint32(b[1:5]); uint64(len(b)) != 5+uint64(n) {
		return status.Errorf(codes.Internal, "h2: response of %d bytes does not hold one message of %d", len(b), n)
	}
	if err := proto.Unmarshal(b[5:], resp); err != nil {
		return status.Errorf(codes.Internal, "h2: decoding the response: %v", err)
	}
	return nil
}

// grpcContentType reports whether ct is application/grpc or one of its
// subtypes.
func grpcContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// trailerStatus is the call's end per its trailers (or trailers-only
// response), as grpc-go's client reads them.
func trailerStatus(hs *h2headers) error {
	code := codes.Unknown // grpc-go's value when grpc-status is missing
	if hs.hasGrpcStatus {
		n, err := strconv.ParseInt(hs.grpcStatus, 10, 32)
		if err != nil {
			return status.Errorf(codes.Unknown, "h2: malformed grpc-status %q", hs.grpcStatus)
		}
		code = codes.Code(uint32(n))
	}
	if code == codes.OK {
		return nil
	}
	msg := decodeGrpcMessage(hs.grpcMessage)
	if len(hs.details) == 1 {
		if raw, err := decodeBinHeader(hs.details[0]); err == nil {
			st := new(spb.Status)
			if proto.Unmarshal(raw, st) == nil {
				if st.Code == int32(code) {
					return status.FromProto(st).Err()
				}
				return status.Errorf(codes.Internal,
					"grpc-status-details-bin mismatch: grpc-status=%v, grpc-message=%q, grpc-status-details-bin=%+v", code, msg, st)
			}
		}
	}
	return status.Error(code, msg)
}

// decodeBinHeader decodes a -bin header's base64, padded or not.
func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

// decodeGrpcMessage undoes grpc-message's percent-encoding; a malformed
// escape is kept as it is.
func decodeGrpcMessage(msg string) string {
	if !strings.Contains(msg, "%") {
		return msg
	}
	var sb strings.Builder
	for i := 0; i < len(msg); i++ {
		if msg[i] == '%' && i+2 < len(msg) {
			if b, err := strconv.ParseUint(msg[i+1:i+3], 16, 8); err == nil {
				sb.WriteByte(byte(b))
				i += 2
				continue
			}
		}
		sb.WriteByte(msg[i])
	}
	return sb.String()
}

// httpStatus maps a non-gRPC response's HTTP status to a gRPC code and
// message as grpc-go's client does; codes.OK means an informational
// status to skip.
func httpStatus(s, contentType string) (codes.Code, string) {
	if s == "" {
		return codes.Internal, "h2: malformed header: missing HTTP status"
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return codes.Internal, fmt.Sprintf("h2: malformed HTTP status %q", s)
	}
	if n >= 100 && n < 200 {
		return codes.OK, ""
	}
	code := codes.Unknown
	switch n {
	case 400:
		code = codes.Internal
	case 401:
		code = codes.Unauthenticated
	case 403:
		code = codes.PermissionDenied
	case 404:
		code = codes.Unimplemented
	case 429, 502, 503, 504:
		code = codes.Unavailable
	}
	return code, fmt.Sprintf("h2: unexpected HTTP status %d with content-type %q", n, contentType)
}

// rstStatus maps a server's RST_STREAM code as grpc-go's client does: a
// CANCEL once the call's deadline has passed is DeadlineExceeded (the
// server ends calls at the grpc-timeout it was sent).
func rstStatus(code http2.ErrCode, deadline time.Time) error {
	c := codes.Internal
	switch code {
	case http2.ErrCodeFlowControl, http2.ErrCodeEnhanceYourCalm:
		c = codes.ResourceExhausted
	case http2.ErrCodeRefusedStream:
		c = codes.Unavailable
	case http2.ErrCodeCancel:
		c = codes.Canceled
		if !deadline.IsZero() && !deadline.After(time.Now()) {
			c = codes.DeadlineExceeded
		}
	case http2.ErrCodeInadequateSecurity:
		c = codes.PermissionDenied
	}
	return status.Errorf(c, "h2: stream reset by the server (%v)", code)
}

// grpcTimeout encodes d as a grpc-timeout value: at most 8 digits and a
// unit.
func grpcTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"n", time.Nanosecond}, {"u", time.Microsecond}, {"m", time.Millisecond}, {"S", time.Second}, {"M", time.Minute}} {
		if v := (d + u.d - 1) / u.d; v < 1e8 {
			return strconv.FormatInt(int64(v), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(min((d+time.Hour-1)/time.Hour, 1e8-1)), 10) + "H"
}
