package channel_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
)

// TestSendersConcurrently sends from several goroutines through one sender of each
// channel, as the queue's workers will: every message arrives, once.
func TestSendersConcurrently(t *testing.T) {
	const n = 8
	ps := channeltest.NewPushService(t)
	keys := newVAPID(t)
	sub := ps.Subscribe(t, keys.public)
	fcmSrv := channeltest.NewFCMServer(t)
	apnsSrv := channeltest.NewAPNsServer(t)
	smtpSrv := channeltest.NewSMTPServer(t, channeltest.SMTPOptions{TLS: true, Username: "u", Password: "p"})
	rcv := channeltest.NewWebhookReceiver(t, true)

	cases := []struct {
		sender   channel.Sender
		target   channel.Target
		received func() int
	}{
		{newWebPush(t, ps, keys, true), target(sub), func() int { return len(ps.Received()) }},
		{newFCM(t, fcmSrv, fcmSrv.CredentialsJSON()), channel.FCMTarget{Token: "t"}, func() int { return len(fcmSrv.Received()) }},
		{newAPNs(t, apnsSrv, apnsSrv.AuthKey()), channel.APNsTarget{DeviceToken: deviceToken}, func() int { return len(apnsSrv.Received()) }},
		{newEmail(t, smtpSrv, channel.EmailConfig{Username: "u", Password: "p"}), channel.EmailTarget{Address: "g@example.com"}, func() int { return len(smtpSrv.Received()) }},
		{newWebhook(t, rcv, 0), channel.WebhookTarget{URL: rcv.URL(), Secret: channel.Secret(rcv.Secret)}, func() int { return len(rcv.Deliveries()) }},
	}
	base := message(t, "en")
	for _, c := range cases {
		t.Run(string(c.sender.Channel()), func(t *testing.T) {
			results := make([]channel.Result, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m := *base
					m.EventID = fmt.Sprintf("evt-%d", i)
					results[i] = c.sender.Send(ctx(t), c.target, &m)
				}()
			}
			wg.Wait()
			for i, r := range results {
				if r.Outcome != channel.Accepted {
					t.Errorf("send %d: %v %v", i, r.Outcome, r.Err)
				}
			}
			if got := c.received(); got != n {
				t.Errorf("peer received %d, want %d", got, n)
			}
		})
	}
	if x := fcmSrv.Exchanges(); x < 1 || x > n {
		t.Errorf("%d token exchanges", x)
	}
}
