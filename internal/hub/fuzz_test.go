package hub

import (
	"bytes"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/broker"
)

// fuzzEventData encodes ev the way the service does (deterministically), for seeds.
func fuzzEventData(f *testing.F, ev *notifyv1.Event) []byte {
	f.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzEventType feeds arbitrary broker data to eventType and NewFrame. Neither
// may panic; whenever the data is a valid encoded notify.v1.Event (and room
// and epoch are valid UTF-8, as proto3 strings must be), the frame must decode
// as a SubscribeResponse with exactly that event placed at room, offset and
// epoch, and the frame's Type must be the event's payload type.
func FuzzEventType(f *testing.F) {
	pts := fuzzEventData(f, &notifyv1.Event{
		Id: "ev-1", PublishTime: timestamppb.New(time.Unix(1700000000, 0)),
		Payload: &notifyv1.Event_PointsAdded{PointsAdded: &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 5}},
	})
	act := fuzzEventData(f, &notifyv1.Event{
		Id:      "ev-2",
		Payload: &notifyv1.Event_ActionConfirmed{ActionConfirmed: &notifyv1.ActionConfirmed{ActionId: "a1", GuestId: "g1", RestaurantId: "r1"}},
	})
	// An event that already carries a room, offset and epoch: the appended
	// fields must win.
	placed := fuzzEventData(f, &notifyv1.Event{Id: "ev-3", Room: "admin", Offset: 99, Epoch: "old",
		Payload: &notifyv1.Event_SystemAlert{SystemAlert: &notifyv1.SystemAlert{Title: "t"}}})
	f.Add(pts, "guest:g1", uint64(1), "e1")
	f.Add(act, "restaurant:r1", uint64(1<<63), "")
	f.Add(placed, "admin", uint64(0), "epoch")
	f.Add([]byte{}, "", uint64(0), "")
	f.Add([]byte{0x52, 0x00}, "user:u1", uint64(7), "e")                   // field 10 (points_added), empty
	f.Add([]byte{0xaa, 0x01, 0x00}, "admin", uint64(7), "e")               // field 21 (action_confirmed), empty
	f.Add([]byte{0xb2, 0x01, 0x00}, "admin", uint64(7), "e")               // field 22: not a payload
	f.Add([]byte{0x52, 0xff, 0xff, 0xff, 0xff, 0x0f}, "a", uint64(1), "")  // truncated length
	f.Add([]byte{0x80}, "a", uint64(1), "")                                // truncated tag
	f.Add([]byte{0x0b, 0x0c}, "a", uint64(1), "")                          // group start/end
	f.Add([]byte{0x10, 0x01, 0x52, 0x00, 0x5a, 0x00}, "a", uint64(1), "e") // room as varint, two payloads
	f.Add(append(append([]byte{}, pts...), act...), "guest:g1", uint64(2), "e")

	f.Fuzz(func(t *testing.T, data []byte, room string, offset uint64, epoch string) {
		typ := eventType(data)
		if typ < 0 || typ > maxEventType {
			t.Fatalf("eventType(%x) = %d, outside 0..%d", data, typ, maxEventType)
		}
		msg := broker.Message{Room: room, Offset: offset, Epoch: epoch, Data: data, Time: time.Unix(0, 42)}
		fr := NewFrame(msg)
		if fr.Room != room || fr.Offset != offset || fr.Epoch != epoch || fr.Type != typ || fr.Time != 42 {
			t.Fatalf("NewFrame placed %q/%d/%q type %d time %d, want %q/%d/%q type %d time 42",
				fr.Room, fr.Offset, fr.Epoch, fr.Type, fr.Time, room, offset, epoch, typ)
		}
		// The frame is one well-formed field 1 of length-delimited type.
		num, wt, n := protowire.ConsumeTag(fr.Bytes)
		if n < 0 || num != responseEventField || wt != protowire.BytesType {
			t.Fatalf("frame %x does not start with field 1 (bytes)", fr.Bytes)
		}
		inner, m := protowire.ConsumeBytes(fr.Bytes[n:])
		if m < 0 || n+m != len(fr.Bytes) || !bytes.HasPrefix(inner, data) {
			t.Fatalf("frame %x is not exactly one field holding the data", fr.Bytes)
		}
		if whole := EncodeEvent(msg); !bytes.Equal(whole, inner) {
			t.Fatalf("EncodeEvent = %x, frame holds %x", whole, inner)
		}

		var ev notifyv1.Event
		if proto.Unmarshal(data, &ev) != nil || !utf8.ValidString(room) || !utf8.ValidString(epoch) {
			return
		}
		var resp notifyv1.SubscribeResponse
		if err := proto.Unmarshal(fr.Bytes, &resp); err != nil {
			t.Fatalf("data %x decodes as an Event but its frame %x does not decode as a SubscribeResponse: %v", data, fr.Bytes, err)
		}
		if len(resp.Events) != 1 || resp.Control != nil {
			t.Fatalf("frame decodes as %v, want exactly one event", &resp)
		}
		got := resp.Events[0]
		if got.Room != room || got.Offset != offset || got.Epoch != epoch {
			t.Fatalf("frame's event placed at %q/%d/%q, want %q/%d/%q", got.Room, got.Offset, got.Epoch, room, offset, epoch)
		}
		// Apart from the placement, the event is the data's.
		got.Room, got.Offset, got.Epoch = ev.Room, ev.Offset, ev.Epoch
		if !proto.Equal(got, &ev) {
			t.Fatalf("frame's event %v differs from the data's %v", got, &ev)
		}
		// The type is the payload's when the data is canonical (what the
		// service produces: one payload field). Non-canonical data may
		// repeat payload fields, of which a decoder keeps the last.
		fd := ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("payload"))
		canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(&ev)
		if err == nil && bytes.Equal(canon, data) {
			want := int32(0)
			if fd != nil {
				want = int32(fd.Number()) - payloadFieldBase
			}
			if typ != want {
				t.Fatalf("eventType of canonical event %v = %d, want %d", &ev, typ, want)
			}
		}
	})
}
