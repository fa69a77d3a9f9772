package delivery

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/channel"
	"github.com/maxloyalty/notify/internal/store"
)

// Digests. When a recipient's digest rule (their preferences', else the
// server's) covers an event's type, the event enters the inbox and the live
// stream as any other, but instead of its deliveries it joins the user's
// open digest window for the type (and the rule's key value), opened by
// the window's first event with a job to close it at its end; both in the
// publish's transaction. When the window closes (or is released early),
// its summary (count, points summed, the last event) is queued as one
// delivery per channel and target, rendered from the digest templates.
// CRITICAL alerts are never digested.

// digestArgs closes one digest window.
type digestArgs struct {
	ID   string `json:"id" river:"unique"`
	User string `json:"user"`
}

func (digestArgs) Kind() string { return kindDigest }

// digestRule is the rule that covers typ for a user with preferences p
// (found: the user has preferences), or nil.
func (q *Queue) digestRule(typ string, p store.Preferences) *store.DigestRule {
	for i := range p.Digests {
		if p.Digests[i].EventType == typ {
			if p.Digests[i].Window <= 0 {
				return nil
			}
			return &p.Digests[i]
		}
	}
	for i := range q.cfg.Timing.Digests {
		if q.cfg.Timing.Digests[i].EventType == typ {
			return &q.cfg.Timing.Digests[i]
		}
	}
	return nil
}

// digest adds a publication to the open digests of the recipients whose
// rules cover its type, in tx, and returns those recipients: their
// deliveries wait for the summary.
func (q *Queue) digest(ctx context.Context, tx *store.Tx, p Publication, recips []recipient) (map[string]bool, error) {
	if p.Critical || len(recips) == 0 {
		return nil, nil
	}
	users := make([]string, 0, len(recips))
	for _, r := range recips {
		users = append(users, r.user)
	}
	prefs, err := tx.PreferencesOf(ctx, users)
	if err != nil {
		return nil, err
	}
	var (
		out   map[string]bool
		jobs  []river.InsertManyParams
		steps []store.Status
	)
	now := q.now()
	for _, r := range recips {
		rule := q.digestRule(p.Type, prefs[r.user])
		if rule == nil {
			continue
		}
		planned := plan(q.cfg.Policy, q.channels, p.Type, false, r)
		if len(planned) == 0 {
			continue
		}
		d, created, err := tx.JoinDigest(ctx, store.DigestJoin{
			UserID: r.user, Owner: r.owner.ID, EventType: p.Type, Key: digestKey(r.owner.Event, rule.Key),
			At: now, Window: rule.Window, EventID: p.EventID, Event: r.owner.Event, Points: pointsOf(r.owner.Event),
			Email: r.email, Locale: r.locale,
		})
		if err != nil {
			return nil, fmt.Errorf("delivery: digest: %w", err)
		}
		if created {
			jobs = append(jobs, river.InsertManyParams{
				Args: digestArgs{ID: d.ID, User: r.user},
				InsertOpts: &river.InsertOpts{
					Queue: queueSchedule, ScheduledAt: d.ClosesAt, MaxAttempts: q.cfg.MaxAttempts, Priority: 2,
					UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
				},
			})
		}
		for _, pd := range planned {
			steps = append(steps, store.Status{
				ID: newStatusID(), EventID: p.EventID, UserID: r.user, Channel: pd.channel, Target: pd.label, State: StateScheduled, At: now,
				Detail: "in a digest of " + p.Type + ", sent at " + d.ClosesAt.UTC().Format(time.RFC3339) + " (digest " + d.ID + ")",
			})
		}
		if out == nil {
			out = map[string]bool{}
		}
		out[r.user] = true
	}
	if len(jobs) > 0 {
		if _, err := q.eng.insert(ctx, tx, jobs); err != nil {
			return nil, fmt.Errorf("delivery: digest: %w", err)
		}
	}
	if len(steps) > 0 {
		if err := tx.AddStatuses(ctx, steps); err != nil {
			return nil, fmt.Errorf("delivery: timeline: %w", err)
		}
		if err := q.statusHooks(ctx, tx, steps); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// digestKey is the value of an encoded event's payload field named field
// (snake_case), as text; "" when field is "" or the event has no such
// field.
func digestKey(data []byte, field string) string {
	if field == "" {
		return ""
	}
	ev := &notifyv1.Event{}
	if proto.Unmarshal(data, ev) != nil {
		return ""
	}
	m := ev.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("payload")
	if od == nil {
		return ""
	}
	fd := m.WhichOneof(od)
	if fd == nil || fd.Message() == nil {
		return ""
	}
	payload := m.Get(fd).Message()
	f := payload.Descriptor().Fields().ByName(protoreflect.Name(field))
	if f == nil || f.IsList() || f.IsMap() || f.Message() != nil {
		return ""
	}
	v := payload.Get(f)
	switch f.Kind() {
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.EnumKind:
		if e := f.Enum().Values().ByNumber(v.Enum()); e != nil {
			return string(e.Name())
		}
	}
	return fmt.Sprint(v.Interface())
}

// digestWorker closes a digest window at its end.
type digestWorker struct {
	river.WorkerDefaults[digestArgs]
	q *Queue
}

func (w *digestWorker) Work(ctx context.Context, job *river.Job[digestArgs]) error {
	return w.q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		_, err := w.q.closeDigest(ctx, tx, job.Args.ID)
		return err
	})
}

