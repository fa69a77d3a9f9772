package wire

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// request is what a stream's HEADERS say.
type request struct {
	path        string
	method      string // :method
	contentType string
	encoding    string // grpc-encoding
	timeout     time.Duration
	hasTimeout  bool
	md          metadata.MD
	vals        []string // md's values, one array for all
}

// reserved headers are the transport's; they do not reach the metadata.
func reserved(name string) bool {
	switch name {
	case "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "grpc-message",
		"grpc-status", "grpc-status-details-bin", "grpc-message-type", "grpc-previous-rpc-attempts",
		"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// parseRequest reads the fields of a request's HEADERS.
func parseRequest(fields []hpack.HeaderField) (request, error) {
	var r request
	for _, f := range fields {
		switch f.Name {
		case ":path":
			r.path = f.Value
		case ":method":
			r.method = f.Value
		case ":authority":
			r.add(f.Name, f.Value)
		case ":scheme":
		case "content-type":
			r.contentType = f.Value
			r.add(f.Name, f.Value)
		case "grpc-encoding":
			r.encoding = f.Value
		case "grpc-timeout":
			d, err := parseTimeout(f.Value)
			if err != nil {
				return r, status.Errorf(codes.Internal, "malformed grpc-timeout: %v", err)
			}
			r.timeout, r.hasTimeout = d, true
		default:
			if strings.HasPrefix(f.Name, ":") || reserved(f.Name) {
				continue
			}
			v := f.Value
			if strings.HasSuffix(f.Name, "-bin") {
				b, err := decodeBin(v)
				if err != nil {
					return r, status.Errorf(codes.Internal, "malformed binary metadata %q: %v", f.Name, err)
				}
				v = string(b)
			}
			r.add(f.Name, v)
		}
	}
	return r, nil
}

func (r *request) add(k, v string) {
	if r.md == nil {
		r.md = make(metadata.MD, 4)
		r.vals = make([]string, 0, 8)
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

func decodeBin(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

func encodeBin(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// parseTimeout reads a grpc-timeout value: at most 8 digits and a unit.
func parseTimeout(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 9 {
		return 0, fmt.Errorf("bad length %d", len(s))
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("bad number")
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("bad unit %q", s[len(s)-1])
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, nil
	}
	return time.Duration(n) * unit, nil
}

// encodeMessage percent-encodes a grpc-message value: bytes outside
// printable ASCII and '%' itself.
func encodeMessage(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// statusFields are the trailer fields of st.
func statusFields(enc *hpack.Encoder, st *status.Status) {
	enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(st.Code()))})
	if m := st.Message(); m != "" {
		enc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: encodeMessage(m)})
	}
	if p := st.Proto(); len(p.Details) > 0 {
		if b, err := proto.Marshal(p); err == nil {
			enc.WriteField(hpack.HeaderField{Name: "grpc-status-details-bin", Value: encodeBin(b)})
		}
	}
}

// metadataFields writes md, binary values base64-encoded.
func metadataFields(enc *hpack.Encoder, md metadata.MD) {
	for k, vs := range md {
		if strings.HasPrefix(k, ":") || reserved(k) || k == "content-type" {
			continue
		}
		bin := strings.HasSuffix(k, "-bin")
		for _, v := range vs {
			if bin {
				v = encodeBin([]byte(v))
			}
			enc.WriteField(hpack.HeaderField{Name: k, Value: v})
		}
	}
}
