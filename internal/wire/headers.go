package wire

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/maxloyalty/notify/internal/grpchdr"
)

// request is what a stream's HEADERS say.
type request struct {
	path        string
	method      string // :method
	contentType string
	encoding    string // grpc-encoding
	timeout     time.Duration
	hasTimeout  bool
	length      int64 // content-length; -1: none
	md          metadata.MD
	vals        []string // md's values, one array for all
	mdFields    int      // the fields that go to md: vals' capacity
	web         bool     // a grpc-web call (grpc-web-text is refused)
	preflight   bool     // a CORS preflight (OPTIONS) of a grpc-web call

	// malformed: the request breaks HTTP/2's rules (RFC 9113 §8.2, §8.3)
	// and is reset with PROTOCOL_ERROR.
	malformed bool
	// abort, when set, is the status of a well-formed HTTP/2 request that
	// is not a valid gRPC call, answered with httpStatus as grpc-go does.
	abort      error
	httpStatus int
}

// reserved headers are the transport's; they do not reach the metadata.
func reserved(name string) bool {
	switch name {
	case "te", "grpc-timeout", "grpc-encoding", "grpc-message",
		"grpc-status", "grpc-status-details-bin", "grpc-message-type", "grpc-previous-rpc-attempts",
		"content-length":
		return true
	}
	return false
}

// connectionSpecific headers make an HTTP/2 request malformed (RFC 9113
// §8.2.2).
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// parseRequest reads a request's header fields, which the framer has
// checked already: valid names and values, lower case, pseudo-header
// fields first, known and not repeated. web: grpc-web calls and their
// preflights are served too.
func parseRequest(fields []hpack.HeaderField, web bool) request {
	r := request{length: -1}
	for _, f := range fields {
		if f.Name == ":authority" || !strings.HasPrefix(f.Name, ":") && !reserved(f.Name) && !connectionSpecific(f.Name) {
			r.mdFields++
		}
	}
	var scheme, authority, host int
	var badTimeout, badBin error
	for _, f := range fields {
		switch f.Name {
		case ":path":
			r.path = f.Value
		case ":method":
			r.method = f.Value
		case ":scheme":
			scheme++
		case ":authority":
			authority++
			r.add(f.Name, f.Value)
		case ":protocol":
			r.malformed = true // extended CONNECT is not offered
		case "host":
			host++
			r.add(f.Name, f.Value)
		case "te":
			if f.Value != "trailers" {
				r.malformed = true
			}
		case "content-length":
			n, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil || n < 0 || r.length >= 0 {
				r.malformed = true
			}
			r.length = n
		case "content-type":
			r.contentType = f.Value
			r.add(f.Name, f.Value)
		case "grpc-encoding":
			r.encoding = f.Value
		case "grpc-timeout":
			d, err := grpchdr.ParseTimeout(f.Value)
			if err != nil {
				badTimeout = err
			}
			r.timeout, r.hasTimeout = d, true
		default:
			if connectionSpecific(f.Name) {
				r.malformed = true
				continue
			}
			if reserved(f.Name) {
				continue
			}
			v := f.Value
			if strings.HasSuffix(f.Name, "-bin") {
				b, err := grpchdr.DecodeBin(v)
				if err != nil {
					badBin = fmt.Errorf("malformed binary metadata %q: %v", f.Name, err)
				}
				v = string(b)
			}
			r.add(f.Name, v)
		}
	}
	if r.method == "" || r.path == "" || scheme == 0 {
		r.malformed = true // a request's pseudo-header fields (§8.3.1)
	}
	isWeb, text := webKind(r.contentType)
	r.web = web && isWeb
	switch {
	case r.malformed:
	case authority > 1 || host > 1:
		r.fail(400, codes.Internal, "num values of :authority: %d, num values of host: %d, both must only have 1 value as per HTTP/2 spec", authority, host)
	case web && r.method == "OPTIONS":
		r.preflight = true
	case r.web && text:
		r.fail(415, codes.InvalidArgument, "grpc-web-text is not served on this port: send application/grpc-web+proto")
	case !isGRPC(r.contentType) && !r.web:
		r.fail(415, codes.InvalidArgument, "invalid gRPC request content-type %q", clip(r.contentType))
	case badTimeout != nil:
		r.fail(400, codes.Internal, "malformed grpc-timeout: %v", badTimeout)
	case badBin != nil:
		r.fail(400, codes.Internal, "%v", badBin)
	case authority == 0 && host == 0:
		r.fail(400, codes.Internal, "no host or :authority header present")
	case r.method != "POST":
		r.fail(405, codes.Internal, "Received a HEADERS frame with :method %q which should be POST", clip(r.method))
	}
	if authority == 0 && host == 1 {
		// "If :authority is missing, Host must be renamed to :authority."
		r.md[":authority"] = r.md["host"]
	}
	delete(r.md, "host")
	return r
}

