package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

// Claims is the identity carried by a verified token.
type Claims struct {
	// Subject is the user id (JWT "sub"); never empty once verified.
	Subject string
	// Role is the bearer's role (JWT "role", a lowercase name).
	Role notifyv1.Role
	// RestaurantID is the JWT "restaurant_id" claim; always set for the
	// restaurant and cashier roles.
	RestaurantID string
	// ExpiresAt is the JWT "exp" claim, or the zero time if the token has
	// none.
	ExpiresAt time.Time
}

// maxQuotedLen bounds how much of an untrusted value an error message quotes.
const maxQuotedLen = 32

// ParseRole returns the role named by a lowercase claim value such as
// "admin" or "cashier". Unknown names, including "" and "unspecified",
// yield an error wrapping ErrUnknownRole.
func ParseRole(name string) (notifyv1.Role, error) {
	switch name {
	case "admin":
		return notifyv1.Role_ROLE_ADMIN, nil
	case "restaurant":
		return notifyv1.Role_ROLE_RESTAURANT, nil
	case "cashier":
		return notifyv1.Role_ROLE_CASHIER, nil
	case "guest":
		return notifyv1.Role_ROLE_GUEST, nil
	case "service":
		return notifyv1.Role_ROLE_SERVICE, nil
	}
	return notifyv1.Role_ROLE_UNSPECIFIED, fmt.Errorf("%w %q", ErrUnknownRole, truncate(name))
}

// RoleName returns the lowercase claim value for r, or "" for
// ROLE_UNSPECIFIED and unknown values.
func RoleName(r notifyv1.Role) string {
	switch r {
	case notifyv1.Role_ROLE_ADMIN:
		return "admin"
	case notifyv1.Role_ROLE_RESTAURANT:
		return "restaurant"
	case notifyv1.Role_ROLE_CASHIER:
		return "cashier"
	case notifyv1.Role_ROLE_GUEST:
		return "guest"
	case notifyv1.Role_ROLE_SERVICE:
		return "service"
	}
	return ""
}

// truncate shortens an untrusted string before it is quoted in an error.
func truncate(s string) string {
	if len(s) > maxQuotedLen {
		return s[:maxQuotedLen] + "..."
	}
	return s
}

// needsRestaurant reports whether tokens for r must name a restaurant.
func needsRestaurant(r notifyv1.Role) bool {
	return r == notifyv1.Role_ROLE_RESTAURANT || r == notifyv1.Role_ROLE_CASHIER
}

// validate checks the invariants that every verified Claims satisfies. The
// returned error is a bare reason, for the caller to wrap.
func (c Claims) validate() error {
	if c.Subject == "" {
		return errors.New("missing subject")
	}
	if RoleName(c.Role) == "" {
		return fmt.Errorf("%w %d", ErrUnknownRole, int32(c.Role))
	}
	if needsRestaurant(c.Role) && c.RestaurantID == "" {
		return fmt.Errorf("missing restaurant_id for role %s", RoleName(c.Role))
	}
	return nil
}

// claimsKey is the context key under which NewContext stores Claims.
type claimsKey struct{}

// NewContext returns a copy of ctx carrying c.
func NewContext(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the Claims stored in ctx by NewContext (and so by the
// interceptors), and whether there were any.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}
