package wire

// grpc-web over HTTP/2 (the gRPC PROTOCOL-WEB document), served beside
// gRPC when Config.WebOrigin is set: a browser that reaches this port over
// TLS gets its stream on a connection the poller can park, instead of on
// an HTTP server's goroutines. Only the binary format is served; the
// base64 one (application/grpc-web-text) is refused with 415.

import (
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/maxloyalty/notify/internal/grpchdr"
)

// webContentType is the content-type of every grpc-web response.
const webContentType = "application/grpc-web+proto"

// webExposed are the response headers a browser's script may read: the
// status of a Trailers-Only response comes in them.
const webExposed = "grpc-status, grpc-message, grpc-status-details-bin, grpc-encoding"

// webTrailerFlag marks the body frame that carries a grpc-web call's
// trailers.
const webTrailerFlag = 0x80

// webKind tells a grpc-web content-type: application/grpc-web, alone or
// with a subtype or parameters, and whether it is the base64 format.
func webKind(ct string) (web, text bool) {
	const base = "application/grpc-web"
	if !strings.HasPrefix(ct, base) {
		return false, false
	}
	rest := ct[len(base):]
	if strings.HasPrefix(rest, "-text") {
		rest, text = rest[len("-text"):], true
	}
	if rest == "" || rest[0] == '+' || rest[0] == ';' {
		return true, text
	}
	return false, false
}

// corsFields are the response header fields that let a browser page on
// origin read a grpc-web response, when the server grants origin: none
// without an Origin (not a browser), only Vary otherwise.
func (s *Server) corsFields(md metadata.MD) metadata.MD {
	origin := first(md, "origin")
	if origin == "" {
		return nil
	}
	out := metadata.MD{"vary": {"Origin"}}
	if s.cfg.WebOrigin(origin, first(md, ":authority")) {
		out["access-control-allow-origin"] = []string{origin}
		out["access-control-expose-headers"] = []string{webExposed}
	}
	return out
}

func first(md metadata.MD, k string) string {
	if v := md[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// preflight answers a CORS preflight (OPTIONS) of a grpc-web call: from a
// granted origin asking for POST, a grant of POST with the headers a
// grpc-web client sends and no credentials (calls carry their token in a
// header, never a cookie); otherwise no grant. It ends the stream.
func (st *stream) preflight(req request) {
	c := st.c
	cors := c.srv.corsFields(req.md)
	granted := cors["access-control-allow-origin"] != nil && first(req.md, "access-control-request-method") == "POST"
	c.mu.Lock()
	defer c.mu.Unlock()
	st.started = true
	// A browser's stream comes after its preflight on the same connection:
	// the preflight counts for neither the streams the connection carried
	// nor its header blocks, so that the stream's connection still sheds
	// its HPACK state (shrinkTable, beginBlockLocked).
	c.opened--
	if st.closed || c.closed {
		return
	}
	b := tableless.Get().(*blockEncoder)
	b.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "204"})
	b.enc.WriteField(hpack.HeaderField{Name: "vary", Value: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"})
	if granted {
		b.enc.WriteField(hpack.HeaderField{Name: "access-control-allow-origin", Value: cors["access-control-allow-origin"][0]})
		b.enc.WriteField(hpack.HeaderField{Name: "access-control-allow-methods", Value: "POST"})
		b.enc.WriteField(hpack.HeaderField{Name: "access-control-allow-headers", Value: strings.Join(grpchdr.WebRequestHeaders, ", ")})
		b.enc.WriteField(hpack.HeaderField{Name: "access-control-max-age", Value: "600"})
	}
	c.sentData.Store(true)
	c.out = appendHeaders(c.outBuf(), st.id, b.buf.Bytes(), true)
	b.buf.Reset()
	tableless.Put(b)
	st.headerSent = true
	remoteDone := st.remoteDone
	c.removeLocked(st)
	if !remoteDone {
		c.rstLocked(st.id, http2.ErrCodeNo)
	}
	c.wakeLocked()
}

// appendWebTrailers appends a grpc-web trailer frame: flag 0x80, the
// length, then the status and trailer metadata as HTTP/1 header lines.
func appendWebTrailers(b []byte, st *status.Status, md metadata.MD) []byte {
	at := len(b)
	b = append(b, webTrailerFlag, 0, 0, 0, 0)
	line := func(k, v string) {
		if !strings.ContainsAny(v, "\r\n") { // would end the line early
			b = appendLine(b, k, v)
		}
	}
	statusFields(st, line)
	metadataFields(md, line)
	n := len(b) - at - 5
	b[at+1], b[at+2], b[at+3], b[at+4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return b
}

func appendLine(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ':', ' ')
	b = append(b, v...)
	return append(b, '\r', '\n')
}

// contentType is a response's content-type.
func contentType(web bool) string {
	if web {
		return webContentType
	}
	return "application/grpc"
}
