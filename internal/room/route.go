package room

import (
	"fmt"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// Route returns the rooms an event is delivered to when its publisher names
// none, as the original backend routed them:
//
//	PointsAdded, PointsRedeemed   restaurant:{rid}:points, guest:{gid}
//	PointsExpired                 guest:{gid} (+ restaurant:{rid}:points if rid set)
//	CardCreated, GuestRegistered  guest:{gid}, restaurant:{rid}
//	GuestCardUpdated              guest:{gid} (+ restaurant:{rid} if rid set)
//	RestaurantGuestJoined         restaurant:{rid}
//	RestaurantStatusChanged       restaurant:{rid}
//	RestaurantTransaction         restaurant:{rid}:transactions
//	ActionConfirmed               restaurant:{rid}
//	SystemAlert, AdminNotification admin
//
// An id the route needs that is missing or malformed is an error naming the
// field.
func Route(payload any) ([]Room, error) {
	switch p := payload.(type) {
	case *notifyv1.PointsAdded:
		return ids(pair{"restaurant_id", p.RestaurantId, RestaurantPoints}, pair{"guest_id", p.GuestId, Guest})
	case *notifyv1.PointsRedeemed:
		return ids(pair{"restaurant_id", p.RestaurantId, RestaurantPoints}, pair{"guest_id", p.GuestId, Guest})
	case *notifyv1.PointsExpired:
		if p.RestaurantId == "" {
			return ids(pair{"guest_id", p.GuestId, Guest})
		}
		return ids(pair{"guest_id", p.GuestId, Guest}, pair{"restaurant_id", p.RestaurantId, RestaurantPoints})
	case *notifyv1.CardCreated:
		return ids(pair{"guest_id", p.GuestId, Guest}, pair{"restaurant_id", p.RestaurantId, Restaurant})
	case *notifyv1.GuestRegistered:
		return ids(pair{"guest_id", p.GuestId, Guest}, pair{"restaurant_id", p.RestaurantId, Restaurant})
	case *notifyv1.GuestCardUpdated:
		if p.RestaurantId == "" {
			return ids(pair{"guest_id", p.GuestId, Guest})
		}
		return ids(pair{"guest_id", p.GuestId, Guest}, pair{"restaurant_id", p.RestaurantId, Restaurant})
	case *notifyv1.RestaurantGuestJoined:
		return ids(pair{"restaurant_id", p.RestaurantId, Restaurant})
	case *notifyv1.RestaurantStatusChanged:
		return ids(pair{"restaurant_id", p.RestaurantId, Restaurant})
	case *notifyv1.RestaurantTransaction:
		return ids(pair{"restaurant_id", p.RestaurantId, RestaurantTransactions})
	case *notifyv1.ActionConfirmed:
		return ids(pair{"restaurant_id", p.RestaurantId, Restaurant})
	case *notifyv1.SystemAlert, *notifyv1.AdminNotification:
		return []Room{Admin}, nil
	}
	return nil, fmt.Errorf("%w: no route for payload %T", ErrInvalid, payload)
}

type pair struct {
	field string
	id    string
	mk    func(string) Room
}

func ids(ps ...pair) ([]Room, error) {
	rooms := make([]Room, len(ps))
	for i, p := range ps {
		if err := ValidID(p.id); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, p.field, err)
		}
		rooms[i] = p.mk(p.id)
	}
	return rooms, nil
}
