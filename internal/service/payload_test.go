package service

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// TestTakePayloadCoversTheOneof sets each field of PublishRequest's payload
// oneof in turn, as the contract lists them, and checks that takePayload
// finds it, names it, types it and puts the same message in the Event's
// field of the same name.
func TestTakePayloadCoversTheOneof(t *testing.T) {
	oneof := (&notifyv1.PublishRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	evFields := (&notifyv1.Event{}).ProtoReflect().Descriptor().Fields()
	types := notifyv1.EventType(0).Descriptor().Values()
	fields := oneof.Fields()
	if fields.Len() == 0 {
		t.Fatal("the payload oneof has no fields")
	}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		req := &notifyv1.PublishRequest{}
		msg := req.ProtoReflect().NewField(fd)
		req.ProtoReflect().Set(fd, msg)
		ev := &notifyv1.Event{}
		got, name, typ := takePayload(req, ev)
		if got == nil {
			t.Errorf("%s: not taken", fd.Name())
			continue
		}
		if name != string(fd.Name()) {
			t.Errorf("%s: named %q", fd.Name(), name)
		}
		if want := types.ByName(protoreflect.Name("EVENT_TYPE_" + strings.ToUpper(string(fd.Name())))); want == nil || typ != notifyv1.EventType(want.Number()) {
			t.Errorf("%s: type %v", fd.Name(), typ)
		}
		if got != msg.Message().Interface() {
			t.Errorf("%s: a different message", fd.Name())
		}
		efd := evFields.ByName(fd.Name())
		if efd == nil || ev.ProtoReflect().WhichOneof(efd.ContainingOneof()) != efd || ev.ProtoReflect().Get(efd).Message().Interface() != got {
			t.Errorf("%s: not the Event's payload: %v", fd.Name(), ev)
		}
	}
	if got, _, _ := takePayload(&notifyv1.PublishRequest{}, &notifyv1.Event{}); got != nil {
		t.Errorf("no payload gave %v", got)
	}
	// A oneof case holding nil is no event either (prepare checks IsValid).
	got, _, _ := takePayload(&notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_PointsAdded{}}, &notifyv1.Event{})
	if got != nil && got.ProtoReflect().IsValid() {
		t.Errorf("a nil event is valid: %v", got)
	}
}
