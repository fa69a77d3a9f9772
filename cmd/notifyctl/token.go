package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/maxloyalty/notify/internal/auth"
)

func tokenCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "guest", "admin, restaurant, cashier, guest or service")
	sub := fs.String("sub", "", "subject: the user, guest or service id (required)")
	rid := fs.String("restaurant", "", "restaurant id (restaurant and cashier roles)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime, more than 0 (every token expires)")
	secret := fs.String("secret", os.Getenv("NOTIFY_JWT_SECRET"), "HS256 secret (NOTIFY_JWT_SECRET; default: the dev secret)")
	iss := fs.String("issuer", "", "iss claim")
	aud := fs.String("audience", "", "aud claim")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("--sub is required")
	}
	if *ttl <= 0 {
		// notifyd refuses tokens without exp unless their role is in
		// --jwt-allow-no-expiry-roles; this tool always sets one.
		return fmt.Errorf("--ttl must be more than 0: every token expires")
	}
	key := *secret
	if key == "" {
		key = auth.DevSecret
	}
	var opts []auth.MintOption
	if *iss != "" {
		opts = append(opts, auth.WithIssuer(*iss))
	}
	if *aud != "" {
		opts = append(opts, auth.WithAudience(*aud))
	}
	tok, err := auth.NewSigner([]byte(key)).Mint(auth.Claims{Subject: *sub, Role: r, RestaurantID: *rid}, *ttl, opts...)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
