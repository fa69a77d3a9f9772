package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/testenv"
)

// reminderBody is the REST body of a points-expiry reminder for guest,
// published at at under cancelKey.
func reminderBody(t *testing.T, guest string, amount int64, at time.Time, cancelKey string) string {
	t.Helper()
	b, err := protojson.Marshal(&notifyv1.PublishRequest{
		DeliverAt: timestamppb.New(at), CancelKey: cancelKey,
		Payload: &notifyv1.PublishRequest_PointsExpired{PointsExpired: &notifyv1.PointsExpired{
			GuestId: guest, Amount: amount, NewBalance: 0, ExpiryDate: at.UTC().Format(time.DateOnly), CardId: "card-" + guest,
			Reason: "points expire a year after they are earned",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rest sends a REST call with tok and decodes a 200's body into out; it
// returns the status and body.
func rest(t *testing.T, ctx context.Context, method, url, tok, body string, out proto.Message) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := protojson.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %q: %v", method, url, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// inboxOf lists a guest's inbox on d over gRPC.
func inboxOf(t *testing.T, ctx context.Context, d *daemon, guest string) []*notifyv1.Notification {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tok := token(t, auth.Claims{Subject: guest, Role: notifyv1.Role_ROLE_GUEST})
	resp, err := notifyv1.NewInboxServiceClient(conn).ListNotifications(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok),
		&notifyv1.ListNotificationsRequest{PageSize: 100})
	if err != nil {
		t.Fatalf("ListNotifications: %v", err)
	}
	return resp.Notifications
}

// listScheduled lists tok's publisher's scheduled publishes on d, those
// done included.
func listScheduled(t *testing.T, ctx context.Context, d *daemon, tok string) []*notifyv1.ScheduledPublish {
	t.Helper()
	var list notifyv1.ListScheduledResponse
	if code, body := rest(t, ctx, http.MethodGet, "http://"+d.httpAddr+"/v1/scheduled?includeDone=true&pageSize=500", tok, "", &list); code != http.StatusOK {
		t.Fatalf("list: HTTP %d %s", code, body)
	}
	return list.Scheduled
}

// allDone reports whether every scheduled publish of list is done with
// (published, cancelled or failed): its job runs no more, so whatever it
// published is out already.
func allDone(list []*notifyv1.ScheduledPublish) bool {
	for _, sp := range list {
		switch sp.State {
		case notifyv1.ScheduledState_SCHEDULED_STATE_PENDING, notifyv1.ScheduledState_SCHEDULED_STATE_RUNNING:
			return false
		}
	}
	return true
}

// TestScheduledReminderSurvivesSIGKILL: a points-expiry reminder scheduled
// over REST for a time a few seconds ahead fires once after notifyd is
// SIGKILLed and restarted in between; another, cancelled before the kill,
// never fires; both are listed with what became of them.
func TestScheduledReminderSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dir := t.TempDir()
	svc := token(t, serviceClaims)
	d := startDaemon(t, dir)
	at := time.Now().Add(8 * time.Second)
	var kept, cancelled notifyv1.PublishResponse
	if code, body := rest(t, ctx, http.MethodPost, "http://"+d.httpAddr+"/v1/events", svc, reminderBody(t, "g1", 200, at, "expiry-g1"), &kept); code != http.StatusOK {
		t.Fatalf("schedule: HTTP %d %s", code, body)
	}
	if kept.Scheduled.GetState() != notifyv1.ScheduledState_SCHEDULED_STATE_PENDING || kept.EventId != "" {
		t.Fatalf("scheduled %v", &kept)
	}
	if code, body := rest(t, ctx, http.MethodPost, "http://"+d.httpAddr+"/v1/events", svc, reminderBody(t, "g1", 999, at, "expiry-g1-wrong"), &cancelled); code != http.StatusOK {
		t.Fatalf("schedule: HTTP %d %s", code, body)
	}
	var cr notifyv1.CancelScheduledResponse
	if code, body := rest(t, ctx, http.MethodPost, "http://"+d.httpAddr+"/v1/scheduled:cancel", svc, `{"cancelKey":"expiry-g1-wrong"}`, &cr); code != http.StatusOK ||
		cr.Scheduled.GetState() != notifyv1.ScheduledState_SCHEDULED_STATE_CANCELLED {
		t.Fatalf("cancel: HTTP %d %s", code, body)
	}
	d.kill(t)
	d.requireKilled(t)

	d2 := startDaemon(t, dir)
	if time.Now().Before(at.Add(-time.Second)) {
		if got := inboxOf(t, ctx, d2, "g1"); len(got) != 0 {
			t.Fatalf("published before its time: %v", got)
		}
	}
	testenv.Eventually(t, time.Until(at)+startTimeout, "the reminder in the inbox", func() bool { return len(inboxOf(t, ctx, d2, "g1")) > 0 })
	// A second publish (or the cancelled one) would come from a job still
	// to run: once every job is done, any would be in the inbox.
	var list []*notifyv1.ScheduledPublish
	testenv.Eventually(t, startTimeout, "every scheduled publish done", func() bool {
		list = listScheduled(t, ctx, d2, svc)
		return allDone(list)
	})
	got := inboxOf(t, ctx, d2, "g1")
	if len(got) != 1 {
		t.Fatalf("inbox has %d notifications %v, want the reminder once", len(got), got)
	}
	ev := got[0].Event
	if ev.GetPointsExpired().GetAmount() != 200 || ev.IdempotencyKey != kept.Scheduled.IdempotencyKey {
		t.Errorf("published %v, want the kept reminder with key %q", ev, kept.Scheduled.IdempotencyKey)
	}
	if pt := ev.PublishTime.AsTime(); pt.Before(at) {
		t.Errorf("published at %v, before its time %v", pt, at)
	}
	if len(list) != 2 {
		t.Errorf("listed %d scheduled publishes, want the 2 scheduled: %v", len(list), list)
	}
	states := map[string]notifyv1.ScheduledState{}
	for _, sp := range list {
		states[sp.CancelKey] = sp.State
		if sp.CancelKey == "expiry-g1" && sp.EventId != ev.Id {
			t.Errorf("listed event id %q, published %q", sp.EventId, ev.Id)
		}
	}
	if states["expiry-g1"] != notifyv1.ScheduledState_SCHEDULED_STATE_PUBLISHED || states["expiry-g1-wrong"] != notifyv1.ScheduledState_SCHEDULED_STATE_CANCELLED {
		t.Errorf("listed states %v", states)
	}
}

// TestScheduleRESTValidation: a time in the past or beyond the horizon is
// a 400 saying so; cancelling what is gone is a 404, a publish already
// made a 409.
func TestScheduleRESTValidation(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	d := startDaemon(t, t.TempDir(), "--schedule-horizon", "48h")
	svc := token(t, serviceClaims)
	url := "http://" + d.httpAddr
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Now().Add(-time.Hour), "is in the past"},
		{time.Now().Add(72 * time.Hour), "beyond the scheduling horizon of 48h0m0s"},
	} {
		code, body := rest(t, ctx, http.MethodPost, url+"/v1/events", svc, reminderBody(t, "g1", 10, tc.at, "k"), nil)
		if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("deliverAt %v: HTTP %d %s, want 400 saying %q", tc.at, code, body, tc.want)
		}
	}
	if code, body := rest(t, ctx, http.MethodPost, url+"/v1/scheduled:cancel", svc, `{"cancelKey":"nothing"}`, nil); code != http.StatusNotFound {
		t.Errorf("cancel an unknown key: HTTP %d %s, want 404", code, body)
	}
	var sp notifyv1.PublishResponse
	if code, body := rest(t, ctx, http.MethodPost, url+"/v1/events", svc, reminderBody(t, "g1", 10, time.Now().Add(time.Second), "soon"), &sp); code != http.StatusOK {
		t.Fatalf("schedule: HTTP %d %s", code, body)
	}
	testenv.Eventually(t, startTimeout, "the publish", func() bool {
		list := listScheduled(t, ctx, d, svc)
		return len(list) == 1 && list[0].State == notifyv1.ScheduledState_SCHEDULED_STATE_PUBLISHED
	})
	if code, body := rest(t, ctx, http.MethodPost, url+"/v1/scheduled:cancel", svc, `{"id":"`+sp.Scheduled.Id+`"}`, nil); code != http.StatusConflict {
		t.Errorf("cancel a published one: HTTP %d %s, want 409", code, body)
	}
}

