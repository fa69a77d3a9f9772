package main

// The attack suite's cases of malformed input (1, 11 to 13): invalid
// settings, malformed frames, an oversized header, requests that are not
// gRPC. TestAttack and the case table are in attack_test.go.

import (
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// 1. Invalid SETTINGS values, then a request: a connection error of the
// type RFC 9113 §6.5.2 gives each. grpc-go's server checks only
// INITIAL_WINDOW_SIZE (FLOW_CONTROL_ERROR): it ignores an invalid
// MAX_FRAME_SIZE or ENABLE_PUSH (it never pushes, and writes frames of at
// most 16 KiB whatever the client allows) and answers the request. So the
// case accepts the RFC's connection error or the setting ignored with the
// request answered, within reactTimeout; never a hang.
func attackInvalidSettings(t *testing.T, e *attackEnv) {
	for _, v := range []struct {
		name    string
		setting http2.Setting
		code    http2.ErrCode
	}{
		{"max-frame-size-0", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 0}, http2.ErrCodeProtocol},
		{"max-frame-size-2^24", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, http2.ErrCodeProtocol},
		{"enable-push-2", http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
		{"initial-window-size-2^31", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := e.dial(t, dialOpts{})
			c.settings(v.setting)
			id := c.publish(e.svc, "restaurant:atk")
			_ = c.flush() // the server may close first
			r := c.startReader()
			if expectErrorOrServed(t, r, v.code, 0, id, reactTimeout) {
				t.Logf("setting ignored, request answered: %s", r.describe())
			}
		})
	}
}

