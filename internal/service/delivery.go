package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/store"
)

// Deliveries is what the publish path needs of the delivery queue
// (delivery.Queue): it queues a published event's deliveries in the
// transaction of its inbox rows.
type Deliveries interface {
	// Enabled reports whether anything is delivered at all.
	Enabled() bool
	// WantsEvents reports whether every event is queued (for webhooks),
	// not only those that enter an inbox.
	WantsEvents() bool
	Enqueue(ctx context.Context, tx *store.Tx, p delivery.Publication) error
}

// insertWith is the store's Insert with a hook in its transaction
// (store.Store.InsertWith), found by type assertion on the Inbox.
type insertWith interface {
	InsertWith(ctx context.Context, items []store.NewItem, hook store.InsertHook) error
}

// DeliveryStore is what DeliveryService needs of the store.
type DeliveryStore interface {
	RegisterDevice(ctx context.Context, d store.Device) (store.Device, error)
	Devices(ctx context.Context, userID string) ([]store.Device, error)
	RemoveDevice(ctx context.Context, userID, id string) error
	Profile(ctx context.Context, userID string) (store.Profile, error)
	UpdateProfile(ctx context.Context, u store.ProfileUpdate) (store.Profile, error)
	DeliveryPolicy(ctx context.Context, userID string) ([]store.DeliveryRule, bool, error)
	SetDeliveryPolicy(ctx context.Context, userID string, rules []store.DeliveryRule) error
	Statuses(ctx context.Context, eventIDs []string, userID string) ([]store.Status, error)
}

// DeliveryInfo is the server's delivery configuration as clients see it
// (GetDeliveryConfig).
type DeliveryInfo struct {
	// Channels are the user channels configured (store names: "webpush",
	// "fcm", "apns", "email"); devices of other channels are refused.
	Channels []string
	// VAPIDPublicKey is the web push application server key, base64url.
	VAPIDPublicKey string
	// UnseenDelay and DelayedTypes (store names) are the server's policy.
	UnseenDelay  time.Duration
	DelayedTypes []string
}

// DeliveryService implements notify.v1.DeliveryService: users' devices,
// delivery profiles and rules, and delivery timelines.
type DeliveryService struct {
	notifyv1.UnimplementedDeliveryServiceServer
	st   DeliveryStore
	info DeliveryInfo
}

// NewDeliveryService returns the DeliveryService over st.
func NewDeliveryService(st DeliveryStore, info DeliveryInfo) *DeliveryService {
	return &DeliveryService{st: st, info: info}
}

// channelNames maps the contract's channels to the store's names.
var channelNames = map[notifyv1.DeliveryChannel]string{
	notifyv1.DeliveryChannel_DELIVERY_CHANNEL_WEB_PUSH: store.ChannelWebPush,
	notifyv1.DeliveryChannel_DELIVERY_CHANNEL_FCM:      store.ChannelFCM,
	notifyv1.DeliveryChannel_DELIVERY_CHANNEL_APNS:     store.ChannelAPNs,
	notifyv1.DeliveryChannel_DELIVERY_CHANNEL_EMAIL:    store.ChannelEmail,
	notifyv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK:  store.ChannelWebhook,
	notifyv1.DeliveryChannel_DELIVERY_CHANNEL_LIVE:     store.ChannelLive,
}

func channelOf(name string) notifyv1.DeliveryChannel {
	for c, n := range channelNames {
		if n == name {
			return c
		}
	}
	return notifyv1.DeliveryChannel_DELIVERY_CHANNEL_UNSPECIFIED
}

// userChannel is the store's name of a channel a user's rule may name.
func userChannel(c notifyv1.DeliveryChannel) (string, bool) {
	n := channelNames[c]
	return n, slices.Contains(delivery.UserChannels, n)
}

