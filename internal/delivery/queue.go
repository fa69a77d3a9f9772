package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/store"
)

// Job kinds and the webhook queue.
const (
	kindDeliver  = "notify_deliver"
	kindWebhook  = "notify_webhook"
	queueWebhook = store.ChannelWebhook
)

// Timeline states.
const (
	StateQueued    = "queued"
	StateScheduled = "scheduled"
	StateSent      = "sent"
	StateDelivered = "delivered"
	StateRetrying  = "retrying"
	StateFailed    = "failed"
	StateCancelled = "cancelled"
)

// TypeDeliveryStatus is the type of the webhooks that carry a delivery's
// status change.
const TypeDeliveryStatus = "delivery.status"

// deliverArgs is a job sending one event to one user's target on one
// channel. The unique fields make a publish and its retries queue it once.
type deliverArgs struct {
	Key     string `json:"key" river:"unique"`
	User    string `json:"user" river:"unique"`
	Channel string `json:"channel" river:"unique"`
	// Target is the device id, or the email address.
	Target  string `json:"target" river:"unique"`
	EventID string `json:"event_id"`
	// Owner is the inbox owner (the user, or AdminGroup).
	Owner string `json:"owner"`
	// Type is the store's name of the event type.
	Type string `json:"type"`
	// Event is the encoded notify.v1.Event as the owner's room has it.
	Event []byte `json:"event"`
	// Label names the target in timelines.
	Label string `json:"label"`
	// UnlessSeen cancels the job when it runs if the user has seen the
	// notification (in the inbox or live) by then.
	UnlessSeen bool   `json:"unless_seen,omitempty"`
	Critical   bool   `json:"critical,omitempty"`
	Locale     string `json:"locale,omitempty"`
	// Summary makes it one message for several events (throttle.go).
	Summary *summary `json:"summary,omitempty"`
	// TraceParent is the publish's (Publication.TraceParent).
	TraceParent string `json:"traceparent,omitempty"`
}

func (deliverArgs) Kind() string { return kindDeliver }

// webhookArgs is a job posting one event or one status change to one of the
// operator's webhooks, named: its URL and secret come from the
// configuration when it runs (secrets never enter the database).
type webhookArgs struct {
	// ID is the webhook-id: the event's id, or the status step's.
	ID      string `json:"id" river:"unique"`
	Webhook string `json:"webhook" river:"unique"`
	// Type is the contract's event type, or TypeDeliveryStatus.
	Type    string          `json:"type"`
	EventID string          `json:"event_id"`
	Data    json.RawMessage `json:"data"`
	// Status marks a status change: its deliveries have no timeline.
	Status bool `json:"status,omitempty"`
	// TraceParent is the publish's (Publication.TraceParent).
	TraceParent string `json:"traceparent,omitempty"`
}

func (webhookArgs) Kind() string { return kindWebhook }

// allStates makes uniqueness hold over every state River keeps a job in:
// a delivery cancelled because it was seen is not queued again by a
// retried publish.
var allStates = []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStateCancelled, rivertype.JobStateCompleted,
	rivertype.JobStateDiscarded, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}

// Streams says who on this node has a live stream receiving an event of
// type typ (a notify.v1.EventType) published in room.
type Streams interface {
	Receivers(room string, typ int32) []string
}

// Queue is the durable delivery queue: River's client on the store's
// database, its workers, and the planner that queues an event's
// deliveries in the transaction of its inbox rows.
type Queue struct {
	cfg      Config
	st       store.Store
	eng      engine
	log      *slog.Logger
	senders  map[string]channel.Sender
	hooks    map[string]Webhook
	limits   map[string]*rate.Limiter
	channels []string // user channels configured, in UserChannels order
	metrics  *Metrics
	live     *liveRecorder

	// next holds the time a failed job's next attempt was announced for,
	// by job id, from its Work to River's NextRetry call right after.
	next sync.Map

	timing timingState

	runMu   sync.Mutex
	running bool
	stopBG  context.CancelFunc
	bgDone  chan struct{}
}

