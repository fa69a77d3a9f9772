package validate

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// fuzzPayloadOneof is PublishRequest's payload oneof, as the service reads it.
var fuzzPayloadOneof = (&notifyv1.PublishRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")

// FuzzValidate decodes arbitrary bytes as a notify.v1.PublishRequest and, when
// it carries a payload, validates it as the service does: Event must not
// panic, and must return nil or an error wrapping ErrInvalid that names the
// payload's field path.
func FuzzValidate(f *testing.F) {
	ts := func(s int64, n int32) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: s, Nanos: n} }
	for _, req := range []*notifyv1.PublishRequest{
		{Payload: &notifyv1.PublishRequest_PointsAdded{PointsAdded: &notifyv1.PointsAdded{GuestId: "g1", RestaurantId: "r1", Amount: 10, NewBalance: 10, OccurredAt: timestamppb.New(now)}}},
		{Rooms: []string{"guest:g1"}, IdempotencyKey: "k", Payload: &notifyv1.PublishRequest_PointsRedeemed{PointsRedeemed: &notifyv1.PointsRedeemed{GuestId: "g1", RestaurantId: "r1", Amount: -5}}},
		{Payload: &notifyv1.PublishRequest_PointsExpired{PointsExpired: &notifyv1.PointsExpired{GuestId: "g1", Amount: 50, ExpiryDate: "2026-02-30"}}},
		{Payload: &notifyv1.PublishRequest_CardCreated{CardCreated: &notifyv1.CardCreated{GuestId: "g1", CardId: "c1", RestaurantId: "r1", QrCode: strings.Repeat("q", 100)}}},
		{Payload: &notifyv1.PublishRequest_GuestCardUpdated{GuestCardUpdated: &notifyv1.GuestCardUpdated{GuestId: "g1", CardId: "c1", Status: 42, Tier: -1}}},
		{Payload: &notifyv1.PublishRequest_GuestRegistered{GuestRegistered: &notifyv1.GuestRegistered{GuestId: "g1", RestaurantId: "r1", Email: "a@b"}}},
		{Payload: &notifyv1.PublishRequest_RestaurantGuestJoined{RestaurantGuestJoined: &notifyv1.RestaurantGuestJoined{RestaurantId: "r1", GuestId: "g 1"}}},
		{Payload: &notifyv1.PublishRequest_RestaurantStatusChanged{RestaurantStatusChanged: &notifyv1.RestaurantStatusChanged{RestaurantId: "r1", Status: 1, EstimatedRestore: ts(math.MaxInt64, 0), OccurredAt: ts(math.MinInt64, -1)}}},
		{Payload: &notifyv1.PublishRequest_RestaurantTransaction{RestaurantTransaction: &notifyv1.RestaurantTransaction{RestaurantId: "r1", TransactionId: "t1", Type: 1, Amount: math.MaxInt64, TotalToday: math.MinInt64}}},
		{Payload: &notifyv1.PublishRequest_SystemAlert{SystemAlert: &notifyv1.SystemAlert{Level: 1, Title: "\u00a0", OccurredAt: ts(253402300800, 0)}}},
		{Payload: &notifyv1.PublishRequest_AdminNotification{AdminNotification: &notifyv1.AdminNotification{Type: 1, Priority: 1, Title: "Fraud", OccurredAt: ts(earliestTS-1, 999999999)}}},
		{Payload: &notifyv1.PublishRequest_ActionConfirmed{ActionConfirmed: &notifyv1.ActionConfirmed{ActionId: "a1", Action: 1, GuestId: "g1", RestaurantId: "r1", OccurredAt: ts(earliestTS, 1e9)}}},
		{Rooms: []string{"admin"}}, // no payload
	} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x52, 0x00})             // points_added, empty
	f.Add([]byte{0x52, 0x00, 0x5a, 0x00}) // points_added then points_redeemed: the last wins
	f.Add([]byte{0xaa, 0x01, 0x02, 0x10, 0x7f})

	f.Fuzz(func(t *testing.T, data []byte) {
		var req notifyv1.PublishRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		m := req.ProtoReflect()
		fd := m.WhichOneof(fuzzPayloadOneof)
		if fd == nil {
			return
		}
		payload := m.Get(fd).Message().Interface()
		prefix := string(fd.Name())
		for _, at := range []time.Time{now, time.Unix(0, 0), time.Unix(1<<40, 0)} {
			err := Event(payload, prefix, at)
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Event(%v) = %v, which does not wrap ErrInvalid", payload, err)
			}
			if !strings.HasPrefix(err.Error(), ErrInvalid.Error()+": "+prefix+".") {
				t.Fatalf("Event(%v) = %q, which does not name a field of %s", payload, err, prefix)
			}
		}
	})
}