// closeDigest takes an open digest window and queues its summary's
// deliveries in tx; found is false when it was closed already.
func (q *Queue) closeDigest(ctx context.Context, tx *store.Tx, id string) (store.Digest, error) {
	d, found, err := tx.TakeDigest(ctx, id)
	if err != nil || !found {
		return d, err
	}
	p := Publication{EventID: id, Key: "digest:" + id, Type: d.EventType, Owners: []Owner{{ID: d.Owner, Event: d.LastEvent}}, Email: d.Email, Locale: d.Locale}
	recips, err := q.recipients(ctx, tx, p)
	if err != nil {
		return d, err
	}
	var (
		jobs  []river.InsertManyParams
		steps []store.Status
	)
	now := q.now()
	sum := &summary{Count: d.Count, Points: d.Points, Since: d.OpenedAt, Key: d.Key, Digest: true}
	for _, r := range recips {
		if r.user != d.UserID {
			continue // the admin group's other admins have digests of their own
		}
		for _, pd := range plan(q.cfg.Policy, q.channels, d.EventType, false, r) {
			a := deliverArgs{
				Key: p.Key, User: pd.user, Channel: pd.channel, Target: pd.target, EventID: id,
				Owner: d.Owner, Type: d.EventType, Event: d.LastEvent, Label: pd.label, Locale: pd.locale, Summary: sum,
			}
			jobs = append(jobs, river.InsertManyParams{Args: a, InsertOpts: &river.InsertOpts{
				Queue: pd.channel, MaxAttempts: q.cfg.MaxAttempts, Priority: 2,
				UniqueOpts: river.UniqueOpts{ByArgs: true, ByState: allStates},
			}})
			steps = append(steps, store.Status{
				EventID: id, UserID: pd.user, Channel: pd.channel, Target: pd.label, State: StateQueued, At: now,
				Detail: "digest of " + strconv.FormatInt(d.Count, 10) + " " + d.EventType + " since " + d.OpenedAt.UTC().Format(time.RFC3339),
			})
		}
	}
	if len(jobs) == 0 {
		return d, nil
	}
	res, err := q.eng.insert(ctx, tx, jobs)
	if err != nil {
		return d, fmt.Errorf("delivery: digest summary: %w", err)
	}
	var record []store.Status
	for i, r := range res {
		if !r.UniqueSkippedAsDuplicate {
			st := steps[i]
			st.ID = newStatusID()
			record = append(record, st)
		}
	}
	if len(record) == 0 {
		return d, nil
	}
	if err := tx.AddStatuses(ctx, record); err != nil {
		return d, err
	}
	return d, q.statusHooks(ctx, tx, record)
}

