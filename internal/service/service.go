package service

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/hub"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/validate"
)

// Broker is what the service needs from a broker.
type Broker interface {
	Publish(ctx context.Context, p broker.Publication) (broker.Result, error)
	History(ctx context.Context, room string, since broker.Position) (broker.History, error)
}

// Config tunes the service. Zero values take the documented defaults.
type Config struct {
	// ServerID names this node in Connected messages. Default: "notifyd".
	ServerID string
	// HeartbeatInterval is how long a stream may be idle before a heartbeat.
	// Default: 25s.
	HeartbeatInterval time.Duration
	// QueueBytes bounds each subscriber's queue. Default: 1 MiB.
	QueueBytes int
	// MaxWriteBytes bounds one coalesced stream write. Default: 64 KiB.
	MaxWriteBytes int
	// MaxRoomsPerStream bounds the rooms of one stream. Default: 32.
	MaxRoomsPerStream int
	// MaxBatch bounds the requests of one PublishBatch. Default: 500.
	MaxBatch int
	// ReconnectDelayMin and ReconnectDelayMax bound the jittered delay given
	// to streams ended by shutdown. Defaults: 500ms and 5s.
	ReconnectDelayMin, ReconnectDelayMax time.Duration
	// TokenLeeway is the clock skew the token verifier allows past exp; a
	// stream ends that long after its token's exp. Default 0.
	TokenLeeway time.Duration
	// WriteTimeout bounds a publish's inbox write, which runs to its end
	// once the broker has the event, whatever the caller does (gives up,
	// or its deadline passes), so that an event delivered live is also
	// stored. Default: 10s.
	WriteTimeout time.Duration
	// InboxResync is how often the node looks for inbox snoozes that end
	// and notifications that expire, besides when it changes one itself:
	// another node's snooze of a user connected here comes back on this
	// node's streams within about this long after its end. Default: 1s
	// with a shared broker (several nodes), 30s alone.
	InboxResync time.Duration
	// Metrics receives observations. Default: none.
	Metrics Metrics
	// Limits bound publishers and streams. Default: none.
	Limits Limits
	// Deliveries queues published events' pushes, emails and webhooks in
	// the transaction of their inbox rows. Default: none.
	Deliveries Deliveries
	// Scheduler keeps scheduled publishes and digests (schedule.go).
	// Default: none; requests with a time are refused.
	Scheduler Scheduler
	// Tracer, when set, traces the steps of a publish (the broker's,
	// the inbox write) as children of the call's span. Default: none.
	Tracer trace.Tracer
}