var stateValues = map[string]notifyv1.DeliveryState{
	delivery.StateQueued:    notifyv1.DeliveryState_DELIVERY_STATE_QUEUED,
	delivery.StateScheduled: notifyv1.DeliveryState_DELIVERY_STATE_SCHEDULED,
	delivery.StateSent:      notifyv1.DeliveryState_DELIVERY_STATE_SENT,
	delivery.StateDelivered: notifyv1.DeliveryState_DELIVERY_STATE_DELIVERED,
	delivery.StateRetrying:  notifyv1.DeliveryState_DELIVERY_STATE_RETRYING,
	delivery.StateFailed:    notifyv1.DeliveryState_DELIVERY_STATE_FAILED,
	delivery.StateCancelled: notifyv1.DeliveryState_DELIVERY_STATE_CANCELLED,
	delivery.StateHeld:      notifyv1.DeliveryState_DELIVERY_STATE_HELD,
}

// deliveryUser is whose devices, profile or rules a call is about.
func deliveryUser(ctx context.Context, userID string) (string, error) {
	c, err := claims(ctx)
	if err != nil {
		return "", err
	}
	if userID != "" && userID != c.Subject {
		if err := room.ValidID(userID); err != nil {
			return "", invalid("user_id: %v", err)
		}
	}
	return access.DeliveryUser(c, userID)
}

// selfRole is the admin mark of a user acting for themselves: a user
// whose own token says admin receives the admin room's notifications
// (store.Profile.Admin); nil for a service acting for a user.
func selfRole(ctx context.Context, userID string) *bool {
	c, err := claims(ctx)
	if err != nil || userID != c.Subject {
		return nil
	}
	admin := c.Role == notifyv1.Role_ROLE_ADMIN
	return &admin
}

// GetDeliveryConfig implements DeliveryService.GetDeliveryConfig.
func (x *DeliveryService) GetDeliveryConfig(ctx context.Context, _ *notifyv1.GetDeliveryConfigRequest) (*notifyv1.GetDeliveryConfigResponse, error) {
	if _, err := claims(ctx); err != nil {
		return nil, toStatusErr(err)
	}
	out := &notifyv1.GetDeliveryConfigResponse{
		VapidPublicKey: x.info.VAPIDPublicKey,
		UnseenDelay:    durationpb.New(x.info.UnseenDelay),
	}
	for _, ch := range x.info.Channels {
		out.Channels = append(out.Channels, channelOf(ch))
	}
	for _, t := range x.info.DelayedTypes {
		if et := typeByName(t); et != notifyv1.EventType_EVENT_TYPE_UNSPECIFIED {
			out.DelayedTypes = append(out.DelayedTypes, et)
		}
	}
	return out, nil
}

// Bounds of a registration.
const (
	maxLabel   = 256
	maxFCMLen  = 4096
	minAPNsLen = 16
	maxAPNsLen = 200
)

var (
	hexToken   = regexp.MustCompile(`^[0-9a-fA-F]+$`)
	fcmToken   = regexp.MustCompile(`^[\x21-\x7e]+$`)
	localeExpr = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
)

// RegisterDevice implements DeliveryService.RegisterDevice.
func (x *DeliveryService) RegisterDevice(ctx context.Context, req *notifyv1.RegisterDeviceRequest) (*notifyv1.RegisterDeviceResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	d, err := x.deviceOf(req)
	if err != nil {
		return nil, toStatusErr(err)
	}
	d.UserID = user
	if admin := selfRole(ctx, user); admin != nil {
		if _, err := x.st.UpdateProfile(ctx, store.ProfileUpdate{UserID: user, Admin: admin}); err != nil {
			return nil, toStatusErr(err)
		}
	}
	stored, err := x.st.RegisterDevice(ctx, d)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.RegisterDeviceResponse{Device: toProtoDevice(stored)}, nil
}

