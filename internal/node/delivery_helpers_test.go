package node_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel/channeltest"
	"github.com/maxloyalty/notify/internal/node"
	"github.com/maxloyalty/notify/internal/testenv"
)

// deliveryEnv is a node with every channel a test can reach on this
// machine: a web push service, an SMTP server and a webhook receiver.
type deliveryEnv struct {
	tn    *testNode
	push  *channeltest.PushService
	vapid vapidKeys
	smtp  *channeltest.SMTPServer
	hook  *channeltest.WebhookReceiver
	pub   notifyv1.NotificationServiceClient
	inbox notifyv1.InboxServiceClient
	dl    notifyv1.DeliveryServiceClient
}

// testUnseenDelay is the delay of the delayed types in these tests.
const testUnseenDelay = 2 * time.Second

// deliveryTimeout bounds a delivery test's waits: River promotes due
// scheduled and retried jobs every 5 seconds, so a delayed or retried
// delivery runs up to 5 seconds after its time.
const deliveryTimeout = 60 * time.Second

// deliveryCtx returns a context bounded by deliveryTimeout, cancelled when
// the test ends.
func deliveryCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	t.Cleanup(cancel)
	return ctx
}

type vapidKeys struct{ public, private string }

func newVAPID(t *testing.T) vapidKeys {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return vapidKeys{
		public:  base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		private: base64.RawURLEncoding.EncodeToString(k.Bytes()),
	}
}

// certFile writes the certificate the TLS server at origin presents to a
// PEM file (the test peers' certificates are self-signed), for
// --delivery-ca-file.
func certFile(t *testing.T, origin string) string {
	t.Helper()
	return certsFile(t, origin)
}

