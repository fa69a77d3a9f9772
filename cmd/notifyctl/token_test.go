package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/node"
)

// TestTokenAlwaysExpires: notifyctl token sets exp (its --ttl, 24h by
// default) and refuses a --ttl that would mint a token without one, which
// notifyd refuses unless its role is in --jwt-allow-no-expiry-roles.
func TestTokenAlwaysExpires(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(node.DevSecret), RequireExpiry: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"--role", "service", "--sub", "backend"}, 24 * time.Hour},
		{[]string{"--role", "guest", "--sub", "g1", "--ttl", "10m"}, 10 * time.Minute},
	} {
		var out bytes.Buffer
		if err := tokenCmd(tc.args, &out); err != nil {
			t.Fatalf("token %v: %v", tc.args, err)
		}
		c, err := v.Verify(strings.TrimSpace(out.String()))
		if err != nil {
			t.Fatalf("token %v: %v", tc.args, err)
		}
		if left := time.Until(c.ExpiresAt); left <= tc.want-time.Minute || left > tc.want {
			t.Errorf("token %v expires in %v, want about %v", tc.args, left, tc.want)
		}
	}
	for _, ttl := range []string{"0", "-1h"} {
		var out bytes.Buffer
		err := tokenCmd([]string{"--role", "service", "--sub", "backend", "--ttl", ttl}, &out)
		if err == nil || !strings.Contains(err.Error(), "--ttl") || out.Len() != 0 {
			t.Errorf("token --ttl %s: %q, %v; want an error naming --ttl and no token", ttl, out.String(), err)
		}
	}
}