// 11. Malformed frames, each on a connection of its own, with the error
// RFC 9113 requires. Where grpc-go's server ignores a violation instead
// (DATA on a closed or an idle stream, a window overflow on the connection
// or on a stream, a TE field other than "trailers"), the case accepts that
// too: the RFC's error, or the violation ignored with the connection still
// serving calls; which one happened is logged.
func attackMalformedFrames(t *testing.T, e *attackEnv) {
	type check func(t *testing.T, c *rawConn, r *reader, id uint32)
	connErr := func(code http2.ErrCode) check {
		return func(t *testing.T, _ *rawConn, r *reader, _ uint32) { expectConnError(t, r, code, reactTimeout) }
	}
	streamErr := func(code http2.ErrCode) check {
		return func(t *testing.T, _ *rawConn, r *reader, id uint32) { expectStreamError(t, r, id, code, reactTimeout) }
	}
	// orIgnored accepts, besides the RFC's stream error, a server that
	// ignores the frame and goes on serving the connection.
	orIgnored := func(code http2.ErrCode) check {
		return func(t *testing.T, c *rawConn, r *reader, id uint32) {
			next := c.publish(e.svc, "restaurant:atk")
			_ = c.flush()
			if expectErrorOrServed(t, r, code, id, next, reactTimeout) {
				t.Logf("violation ignored (as grpc-go does), the connection serves: %s", r.describe())
			}
		}
	}
	// connErrOrIgnored accepts, besides the RFC's connection error, a
	// server that ignores the frame and goes on serving the connection.
	connErrOrIgnored := func(code http2.ErrCode) check {
		return func(t *testing.T, c *rawConn, r *reader, _ uint32) {
			next := c.publish(e.svc, "restaurant:atk")
			_ = c.flush()
			if expectErrorOrServed(t, r, code, 0, next, reactTimeout) {
				t.Logf("violation ignored (as grpc-go does), the connection serves: %s", r.describe())
			}
		}
	}
	// requestErrOrServed accepts, besides the RFC's stream error for a
	// malformed request, a server that serves the request.
	requestErrOrServed := func(code http2.ErrCode) check {
		return func(t *testing.T, c *rawConn, r *reader, id uint32) {
			if expectErrorOrServed(t, r, code, id, id, reactTimeout) {
				t.Logf("malformed request served (as grpc-go does): %s", r.describe())
			}
		}
	}
	// openStream opens a call without its message: an open stream.
	openStream := func(c *rawConn) uint32 {
		id := c.newStream()
		c.headers(id, false, requestFields(e.d.grpcAddr, publishPath, e.svc)...)
		return id
	}
	reqWith := func(mutate func([]hpack.HeaderField) []hpack.HeaderField) func(c *rawConn) uint32 {
		return func(c *rawConn) uint32 {
			id := c.newStream()
			c.headers(id, false, mutate(requestFields(e.d.grpcAddr, publishPath, e.svc))...)
			c.data(id, true, grpcMessage(publishRequest("restaurant:atk", "tx")))
			return id
		}
	}
	// completedCall runs a whole call and waits for its response.
	completedCall := func(t *testing.T, c *rawConn, r *reader) uint32 {
		id := c.publish(e.svc, "restaurant:atk")
		c.mustFlush()
		expectCallOK(t, r, id, reactTimeout)
		return id
	}
	for _, v := range []struct {
		name   string
		send   func(t *testing.T, c *rawConn, r *reader) uint32 // returns the stream at fault, if any
		expect check
	}{
		{"frame-larger-than-max-frame-size", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders, c.newStream(), make([]byte, c.maxFrame()+1))
			return 0
		}, connErr(http2.ErrCodeFrameSize)},
		{"data-on-stream-0", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameData, 0, 0, []byte("x"))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"headers-on-stream-0", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 0, c.block(requestFields(e.d.grpcAddr, publishPath, e.svc)...))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"settings-on-stream-1", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameSettings, 0, 1, nil)
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"ping-on-stream-1", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FramePing, 0, 1, make([]byte, 8))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"goaway-on-stream-1", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameGoAway, 0, 1, make([]byte, 8))
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"data-padding-too-long", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			id := openStream(c)
			c.raw(http2.FrameData, http2.FlagDataPadded, id, []byte{10, 'x'})
			return id
		}, connErr(http2.ErrCodeProtocol)},
		{"headers-padding-too-long", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			// §6.2 makes this a PROTOCOL_ERROR without saying of the stream
			// or the connection: grpc-go resets the stream.
			id := c.newStream()
			c.raw(http2.FrameHeaders, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, id, []byte{10, 0x82})
			return id
		}, streamErr(http2.ErrCodeProtocol)},
		{"settings-length-7", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FrameSettings, 0, 0, make([]byte, 7))
			return 0
		}, connErr(http2.ErrCodeFrameSize)},
		{"ping-length-7", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.raw(http2.FramePing, 0, 0, make([]byte, 7))
			return 0
		}, connErr(http2.ErrCodeFrameSize)},
		{"window-update-0-on-connection", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.windowUpdate(0, 0)
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"window-update-0-on-stream", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			id := openStream(c)
			c.windowUpdate(id, 0)
			return id
		}, streamErr(http2.ErrCodeProtocol)},
		{"data-on-closed-stream", func(t *testing.T, c *rawConn, r *reader) uint32 {
			id := completedCall(t, c, r)
			c.data(id, false, []byte("x"))
			return id
		}, orIgnored(http2.ErrCodeStreamClosed)},
		{"data-on-idle-stream", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			// A stream id above the next call's, never opened.
			openStream(c)
			c.data(c.nextID+2, false, []byte("x"))
			return 0
		}, connErrOrIgnored(http2.ErrCodeProtocol)},
		{"window-overflow-on-connection", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.windowUpdate(0, 1<<31-1)
			return 0
		}, connErrOrIgnored(http2.ErrCodeFlowControl)},
		{"window-overflow-on-stream", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			id := openStream(c)
			c.windowUpdate(id, 1<<31-1)
			return id
		}, orIgnored(http2.ErrCodeFlowControl)},
		{"even-stream-id", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			c.headers(2, true, requestFields(e.d.grpcAddr, publishPath, e.svc)...)
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"decreasing-stream-id", func(t *testing.T, c *rawConn, r *reader) uint32 {
			c.nextID = 5
			completedCall(t, c, r)
			c.nextID = 3
			c.publish(e.svc, "restaurant:atk")
			return 0
		}, connErr(http2.ErrCodeProtocol)},
		{"uppercase-header-name", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				return append(f, hpack.HeaderField{Name: "X-Upper", Value: "1"})
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"two-path-fields", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				return append([]hpack.HeaderField{{Name: ":path", Value: publishPath}}, f...)
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"pseudo-header-after-regular", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				var pseudo, regular []hpack.HeaderField
				for _, hf := range f {
					if hf.Name == ":authority" {
						pseudo = append(pseudo, hf)
					} else {
						regular = append(regular, hf)
					}
				}
				return append(regular, pseudo...)
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"connection-header", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				return append(f, hpack.HeaderField{Name: "connection", Value: "keep-alive"})
			})(c)
		}, streamErr(http2.ErrCodeProtocol)},
		{"te-not-trailers", func(t *testing.T, c *rawConn, _ *reader) uint32 {
			return reqWith(func(f []hpack.HeaderField) []hpack.HeaderField {
				for i := range f {
					if f[i].Name == "te" {
						f[i].Value = "gzip"
					}
				}
				return f
			})(c)
		}, requestErrOrServed(http2.ErrCodeProtocol)},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := e.open(t)
			r := c.startReader()
			id := v.send(t, c, r)
			_ = c.flush() // the server may close first
			v.expect(t, c, r, id)
		})
	}
}

