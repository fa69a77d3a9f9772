package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/access"
	"github.com/maxloyalty/notify/internal/auth"
	"github.com/maxloyalty/notify/internal/delivery"
	"github.com/maxloyalty/notify/internal/room"
	"github.com/maxloyalty/notify/internal/store"
)

// Scheduler keeps publish requests until their time and a user's open
// digests (delivery.Queue).
type Scheduler interface {
	// Scheduling reports whether scheduled publishes are kept at all.
	Scheduling() bool
	// Horizon is how far ahead a publish may be scheduled.
	Horizon() time.Duration
	Schedule(ctx context.Context, ss []delivery.Schedule) ([]delivery.ScheduledResult, error)
	CancelScheduled(ctx context.Context, publisher, cancelKey, id string) (*notifyv1.ScheduledPublish, error)
	ListScheduled(ctx context.Context, publisher string, done bool, pageSize int, pageToken string) ([]*notifyv1.ScheduledPublish, string, error)
	OpenDigests(ctx context.Context, user string) ([]*notifyv1.Digest, error)
	ReleaseDigests(ctx context.Context, user, typ, key string) ([]*notifyv1.Digest, error)
}

// MaxCancelKeyLen bounds cancel keys.
const MaxCancelKeyLen = 128

var cancelKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// scheduled reports whether a request asks for a later time or names a
// cancel key.
func scheduled(req *notifyv1.PublishRequest) bool {
	return req.DeliverAt != nil || req.Delay != nil || req.CancelKey != ""
}

// publisherOf names a publisher in scheduled publishes: "role:subject".
func publisherOf(c auth.Claims) string { return auth.RoleName(c.Role) + ":" + c.Subject }

