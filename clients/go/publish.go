package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// Payload is one of the generated event messages: *notifyv1.PointsAdded,
// *notifyv1.PointsRedeemed, *notifyv1.PointsExpired, *notifyv1.CardCreated,
// *notifyv1.GuestCardUpdated, *notifyv1.GuestRegistered,
// *notifyv1.RestaurantGuestJoined, *notifyv1.RestaurantStatusChanged,
// *notifyv1.RestaurantTransaction, *notifyv1.SystemAlert,
// *notifyv1.AdminNotification or *notifyv1.ActionConfirmed.
type Payload = proto.Message

// PublishOption adjusts a publish.
type PublishOption func(*notifyv1.PublishRequest)

// Rooms names the rooms to publish in. Without it the server derives them
// from the event (for PointsAdded: restaurant:{rid}:points and guest:{gid}).
func Rooms(rooms ...string) PublishOption {
	return func(r *notifyv1.PublishRequest) { r.Rooms = append(r.Rooms, rooms...) }
}

// IdempotencyKey sets the publish's idempotency key (at most 128 bytes).
// A publish repeated with the same key by the same publisher within the
// server's window (default 5 minutes) returns the first result, with
// Duplicate set, and is not delivered again. Without it (or with ""), a
// random key is used, which protects the retries of one call only.
func IdempotencyKey(key string) PublishOption {
	return func(r *notifyv1.PublishRequest) {
		if key != "" {
			r.IdempotencyKey = key
		}
	}
}

// NewIdempotencyKey returns a random 128-bit key, hex-encoded.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// NewPublishRequest builds the PublishRequest for payload, with a random
// idempotency key unless the options give one. It fails with an
// InvalidArgument status for a nil or unknown payload.
func NewPublishRequest(payload Payload, opts ...PublishOption) (*notifyv1.PublishRequest, error) {
	req := &notifyv1.PublishRequest{}
	switch p := payload.(type) {
	case *notifyv1.PointsAdded:
		req.Payload = &notifyv1.PublishRequest_PointsAdded{PointsAdded: p}
	case *notifyv1.PointsRedeemed:
		req.Payload = &notifyv1.PublishRequest_PointsRedeemed{PointsRedeemed: p}
	case *notifyv1.PointsExpired:
		req.Payload = &notifyv1.PublishRequest_PointsExpired{PointsExpired: p}
	case *notifyv1.CardCreated:
		req.Payload = &notifyv1.PublishRequest_CardCreated{CardCreated: p}
	case *notifyv1.GuestCardUpdated:
		req.Payload = &notifyv1.PublishRequest_GuestCardUpdated{GuestCardUpdated: p}
	case *notifyv1.GuestRegistered:
		req.Payload = &notifyv1.PublishRequest_GuestRegistered{GuestRegistered: p}
	case *notifyv1.RestaurantGuestJoined:
		req.Payload = &notifyv1.PublishRequest_RestaurantGuestJoined{RestaurantGuestJoined: p}
	case *notifyv1.RestaurantStatusChanged:
		req.Payload = &notifyv1.PublishRequest_RestaurantStatusChanged{RestaurantStatusChanged: p}
	case *notifyv1.RestaurantTransaction:
		req.Payload = &notifyv1.PublishRequest_RestaurantTransaction{RestaurantTransaction: p}
	case *notifyv1.SystemAlert:
		req.Payload = &notifyv1.PublishRequest_SystemAlert{SystemAlert: p}
	case *notifyv1.AdminNotification:
		req.Payload = &notifyv1.PublishRequest_AdminNotification{AdminNotification: p}
	case *notifyv1.ActionConfirmed:
		req.Payload = &notifyv1.PublishRequest_ActionConfirmed{ActionConfirmed: p}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "notify: %T is not an event payload", payload)
	}
	if isNil(payload) {
		return nil, status.Errorf(codes.InvalidArgument, "notify: nil %T payload", payload)
	}
	for _, o := range opts {
		o(req)
	}
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = NewIdempotencyKey()
	}
	return req, nil
}

// isNil reports whether a known payload is a typed nil pointer.
func isNil(p Payload) bool {
	return !p.ProtoReflect().IsValid()
}

// Publish sends one event. The same call's retries (gRPC's retry policy on
// UNAVAILABLE) reuse its idempotency key, so the event is delivered once.
func (c *Client) Publish(ctx context.Context, payload Payload, opts ...PublishOption) (*notifyv1.PublishResponse, error) {
	req, err := NewPublishRequest(payload, opts...)
	if err != nil {
		return nil, err
	}
	return c.rpc.Publish(ctx, req)
}

// PublishBatch sends several events, validated together and published in
// order. Requests without an idempotency key get a random one, set in place,
// so retrying the same requests is safe.
func (c *Client) PublishBatch(ctx context.Context, reqs []*notifyv1.PublishRequest) (*notifyv1.PublishBatchResponse, error) {
	for _, r := range reqs {
		if r != nil && r.IdempotencyKey == "" {
			r.IdempotencyKey = NewIdempotencyKey()
		}
	}
	return c.rpc.PublishBatch(ctx, &notifyv1.PublishBatchRequest{Requests: reqs})
}
