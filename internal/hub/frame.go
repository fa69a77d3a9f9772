package hub

import (
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/maxloyalty/notify/internal/broker"
)

// Field numbers of notify.v1.Event and notify.v1.SubscribeResponse that the
// hub writes directly.
const (
	eventRoomField     = 2
	eventOffsetField   = 3
	eventEpochField    = 4
	responseEventField = 1
)

// Frame is one event in one room, encoded once as a notify.v1.SubscribeResponse
// `events` entry. Frames are immutable and shared by every subscriber of the
// room; concatenating frames yields a SubscribeResponse carrying all their
// events, which is how queued events are coalesced into one write.
type Frame struct {
	// Room, Offset and Epoch place an event frame; Room is empty for a
	// control frame (such as an unread count), which is never deduplicated.
	Room   string
	Offset uint64
	Epoch  string
	// Type is the event's notify.v1.EventType (0 for control frames).
	Type int32
	// Time is when the broker accepted the event, in Unix nanoseconds.
	Time int64
	// Bytes is field 1 (tag, length, Event) of a SubscribeResponse, or a
	// whole control field.
	Bytes []byte
	// buf is Bytes as a gRPC buffer, made once for every subscriber.
	buf mem.Buffer
}

// Buffer returns the frame's bytes as a read-only gRPC buffer, shared by
// every stream that sends the frame alone (freeing it does nothing).
func (f *Frame) Buffer() mem.Buffer {
	if f.buf == nil {
		return mem.SliceBuffer(f.Bytes)
	}
	return f.buf
}

// payloadFieldBase maps Event payload field numbers to EventType values:
// field 10 (points_added) is EVENT_TYPE_POINTS_ADDED (1), and so on.
const payloadFieldBase = 9

// eventType finds the payload field of an encoded Event.
func eventType(data []byte) int32 {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return 0
		}
		if num > payloadFieldBase && num <= payloadFieldBase+maxEventType && typ == protowire.BytesType {
			return int32(num) - payloadFieldBase
		}
		data = data[n:]
		m := protowire.ConsumeFieldValue(num, typ, data)
		if m < 0 {
			return 0
		}
		data = data[m:]
	}
	return 0
}

// maxEventType is the highest EventType value.
const maxEventType = 12

// unreadField is SubscribeResponse.unread; countField is UnreadCount.count.
const (
	unreadField = 5
	countField  = 1
)

// NewUnreadFrame encodes a SubscribeResponse control carrying an unread
// count. Coalesced with other frames, the last count wins, as it should.
func NewUnreadFrame(count int64) *Frame {
	inner := protowire.AppendTag(nil, countField, protowire.VarintType)
	inner = protowire.AppendVarint(inner, uint64(count))
	b := protowire.AppendTag(make([]byte, 0, len(inner)+2), unreadField, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)
	return &Frame{Bytes: b, buf: mem.SliceBuffer(b)}
}

// EncodeEvent returns the whole encoded Event of msg: its data with room,
// offset and epoch appended.
func EncodeEvent(msg broker.Message) []byte {
	b := make([]byte, 0, len(msg.Data)+len(msg.Room)+len(msg.Epoch)+16)
	return appendPosition(append(b, msg.Data...), msg)
}

func appendPosition(b []byte, msg broker.Message) []byte {
	b = protowire.AppendTag(b, eventRoomField, protowire.BytesType)
	b = protowire.AppendString(b, msg.Room)
	b = protowire.AppendTag(b, eventOffsetField, protowire.VarintType)
	b = protowire.AppendVarint(b, msg.Offset)
	b = protowire.AppendTag(b, eventEpochField, protowire.BytesType)
	return protowire.AppendString(b, msg.Epoch)
}

// NewFrame encodes msg. The broker's Data is the Event without room, offset
// and epoch; protobuf decoders merge fields in any order, so appending them
// completes the Event without decoding it.
func NewFrame(msg broker.Message) *Frame {
	n := len(msg.Data) +
		protowire.SizeTag(eventRoomField) + protowire.SizeBytes(len(msg.Room)) +
		protowire.SizeTag(eventOffsetField) + protowire.SizeVarint(msg.Offset) +
		protowire.SizeTag(eventEpochField) + protowire.SizeBytes(len(msg.Epoch))
	b := make([]byte, 0, protowire.SizeTag(responseEventField)+protowire.SizeBytes(n))
	b = protowire.AppendTag(b, responseEventField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = appendPosition(append(b, msg.Data...), msg)
	return &Frame{Room: msg.Room, Offset: msg.Offset, Epoch: msg.Epoch, Type: eventType(msg.Data), Time: msg.Time.UnixNano(), Bytes: b, buf: mem.SliceBuffer(b)}
}