// deviceOf checks a registration and turns it into a device.
func (x *DeliveryService) deviceOf(req *notifyv1.RegisterDeviceRequest) (store.Device, error) {
	if len(req.Label) > maxLabel || !utf8.ValidString(req.Label) {
		return store.Device{}, invalid("label: at most %d bytes of UTF-8", maxLabel)
	}
	var d store.Device
	switch t := req.Device.(type) {
	case *notifyv1.RegisterDeviceRequest_WebPush:
		s := t.WebPush
		if s == nil {
			return d, invalid("web_push: the subscription is required")
		}
		u, err := url.Parse(s.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || len(s.Endpoint) > store.MaxTokenLen {
			return d, invalid("web_push.endpoint: an https URL of at most %d bytes is required", store.MaxTokenLen)
		}
		if s.Keys == nil {
			return d, invalid("web_push.keys: p256dh and auth are required")
		}
		if k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s.Keys.P256Dh, "=")); err != nil || len(k) != 65 || k[0] != 4 {
			return d, invalid("web_push.keys.p256dh: an uncompressed P-256 public key, base64url, is required")
		}
		if k, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s.Keys.Auth, "=")); err != nil || len(k) != 16 {
			return d, invalid("web_push.keys.auth: a 16-byte secret, base64url, is required")
		}
		d = store.Device{Channel: store.ChannelWebPush, Token: s.Endpoint, P256dh: s.Keys.P256Dh, Auth: s.Keys.Auth}
	case *notifyv1.RegisterDeviceRequest_FcmToken:
		if len(t.FcmToken) > maxFCMLen || !fcmToken.MatchString(t.FcmToken) {
			return d, invalid("fcm_token: 1 to %d printable ASCII characters", maxFCMLen)
		}
		d = store.Device{Channel: store.ChannelFCM, Token: t.FcmToken}
	case *notifyv1.RegisterDeviceRequest_ApnsToken:
		n := len(t.ApnsToken)
		if n < minAPNsLen || n > maxAPNsLen || n%2 != 0 || !hexToken.MatchString(t.ApnsToken) {
			return d, invalid("apns_token: %d to %d hex digits", minAPNsLen, maxAPNsLen)
		}
		d = store.Device{Channel: store.ChannelAPNs, Token: strings.ToLower(t.ApnsToken)}
	default:
		return d, invalid("device: one of web_push, fcm_token and apns_token is required")
	}
	if !slices.Contains(x.info.Channels, d.Channel) {
		return d, invalid("this server does not deliver on %s", d.Channel)
	}
	d.Label = req.Label
	return d, nil
}

func toProtoDevice(d store.Device) *notifyv1.Device {
	return &notifyv1.Device{
		Id:         d.ID,
		Channel:    channelOf(d.Channel),
		Label:      d.Label,
		Hint:       deviceHint(d),
		CreateTime: timestamppb.New(d.CreatedAt),
		UpdateTime: timestamppb.New(d.UpdatedAt),
	}
}

// deviceHint names where a device's messages go without giving its token
// away (a web push endpoint is a capability): the push service's origin,
// or a token's last characters.
func deviceHint(d store.Device) string {
	if d.Channel == store.ChannelWebPush {
		if u, err := url.Parse(d.Token); err == nil {
			return u.Scheme + "://" + u.Host
		}
		return ""
	}
	if len(d.Token) <= 6 {
		return "…"
	}
	return "…" + d.Token[len(d.Token)-6:]
}

// ListDevices implements DeliveryService.ListDevices.
func (x *DeliveryService) ListDevices(ctx context.Context, req *notifyv1.ListDevicesRequest) (*notifyv1.ListDevicesResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	ds, err := x.st.Devices(ctx, user)
	if err != nil {
		return nil, toStatusErr(err)
	}
	out := &notifyv1.ListDevicesResponse{Devices: make([]*notifyv1.Device, 0, len(ds))}
	for _, d := range ds {
		out.Devices = append(out.Devices, toProtoDevice(d))
	}
	return out, nil
}

// RemoveDevice implements DeliveryService.RemoveDevice.
func (x *DeliveryService) RemoveDevice(ctx context.Context, req *notifyv1.RemoveDeviceRequest) (*notifyv1.RemoveDeviceResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	id := req.Id
	switch {
	case (id == "") == (req.Token == ""):
		return nil, toStatusErr(invalid("id or token: give one of them"))
	case len(id) > 64 || len(req.Token) > store.MaxTokenLen:
		return nil, toStatusErr(invalid("id or token: too long"))
	case req.Token != "":
		ds, err := x.st.Devices(ctx, user)
		if err != nil {
			return nil, toStatusErr(err)
		}
		for _, d := range ds {
			if d.Token == req.Token || (d.Channel == store.ChannelAPNs && d.Token == strings.ToLower(req.Token)) {
				id = d.ID
				break
			}
		}
		if id == "" {
			return nil, toStatusErr(notFound("token: no device of %s has this token", user))
		}
	}
	if err := x.st.RemoveDevice(ctx, user, id); err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.RemoveDeviceResponse{}, nil
}