// deliverTime checks a request's time: nil when it publishes now.
func (s *Service) deliverTime(req *notifyv1.PublishRequest, now time.Time) (*time.Time, string, error) {
	if req.DeliverAt != nil && req.Delay != nil {
		return nil, "", invalid("deliver_at, delay: give one, not both")
	}
	if req.CancelKey != "" && !cancelKeyRE.MatchString(req.CancelKey) {
		return nil, "", invalid("cancel_key: 1 to %d characters of [A-Za-z0-9_.:-]", MaxCancelKeyLen)
	}
	var at time.Time
	var how string
	switch {
	case req.DeliverAt != nil:
		if err := req.DeliverAt.CheckValid(); err != nil {
			return nil, "", invalid("deliver_at: %v", err)
		}
		at = req.DeliverAt.AsTime()
		if at.Before(now.Add(-delivery.PastTolerance)) {
			return nil, "", invalid("deliver_at: %s is in the past (now is %s)", at.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		how = "at\x00" + at.UTC().Format(time.RFC3339Nano)
	case req.Delay != nil:
		if err := req.Delay.CheckValid(); err != nil {
			return nil, "", invalid("delay: %v", err)
		}
		d := req.Delay.AsDuration()
		if d < 0 {
			return nil, "", invalid("delay: %v is negative", d)
		}
		at = now.Add(d)
		how = "delay\x00" + d.String()
	default:
		return nil, "", invalid("cancel_key: only for a scheduled publish (with deliver_at or delay)")
	}
	if h := s.cfg.Scheduler.Horizon(); at.After(now.Add(h)) {
		return nil, "", invalid("deliver_at: %s is beyond the scheduling horizon of %v (at most %s)", at.UTC().Format(time.RFC3339), h, now.Add(h).UTC().Format(time.RFC3339))
	}
	if !at.After(now) {
		return nil, "", nil
	}
	return &at, how, nil
}

// later is a scheduled request, validated.
type later struct {
	index int
	s     delivery.Schedule
}

// prepareLater validates a request with a time: nil when it is due now,
// and it then publishes as any other (without its time and cancel key).
func (s *Service) prepareLater(c auth.Claims, req *notifyv1.PublishRequest, index int) (*later, error) {
	if _, err := s.scheduler(); err != nil {
		return nil, err
	}
	now := s.now()
	at, how, err := s.deliverTime(req, now)
	if err != nil || at == nil {
		return nil, err
	}
	r := proto.Clone(req).(*notifyv1.PublishRequest)
	r.DeliverAt, r.Delay, r.CancelKey = nil, nil, ""
	if r.IdempotencyKey == "" {
		// Published with a key of its own, so that a job run again (its
		// node died midway) publishes nothing twice.
		r.IdempotencyKey = "scheduled-" + uuid.Must(uuid.NewV7()).String()
	}
	// Validated as it will be published: at its time.
	p, err := s.prepareAt(c, r, *at)
	if err != nil {
		return nil, err
	}
	claims, err := json.Marshal(scheduledClaims{Subject: c.Subject, Role: auth.RoleName(c.Role), Restaurant: c.RestaurantID})
	if err != nil {
		return nil, err
	}
	return &later{index: index, s: delivery.Schedule{
		Publisher: publisherOf(c), Claims: claims, Request: r, CancelKey: req.CancelKey,
		Fingerprint: fingerprint(p.pub.Fingerprint, how), EventType: p.typ, At: *at,
	}}, nil
}

// scheduledClaims are the publisher's claims a scheduled publish keeps.
type scheduledClaims struct {
	Subject    string `json:"sub"`
	Role       string `json:"role"`
	Restaurant string `json:"restaurant_id,omitempty"`
}

// errNoScheduler: scheduling needs the queue in the inbox's database.
var errNoScheduler = fmt.Errorf("%w: this server keeps no scheduled publishes (it has no inbox database)", delivery.ErrNoScheduler)

// publishLater publishes a request with a time: stored until then, or
// published now when its time has come.
func (s *Service) publishLater(ctx context.Context, c auth.Claims, req *notifyv1.PublishRequest) (*notifyv1.PublishResponse, error) {
	l, err := s.prepareLater(c, req, 0)
	if err != nil {
		return nil, toStatusErr(err)
	}
	if err := s.allowPublish(c, 1); err != nil {
		return nil, toStatusErr(err)
	}
	if l == nil {
		r := proto.Clone(req).(*notifyv1.PublishRequest)
		r.DeliverAt, r.Delay, r.CancelKey = nil, nil, ""
		p, err := s.prepare(c, r)
		if err != nil {
			return nil, toStatusErr(err)
		}
		resp, err := s.publish(ctx, p)
		return resp, toStatusErr(err)
	}
	res, err := s.cfg.Scheduler.Schedule(ctx, []delivery.Schedule{l.s})
	if err != nil {
		var ie *delivery.IndexError
		if errors.As(err, &ie) {
			err = ie.Err
		}
		return nil, toStatusErr(err)
	}
	return &notifyv1.PublishResponse{Scheduled: res[0].Scheduled, Duplicate: res[0].Duplicate}, nil
}

// publishBatchLater is PublishBatch with some requests scheduled: every
// request is validated, then the scheduled ones are stored together (all
// or none), then the others are published in order.
func (s *Service) publishBatchLater(ctx context.Context, c auth.Claims, reqs []*notifyv1.PublishRequest) (*notifyv1.PublishBatchResponse, error) {
	var (
		laters []*later
		now    = map[int]prepared{}
	)
	for i, r := range reqs {
		if scheduled(r) {
			l, err := s.prepareLater(c, r, i)
			if err != nil {
				return nil, Status(wrapIndex(i, err), nil).Err()
			}
			if l != nil {
				laters = append(laters, l)
				continue
			}
			r = proto.Clone(r).(*notifyv1.PublishRequest)
			r.DeliverAt, r.Delay, r.CancelKey = nil, nil, ""
		}
		p, err := s.prepare(c, r)
		if err != nil {
			return nil, Status(wrapIndex(i, err), nil).Err()
		}
		now[i] = p
	}
	if err := s.allowPublish(c, len(reqs)); err != nil {
		return nil, toStatusErr(err)
	}
	out := &notifyv1.PublishBatchResponse{Results: make([]*notifyv1.PublishResponse, len(reqs))}
	if len(laters) > 0 {
		ss := make([]delivery.Schedule, len(laters))
		for i, l := range laters {
			ss[i] = l.s
		}
		res, err := s.cfg.Scheduler.Schedule(ctx, ss)
		if err != nil {
			var ie *delivery.IndexError
			if errors.As(err, &ie) {
				return nil, Status(wrapIndex(laters[ie.Index].index, ie.Err), map[string]string{"published": "0"}).Err()
			}
			return nil, Status(err, map[string]string{"published": "0"}).Err()
		}
		for i, l := range laters {
			out.Results[l.index] = &notifyv1.PublishResponse{Scheduled: res[i].Scheduled, Duplicate: res[i].Duplicate}
		}
	}
	published := 0
	for i := range reqs {
		p, ok := now[i]
		if !ok {
			continue
		}
		resp, err := s.publish(ctx, p)
		if err != nil {
			return nil, Status(wrapIndex(i, err), map[string]string{"published": itoa(published), "scheduled": itoa(len(laters))}).Err()
		}
		out.Results[i] = resp
		published++
	}
	return out, nil
}

// PublishScheduled publishes a scheduled request at its time
// (delivery.Publisher): the normal publish path, as its publisher, with
// its idempotency key. A request no longer valid, or no longer allowed, is
// refused for good (delivery.ErrRefused); other failures are retried.
func (s *Service) PublishScheduled(ctx context.Context, claims, request []byte) (string, error) {
	var sc scheduledClaims
	if err := json.Unmarshal(claims, &sc); err != nil {
		return "", fmt.Errorf("%w: claims: %v", delivery.ErrRefused, err)
	}
	role, err := auth.ParseRole(sc.Role)
	if err != nil {
		return "", fmt.Errorf("%w: %v", delivery.ErrRefused, err)
	}
	c := auth.Claims{Subject: sc.Subject, Role: role, RestaurantID: sc.Restaurant}
	req := &notifyv1.PublishRequest{}
	if err := proto.Unmarshal(request, req); err != nil {
		return "", fmt.Errorf("%w: request: %v", delivery.ErrRefused, err)
	}
	p, err := s.prepare(c, req)
	if err != nil {
		return "", fmt.Errorf("%w: %v", delivery.ErrRefused, err)
	}
	resp, err := s.publish(auth.NewContext(ctx, c), p)
	switch {
	case errors.Is(err, errKeyReused):
		return "", fmt.Errorf("%w: %v", delivery.ErrRefused, err)
	case err != nil:
		return "", err
	}
	return resp.EventId, nil
}

// ScheduleService implements notify.v1.ScheduleService.
type ScheduleService struct {
	notifyv1.UnimplementedScheduleServiceServer
	svc *Service
}

// Schedules returns the ScheduleService of s.
func (s *Service) Schedules() *ScheduleService { return &ScheduleService{svc: s} }

// scheduler is the configured Scheduler, or errNoScheduler when there is
// none or it keeps no scheduled publishes.
func (s *Service) scheduler() (Scheduler, error) {
	sc := s.cfg.Scheduler
	if sc == nil || !sc.Scheduling() {
		return nil, errNoScheduler
	}
	return sc, nil
}

// scheduleCall is every ScheduleService call's preamble and error
// mapping: it takes the caller's claims (Unauthenticated without them) and
// the scheduler (FailedPrecondition without one), runs the call's own part
// f with them, and turns what f returns into a gRPC status.
func scheduleCall[T any](ctx context.Context, x *ScheduleService, f func(c auth.Claims, sc Scheduler) (T, error)) (T, error) {
	var zero T
	c, err := claims(ctx)
	if err != nil {
		return zero, toStatusErr(err)
	}
	sc, err := x.svc.scheduler()
	if err != nil {
		return zero, toStatusErr(err)
	}
	out, err := f(c, sc)
	if err != nil {
		return zero, toStatusErr(err)
	}
	return out, nil
}

// publisherFor resolves whose scheduled publishes a call is about: the
// caller's own, or for admins another's ("*": everyone's, when all).
func publisherFor(c auth.Claims, publisher string, all bool) (string, error) {
	own := publisherOf(c)
	switch {
	case publisher == "" || publisher == own:
		return own, nil
	case c.Role != notifyv1.Role_ROLE_ADMIN:
		return "", fmt.Errorf("%w: publisher: %s tokens see their own scheduled publishes only", access.ErrDenied, auth.RoleName(c.Role))
	case publisher == "*" && all:
		return "", nil
	case len(publisher) > 200 || !strings.Contains(publisher, ":"):
		return "", invalid("publisher: want role:subject, as ScheduledPublish.publisher says")
	}
	return publisher, nil
}

// CancelScheduled implements ScheduleService.CancelScheduled.
func (x *ScheduleService) CancelScheduled(ctx context.Context, req *notifyv1.CancelScheduledRequest) (*notifyv1.CancelScheduledResponse, error) {
	return scheduleCall(ctx, x, func(c auth.Claims, sc Scheduler) (*notifyv1.CancelScheduledResponse, error) {
		switch {
		case (req.CancelKey == "") == (req.Id == ""):
			return nil, invalid("cancel_key, id: give one")
		case req.CancelKey != "" && !cancelKeyRE.MatchString(req.CancelKey):
			return nil, invalid("cancel_key: 1 to %d characters of [A-Za-z0-9_.:-]", MaxCancelKeyLen)
		case len(req.Id) > 20:
			return nil, invalid("id: not a scheduled publish's id")
		}
		publisher, err := publisherFor(c, req.Publisher, false)
		if err != nil {
			return nil, err
		}
		sp, err := sc.CancelScheduled(ctx, publisher, req.CancelKey, req.Id)
		if err != nil {
			return nil, err
		}
		return &notifyv1.CancelScheduledResponse{Scheduled: sp}, nil
	})
}

// ListScheduled implements ScheduleService.ListScheduled.
func (x *ScheduleService) ListScheduled(ctx context.Context, req *notifyv1.ListScheduledRequest) (*notifyv1.ListScheduledResponse, error) {
	return scheduleCall(ctx, x, func(c auth.Claims, sc Scheduler) (*notifyv1.ListScheduledResponse, error) {
		size := int(req.PageSize)
		switch {
		case size == 0:
			size = DefaultPageSize
		case size < 0 || size > 500:
			return nil, invalid("page_size: 1 to 500")
		}
		if len(req.PageToken) > 1024 {
			return nil, invalid("page_token: not one this server wrote")
		}
		publisher, err := publisherFor(c, req.Publisher, true)
		if err != nil {
			return nil, err
		}
		list, next, err := sc.ListScheduled(ctx, publisher, req.IncludeDone, size, req.PageToken)
		if err != nil {
			return nil, err
		}
		return &notifyv1.ListScheduledResponse{Scheduled: list, NextPageToken: next}, nil
	})
}

// digestUser resolves whose digests a call is about: the caller's own, or
// for services and admins another user's.
func digestUser(c auth.Claims, userID string) (string, error) {
	if userID == "" || userID == c.Subject {
		if err := room.ValidID(c.Subject); err != nil {
			return "", fmt.Errorf("%w: this token's subject has no digests (a subject must be 1-64 characters of [A-Za-z0-9_-])", access.ErrDenied)
		}
		return c.Subject, nil
	}
	if err := room.ValidID(userID); err != nil {
		return "", invalid("user_id: %v", err)
	}
	if c.Role != notifyv1.Role_ROLE_SERVICE && c.Role != notifyv1.Role_ROLE_ADMIN {
		return "", fmt.Errorf("%w: user_id: %s tokens see their own digests only", access.ErrDenied, auth.RoleName(c.Role))
	}
	return userID, nil
}

// ListDigests implements ScheduleService.ListDigests.
func (x *ScheduleService) ListDigests(ctx context.Context, req *notifyv1.ListDigestsRequest) (*notifyv1.ListDigestsResponse, error) {
	return scheduleCall(ctx, x, func(c auth.Claims, sc Scheduler) (*notifyv1.ListDigestsResponse, error) {
		user, err := digestUser(c, req.UserId)
		if err != nil {
			return nil, err
		}
		ds, err := sc.OpenDigests(ctx, user)
		if err != nil {
			return nil, err
		}
		return &notifyv1.ListDigestsResponse{Digests: ds}, nil
	})
}

// ReleaseDigest implements ScheduleService.ReleaseDigest.
func (x *ScheduleService) ReleaseDigest(ctx context.Context, req *notifyv1.ReleaseDigestRequest) (*notifyv1.ReleaseDigestResponse, error) {
	return scheduleCall(ctx, x, func(c auth.Claims, sc Scheduler) (*notifyv1.ReleaseDigestResponse, error) {
		user, err := digestUser(c, req.UserId)
		if err != nil {
			return nil, err
		}
		typ := ""
		switch {
		case req.EventType != notifyv1.EventType_EVENT_TYPE_UNSPECIFIED:
			if !known(notifyv1.EventType_name, int32(req.EventType)) {
				return nil, invalid("event_type: %d is not a known event type", req.EventType)
			}
			typ = typeName(req.EventType)
		case req.Key != "":
			return nil, invalid("key: only with event_type")
		}
		if len(req.Key) > 256 {
			return nil, invalid("key: longer than 256 bytes")
		}
		ds, err := sc.ReleaseDigests(ctx, user, typ, req.Key)
		if err != nil {
			return nil, err
		}
		return &notifyv1.ReleaseDigestResponse{Released: ds}, nil
	})
}

// Preferences' time fields, between the contract and the store.

// timingFromProto reads a request's time zone, quiet hours and digests.
func timingFromProto(in *notifyv1.Preferences, p *store.Preferences) error {
	p.TimeZone = in.TimeZone
	if z := in.TimeZone; z != "" {
		if _, err := time.LoadLocation(z); err != nil || z == "Local" || len(z) > 64 {
			return invalid("preferences.time_zone: %q is not an IANA time zone (e.g. Europe/Paris)", boundedText(z))
		}
	}
	if q := in.QuietHours; q != nil {
		start, err := clockMinutes(q.Start)
		if err != nil {
			return invalid("preferences.quiet_hours.start: %v", err)
		}
		end, err := clockMinutes(q.End)
		if err != nil {
			return invalid("preferences.quiet_hours.end: %v", err)
		}
		p.Quiet = &store.QuietHours{Start: start, End: end}
	}
	p.Digests = []store.DigestRule{}
	for i, d := range in.Digests {
		if !known(notifyv1.EventType_name, int32(d.EventType)) {
			return invalid("preferences.digests[%d].event_type: a known event type is required", i)
		}
		var w time.Duration
		if d.Window != nil {
			if err := d.Window.CheckValid(); err != nil {
				return invalid("preferences.digests[%d].window: %v", i, err)
			}
			w = d.Window.AsDuration()
		}
		p.Digests = append(p.Digests, store.DigestRule{EventType: typeName(d.EventType), Window: w, Key: d.Key})
	}
	return nil
}

// timingToProto writes preferences' time fields.
func timingToProto(p store.Preferences, out *notifyv1.Preferences) {
	out.TimeZone = p.TimeZone
	if q := p.Quiet; q != nil {
		out.QuietHours = &notifyv1.QuietHours{Start: clockText(q.Start), End: clockText(q.End)}
	}
	for _, d := range p.Digests {
		out.Digests = append(out.Digests, &notifyv1.DigestRule{EventType: typeByName(d.EventType), Window: durationpb.New(d.Window), Key: d.Key})
	}
}

// clockMinutes reads "HH:MM" (24-hour) as minutes after midnight.
func clockMinutes(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day as HH:MM (24-hour)", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}

func clockText(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// boundedText is s cut to 64 bytes, for quoting a caller's value.
func boundedText(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