// OpenDigests returns a user's open digests.
func (q *Queue) OpenDigests(ctx context.Context, user string) ([]*notifyv1.Digest, error) {
	if !q.Scheduling() {
		return nil, ErrNoScheduler
	}
	var out []*notifyv1.Digest
	err := q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		ds, err := tx.OpenDigests(ctx, user)
		out = digestsProto(ds)
		return err
	})
	return out, err
}

// ReleaseDigests closes a user's open digests now (of type typ, "" for
// all; of key value key when typ is set) and returns them: their
// summaries are queued at once.
func (q *Queue) ReleaseDigests(ctx context.Context, user, typ, key string) ([]*notifyv1.Digest, error) {
	if !q.Scheduling() {
		return nil, ErrNoScheduler
	}
	var released []store.Digest
	err := q.st.InTx(ctx, func(ctx context.Context, tx *store.Tx) error {
		released = released[:0]
		ds, err := tx.OpenDigests(ctx, user)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if typ != "" && (d.EventType != typ || (key != "" && d.Key != key)) {
				continue
			}
			if _, err := q.closeDigest(ctx, tx, d.ID); err != nil {
				return err
			}
			released = append(released, d)
		}
		return nil
	})
	return digestsProto(released), err
}

func digestsProto(ds []store.Digest) []*notifyv1.Digest {
	out := make([]*notifyv1.Digest, 0, len(ds))
	for _, d := range ds {
		out = append(out, &notifyv1.Digest{
			UserId: d.UserID, EventType: notifyv1.EventType(notifyv1.EventType_value[contractType(d.EventType)]), Key: d.Key,
			Count: d.Count, Points: d.Points, OpenTime: timestamppb.New(d.OpenedAt), CloseTime: timestamppb.New(d.ClosesAt),
			Window: durationpb.New(d.ClosesAt.Sub(d.OpenedAt)),
		})
	}
	return out
}

// digestTemplates are the types with a summary template of their own;
// others use the generic one.
var digestTemplates = []string{"points_added", "points_redeemed", "points_expired"}

// summaryMessage renders a delivery standing for several events: a
// digest's summary, or a send with those a throttle held back. Templates
// see the last event's payload fields, with count, points, since and key.
func (q *Queue) summaryMessage(a deliverArgs) (*channel.Message, error) {
	js, err := eventJSON(a.Event)
	if err != nil {
		return nil, err
	}
	fields := map[string]any{}
	var env map[string]json.RawMessage
	if json.Unmarshal(js, &env) == nil {
		for k, v := range env {
			var inner map[string]any
			if k != "publishTime" && json.Unmarshal(v, &inner) == nil {
				maps.Copy(fields, inner)
			}
		}
	}
	s := a.Summary
	fields["count"] = strconv.FormatInt(s.Count, 10)
	fields["points"] = strconv.FormatInt(s.Points, 10)
	fields["since"] = s.Since.UTC().Format(time.RFC3339)
	fields["key"] = s.Key
	fields["eventType"] = contractType(a.Type)
	fields["digest"] = s.Digest
	// Templates see the summary's fields; receivers get the last event too.
	view, err := json.Marshal(map[string]any{"summary": fields})
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(map[string]any{"summary": fields, "last": json.RawMessage(js)})
	if err != nil {
		return nil, err
	}
	tmpl := "DIGEST"
	if slices.Contains(digestTemplates, a.Type) {
		tmpl = "DIGEST_" + strings.ToUpper(a.Type)
	}
	content, err := channel.Render(tmpl, a.Locale, view)
	if err != nil {
		return nil, fmt.Errorf("delivery: render: %w", err)
	}
	typ := "digest." + a.Type
	if !s.Digest {
		typ = "summary." + a.Type
	}
	return &channel.Message{
		EventID: a.EventID, Type: typ, Content: content, Data: data, Locale: a.Locale,
		Topic: topicOf(a.Event), Critical: a.Critical,
	}, nil
}