func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

// GetDeliveryProfile implements DeliveryService.GetDeliveryProfile.
func (x *DeliveryService) GetDeliveryProfile(ctx context.Context, req *notifyv1.GetDeliveryProfileRequest) (*notifyv1.GetDeliveryProfileResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	p, err := x.st.Profile(ctx, user)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.GetDeliveryProfileResponse{Profile: &notifyv1.DeliveryProfile{Email: p.Email, Locale: p.Locale}}, nil
}

// UpdateDeliveryProfile implements DeliveryService.UpdateDeliveryProfile.
func (x *DeliveryService) UpdateDeliveryProfile(ctx context.Context, req *notifyv1.UpdateDeliveryProfileRequest) (*notifyv1.UpdateDeliveryProfileResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	u := store.ProfileUpdate{UserID: user, Email: req.Email, Locale: req.Locale, Admin: selfRole(ctx, user)}
	if req.Email != nil && *req.Email != "" {
		a, err := mail.ParseAddress(*req.Email)
		if err != nil || a.Address != *req.Email || a.Name != "" || len(*req.Email) > store.MaxEmailLen {
			return nil, toStatusErr(invalid("email: a bare address such as guest@example.com, at most %d bytes", store.MaxEmailLen))
		}
	}
	if req.Locale != nil && *req.Locale != "" && (len(*req.Locale) > 35 || !localeExpr.MatchString(*req.Locale)) {
		return nil, toStatusErr(invalid("locale: a BCP 47 language tag such as fr or en-GB"))
	}
	p, err := x.st.UpdateProfile(ctx, u)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.UpdateDeliveryProfileResponse{Profile: &notifyv1.DeliveryProfile{Email: p.Email, Locale: p.Locale}}, nil
}

// GetDeliveryPolicy implements DeliveryService.GetDeliveryPolicy.
func (x *DeliveryService) GetDeliveryPolicy(ctx context.Context, req *notifyv1.GetDeliveryPolicyRequest) (*notifyv1.GetDeliveryPolicyResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	rules, _, err := x.st.DeliveryPolicy(ctx, user)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.GetDeliveryPolicyResponse{Rules: toProtoRules(rules)}, nil
}

