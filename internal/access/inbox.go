package access

import (
	"fmt"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/room"
)

// InboxView is which rows of an inbox a call sees, and whose read state.
type InboxView int

const (
	// OwnInbox is the caller's own inbox: their rows, and for admins the
	// admin group's rows, with the caller's state.
	OwnInbox InboxView = iota + 1
	// UserInbox is another user's own rows with that user's state: what a
	// service acting for the user sees.
	UserInbox
	// AdminGroupInbox is the admin group's rows with another admin's state:
	// what an admin acting for that admin sees (never that admin's own
	// rows).
	AdminGroupInbox
)

// InboxFor decides how the bearer of c acts on userID's inbox. Empty
// userID or the caller's own subject is their own inbox, which a subject
// that is not a valid id does not have (it could otherwise be taken for a
// group such as "group:admin"). For another user: services act on the
// user's own rows, admins on another admin's view of the admin group's
// rows, and nobody else acts for anyone. The caller checks that userID,
// when given, is a valid id.
func InboxFor(c auth.Claims, userID string) (InboxView, error) {
	if userID == "" || userID == c.Subject {
		if err := room.ValidID(c.Subject); err != nil {
			return 0, fmt.Errorf("%w: this token's subject has no inbox (a subject must be 1-64 characters of [A-Za-z0-9_-])", ErrDenied)
		}
		return OwnInbox, nil
	}
	switch c.Role {
	case notifyv1.Role_ROLE_SERVICE:
		return UserInbox, nil
	case notifyv1.Role_ROLE_ADMIN:
		return AdminGroupInbox, nil
	}
	return 0, fmt.Errorf("%w: user_id: %s tokens act on their own inbox only, not %q's", ErrDenied, auth.RoleName(c.Role), userID)
}

// PreferencesUser resolves whose notification preferences a call reads or
// changes: the caller's own when userID is empty or their own subject
// (which must then be a valid id); another user's for services only. It
// returns the user's id. The caller checks that userID, when given, is a
// valid id.
func PreferencesUser(c auth.Claims, userID string) (string, error) {
	if userID == "" || userID == c.Subject {
		if _, err := InboxFor(c, ""); err != nil {
			return "", err
		}
		return c.Subject, nil
	}
	if c.Role != notifyv1.Role_ROLE_SERVICE {
		return "", fmt.Errorf("%w: user_id: only services read or change another user's preferences", ErrDenied)
	}
	return userID, nil
}