// New validates cfg and builds the queue on st (River's tables must exist:
// the store migrates them). It does not start working: call Start.
func New(cfg Config, st store.Store) (*Queue, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	q := &Queue{
		cfg:     cfg,
		st:      st,
		log:     cfg.Log,
		senders: map[string]channel.Sender{},
		hooks:   map[string]Webhook{},
		limits:  map[string]*rate.Limiter{},
		metrics: newMetrics(),
	}
	for _, s := range cfg.Senders {
		q.senders[string(s.Channel())] = s
	}
	for _, ch := range UserChannels {
		if q.senders[ch] != nil {
			q.channels = append(q.channels, ch)
		}
	}
	for _, w := range cfg.Webhooks {
		q.hooks[w.Name] = w
	}
	for ch, r := range cfg.Rates {
		if r > 0 {
			q.limits[ch] = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
		}
	}
	q.live = newLiveRecorder(st, cfg.LiveBuffer, q.metrics, cfg.Log)
	queues := map[string]river.QueueConfig{}
	for _, ch := range q.channels {
		queues[ch] = river.QueueConfig{MaxWorkers: q.workers(ch)}
	}
	if len(cfg.Webhooks) > 0 {
		queues[queueWebhook] = river.QueueConfig{MaxWorkers: q.workers(queueWebhook)}
	}
	names := slices.Clone(q.channels)
	if len(cfg.Webhooks) > 0 {
		names = append(names, queueWebhook)
	}
	q.metrics.init(names)
	q.metrics.watch(st)
	workers := river.NewWorkers()
	river.AddWorker(workers, &deliverWorker{q: q})
	river.AddWorker(workers, &webhookWorker{q: q})
	rcfg := &river.Config{
		ID:                          cfg.ClientID,
		Queues:                      queues,
		Workers:                     workers,
		MaxAttempts:                 cfg.MaxAttempts,
		JobTimeout:                  cfg.JobTimeout,
		RescueStuckJobsAfter:        cfg.RescueAfter,
		RetryPolicy:                 retryPolicy{q},
		FetchPollInterval:           cfg.FetchPollInterval,
		FetchCooldown:               min(100*time.Millisecond, cfg.FetchPollInterval),
		CompletedJobRetentionPeriod: cfg.Retention,
		CancelledJobRetentionPeriod: cfg.Retention,
		DiscardedJobRetentionPeriod: max(cfg.Retention, 7*24*time.Hour),
		Logger:                      slog.New(minLevel{h: cfg.Log.Handler(), min: slog.LevelWarn}),
		TestOnly:                    cfg.TestOnly,
	}
	if cfg.Clock != nil {
		rcfg.Test.Time = riverTime{cfg.Clock}
	}
	q.addTiming(workers, queues, rcfg)
	if len(queues) == 0 {
		// Nothing to work: River's client is not built (its maintenance
		// would only poll an empty queue).
		return q, nil
	}
	eng, err := newEngine(st, rcfg)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	q.eng = eng
	return q, nil
}

func (q *Queue) workers(queue string) int {
	if n, ok := q.cfg.Workers[queue]; ok && n > 0 {
		return n
	}
	return 10
}

// Enabled reports whether the queue has anything to deliver: a user
// channel or a webhook.
func (q *Queue) Enabled() bool { return q.eng != nil }

// Channels returns the user channels configured, in UserChannels order.
func (q *Queue) Channels() []string { return slices.Clone(q.channels) }

// WantsEvents reports whether every event is to be queued (for webhooks),
// not only those with inbox rows.
func (q *Queue) WantsEvents() bool {
	for _, w := range q.cfg.Webhooks {
		if w.Events {
			return true
		}
	}
	return false
}

// Metrics returns the queue's Prometheus instruments.
func (q *Queue) Metrics() *Metrics { return q.metrics }

func (q *Queue) now() time.Time {
	if q.cfg.Clock != nil {
		return q.cfg.Clock.Now()
	}
	return time.Now()
}

