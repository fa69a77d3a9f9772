package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/maxloyalty/notify/server/auth"
	"github.com/maxloyalty/notify/server/node"
)

func tokenCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "guest", "admin, restaurant, cashier, guest or service")
	sub := fs.String("sub", "", "subject: the user, guest or service id (required)")
	rid := fs.String("restaurant", "", "restaurant id (restaurant and cashier roles)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime (0: no expiry)")
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
	key := *secret
	if key == "" {
		key = node.DevSecret
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