func (r *request) fail(httpStatus int, c codes.Code, format string, args ...any) {
	r.httpStatus = httpStatus
	r.abort = status.Errorf(c, format, args...)
}

// clipLen bounds the client's text quoted in a status message: HPACK lets
// a client repeat a long value in a byte, and the server's answer must not
// be much larger than the request.
const clipLen = 64

// clip cuts s to clipLen bytes, on a character boundary.
func clip(s string) string {
	if len(s) <= clipLen {
		return s
	}
	n := clipLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// isGRPC reports whether a content-type is gRPC's: application/grpc,
// alone or with a subtype after "+" or parameters after ";".
func isGRPC(ct string) bool {
	const base = "application/grpc"
	if !strings.HasPrefix(ct, base) {
		return false
	}
	return len(ct) == len(base) || ct[len(base)] == '+' || ct[len(base)] == ';'
}

func (r *request) add(k, v string) {
	if r.md == nil {
		r.md = make(metadata.MD, 4)
		r.vals = make([]string, 0, r.mdFields)
	}
	if old, ok := r.md[k]; ok {
		r.md[k] = append(old, v) // old is full: this copies
		return
	}
	// Each key's first value is a one-element window of vals, so the
	// usual headers cost one array rather than a slice each.
	r.vals = append(r.vals, v)
	n := len(r.vals)
	r.md[k] = r.vals[n-1 : n : n]
}

// statusFields gives field the trailer fields of st.
func statusFields(st *status.Status, field func(k, v string)) {
	field("grpc-status", strconv.Itoa(int(st.Code())))
	if m := st.Message(); m != "" {
		field("grpc-message", grpchdr.EncodeMessage(m))
	}
	if p := st.Proto(); len(p.Details) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			field("grpc-status-details-bin", grpchdr.EncodeBin(b))
		}
	}
}

// metadataFields gives field md's fields that are not the transport's,
// binary values base64-encoded.
func metadataFields(md metadata.MD, field func(k, v string)) {
	for k, vs := range md {
		if strings.HasPrefix(k, ":") || reserved(k) || connectionSpecific(k) || k == "content-type" {
			continue
		}
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vs {
			if bin {
				v = grpchdr.EncodeBin([]byte(v))
			}
			field(k, v)
		}
	}
}

// blockEncoder is an HPACK encoder and the block it writes.
type blockEncoder struct {
	enc *hpack.Encoder
	buf bytes.Buffer
}

// field writes one field to the block.
func (b *blockEncoder) field(k, v string) {
	_ = b.enc.WriteField(hpack.HeaderField{Name: k, Value: v})
}

func newBlockEncoder() *blockEncoder {
	b := new(blockEncoder)
	b.enc = hpack.NewEncoder(&b.buf)
	return b
}

// tableless holds encoders that index nothing, for connections' first
// header blocks. Their table is 0 bytes from the start, unannounced: a
// decoder's table changes only when the encoder says so, and an encoder
// that never inserts needs none of it.
var tableless = sync.Pool{New: func() any {
	b := newBlockEncoder()
	b.enc.SetMaxDynamicTableSizeLimit(0)
	_ = b.enc.WriteField(hpack.HeaderField{}) // takes the size update the limit queued
	b.buf.Reset()
	return b
}}

// beginBlockLocked returns the encoder for a block of response headers or
// trailers; endBlockLocked takes it back once the block is copied. A
// connection's first block is encoded by a shared encoder without a
// table: a connection that carries one long stream (a phone's or a
// browser's own) then keeps no encoder at all, whose table, maps and
// buffer would cost it more than half a kilobyte for its whole life. The
// second block makes the connection's own encoder, with a table of the
// client's size, and fields are indexed as usual from then on. The client
// was sent no table size update before it, so its table is the size its
// SETTINGS gave, as the new encoder's is.
func (c *conn) beginBlockLocked() *blockEncoder {
	if c.blocks < 2 {
		c.blocks++
	}
	if c.blocks == 1 {
		return tableless.Get().(*blockEncoder)
	}
	if c.enc == nil {
		c.enc = newBlockEncoder()
		c.enc.enc.SetMaxDynamicTableSizeLimit(c.tableLimit)
	}
	return c.enc
}

// endBlockLocked takes back the encoder of a block that was copied.
func (c *conn) endBlockLocked(b *blockEncoder) {
	b.buf.Reset()
	if b != c.enc {
		tableless.Put(b)
	}
}