// UpdateDeliveryPolicy implements DeliveryService.UpdateDeliveryPolicy.
func (x *DeliveryService) UpdateDeliveryPolicy(ctx context.Context, req *notifyv1.UpdateDeliveryPolicyRequest) (*notifyv1.UpdateDeliveryPolicyResponse, error) {
	user, err := deliveryUser(ctx, req.UserId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	rules, err := fromProtoRules(req.Rules)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if err := x.st.SetDeliveryPolicy(ctx, user, rules); err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.UpdateDeliveryPolicyResponse{Rules: toProtoRules(rules)}, nil
}

// maxRuleDelay bounds a rule's unseen delay.
const maxRuleDelay = 7 * 24 * time.Hour

func fromProtoRules(in []*notifyv1.DeliveryRule) ([]store.DeliveryRule, error) {
	if len(in) > 64 {
		return nil, invalid("rules: %d rules, at most 64", len(in))
	}
	out := make([]store.DeliveryRule, 0, len(in))
	seen := map[notifyv1.EventType]bool{}
	for i, r := range in {
		if r == nil || r.EventType == notifyv1.EventType_EVENT_TYPE_UNSPECIFIED || notifyv1.EventType_name[int32(r.EventType)] == "" {
			return nil, invalid("rules[%d].event_type: a known event type is required", i)
		}
		if seen[r.EventType] {
			return nil, invalid("rules[%d].event_type: %s has another rule", i, r.EventType)
		}
		seen[r.EventType] = true
		rule := store.DeliveryRule{EventType: typeName(r.EventType)}
		for field, list := range map[string][]notifyv1.DeliveryChannel{"enabled_channels": r.EnabledChannels, "disabled_channels": r.DisabledChannels} {
			for _, c := range list {
				name, ok := userChannel(c)
				if !ok {
					return nil, invalid("rules[%d].%s: %s is not a user's channel (web push, FCM, APNs, email)", i, field, c)
				}
				if field == "enabled_channels" {
					rule.On = append(rule.On, name)
				} else {
					rule.Off = append(rule.Off, name)
				}
			}
		}
		for _, ch := range rule.On {
			if slices.Contains(rule.Off, ch) {
				return nil, invalid("rules[%d]: %s is both enabled and disabled", i, ch)
			}
		}
		slices.Sort(rule.On)
		rule.On = slices.Compact(rule.On)
		slices.Sort(rule.Off)
		rule.Off = slices.Compact(rule.Off)
		if r.UnseenDelay != nil {
			if err := r.UnseenDelay.CheckValid(); err != nil {
				return nil, invalid("rules[%d].unseen_delay: %v", i, err)
			}
			d := r.UnseenDelay.AsDuration()
			if d < 0 || d > maxRuleDelay {
				return nil, invalid("rules[%d].unseen_delay: 0 to 7 days", i)
			}
			rule.UnseenDelay = &d
		}
		out = append(out, rule)
	}
	return out, nil
}

func toProtoRules(in []store.DeliveryRule) []*notifyv1.DeliveryRule {
	out := make([]*notifyv1.DeliveryRule, 0, len(in))
	for _, r := range in {
		p := &notifyv1.DeliveryRule{EventType: typeByName(r.EventType)}
		for _, ch := range r.On {
			p.EnabledChannels = append(p.EnabledChannels, channelOf(ch))
		}
		for _, ch := range r.Off {
			p.DisabledChannels = append(p.DisabledChannels, channelOf(ch))
		}
		if r.UnseenDelay != nil {
			p.UnseenDelay = durationpb.New(*r.UnseenDelay)
		}
		out = append(out, p)
	}
	return out
}

// maxEventIDLen bounds an event id named in a status request.
const maxEventIDLen = 128

// GetDeliveryStatus implements DeliveryService.GetDeliveryStatus.
func (x *DeliveryService) GetDeliveryStatus(ctx context.Context, req *notifyv1.GetDeliveryStatusRequest) (*notifyv1.GetDeliveryStatusResponse, error) {
	c, err := claims(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	switch {
	case req.AllRecipients && req.UserId != "":
		return nil, toStatusErr(invalid("all_recipients and user_id: give one or the other"))
	case req.UserId != "" && req.UserId != c.Subject && room.ValidID(req.UserId) != nil:
		return nil, toStatusErr(invalid("user_id: %v", room.ValidID(req.UserId)))
	case len(req.EventIds) == 0 || len(req.EventIds) > store.MaxStatusEvents:
		return nil, toStatusErr(invalid("event_ids: 1 to %d event ids", store.MaxStatusEvents))
	}
	ids := make([]string, 0, len(req.EventIds))
	for i, id := range req.EventIds {
		if id == "" || len(id) > maxEventIDLen || !utf8.ValidString(id) {
			return nil, toStatusErr(invalid("event_ids[%d]: 1 to %d bytes", i, maxEventIDLen))
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	user, err := access.DeliveryReader(c, req.UserId, req.AllRecipients)
	if err != nil {
		return nil, toStatusErr(err)
	}
	steps, err := x.st.Statuses(ctx, ids, user)
	if err != nil {
		return nil, toStatusErr(err)
	}
	byEvent := map[string][]*notifyv1.DeliveryStep{}
	for _, s := range steps {
		byEvent[s.EventID] = append(byEvent[s.EventID], &notifyv1.DeliveryStep{
			Id: s.ID, EventId: s.EventID, UserId: s.UserID, Channel: channelOf(s.Channel), Target: s.Target,
			State: stateValues[s.State], Time: timestamppb.New(s.At), Attempt: int32(s.Attempt),
			Detail: s.Detail, ProviderId: s.ProviderID,
		})
	}
	out := &notifyv1.GetDeliveryStatusResponse{}
	for _, id := range ids {
		if st := byEvent[id]; len(st) > 0 {
			out.Timelines = append(out.Timelines, &notifyv1.DeliveryTimeline{EventId: id, Steps: st})
		}
	}
	return out, nil
}