func (c *Config) setDefaults() {
	if c.ServerID == "" {
		c.ServerID = "notifyd"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 25 * time.Second
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 1 << 20
	}
	if c.MaxWriteBytes <= 0 {
		c.MaxWriteBytes = 64 << 10
	}
	if c.MaxRoomsPerStream <= 0 {
		c.MaxRoomsPerStream = 32
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 500
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.ReconnectDelayMin <= 0 {
		c.ReconnectDelayMin = 500 * time.Millisecond
	}
	if c.ReconnectDelayMax < c.ReconnectDelayMin {
		c.ReconnectDelayMax = max(5*time.Second, c.ReconnectDelayMin)
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
}

// Service implements notify.v1.NotificationService.
type Service struct {
	notifyv1.UnimplementedNotificationServiceServer

	cfg    Config
	broker Broker
	hub    *hub.Hub
	inbox  Inbox // nil: no inbox
	unread *unreadNotifier
	wake   *waker
	log    *slog.Logger
	now    func() time.Time
}

// New returns a service publishing through b, delivering through h and
// keeping inboxes in in (nil: none). Call Run for its background work.
func New(cfg Config, b Broker, h *hub.Hub, in Inbox, log *slog.Logger) *Service {
	cfg.setDefaults()
	s := &Service{cfg: cfg, broker: b, hub: h, inbox: in, log: log, now: time.Now}
	if in != nil {
		s.unread = newUnreadNotifier(in, h, log)
		resync := s.cfg.InboxResync
		if resync <= 0 {
			resync = localResync
			if _, ok := b.(cluster); ok {
				resync = clusterResync
			}
		}
		s.wake = newWaker(in, s.unread, log, resync, time.Now)
	}
	// The delivery queue keeps scheduled publishes too, and hands them back
	// to this service at their time.
	if s.cfg.Scheduler == nil {
		s.cfg.Scheduler, _ = cfg.Deliveries.(Scheduler)
	}
	if p, ok := s.cfg.Scheduler.(interface{ SetPublisher(delivery.Publisher) }); ok {
		p.SetPublisher(s)
	}
	return s
}

// prepared is a validated publish request.
type prepared struct {
	pub   broker.Publication
	kinds []room.Kind // of pub.Rooms, for the metrics
	typ   notifyv1.EventType
	time  time.Time
	// restaurant is the event's restaurant_id when it is a valid id, kept
	// with its inbox rows (a guest confirms actions only at restaurants
	// that sent them an event); "" otherwise.
	restaurant string
	// inbox is what the event's inbox rows carry besides the event.
	inbox inboxMeta
	// critical sends the event at once on every channel (a CRITICAL
	// SystemAlert); email is the address the event gives its recipient
	// (GuestRegistered), for the delivery queue.
	critical bool
	email    string
}

// MaxIdempotencyKeyLen bounds idempotency keys.
const MaxIdempotencyKeyLen = 128

// prepare validates one publish request and turns it into a publication.
func (s *Service) prepare(c auth.Claims, req *notifyv1.PublishRequest) (out prepared, err error) {
	return s.prepareAt(c, req, s.now())
}

// prepareAt is prepare as if published at now (a scheduled publish is
// validated for its time).
func (s *Service) prepareAt(c auth.Claims, req *notifyv1.PublishRequest, now time.Time) (out prepared, err error) {
	ev := &notifyv1.Event{IdempotencyKey: req.IdempotencyKey}
	payload, name, typ := takePayload(req, ev)
	if payload == nil || !payload.ProtoReflect().IsValid() {
		return out, invalid("payload: exactly one event (e.g. pointsAdded) is required")
	}
	if err := validate.Event(payload, name, now); err != nil {
		return out, err
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKeyLen {
		return out, invalid("idempotency_key: longer than %d bytes", MaxIdempotencyKeyLen)
	}
	meta, err := inboxMetaOf(req.Inbox, payload, typ, now)
	if err != nil {
		return out, err
	}
	names := req.Rooms
	if req.Room != "" {
		names = append(names[:len(names):len(names)], req.Room)
	}
	var rooms []room.Room
	if len(names) == 0 {
		r, err := room.Route(payload)
		if err != nil {
			return out, err
		}
		rooms = r
	} else {
		if len(names) > s.cfg.MaxRoomsPerStream {
			s.cfg.Metrics.LimitRejected("rooms")
			return out, fmt.Errorf("%w: rooms: %d rooms, at most %d", errTooManyRooms, len(names), s.cfg.MaxRoomsPerStream)
		}
		r, err := parseRooms(names)
		if err != nil {
			return out, err
		}
		rooms = r
	}
	for _, r := range rooms {
		if err := access.CanPublish(c, r, payload); err != nil {
			return out, err
		}
	}
	ev.Id = uuid.Must(uuid.NewV7()).String()
	ev.PublishTime = timestamppb.New(now)
	data, err := proto.Marshal(ev)
	if err != nil {
		return out, invalid("event cannot be encoded: %v", err)
	}
	p := broker.Publication{EventID: ev.Id, Rooms: make([]string, len(rooms)), Data: data}
	kinds := make([]room.Kind, len(rooms))
	for i, r := range rooms {
		p.Rooms[i] = r.String()
		kinds[i] = r.Kind()
	}
	if req.IdempotencyKey != "" {
		p.IdempotencyKey = scopedKey(c, req.IdempotencyKey)
		fp, err := publishFingerprint(name, payload, p.Rooms)
		if err != nil {
			return out, invalid("event cannot be encoded: %v", err)
		}
		// The inbox options are part of the request, when given.
		part, err := fingerprintPart(req.Inbox)
		if err != nil {
			return out, invalid("inbox cannot be encoded: %v", err)
		}
		if part != "" {
			fp = fingerprint(fp, "inbox", part)
		}
		p.Fingerprint = fp
	}
	out = prepared{pub: p, kinds: kinds, typ: typ, time: now, restaurant: restaurantOf(payload), inbox: meta}
	switch e := payload.(type) {
	case *notifyv1.SystemAlert:
		out.critical = e.Level == notifyv1.AlertLevel_ALERT_LEVEL_CRITICAL
	case *notifyv1.GuestRegistered:
		out.email = e.Email
	}
	return out, nil
}

// restaurantOf returns the restaurant_id of an event that has one and
// whose value is a valid id, else "".
func restaurantOf(payload proto.Message) string {
	r, ok := payload.(interface{ GetRestaurantId() string })
	if !ok || room.ValidID(r.GetRestaurantId()) != nil {
		return ""
	}
	return r.GetRestaurantId()
}

// scopedKey is the broker's idempotency key of a caller's key: scoped to
// the caller (role and subject), so that publishers cannot collide, nor a
// guest's confirmations with a service's publishes.
func scopedKey(c auth.Claims, key string) string {
	return auth.RoleName(c.Role) + "\x00" + strconv.Itoa(len(c.Subject)) + "\x00" + c.Subject + "\x00" + key
}

// publishFingerprint identifies a publish request for its idempotency key:
// a hash of its canonical form, the event (its type and deterministic
// encoding) and its rooms, sorted. A retry sends the same request and so
// has the same fingerprint; the server-assigned id and time are not in it.
func publishFingerprint(name string, payload proto.Message, rooms []string) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(payload)
	if err != nil {
		return "", err
	}
	sorted := slices.Sorted(slices.Values(rooms))
	return fingerprint("publish", name, string(b), strings.Join(sorted, "\n")), nil
}

// fingerprint hashes parts, each length-prefixed so that no two lists of
// parts hash alike, into a short printable string.
func fingerprint(parts ...string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// publish publishes one prepared request and records it in the inboxes.
//
// The caller's context bounds the broker step only until the broker has
// the publication: Memory checks it on entry and then publishes whatever
// happens, Redis while it gets a connection (replies are read with the
// client's own timeouts), so a caller that gives up either stops the
// publish before anything is delivered or leaves it published. From then
// on the event may be delivered live, so the inbox write runs on a context
// of its own, bounded by WriteTimeout: a caller that gives up midway
// leaves the event both delivered and stored, as if it had waited, and its
// retry with the same idempotency key is a duplicate.
func (s *Service) publish(ctx context.Context, p prepared) (*notifyv1.PublishResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bctx, span := s.startSpan(ctx, "broker.Publish")
	res, err := s.broker.Publish(bctx, p.pub)
	if span != nil {
		endSpan(span, err, attribute.StringSlice("notify.rooms", p.pub.Rooms),
			attribute.String("notify.event_id", res.EventID), attribute.Bool("notify.duplicate", res.Duplicate))
	}
	if errors.Is(err, broker.ErrKeyReused) {
		first := strings.TrimPrefix(err.Error(), broker.ErrKeyReused.Error()+": ")
		return nil, fmt.Errorf("%w (%s) within the idempotency window; a new request needs a new key", errKeyReused, first)
	}
	if err != nil {
		s.cfg.Metrics.BrokerError("publish")
		return nil, err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.WriteTimeout)
	defer cancel()
	wctx, span = s.startSpan(wctx, "inbox.Insert")
	err = s.record(wctx, p, res)
	if span != nil {
		endSpan(span, err, attribute.String("notify.event_id", res.EventID))
	}
	if err != nil {
		s.cfg.Metrics.StoreError("insert")
		return nil, err
	}
	if !res.Duplicate {
		for _, k := range p.kinds {
			s.cfg.Metrics.EventPublished(k.String())
		}
	}
	return toResponse(res), nil
}

// startSpan starts a span of the publish path when tracing is on; the
// span is nil when it is off, so that an untraced publish builds no
// attributes.
func (s *Service) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if s.cfg.Tracer == nil {
		return ctx, nil
	}
	return s.cfg.Tracer.Start(ctx, name)
}

// endSpan ends span with attrs, and err as its status when not nil.
func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	span.SetAttributes(attrs...)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// allowPublish applies the publisher's rate limit to n events.
func (s *Service) allowPublish(c auth.Claims, n int) error {
	if s.cfg.Limits.Publish == nil {
		return nil
	}
	if err := s.cfg.Limits.Publish.Allow(c.Subject, n); err != nil {
		s.cfg.Metrics.LimitRejected("publish_rate")
		return err
	}
	return nil
}

// parseRooms parses names, dropping repeats (found by a scan of the rooms
// so far when there are few, sparing a map on every publish).
func parseRooms(names []string) ([]room.Room, error) {
	const scanUpTo = 8
	rooms := make([]room.Room, 0, len(names))
	var seen map[string]bool
	if len(names) > scanUpTo {
		seen = make(map[string]bool, len(names))
	}
	for _, n := range names {
		r, err := room.Parse(n)
		if err != nil {
			return nil, err
		}
		switch {
		case seen == nil && slices.Contains(rooms, r):
		case seen != nil && seen[r.String()]:
		default:
			if seen != nil {
				seen[r.String()] = true
			}
			rooms = append(rooms, r)
		}
	}
	return rooms, nil
}

func toResponse(r broker.Result) *notifyv1.PublishResponse {
	out := &notifyv1.PublishResponse{
		EventId:   r.EventID,
		Duplicate: r.Duplicate,
		Positions: make([]*notifyv1.StreamPosition, len(r.Positions)),
	}
	all := make([]notifyv1.StreamPosition, len(r.Positions)) // one allocation for all
	for i, p := range r.Positions {
		pos := &all[i]
		pos.Room, pos.Offset, pos.Epoch = p.Room, p.Offset, p.Epoch
		out.Positions[i] = pos
	}
	return out
}

func claims(ctx context.Context) (auth.Claims, error) {
	c, ok := auth.FromContext(ctx)
	if !ok {
		return auth.Claims{}, auth.ErrMissingToken
	}
	return c, nil
}

// Publish implements NotificationService.Publish.
func (s *Service) Publish(ctx context.Context, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
	c, err := claims(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if scheduled(req) {
		return s.publishLater(ctx, c, req)
	}
	p, err := s.prepare(c, req)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if err := s.allowPublish(c, 1); err != nil {
		return nil, toStatusErr(err)
	}
	resp, err := s.publish(ctx, p)
	return resp, toStatusErr(err)
}

// PublishBatch implements NotificationService.PublishBatch. Every request is
// validated before any is published; they are then published in order. If
// publishing fails part-way, the status says how many were published.
func (s *Service) PublishBatch(ctx context.Context, req *notifyv1.PublishBatchRequest) (*notifyv1.PublishBatchResponse, error) {
	c, err := claims(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if len(req.Requests) == 0 {
		return nil, toStatusErr(invalid("requests: at least one request is required"))
	}
	if len(req.Requests) > s.cfg.MaxBatch {
		s.cfg.Metrics.LimitRejected("batch_size")
		return nil, toStatusErr(fmt.Errorf("%w: requests: %d requests, at most %d per batch", errBatchTooLarge, len(req.Requests), s.cfg.MaxBatch))
	}
	if slices.ContainsFunc(req.Requests, scheduled) {
		return s.publishBatchLater(ctx, c, req.Requests)
	}
	pubs := make([]prepared, len(req.Requests))
	for i, r := range req.Requests {
		p, err := s.prepare(c, r)
		if err != nil {
			return nil, Status(wrapIndex(i, err), nil).Err()
		}
		pubs[i] = p
	}
	if err := s.allowPublish(c, len(pubs)); err != nil {
		return nil, toStatusErr(err)
	}
	out := &notifyv1.PublishBatchResponse{Results: make([]*notifyv1.PublishResponse, len(pubs))}
	for i, p := range pubs {
		resp, err := s.publish(ctx, p)
		if err != nil {
			return nil, Status(wrapIndex(i, err), map[string]string{"published": itoa(i)}).Err()
		}
		out.Results[i] = resp
	}
	return out, nil
}

// ConfirmAction implements NotificationService.ConfirmAction.
func (s *Service) ConfirmAction(ctx context.Context, req *notifyv1.ConfirmActionRequest) (*notifyv1.ConfirmActionResponse, error) {
	c, err := claims(ctx)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if err := access.CanConfirm(c); err != nil {
		return nil, toStatusErr(err)
	}
	switch {
	case room.ValidID(req.ActionId) != nil:
		return nil, toStatusErr(invalid("action_id: %v", room.ValidID(req.ActionId)))
	case req.Action == notifyv1.ActionType_ACTION_TYPE_UNSPECIFIED || notifyv1.ActionType_name[int32(req.Action)] == "":
		return nil, toStatusErr(invalid("action: a known action type is required"))
	case req.Amount < 0:
		return nil, toStatusErr(invalid("amount: must not be negative"))
	case room.ValidID(req.RestaurantId) != nil:
		return nil, toStatusErr(invalid("restaurant_id: %v", room.ValidID(req.RestaurantId)))
	}
	known, err := s.knowsRestaurant(ctx, c, req.RestaurantId)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if err := access.CanConfirmAt(c, req.RestaurantId, known); err != nil {
		return nil, toStatusErr(err)
	}
	// A confirmation is a publish: it counts against the guest's rate.
	if err := s.allowPublish(c, 1); err != nil {
		return nil, toStatusErr(err)
	}
	ev := &notifyv1.ActionConfirmed{
		ActionId:     req.ActionId,
		Action:       req.Action,
		Amount:       req.Amount,
		GuestId:      c.Subject,
		RestaurantId: req.RestaurantId,
		OccurredAt:   timestamppb.New(s.now()),
	}
	// The confirmation is the guest's own publish into the restaurant room,
	// allowed here and nowhere else.
	p, err := s.prepare(auth.Claims{Subject: c.Subject, Role: notifyv1.Role_ROLE_SERVICE},
		&notifyv1.PublishRequest{Payload: &notifyv1.PublishRequest_ActionConfirmed{ActionConfirmed: ev}, IdempotencyKey: "action:" + req.ActionId})
	if err != nil {
		return nil, toStatusErr(err)
	}
	// The guest's key for the action, and the request's fingerprint: the
	// event's time is the server's, so a retry of the same confirmation
	// is a duplicate, and a confirmation of the same action id with another
	// action, amount or restaurant is refused.
	p.pub.IdempotencyKey = scopedKey(c, "action:"+req.ActionId)
	p.pub.Fingerprint = fingerprint("confirm", req.ActionId, req.Action.String(), strconv.FormatInt(req.Amount, 10), req.RestaurantId)
	resp, err := s.publish(ctx, p)
	if err != nil {
		return nil, toStatusErr(err)
	}
	return &notifyv1.ConfirmActionResponse{EventId: resp.EventId, Position: resp.Positions[0], Duplicate: resp.Duplicate}, nil
}

// knowsRestaurant reports whether the guest of c has had an event from
// restaurant rid: the platform has no registry of restaurants, and the
// guest's inbox is what ties a guest to one. Without an inbox no
// restaurant is known.
func (s *Service) knowsRestaurant(ctx context.Context, c auth.Claims, rid string) (bool, error) {
	if s.inbox == nil || room.ValidID(c.Subject) != nil {
		return false, nil
	}
	return s.inbox.HasEventFrom(ctx, c.Subject, rid)
}
