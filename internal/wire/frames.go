package wire

import (
	"encoding/binary"

	"golang.org/x/net/http2"
)

// Frames are appended to a connection's output buffer; the writer goroutine
// writes the buffer in one call. The helpers here only format bytes.

func appendFrameHeader(b []byte, length int, t http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b,
		byte(length>>16), byte(length>>8), byte(length),
		byte(t), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendSettings(b []byte, settings ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		b = binary.BigEndian.AppendUint16(b, uint16(s.ID))
		b = binary.BigEndian.AppendUint32(b, s.Val)
	}
	return b
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func appendPing(b []byte, ack bool, data [8]byte) []byte {
	var flags http2.Flags
	if ack {
		flags = http2.FlagPingAck
	}
	b = appendFrameHeader(b, 8, http2.FramePing, flags, 0)
	return append(b, data[:]...)
}

func appendWindowUpdate(b []byte, id uint32, incr uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return binary.BigEndian.AppendUint32(b, incr&0x7fffffff)
}

func appendRST(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return binary.BigEndian.AppendUint32(b, uint32(code))
}

func appendGoAway(b []byte, last uint32, code http2.ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), http2.FrameGoAway, 0, 0)
	b = binary.BigEndian.AppendUint32(b, last&0x7fffffff)
	b = binary.BigEndian.AppendUint32(b, uint32(code))
	return append(b, debug...)
}

// appendData appends p as DATA frames of at most frameSize bytes.
func appendData(b []byte, id uint32, p []byte) []byte {
	for len(p) > 0 {
		n := min(len(p), frameSize)
		b = appendFrameHeader(b, n, http2.FrameData, 0, id)
		b = append(b, p[:n]...)
		p = p[n:]
	}
	return b
}

// appendHeaders appends an encoded header block as a HEADERS frame and as
// many CONTINUATION frames as frameSize requires.
func appendHeaders(b []byte, id uint32, block []byte, endStream bool) []byte {
	first := true
	for {
		n := min(len(block), frameSize)
		var flags http2.Flags
		if n == len(block) {
			flags |= http2.FlagHeadersEndHeaders
		}
		t := http2.FrameContinuation
		if first {
			t = http2.FrameHeaders
			if endStream {
				flags |= http2.FlagHeadersEndStream
			}
		}
		b = appendFrameHeader(b, n, t, flags, id)
		b = append(b, block[:n]...)
		block = block[n:]
		first = false
		if len(block) == 0 {
			return b
		}
	}
}

// appendMessagePrefix appends the gRPC prefix of a message of n bytes:
// flag 1 if it is compressed, then its length.
func appendMessagePrefix(b []byte, flag byte, n int) []byte {
	return binary.BigEndian.AppendUint32(append(b, flag), uint32(n))
}
