package wire

// A stream's output: its messages, framed, compressed and queued for
// flow control.

import (
	"bytes"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// errStreamClosed is what sends on a stream the client reset, or on a
// closed connection, return.
var errStreamClosed = status.Error(codes.Canceled, "wire: stream closed")

// sendParts queues one message whose encoding is the concatenation of
// parts.
func (st *stream) sendParts(parts [][]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return st.send(nil, n, func(b []byte) []byte {
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	})
}

// SendMsg implements grpc.ServerStream: it queues one message, blocking
// while more than pendingLimit bytes of the stream's output wait for flow
// control, or the connection's output is full (never for an attached
// stream).
func (st *stream) SendMsg(v any) error {
	data, err := st.c.srv.cfg.Codec.Marshal(v)
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
	}
	defer data.Free()
	return st.send(v, data.Len(), func(b []byte) []byte {
		for _, d := range data {
			b = append(b, d.ReadOnlyData()...)
		}
		return b
	})
}

// send queues one message of n bytes, which fill appends to a buffer; v is
// the message, for the stats handlers.
func (st *stream) send(v any, n int, fill func([]byte) []byte) error {
	c := st.c
	flag := byte(0)
	length := n
	if st.comp != nil {
		z, err := compress(st.comp, fill(make([]byte, 0, n)))
		if err != nil {
			return status.Errorf(codes.Internal, "grpc: error while compressing: %v", err)
		}
		flag, n = 1, len(z)
		fill = func(b []byte) []byte { return append(b, z...) }
	}
	c.mu.Lock()
	for !st.direct && (len(st.pending) > pendingLimit || len(c.out)+c.flushing > maxOutput) && !st.closed && st.finished == nil && !c.closed {
		c.cond.Wait()
	}
	if st.closed || st.finished != nil || c.closed {
		c.mu.Unlock()
		if err := st.ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		return errStreamClosed
	}
	var header *stats.OutHeader
	if !st.headerSent {
		header = c.headersLocked(st)
	}
	c.sentData.Store(true)
	if len(st.pending) == 0 && int64(n+5) <= min(st.sendWindow, c.sendWindow) {
		// The common case: straight into DATA frames.
		out := c.outBuf()
		if n+5 <= frameSize {
			out = appendFrameHeader(out, n+5, http2.FrameData, 0, st.id)
			out = fill(appendMessagePrefix(out, flag, n))
		} else {
			msg := fill(appendMessagePrefix(make([]byte, 0, n+5), flag, n))
			out = appendData(out, st.id, msg)
		}
		c.out = out
		st.sendWindow -= int64(n + 5)
		c.sendWindow -= int64(n + 5)
		if !st.cork {
			c.wakeLocked()
		}
	} else {
		st.pending = fill(appendMessagePrefix(st.pending, flag, n))
		c.flushLocked(st)
	}
	c.mu.Unlock()
	if len(c.stats) > 0 {
		st.tellHeader(header)
		out := &stats.OutPayload{Payload: v, Length: length, CompressedLength: n, WireLength: n + 5, SentTime: time.Now()}
		for _, h := range c.stats {
			h.HandleRPC(st.ctx, out)
		}
	}
	return nil
}

// compress compresses one message with c.
func compress(c encoding.Compressor, msg []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := c.Compress(&buf)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
