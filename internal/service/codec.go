package service

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// rawResponse is an already encoded notify.v1.SubscribeResponse.
type rawResponse struct {
	// buf is handed to the transport: a shared, immutable frame or a pooled
	// buffer owned by this message.
	buf mem.Buffer
}

// Codec is the server's gRPC codec: protobuf, except that pre-encoded
// responses built by the hub are written as they are, so an event is
// encoded once however many subscribers receive it.
type Codec struct{ base encoding.CodecV2 }

// NewCodec returns the codec to install with grpc.ForceServerCodecV2.
func NewCodec() Codec { return Codec{base: encoding.GetCodecV2(proto.Name)} }

// Marshal implements encoding.CodecV2.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawResponse); ok {
		return mem.BufferSlice{r.buf}, nil
	}
	return c.base.Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error { return c.base.Unmarshal(data, v) }

// Name implements encoding.CodecV2.
func (c Codec) Name() string { return proto.Name }