// 12. One header value of 100 KiB on one stream: that stream alone fails
// (RST_STREAM or a gRPC status) when the header list exceeds the server's
// advertised SETTINGS_MAX_HEADER_LIST_SIZE; the other streams of the same
// connection, one opened before it and one after, keep working.
func attackBigHeader(t *testing.T, e *attackEnv) {
	c := e.open(t)
	r := c.startReader()
	fields := requestFields(e.d.grpcAddr, publishPath, e.svc)
	before := c.newStream()
	c.headers(before, false, fields...)
	c.mustFlush()

	big := c.newStream()
	c.headers(big, false, append(fields, hpack.HeaderField{Name: "x-big", Value: strings.Repeat("b", bigHeader), Sensitive: true})...)
	c.data(big, true, grpcMessage(publishRequest("restaurant:atk", "tx-big")))
	c.mustFlush()
	if !r.wait(reactTimeout, streamDone(big)) {
		t.Errorf("the call with a %d-byte header not answered within %v: %s", bigHeader, reactTimeout, r.describe())
	}

	c.data(before, true, grpcMessage(publishRequest("restaurant:atk", "tx-before")))
	after := c.publish(e.svc, "restaurant:atk")
	_ = c.flush()
	expectCallOK(t, r, before, reactTimeout)
	expectCallOK(t, r, after, reactTimeout)

	limit, advertised := c.serverSetting(http2.SettingMaxHeaderListSize)
	snapshotOf(r, func(s *seen) bool {
		_, reset := s.rst[big]
		ok := !reset && s.resp[big] != nil && s.resp[big].grpcStatus == "0"
		if ok && advertised && limit < bigHeader {
			t.Errorf("a call with a %d-byte header succeeded though the server advertises SETTINGS_MAX_HEADER_LIST_SIZE %d", bigHeader, limit)
		}
		if s.closed != nil {
			t.Errorf("the connection ended: %s", s)
		}
		t.Logf("max header list size %d (advertised %v); server: %s", limit, advertised, s)
		return true
	})
}

// 13. Requests that are not gRPC: grpc-go's server answers HTTP 415
// (Unsupported Media Type) to a content-type other than application/grpc,
// whatever the method, and 405 to a gRPC content-type with a method other
// than POST; the connection goes on serving.
func attackNonGRPC(t *testing.T, e *attackEnv) {
	c := e.open(t)
	r := c.startReader()
	for _, v := range []struct {
		method, contentType string
		status              string
	}{
		{"GET", "text/plain", "415"},
		{"POST", "text/plain", "415"},
		{"GET", "application/grpc", "405"},
	} {
		id := c.newStream()
		c.headers(id, true,
			hpack.HeaderField{Name: ":method", Value: v.method},
			hpack.HeaderField{Name: ":scheme", Value: "http"},
			hpack.HeaderField{Name: ":path", Value: publishPath},
			hpack.HeaderField{Name: ":authority", Value: e.d.grpcAddr},
			hpack.HeaderField{Name: "content-type", Value: v.contentType},
		)
		c.mustFlush()
		if !r.wait(reactTimeout, streamDone(id)) {
			t.Errorf("%s %s not answered within %v: %s", v.method, v.contentType, reactTimeout, r.describe())
			continue
		}
		snapshotOf(r, func(s *seen) bool {
			resp := s.resp[id]
			if resp == nil || resp.status != v.status {
				t.Errorf("%s with content-type %s: want HTTP %s: %s", v.method, v.contentType, v.status, s)
			}
			return true
		})
	}
	id := c.publish(e.svc, "restaurant:atk")
	c.mustFlush()
	expectCallOK(t, r, id, reactTimeout)
}
