package channel_test

import (
	"strings"
	"testing"

	"github.com/maxloyalty/notify/internal/channel"
)

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		typ, locale, event string
		title, body        string
		text, html         []string
	}{
		{
			typ: "EVENT_TYPE_POINTS_ADDED", locale: "en-GB", event: pointsAdded,
			title: "+1,250 points at Chez Max & Fils",
			body:  "You earned 1,250 points at Chez Max & Fils. Your balance is now 4,600 points.",
			text:  []string{"Hello,", "(Lunch <for two>)", "email notifications are on"},
			html:  []string{`<html lang="en">`, "Chez Max &amp; Fils (Lunch &lt;for two&gt;)"},
		},
		{
			typ: "EVENT_TYPE_POINTS_REDEEMED", locale: "fr_CA",
			event: `{"pointsRedeemed":{"guestId":"g1","amount":"500","newBalance":"100","rewardName":"Café offert"}}`,
			title: "500 points utilisés",
			body:  "Vous avez utilisé 500 points pour Café offert. Votre solde est maintenant de 100 points.",
			text:  []string{"Bonjour,"},
			html:  []string{"<strong>500 points</strong> pour Café offert"},
		},
		{
			typ: "EVENT_TYPE_POINTS_EXPIRED", locale: "fr",
			event: `{"id":"x","pointsExpired":{"guestId":"g1","amount":"2000","newBalance":"0","expiryDate":"2026-08-01"}}`,
			title: "2 000 points expirés",
			body:  "2 000 points de votre carte ont expiré le 1 août 2026. Votre solde est maintenant de 0 points.",
		},
		{
			typ: "EVENT_TYPE_POINTS_EXPIRED", locale: "",
			event: `{"id":"x","pointsExpired":{"guestId":"g1","amount":"20","newBalance":"0","expiryDate":"2026-08-01"}}`,
			title: "20 points expired",
			body:  "20 points on your card expired on August 1, 2026. Your balance is now 0 points.",
		},
		{
			typ: "EVENT_TYPE_SYSTEM_ALERT", locale: "fr-FR",
			event: `{"systemAlert":{"level":"ALERT_LEVEL_WARNING","title":"File lente","message":"La file \"email\" a 900 tâches."}}`,
			title: "Avertissement : File lente",
			body:  `La file "email" a 900 tâches.`,
			html:  []string{"La file &#34;email&#34; a 900 tâches."},
		},
		{
			// A type without templates, in a language without templates.
			typ: "EVENT_TYPE_ADMIN_NOTIFICATION", locale: "de-DE",
			event: `{"adminNotification":{"title":"New restaurant","message":"Chez Max joined."}}`,
			title: "New restaurant",
			body:  "Chez Max joined.",
		},
		{
			typ: "EVENT_TYPE_CARD_CREATED", locale: "fr",
			event: `{"cardCreated":{"guestId":"g1","cardId":"c1"}}`,
			title: "Nouvelle notification",
			body:  "Vous avez une nouvelle notification dans Max Loyalty.",
		},
	} {
		t.Run(tc.typ+"/"+tc.locale, func(t *testing.T) {
			c, err := channel.Render(tc.typ, tc.locale, []byte(tc.event))
			if err != nil {
				t.Fatal(err)
			}
			if spaces(c.Title) != tc.title || spaces(c.Body) != tc.body {
				t.Errorf("title %q body %q\nwant  %q body %q", c.Title, c.Body, tc.title, tc.body)
			}
			for _, s := range tc.text {
				if !strings.Contains(spaces(c.Text), s) {
					t.Errorf("text lacks %q:\n%s", s, c.Text)
				}
			}
			for _, s := range tc.html {
				if !strings.Contains(spaces(c.HTML), s) {
					t.Errorf("HTML lacks %q:\n%s", s, c.HTML)
				}
			}
			if c.Text == "" || !strings.HasPrefix(c.HTML, "<!DOCTYPE html>") {
				t.Errorf("text %q, html %q", c.Text, c.HTML)
			}
		})
	}
}

func TestRenderBoundsAndErrors(t *testing.T) {
	long := strings.Repeat("é", 1000)
	c, err := channel.Render("EVENT_TYPE_SYSTEM_ALERT", "en",
		[]byte(`{"systemAlert":{"level":"ALERT_LEVEL_CRITICAL","title":"`+long+`\r\nBcc: x@y.z","message":"`+long+`"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := len([]rune(c.Title)); n > 120 || strings.ContainsAny(c.Title, "\r\n") {
		t.Errorf("title of %d runes, or with a line break: %q", n, c.Title)
	}
	if n := len([]rune(c.Body)); n > 400 {
		t.Errorf("body of %d runes", n)
	}
	if _, err := channel.Render("EVENT_TYPE_POINTS_ADDED", "en", []byte(`[1]`)); err == nil {
		t.Error("a JSON array was rendered")
	}
	if c, err := channel.Render("EVENT_TYPE_POINTS_ADDED", "en", nil); err != nil || c.Title != "+ points" {
		t.Errorf("no event: %q, %v", c.Title, err)
	}
}
