package channel_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/maxloyalty/notify/internal/channel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// pointsAdded is a PointsAdded event as the REST stream carries it.
const pointsAdded = `{"id":"01J9ZQ3V6Y8K2M4N6P8R0T2V4X","room":"guest:g1","offset":"7","epoch":"e1",` +
	`"publishTime":"2026-03-14T09:26:53Z","pointsAdded":{"guestId":"g1","cardId":"c1","amount":"1250",` +
	`"newBalance":"4600","restaurantId":"r1","restaurantName":"Chez Max & Fils","transactionId":"t1",` +
	`"description":"Lunch <for two>"}}`

// message returns a rendered PointsAdded message.
func message(t *testing.T, locale string) *channel.Message {
	t.Helper()
	c, err := channel.Render("EVENT_TYPE_POINTS_ADDED", locale, []byte(pointsAdded))
	if err != nil {
		t.Fatal(err)
	}
	return &channel.Message{
		EventID: "01J9ZQ3V6Y8K2M4N6P8R0T2V4X",
		Type:    "EVENT_TYPE_POINTS_ADDED",
		Content: c,
		Data:    json.RawMessage(pointsAdded),
		Locale:  locale,
		TTL:     time.Hour,
		Topic:   "points-balance:c1",
	}
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// want checks a Result's outcome, status and retry delay.
func want(t *testing.T, got channel.Result, outcome channel.Outcome, status int, retryAfter time.Duration) {
	t.Helper()
	if got.Outcome != outcome || got.Status != status || got.RetryAfter != retryAfter {
		t.Fatalf("result = %v status %d retry-after %v (reason %q, err %v), want %v status %d retry-after %v",
			got.Outcome, got.Status, got.RetryAfter, got.Reason, got.Err, outcome, status, retryAfter)
	}
	if outcome == channel.Accepted && got.Err != nil || outcome != channel.Accepted && got.Err == nil {
		t.Fatalf("result %v has err %v", got.Outcome, got.Err)
	}
}

// noSecret fails if s holds secret.
func noSecret(t *testing.T, what, s, secret string) {
	t.Helper()
	if secret != "" && strings.Contains(s, secret) {
		t.Fatalf("%s shows a secret: %q", what, s)
	}
}

func isErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

// spaces turns the no-break spaces French number grouping uses into plain spaces.
func spaces(s string) string {
	return strings.NewReplacer("\u00a0", " ", "\u202f", " ").Replace(s)
}