// TestScheduledOnceOnTwoNodes: two notifyd on one PostgreSQL database, one
// scheduler: each of the reminders scheduled through the first node is
// published once, by one of them. A second publish would be a new event
// with an id of its own, so the operator's webhook, which receives every
// event, counts the publishes.
func TestScheduledOnceOnTwoNodes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	dsn := postgresSchema(t)
	hook := channeltest.NewWebhookReceiver(t, false)
	var nodes []*daemon
	for i := range 2 {
		nodes = append(nodes, startDaemon(t, t.TempDir(), deliveryArgs(t, hook,
			"--store", dsn, "--server-id", fmt.Sprintf("sched-%d", i), "--webhook-send", "ops=events")...))
	}
	svc := token(t, serviceClaims)
	const n = 12
	at := time.Now().Add(4 * time.Second)
	for i := range n {
		var resp notifyv1.PublishResponse
		if code, body := rest(t, ctx, http.MethodPost, "http://"+nodes[i%2].httpAddr+"/v1/events", svc,
			reminderBody(t, fmt.Sprintf("pg%d", i), 100, at.Add(time.Duration(i)*100*time.Millisecond), fmt.Sprintf("expiry-pg%d", i)), &resp); code != http.StatusOK {
			t.Fatalf("schedule %d: HTTP %d %s", i, code, body)
		}
	}
	testenv.Eventually(t, time.Until(at)+startTimeout, "every reminder's webhook", func() bool { return len(hook.Delivered()) >= n })
	// A second publish would come from a job still to run, and its webhook
	// from a delivery job queued with it: once every scheduled publish is
	// done, and then no delivery job is left, any would have arrived.
	testenv.Eventually(t, startTimeout, "every scheduled publish done", func() bool {
		list := listScheduled(t, ctx, nodes[0], svc)
		return len(list) == n && allDone(list)
	})
	testenv.Eventually(t, startTimeout, "no unfinished delivery job", func() bool { return unfinishedJobs(t, nodes[0].httpAddr) == 0 })
	if got := hook.Delivered(); len(got) != n {
		t.Errorf("%d events published for %d reminders: %v", len(got), n, got)
	}
	for i := range n {
		if got := inboxOf(t, ctx, nodes[(i+1)%2], fmt.Sprintf("pg%d", i)); len(got) != 1 {
			t.Errorf("pg%d's inbox has %d notifications, want 1", i, len(got))
		}
	}
}
