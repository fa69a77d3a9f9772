package node

import (
	"fmt"
	"time"

	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/gateway"
)

// Dev tokens: the lifetime when the request names none, and the longest.
const (
	devTokenTTL    = time.Hour
	devTokenMaxTTL = 24 * time.Hour
)

// devTokenMinter mints the demo app's tokens (POST /dev/token), always
// with an expiry, with secret: the public DevSecret, the only key of a
// dev-mode node (Config.Validate refuses dev mode with a configured key).
// Dev mode only.
func devTokenMinter(secret []byte) gateway.DevTokenFunc {
	signer := auth.NewSigner(secret)
	return func(req gateway.DevTokenRequest) (string, error) {
		role, err := auth.ParseRole(req.Role)
		if err != nil {
			return "", fmt.Errorf("role: %w", err)
		}
		ttl := devTokenTTL
		if req.TTLSeconds > 0 {
			ttl = min(time.Duration(req.TTLSeconds)*time.Second, devTokenMaxTTL)
		}
		return signer.Mint(auth.Claims{Subject: req.Sub, Role: role, RestaurantID: req.RestaurantID}, ttl)
	}
}
