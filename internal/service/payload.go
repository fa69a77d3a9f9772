package service

import (
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// takePayload returns the event a publish request carries, with its field
// name (the prefix of validation messages) and its type, and sets it as
// ev's payload. A request without one gives a nil message. A switch rather
// than protobuf reflection: this runs on every publish, and reflection
// cost a microsecond of it (TestTakePayloadCoversTheOneof keeps the
// switch in step with the contract).
func takePayload(req *notifyv1.PublishRequest, ev *notifyv1.Event) (proto.Message, string, notifyv1.EventType) {
	switch p := req.Payload.(type) {
	case *notifyv1.PublishRequest_PointsAdded:
		ev.Payload = &notifyv1.Event_PointsAdded{PointsAdded: p.PointsAdded}
		return p.PointsAdded, "points_added", notifyv1.EventType_EVENT_TYPE_POINTS_ADDED
	case *notifyv1.PublishRequest_PointsRedeemed:
		ev.Payload = &notifyv1.Event_PointsRedeemed{PointsRedeemed: p.PointsRedeemed}
		return p.PointsRedeemed, "points_redeemed", notifyv1.EventType_EVENT_TYPE_POINTS_REDEEMED
	case *notifyv1.PublishRequest_PointsExpired:
		ev.Payload = &notifyv1.Event_PointsExpired{PointsExpired: p.PointsExpired}
		return p.PointsExpired, "points_expired", notifyv1.EventType_EVENT_TYPE_POINTS_EXPIRED
	case *notifyv1.PublishRequest_CardCreated:
		ev.Payload = &notifyv1.Event_CardCreated{CardCreated: p.CardCreated}
		return p.CardCreated, "card_created", notifyv1.EventType_EVENT_TYPE_CARD_CREATED
	case *notifyv1.PublishRequest_GuestCardUpdated:
		ev.Payload = &notifyv1.Event_GuestCardUpdated{GuestCardUpdated: p.GuestCardUpdated}
		return p.GuestCardUpdated, "guest_card_updated", notifyv1.EventType_EVENT_TYPE_GUEST_CARD_UPDATED
	case *notifyv1.PublishRequest_GuestRegistered:
		ev.Payload = &notifyv1.Event_GuestRegistered{GuestRegistered: p.GuestRegistered}
		return p.GuestRegistered, "guest_registered", notifyv1.EventType_EVENT_TYPE_GUEST_REGISTERED
	case *notifyv1.PublishRequest_RestaurantGuestJoined:
		ev.Payload = &notifyv1.Event_RestaurantGuestJoined{RestaurantGuestJoined: p.RestaurantGuestJoined}
		return p.RestaurantGuestJoined, "restaurant_guest_joined", notifyv1.EventType_EVENT_TYPE_RESTAURANT_GUEST_JOINED
	case *notifyv1.PublishRequest_RestaurantStatusChanged:
		ev.Payload = &notifyv1.Event_RestaurantStatusChanged{RestaurantStatusChanged: p.RestaurantStatusChanged}
		return p.RestaurantStatusChanged, "restaurant_status_changed", notifyv1.EventType_EVENT_TYPE_RESTAURANT_STATUS_CHANGED
	case *notifyv1.PublishRequest_RestaurantTransaction:
		ev.Payload = &notifyv1.Event_RestaurantTransaction{RestaurantTransaction: p.RestaurantTransaction}
		return p.RestaurantTransaction, "restaurant_transaction", notifyv1.EventType_EVENT_TYPE_RESTAURANT_TRANSACTION
	case *notifyv1.PublishRequest_SystemAlert:
		ev.Payload = &notifyv1.Event_SystemAlert{SystemAlert: p.SystemAlert}
		return p.SystemAlert, "system_alert", notifyv1.EventType_EVENT_TYPE_SYSTEM_ALERT
	case *notifyv1.PublishRequest_AdminNotification:
		ev.Payload = &notifyv1.Event_AdminNotification{AdminNotification: p.AdminNotification}
		return p.AdminNotification, "admin_notification", notifyv1.EventType_EVENT_TYPE_ADMIN_NOTIFICATION
	case *notifyv1.PublishRequest_ActionConfirmed:
		ev.Payload = &notifyv1.Event_ActionConfirmed{ActionConfirmed: p.ActionConfirmed}
		return p.ActionConfirmed, "action_confirmed", notifyv1.EventType_EVENT_TYPE_ACTION_CONFIRMED
	}
	return nil, "", notifyv1.EventType_EVENT_TYPE_UNSPECIFIED
}
