package validate

import notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"

// The rules of each event of the contract, one method per message: its ids
// (required or not), amounts, bounded texts, enums and times. Event picks
// the method by the payload's type.

func (c *checker) pointsAdded(p *notifyv1.PointsAdded) {
	c.id("guest_id", p.GuestId, true)
	c.id("card_id", p.CardId, false)
	c.id("restaurant_id", p.RestaurantId, true)
	c.id("transaction_id", p.TransactionId, false)
	c.positive("amount", p.Amount)
	c.nonNegative("new_balance", p.NewBalance)
	c.text("restaurant_name", p.RestaurantName, MaxName)
	c.text("description", p.Description, MaxText)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) pointsRedeemed(p *notifyv1.PointsRedeemed) {
	c.id("guest_id", p.GuestId, true)
	c.id("card_id", p.CardId, false)
	c.id("restaurant_id", p.RestaurantId, true)
	c.id("transaction_id", p.TransactionId, false)
	c.positive("amount", p.Amount)
	c.nonNegative("new_balance", p.NewBalance)
	c.text("reward_name", p.RewardName, MaxName)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) pointsExpired(p *notifyv1.PointsExpired) {
	c.id("guest_id", p.GuestId, true)
	c.id("card_id", p.CardId, false)
	c.id("restaurant_id", p.RestaurantId, false)
	c.positive("amount", p.Amount)
	c.nonNegative("new_balance", p.NewBalance)
	c.date("expiry_date", p.ExpiryDate)
	c.text("reason", p.Reason, MaxText)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) cardCreated(p *notifyv1.CardCreated) {
	c.id("guest_id", p.GuestId, true)
	c.id("card_id", p.CardId, true)
	c.id("restaurant_id", p.RestaurantId, true)
	c.text("restaurant_name", p.RestaurantName, MaxName)
	c.text("qr_code", p.QrCode, MaxQRCode)
	c.nonNegative("initial_points", p.InitialPoints)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) guestCardUpdated(p *notifyv1.GuestCardUpdated) {
	c.id("guest_id", p.GuestId, true)
	c.id("card_id", p.CardId, true)
	c.id("restaurant_id", p.RestaurantId, false)
	c.enum("status", p.Status, false)
	c.enum("tier", p.Tier, false)
	if p.Status == 0 && p.Tier == 0 {
		c.fail("status", "status or tier must change")
	}
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) guestRegistered(p *notifyv1.GuestRegistered) {
	c.id("guest_id", p.GuestId, true)
	c.id("restaurant_id", p.RestaurantId, true)
	c.text("guest_name", p.GuestName, MaxName)
	c.email("email", p.Email)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) restaurantGuestJoined(p *notifyv1.RestaurantGuestJoined) {
	c.id("restaurant_id", p.RestaurantId, true)
	c.id("guest_id", p.GuestId, true)
	c.id("card_id", p.CardId, false)
	c.text("guest_name", p.GuestName, MaxName)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) restaurantStatusChanged(p *notifyv1.RestaurantStatusChanged) {
	c.id("restaurant_id", p.RestaurantId, true)
	c.enum("status", p.Status, true)
	c.text("reason", p.Reason, MaxText)
	c.time("estimated_restore", p.EstimatedRestore, allowFuture)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) restaurantTransaction(p *notifyv1.RestaurantTransaction) {
	c.id("restaurant_id", p.RestaurantId, true)
	c.id("transaction_id", p.TransactionId, true)
	c.id("guest_id", p.GuestId, false)
	c.text("guest_name", p.GuestName, MaxName)
	c.enum("type", p.Type, true)
	c.positive("amount", p.Amount)
	c.nonNegative("total_today", p.TotalToday)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) systemAlert(p *notifyv1.SystemAlert) {
	c.enum("level", p.Level, true)
	c.enum("source", p.Source, false)
	c.required("title", p.Title)
	c.text("title", p.Title, MaxName)
	c.text("message", p.Message, MaxText)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) adminNotification(p *notifyv1.AdminNotification) {
	c.id("notification_id", p.NotificationId, false)
	c.enum("type", p.Type, true)
	c.enum("priority", p.Priority, true)
	c.required("title", p.Title)
	c.text("title", p.Title, MaxName)
	c.text("message", p.Message, MaxText)
	c.time("occurred_at", p.OccurredAt)
}

func (c *checker) actionConfirmed(p *notifyv1.ActionConfirmed) {
	c.id("action_id", p.ActionId, true)
	c.enum("action", p.Action, true)
	c.nonNegative("amount", p.Amount)
	c.id("guest_id", p.GuestId, true)
	c.id("restaurant_id", p.RestaurantId, true)
	c.time("occurred_at", p.OccurredAt)
}
