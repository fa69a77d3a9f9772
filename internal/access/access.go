package access

import (
	"errors"
	"fmt"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/room"
)

// ErrDenied is wrapped by every refusal.
var ErrDenied = errors.New("permission denied")

// CanSubscribe reports whether the bearer of c may subscribe to r:
// admins and services to any room; guests to guest:{sub} and user:{sub};
// restaurant and cashier users to their restaurant's rooms and user:{sub}.
func CanSubscribe(c auth.Claims, r room.Room) error {
	switch c.Role {
	case notifyv1.Role_ROLE_ADMIN, notifyv1.Role_ROLE_SERVICE:
		return nil
	case notifyv1.Role_ROLE_GUEST:
		if (r.Kind() == room.KindGuest || r.Kind() == room.KindUser) && r.ID() == c.Subject {
			return nil
		}
	case notifyv1.Role_ROLE_RESTAURANT, notifyv1.Role_ROLE_CASHIER:
		switch r.Kind() {
		case room.KindRestaurant, room.KindRestaurantPoints, room.KindRestaurantTransactions:
			if r.ID() == c.RestaurantID {
				return nil
			}
		case room.KindUser:
			if r.ID() == c.Subject {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %s %q may not subscribe to %s", ErrDenied, auth.RoleName(c.Role), c.Subject, r)
}

// CanPublish reports whether the bearer of c may publish payload in r.
// Services publish anything anywhere (they are the platform's backends);
// admins publish system alerts and admin notifications, into the admin
// room only (the seeds' broadcastToAdmins: alerts are for admins, never
// pushed into a guest's or user's room and inbox); nobody else publishes
// (guests confirm actions through ConfirmAction instead).
func CanPublish(c auth.Claims, r room.Room, payload any) error {
	switch c.Role {
	case notifyv1.Role_ROLE_SERVICE:
		return nil
	case notifyv1.Role_ROLE_ADMIN:
		switch payload.(type) {
		case *notifyv1.SystemAlert, *notifyv1.AdminNotification:
			if r.Kind() == room.KindAdmin {
				return nil
			}
			return fmt.Errorf("%w: admins publish system alerts and admin notifications into the admin room only, not %s", ErrDenied, r)
		}
		return fmt.Errorf("%w: admins publish only system alerts and admin notifications", ErrDenied)
	}
	return fmt.Errorf("%w: %s tokens may not publish in %s", ErrDenied, auth.RoleName(c.Role), r)
}

// CanConfirm reports whether the bearer of c may confirm actions at all:
// guests only.
func CanConfirm(c auth.Claims) error {
	if c.Role == notifyv1.Role_ROLE_GUEST {
		return nil
	}
	return fmt.Errorf("%w: only guests confirm actions", ErrDenied)
}

// CanConfirmAt reports whether the bearer of c may confirm an action at
// restaurant rid, known saying whether the guest has had an event from it
// (in their inbox, read or deleted, until retention prunes it). The
// platform keeps no registry of restaurants: a guest's own events are what
// tie them to one, so a guest confirms only where they are a guest.
func CanConfirmAt(c auth.Claims, rid string, known bool) error {
	if err := CanConfirm(c); err != nil {
		return err
	}
	if known {
		return nil
	}
	return fmt.Errorf("%w: guest %q has had no event from restaurant %q: a guest confirms actions only at a restaurant that has sent them one", ErrDenied, c.Subject, rid)
}

// DefaultRooms returns the rooms of a stream that names none: every user's
// own user:{sub}, plus guest:{sub} for guests, the restaurant's three rooms
// for restaurant and cashier users, and admin for admins. Services have no
// default rooms and must name them.
func DefaultRooms(c auth.Claims) ([]room.Room, error) {
	if c.Role == notifyv1.Role_ROLE_SERVICE {
		return nil, errors.New("service tokens have no default rooms: name the rooms to subscribe to")
	}
	user := room.User(c.Subject)
	if err := room.ValidID(c.Subject); err != nil {
		return nil, fmt.Errorf("token subject cannot name a room: %w", err)
	}
	switch c.Role {
	case notifyv1.Role_ROLE_GUEST:
		return []room.Room{room.Guest(c.Subject), user}, nil
	case notifyv1.Role_ROLE_RESTAURANT, notifyv1.Role_ROLE_CASHIER:
		if err := room.ValidID(c.RestaurantID); err != nil {
			return nil, fmt.Errorf("token restaurant_id cannot name a room: %w", err)
		}
		return []room.Room{
			room.Restaurant(c.RestaurantID),
			room.RestaurantPoints(c.RestaurantID),
			room.RestaurantTransactions(c.RestaurantID),
			user,
		}, nil
	case notifyv1.Role_ROLE_ADMIN:
		return []room.Room{room.Admin, user}, nil
	}
	return nil, fmt.Errorf("%w: unknown role", ErrDenied)
}

// CanViewStats reports whether the bearer of c may read node statistics:
// admins and services.
func CanViewStats(c auth.Claims) error {
	if c.Role == notifyv1.Role_ROLE_ADMIN || c.Role == notifyv1.Role_ROLE_SERVICE {
		return nil
	}
	return fmt.Errorf("%w: only admins and services read statistics", ErrDenied)
}