// Start starts River's client: this node then works due jobs of the
// configured channels, and takes part in River's leader election. It also
// starts recording live deliveries.
func (q *Queue) Start(ctx context.Context) error {
	q.runMu.Lock()
	defer q.runMu.Unlock()
	if q.running || q.eng == nil {
		return nil
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	if err := q.eng.start(bg); err != nil {
		stop()
		return fmt.Errorf("delivery: start: %w", err)
	}
	q.running, q.stopBG, q.bgDone = true, stop, make(chan struct{})
	go func() {
		defer close(q.bgDone)
		q.live.run(bg)
	}()
	return nil
}

// Stop lets the jobs in progress finish until ctx ends, then cancels
// those left (River makes them available again, their attempt not
// counted) and waits for River's client to stop; then it records the live
// deliveries still buffered.
func (q *Queue) Stop(ctx context.Context) error {
	q.runMu.Lock()
	defer q.runMu.Unlock()
	if !q.running {
		return nil
	}
	q.running = false
	err := q.eng.stop(ctx)
	if err != nil && ctx.Err() != nil {
		q.log.Warn("delivery: jobs still running at the end of the drain, cancelled; they will run again", "err", err)
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = q.eng.stopAndCancel(cctx)
		cancel()
	}
	q.stopBG()
	<-q.bgDone
	return err
}

// Enqueue queues a publication's deliveries in tx, the transaction of its
// inbox rows: a job per user target the policy turns on, and one per
// webhook; with the "queued" or "scheduled" step of each, and the status
// webhooks of those steps. A delivery already queued (a retried publish)
// is not queued again.
func (q *Queue) Enqueue(ctx context.Context, tx *store.Tx, p Publication) error {
	if q.eng == nil {
		return nil
	}
	var (
		jobs  []river.InsertManyParams
		steps []store.Status // steps[i] is recorded when jobs[i] is inserted
	)
	now := q.now()
	if q.WantsEvents() {
		data, err := eventWebhookData(p)
		if err != nil {
			return err
		}
		for _, w := range q.cfg.Webhooks {
			if !w.Events {
				continue
			}
			jobs = append(jobs, river.InsertManyParams{
				Args: webhookArgs{ID: p.EventID, Webhook: w.Name, Type: contractType(p.Type), EventID: p.EventID, Data: data, TraceParent: p.TraceParent},
				InsertOpts: &river.InsertOpts{
					Queue: queueWebhook, MaxAttempts: q.cfg.MaxAttempts, Priority: 2,
					UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
				},
			})
			steps = append(steps, store.Status{EventID: p.EventID, Channel: store.ChannelWebhook, Target: w.Name, State: StateQueued, At: now})
		}
	}
	if len(q.channels) > 0 && len(p.Owners) > 0 {
		recips, err := q.recipients(ctx, tx, p)
		if err != nil {
			return err
		}
		digested, err := q.digest(ctx, tx, p, recips)
		if err != nil {
			return err
		}
		for _, r := range recips {
			if digested[r.user] {
				continue
			}
			for _, d := range plan(q.cfg.Policy, q.channels, p.Type, p.Critical, r) {
				a := deliverArgs{
					Key: p.Key, User: d.user, Channel: d.channel, Target: d.target, EventID: p.EventID,
					Owner: d.owner.ID, Type: p.Type, Event: d.owner.Event, Label: d.label,
					UnlessSeen: d.delay > 0, Critical: p.Critical, Locale: d.locale, TraceParent: p.TraceParent,
				}
				opts := &river.InsertOpts{
					Queue: d.channel, MaxAttempts: q.cfg.MaxAttempts, Priority: 2,
					UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
				}
				step := store.Status{EventID: p.EventID, UserID: d.user, Channel: d.channel, Target: d.label, State: StateQueued, At: now}
				if p.Critical {
					opts.Priority = 1
				}
				if d.delay > 0 {
					at := now.Add(d.delay)
					opts.ScheduledAt = at
					step.State = StateScheduled
					step.Detail = "sent at " + at.UTC().Format(time.RFC3339) + " unless seen by then"
				}
				jobs = append(jobs, river.InsertManyParams{Args: a, InsertOpts: opts})
				steps = append(steps, step)
			}
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	res, err := q.eng.insert(ctx, tx, jobs)
	if err != nil {
		return fmt.Errorf("delivery: queue: %w", err)
	}
	var record []store.Status
	for i, r := range res {
		if r.UniqueSkippedAsDuplicate {
			continue
		}
		st := steps[i]
		st.ID = newStatusID()
		record = append(record, st)
	}
	if len(record) == 0 {
		return nil
	}
	if err := tx.AddStatuses(ctx, record); err != nil {
		return fmt.Errorf("delivery: timeline: %w", err)
	}
	return q.statusHooks(ctx, tx, record)
}

// recipients resolves a publication's owners to users, with what the
// planner needs of each: the admin group stands for every user whose
// profile says admin.
func (q *Queue) recipients(ctx context.Context, tx *store.Tx, p Publication) ([]recipient, error) {
	var out []recipient
	var users []string
	for _, o := range p.Owners {
		if o.ID == AdminGroup {
			admins, err := tx.Admins(ctx)
			if err != nil {
				return nil, err
			}
			for _, a := range admins {
				out = append(out, recipient{user: a, owner: o})
				users = append(users, a)
			}
			continue
		}
		out = append(out, recipient{user: o.ID, owner: o, email: p.Email, locale: p.Locale})
		users = append(users, o.ID)
	}
	if len(users) == 0 {
		return nil, nil
	}
	var devices []store.Device
	if slices.ContainsFunc(q.channels, func(ch string) bool { return ch != store.ChannelEmail }) {
		var err error
		if devices, err = tx.Devices(ctx, users); err != nil {
			return nil, err
		}
	}
	profiles, err := tx.Profiles(ctx, users)
	if err != nil {
		return nil, err
	}
	policies, err := tx.Policies(ctx, users)
	if err != nil {
		return nil, err
	}
	var optIns map[string]bool
	if slices.Contains(q.channels, store.ChannelEmail) {
		if optIns, err = tx.EmailOptIns(ctx, users); err != nil {
			return nil, err
		}
	}
	for i := range out {
		r := &out[i]
		r.profile = profiles[r.user]
		r.rules = policies[r.user]
		r.emailOn = optIns[r.user]
		for _, d := range devices {
			if d.UserID == r.user {
				r.devices = append(r.devices, d)
			}
		}
	}
	return out, nil
}

// statusHooks queues, in tx, a status webhook per step and webhook that
// wants them. Webhook deliveries' own steps are not sent (a webhook about
// a webhook would never end).
func (q *Queue) statusHooks(ctx context.Context, tx *store.Tx, steps []store.Status) error {
	var jobs []river.InsertManyParams
	for _, w := range q.cfg.Webhooks {
		if !w.Statuses {
			continue
		}
		for _, st := range steps {
			if st.Channel == store.ChannelWebhook || st.Channel == store.ChannelLive {
				continue
			}
			data, err := json.Marshal(statusJSON(st))
			if err != nil {
				return err
			}
			jobs = append(jobs, river.InsertManyParams{
				Args: webhookArgs{ID: st.ID, Webhook: w.Name, Type: TypeDeliveryStatus, EventID: st.EventID, Data: data, Status: true},
				InsertOpts: &river.InsertOpts{
					Queue: queueWebhook, MaxAttempts: q.cfg.MaxAttempts, Priority: 3,
					UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
				},
			})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if _, err := q.eng.insert(ctx, tx, jobs); err != nil {
		return fmt.Errorf("delivery: queue status webhooks: %w", err)
	}
	return nil
}

// StatusJSON is a status step as webhooks carry it (the data of a
// TypeDeliveryStatus webhook).
type StatusJSON struct {
	ID         string `json:"id"`
	EventID    string `json:"eventId"`
	UserID     string `json:"userId,omitempty"`
	Channel    string `json:"channel"`
	Target     string `json:"target,omitempty"`
	State      string `json:"state"`
	Time       string `json:"time"`
	Attempt    int    `json:"attempt,omitempty"`
	Detail     string `json:"detail,omitempty"`
	ProviderID string `json:"providerId,omitempty"`
}

func statusJSON(st store.Status) StatusJSON {
	return StatusJSON{
		ID: st.ID, EventID: st.EventID, UserID: st.UserID, Channel: st.Channel, Target: st.Target, State: st.State,
		Time: st.At.UTC().Format(time.RFC3339Nano), Attempt: st.Attempt, Detail: st.Detail, ProviderID: st.ProviderID,
	}
}

// EventWebhookData is the data of an event's webhook: the event as REST
// streams carry it (without room, offset and epoch) and its rooms.
type EventWebhookData struct {
	Event json.RawMessage `json:"event"`
	Rooms []Room          `json:"rooms"`
}

func eventWebhookData(p Publication) (json.RawMessage, error) {
	ev, err := eventJSON(p.Data)
	if err != nil {
		return nil, err
	}
	rooms := p.Rooms
	if rooms == nil {
		rooms = []Room{}
	}
	return json.Marshal(EventWebhookData{Event: ev, Rooms: rooms})
}

// eventJSON is an encoded notify.v1.Event in protojson.
func eventJSON(data []byte) (json.RawMessage, error) {
	ev := &notifyv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("delivery: event: %w", err)
	}
	b, err := protojson.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("delivery: event: %w", err)
	}
	return b, nil
}

// contractType turns the store's "points_added" into
// "EVENT_TYPE_POINTS_ADDED".
func contractType(typ string) string { return "EVENT_TYPE_" + strings.ToUpper(typ) }

func newStatusID() string { return uuid.Must(uuid.NewV7()).String() }

// errCancelled wraps the reason a job is cancelled without sending.
var errCancelled = errors.New("delivery cancelled")

// minLevel drops records below min: River logs every retry at info.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h: m.h.WithGroup(name), min: m.min}
}