// certsFile is certFile for several servers.
func certsFile(t *testing.T, origins ...string) string {
	t.Helper()
	var buf bytes.Buffer
	for _, origin := range origins {
		u, err := url.Parse(origin)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatalf("dial %s: %v", u.Host, err)
		}
		for _, c := range conn.ConnectionState().PeerCertificates {
			pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
		conn.Close()
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// deliveryConfig configures web push, email and a webhook "ops" on the
// peers, with short waits.
func deliveryConfig(t *testing.T, push *channeltest.PushService, keys vapidKeys, smtp *channeltest.SMTPServer, hook *channeltest.WebhookReceiver) node.DeliveryConfig {
	return node.DeliveryConfig{
		WebPushVAPIDPublicKey:  keys.public,
		WebPushVAPIDPrivateKey: keys.private,
		WebPushSubject:         "mailto:ops@maxloyalty.example",
		SMTPHost:               smtp.Host(),
		SMTPPort:               smtp.Port(),
		SMTPSecurity:           "none",
		EmailFrom:              "Max Loyalty <noreply@maxloyalty.example>",
		Webhooks:               []string{"ops=" + hook.URL()},
		WebhookSecrets:         "ops=" + hook.Secret,
		UnseenDelay:            testUnseenDelay,
		RetryBase:              200 * time.Millisecond,
		RetryMax:               time.Second,
		PollInterval:           100 * time.Millisecond,
		JobTimeout:             5 * time.Second,
		RescueAfter:            10 * time.Second,
		CAFile:                 certFile(t, push.URL()),
		AllowPrivate:           true,
	}
}

// startDeliveryNode starts a node configured by deliveryConfig (then
// mutate) and connects clients to its native port.
func startDeliveryNode(t *testing.T, mutate func(*node.Config)) *deliveryEnv {
	t.Helper()
	e := &deliveryEnv{
		push:  channeltest.NewPushService(t),
		vapid: newVAPID(t),
		smtp:  channeltest.NewSMTPServer(t, channeltest.SMTPOptions{}),
		hook:  channeltest.NewWebhookReceiver(t, false),
	}
	e.tn = startNode(t, func(c *node.Config) {
		c.Delivery = deliveryConfig(t, e.push, e.vapid, e.smtp, e.hook)
		if mutate != nil {
			mutate(c)
		}
	})
	e.pub, e.inbox, e.dl = dialDelivery(t, e.tn.GRPCAddr())
	return e
}

func dialDelivery(t *testing.T, addr string) (notifyv1.NotificationServiceClient, notifyv1.InboxServiceClient, notifyv1.DeliveryServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return notifyv1.NewNotificationServiceClient(conn), notifyv1.NewInboxServiceClient(conn), notifyv1.NewDeliveryServiceClient(conn)
}

// subscribePush makes a subscription at the push service for the node's
// VAPID key and registers it for the bearer of tok over REST, with the
// browser's PushSubscription.toJSON() as the body.
func (e *deliveryEnv) subscribePush(t *testing.T, ctx context.Context, tok string) (*channeltest.PushSubscription, *notifyv1.Device) {
	t.Helper()
	sub := e.push.Subscribe(t, e.vapid.public)
	body := `{"webPush":{"endpoint":"` + sub.Endpoint + `","expirationTime":null,"keys":{"p256dh":"` + sub.P256dh + `","auth":"` + sub.Auth + `"}},"label":"Firefox on Linux"}`
	r := restDo(t, ctx, http.MethodPost, "http://"+e.tn.HTTPAddr()+"/v1/delivery/devices", tok, body)
	var resp notifyv1.RegisterDeviceResponse
	if !restOK(t, r, "POST /v1/delivery/devices", &resp) {
		t.FailNow()
	}
	return sub, resp.Device
}

// timeline returns an event's steps as the bearer of tok reads them, as
// "channel:state" strings (live steps included), and the steps.
func (e *deliveryEnv) timeline(t *testing.T, ctx context.Context, tok, eventID string, req *notifyv1.GetDeliveryStatusRequest) ([]string, []*notifyv1.DeliveryStep) {
	t.Helper()
	if req == nil {
		req = &notifyv1.GetDeliveryStatusRequest{}
	}
	req.EventIds = []string{eventID}
	resp, err := e.dl.GetDeliveryStatus(withToken(ctx, tok), req)
	if err != nil {
		t.Fatalf("GetDeliveryStatus: %v", err)
	}
	var out []string
	var steps []*notifyv1.DeliveryStep
	for _, tl := range resp.Timelines {
		for _, s := range tl.Steps {
			out = append(out, stepName(s))
			steps = append(steps, s)
		}
	}
	return out, steps
}

func stepName(s *notifyv1.DeliveryStep) string {
	ch := strings.ToLower(strings.TrimPrefix(s.Channel.String(), "DELIVERY_CHANNEL_"))
	st := strings.ToLower(strings.TrimPrefix(s.State.String(), "DELIVERY_STATE_"))
	return ch + ":" + st
}

// awaitStep polls the timeline until it has want, and returns that step.
// The node's delivery queue records the steps: there is no event to wait on.
func (e *deliveryEnv) awaitStep(t *testing.T, ctx context.Context, tok, eventID, want string) *notifyv1.DeliveryStep {
	t.Helper()
	var (
		got   []string
		found *notifyv1.DeliveryStep
	)
	defer func() {
		if found == nil { // Eventually failed the test
			t.Logf("event %s: timeline %v", eventID, got)
		}
	}()
	testenv.Eventually(t, deliveryTimeout/2, "event "+eventID+": a "+want+" step", func() bool {
		var steps []*notifyv1.DeliveryStep
		got, steps = e.timeline(t, ctx, tok, eventID, nil)
		for _, s := range steps {
			if stepName(s) == want {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// webDelivery calls a unary DeliveryService method over grpc-web and
// decodes its answer into out; it returns the grpc-status trailer.
func webDelivery(t *testing.T, ctx context.Context, httpAddr, method, tok string, in, out proto.Message) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+httpAddr+"/notify.v1.DeliveryService/"+method, bytes.NewReader(webFrame(t, in)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("grpc-web %s: %v", method, err)
	}
	defer resp.Body.Close()
	code := resp.Header.Get("Grpc-Status")
	for {
		f, err := readWebFrame(resp.Body)
		if err == io.EOF {
			return code
		}
		if err != nil {
			t.Fatalf("grpc-web %s: %v", method, err)
		}
		if f.isTrailer() {
			return webTrailers(t, f.data).Get("Grpc-Status")
		}
		if err := proto.Unmarshal(f.data, out); err != nil {
			t.Fatalf("grpc-web %s: %v", method, err)
		}
	}
}

// webhookTypes returns the "type" of each genuine webhook delivery, by
// webhook-id.
func webhookTypes(t *testing.T, h *channeltest.WebhookReceiver) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, d := range h.Deliveries() {
		if d.Err != nil {
			continue
		}
		typ := jsonField(t, d.Body, "type")
		if !slices.Contains(out[typ], d.ID) {
			out[typ] = append(out[typ], d.ID)
		}
	}
	return out
}
