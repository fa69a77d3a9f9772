package gateway

import (
	"bytes"
	"encoding/json"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
)

// jsonPb is the REST gateway's JSON marshaler: runtime.JSONPb, except that
// a request body that is exactly one valid JSON value (what checkRequest
// lets through) goes to protojson at once, instead of first being scanned
// and copied by encoding/json as runtime.JSONPb's decoder does. Any other
// body takes runtime.JSONPb's decoder, so results and error messages are
// the same.
type jsonPb struct {
	runtime.JSONPb
}

// NewDecoder returns a decoder of the JSON read from r.
func (j *jsonPb) NewDecoder(r io.Reader) runtime.Decoder {
	return &bodyDecoder{r: r, j: &j.JSONPb}
}

// bodyDecoder decodes one protobuf message from a whole body, or falls back
// to runtime.JSONPb's decoder for good.
type bodyDecoder struct {
	r        io.Reader
	j        *runtime.JSONPb
	fallback runtime.Decoder
}

func (d *bodyDecoder) Decode(v any) error {
	if d.fallback == nil {
		if m, ok := v.(proto.Message); ok {
			b, err := readAll(d.r)
			switch {
			case err != nil:
				d.r = io.MultiReader(bytes.NewReader(b), errReader{err})
			case json.Valid(b) && len(bytes.TrimSpace(b)) > 0:
				// What encoding/json would have handed over: the value
				// without the (JSON) whitespace around it, so protojson's
				// error positions stay the same.
				d.r = bytes.NewReader(nil)
				return d.j.UnmarshalOptions.Unmarshal(bytes.TrimSpace(b), m)
			default:
				d.r = bytes.NewReader(b)
			}
		}
		d.fallback = d.j.NewDecoder(d.r)
	}
	return d.fallback.Decode(v)
}

// readAll reads what is left of r, without a copy when r is a body that
// checkRequest read and nothing has read from since.
func readAll(r io.Reader) ([]byte, error) {
	if bb, ok := r.(*bodyBytes); ok && bb.Len() == len(bb.b) {
		bb.Reset(nil)
		return bb.b, nil
	}
	return io.ReadAll(r)
}

// errReader returns err once the bytes before it are read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// ndjson is the media type of a REST stream (GET and POST /v1/subscribe):
// one JSON object per line.
const ndjson = "application/x-ndjson"

// StreamContentType is the Content-Type of a server stream's response,
// which grpc-gateway writes as one JSON object per line; unary responses
// and errors stay application/json.
func (*jsonPb) StreamContentType(any) string { return ndjson }
