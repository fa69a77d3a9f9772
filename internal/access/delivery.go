package access

import (
	"fmt"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/room"
)

// DeliveryUser resolves whose devices, delivery profile and delivery rules
// a call is about: the caller's own when userID is empty or their own
// subject (which must then be a valid id); another user's for services
// only, as for preferences. It returns the user's id. The caller checks
// that userID, when given, is a valid id.
func DeliveryUser(c auth.Claims, userID string) (string, error) {
	if userID == "" || userID == c.Subject {
		if err := room.ValidID(c.Subject); err != nil {
			return "", fmt.Errorf("%w: this token's subject cannot have devices (a subject must be 1-64 characters of [A-Za-z0-9_-])", ErrDenied)
		}
		return c.Subject, nil
	}
	if c.Role != notifyv1.Role_ROLE_SERVICE {
		return "", fmt.Errorf("%w: user_id: only services manage another user's devices, profile and delivery rules; %s tokens manage their own", ErrDenied, auth.RoleName(c.Role))
	}
	return userID, nil
}

// DeliveryReader resolves whose delivery timelines a call reads: the
// caller's own (userID empty or their subject); any user's for admins and
// services; with all, every recipient's and the webhooks' (returned as
// ""), for admins and services only (the caller refuses all with a
// userID).
func DeliveryReader(c auth.Claims, userID string, all bool) (string, error) {
	privileged := c.Role == notifyv1.Role_ROLE_ADMIN || c.Role == notifyv1.Role_ROLE_SERVICE
	if all {
		if !privileged {
			return "", fmt.Errorf("%w: all_recipients: only admins and services read every recipient's deliveries", ErrDenied)
		}
		return "", nil
	}
	if userID == "" || userID == c.Subject {
		if err := room.ValidID(c.Subject); err != nil {
			return "", fmt.Errorf("%w: this token's subject receives no deliveries; admins and services name a user_id or all_recipients", ErrDenied)
		}
		return c.Subject, nil
	}
	if !privileged {
		return "", fmt.Errorf("%w: user_id: %s tokens read their own deliveries only", ErrDenied, auth.RoleName(c.Role))
	}
	return userID, nil
}
