package hub

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/maxloyalty/notify/server/broker"
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
	Room   string
	Offset uint64
	Epoch  string
	// Bytes is field 1 (tag, length, Event) of a SubscribeResponse.
	Bytes []byte
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
	b = append(b, msg.Data...)
	b = protowire.AppendTag(b, eventRoomField, protowire.BytesType)
	b = protowire.AppendString(b, msg.Room)
	b = protowire.AppendTag(b, eventOffsetField, protowire.VarintType)
	b = protowire.AppendVarint(b, msg.Offset)
	b = protowire.AppendTag(b, eventEpochField, protowire.BytesType)
	b = protowire.AppendString(b, msg.Epoch)
	return &Frame{Room: msg.Room, Offset: msg.Offset, Epoch: msg.Epoch, Bytes: b}
}
