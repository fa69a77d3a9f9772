package hub

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/broker"
)

func message(t testing.TB, room string, offset uint64) broker.Message {
	t.Helper()
	ev := &notifyv1.Event{
		Id:          fmt.Sprintf("ev-%d", offset),
		PublishTime: timestamppb.Now(),
		Payload:     &notifyv1.Event_PointsAdded{PointsAdded: &notifyv1.PointsAdded{GuestId: "g1", Amount: int64(offset)}},
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return broker.Message{Room: room, Offset: offset, Epoch: "e1", Data: data}
}

func TestFrameDecodesAsEvents(t *testing.T) {
	a, b := NewFrame(message(t, "guest:g1", 7)), NewFrame(message(t, "guest:g1", 8))
	var resp notifyv1.SubscribeResponse
	if err := proto.Unmarshal(append(append([]byte{}, a.Bytes...), b.Bytes...), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Events) != 2 {
		t.Fatalf("decoded %d events from two frames, want 2", len(resp.Events))
	}
	for i, ev := range resp.Events {
		want := uint64(7 + i)
		if ev.Room != "guest:g1" || ev.Offset != want || ev.Epoch != "e1" || ev.Id != fmt.Sprintf("ev-%d", want) || ev.GetPointsAdded().GetAmount() != int64(want) {
			t.Errorf("event %d = %v", i, ev)
		}
	}
}

func TestDeliverFansOutToRoomOnly(t *testing.T) {
	h := New()
	in, out, both := NewSubscriber(1<<20), NewSubscriber(1<<20), NewSubscriber(1<<20)
	h.Join(in, []string{"r1"}, []string{"u1"})
	h.Join(out, []string{"r2"}, nil)
	h.Join(both, []string{"r1", "r2"}, nil)
	h.Deliver(message(t, "r1", 1))
	h.Deliver(message(t, "r2", 1))
	h.Deliver(message(t, "r1", 2))

	count := func(s *Subscriber) string {
		frames, err := s.Take(nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range frames {
			got = append(got, fmt.Sprintf("%s@%d", f.Room, f.Offset))
		}
		return fmt.Sprint(got)
	}
	if got := count(in); got != "[r1@1 r1@2]" {
		t.Errorf("r1 subscriber got %s", got)
	}
	if got := count(out); got != "[r2@1]" {
		t.Errorf("r2 subscriber got %s", got)
	}
	if got := count(both); got != "[r1@1 r2@1 r1@2]" {
		t.Errorf("two-room subscriber got %s", got)
	}
	if st := h.Stats(); st.Subscribers != 3 || st.Rooms != 2 || st.Delivered != 6 {
		t.Errorf("stats = %+v", st)
	}
	h.Leave(in)
	h.Leave(both)
	h.Leave(out)
	if st := h.Stats(); st.Subscribers != 0 || st.Rooms != 0 {
		t.Errorf("after leave, stats = %+v", st)
	}
}

func TestSlowSubscriberIsClosedOthersUnaffected(t *testing.T) {
	h := New()
	msg := message(t, "r", 1)
	frameSize := len(NewFrame(msg).Bytes) + frameOverhead
	slow, fast := NewSubscriber(3*frameSize), NewSubscriber(1<<20)
	h.Join(slow, []string{"r"}, nil)
	h.Join(fast, []string{"r"}, nil)
	for i := range 10 {
		h.Deliver(message(t, "r", uint64(i+1)))
	}
	if !slow.Closed() {
		t.Fatal("slow subscriber not closed after overflowing")
	}
	frames, err := slow.Take(nil)
	if !errors.Is(err, ErrSlowConsumer) || len(frames) != 0 {
		t.Fatalf("slow Take = %d frames, %v; want none and ErrSlowConsumer", len(frames), err)
	}
	frames, err = fast.Take(nil)
	if err != nil || len(frames) != 10 {
		t.Fatalf("fast Take = %d frames, %v; want 10", len(frames), err)
	}
	if st := h.Stats(); st.SlowConsumers != 1 {
		t.Fatalf("SlowConsumers = %d, want 1", st.SlowConsumers)
	}
}

func TestCloseAllKeepsQueuedFrames(t *testing.T) {
	h := New()
	s := NewSubscriber(1 << 20)
	h.Join(s, []string{"r"}, nil)
	h.Deliver(message(t, "r", 1))
	h.CloseAll(ErrShutdown)
	frames, err := s.Take(nil)
	if !errors.Is(err, ErrShutdown) || len(frames) != 1 {
		t.Fatalf("Take after shutdown = %d frames, %v; want the queued frame and ErrShutdown", len(frames), err)
	}
	h.Deliver(message(t, "r", 2))
	if frames, _ := s.Take(nil); len(frames) != 0 {
		t.Fatal("a closed subscriber still receives frames")
	}
}

// BenchmarkDeliver measures the fan-out path: one message delivered to every
// subscriber of a room, with each subscriber's queue drained as a stream
// writer would. Allocations per op are per message, not per delivery.
func BenchmarkDeliver(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := New()
			subs := make([]*Subscriber, n)
			for i := range subs {
				subs[i] = NewSubscriber(1 << 20)
				h.Join(subs[i], []string{"room"}, nil)
			}
			msg := message(b, "room", 1)
			bufs := make([][]*Frame, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				msg.Offset = uint64(i + 1)
				h.Deliver(msg)
				if i%64 == 63 {
					for j, s := range subs {
						bufs[j], _ = s.Take(bufs[j][:0])
					}
				}
			}
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkNewFrame measures encoding one event for a room.
func BenchmarkNewFrame(b *testing.B) {
	msg := message(b, "guest:6f1c9a", 1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		msg.Offset = uint64(i)
		_ = NewFrame(msg)
	}
}

func TestMuteAndNotify(t *testing.T) {
	h := New()
	admin1, admin2, guest := NewSubscriber(1<<20), NewSubscriber(1<<20), NewSubscriber(1<<20)
	h.Join(admin1, []string{"admin"}, []string{"a1", "group:admin"})
	h.Join(admin2, []string{"admin"}, []string{"a2", "group:admin"})
	h.Join(guest, []string{"guest:g1"}, []string{"g1"})
	admin2.Mute([]int32{int32(notifyv1.EventType_EVENT_TYPE_POINTS_ADDED)}, false)

	h.Deliver(message(t, "admin", 1)) // a PointsAdded: muted for admin2
	h.Notify("g1", NewUnreadFrame(3))
	h.Notify("group:admin", NewUnreadFrame(9))

	if got := fmt.Sprint(h.Keys("group:admin")); got != "[[a1 group:admin] [a2 group:admin]]" && got != "[[a2 group:admin] [a1 group:admin]]" {
		t.Errorf("Keys(group:admin) = %s", got)
	}
	take := func(s *Subscriber) *notifyv1.SubscribeResponse {
		frames, _ := s.Take(nil)
		var b []byte
		for _, f := range frames {
			b = append(b, f.Bytes...)
		}
		var resp notifyv1.SubscribeResponse
		if err := proto.Unmarshal(b, &resp); err != nil {
			t.Fatal(err)
		}
		return &resp
	}
	if r := take(admin1); len(r.Events) != 1 || r.GetUnread().GetCount() != 9 {
		t.Errorf("admin1 got %v", r)
	}
	if r := take(admin2); len(r.Events) != 0 || r.GetUnread().GetCount() != 9 {
		t.Errorf("admin2 (PointsAdded muted) got %v", r)
	}
	if r := take(guest); len(r.Events) != 0 || r.GetUnread().GetCount() != 3 {
		t.Errorf("guest got %v", r)
	}
	guest.Mute(nil, true)
	h.Deliver(message(t, "guest:g1", 1))
	if r := take(guest); len(r.Events) != 0 {
		t.Errorf("a subscriber with everything muted got %v", r)
	}
	h.Leave(admin1)
	if got := fmt.Sprint(h.Keys("group:admin")); got != "[[a2 group:admin]]" {
		t.Errorf("after leave, Keys = %s", got)
	}
}

// TestMembersAcrossIndexThreshold joins and leaves subscribers of one room
// in a shuffled order, across the size at which the room's member set gains
// an index, and checks after each step that a delivery reaches exactly the
// subscribers still joined.
func TestMembersAcrossIndexThreshold(t *testing.T) {
	h := New()
	const n = 3 * smallMembers
	subs := make([]*Subscriber, n)
	joined := make(map[*Subscriber]bool)
	for i := range subs {
		subs[i] = NewSubscriber(1 << 20)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	offset := uint64(0)
	check := func(step string) {
		t.Helper()
		offset++
		h.Deliver(message(t, "r", offset))
		for i, s := range subs {
			frames, err := s.Take(nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(frames), map[bool]int{true: 1}[joined[s]]; got != want {
				t.Fatalf("%s: subscriber %d got %d frames, want %d", step, i, got, want)
			}
		}
	}
	for round := range 3 {
		for _, i := range rng.Perm(n) {
			if joined[subs[i]] {
				continue // a subscriber joins once
			}
			h.Join(subs[i], []string{"r"}, nil)
			joined[subs[i]] = true
			check(fmt.Sprintf("round %d: join %d", round, i))
		}
		for _, i := range rng.Perm(n)[:n-round] {
			if !joined[subs[i]] {
				continue
			}
			h.Leave(subs[i])
			delete(joined, subs[i])
			check(fmt.Sprintf("round %d: leave %d", round, i))
		}
	}
	for s := range joined {
		h.Leave(s)
	}
	if st := h.Stats(); st.Subscribers != 0 || st.Rooms != 0 {
		t.Errorf("after leave, stats = %+v", st)
	}
}

// TestSubscriberNotify: the Notify function runs after each push and after
// a close (the slow consumer's overflow included), without the
// subscriber's lock: it may Take at once.
func TestSubscriberNotify(t *testing.T) {
	h := New()
	msg := message(t, "r", 1)
	frameSize := len(NewFrame(msg).Bytes) + frameOverhead
	s := NewSubscriber(3 * frameSize)
	var took []int
	var errs []error
	s.Notify(func() {
		frames, err := s.Take(nil) // deadlocks if called under the lock
		took = append(took, len(frames))
		errs = append(errs, err)
	})
	h.Join(s, []string{"r"}, nil)
	h.Deliver(message(t, "r", 1))
	h.Deliver(message(t, "r", 2))
	s.Close(ErrShutdown)
	h.Deliver(message(t, "r", 3)) // closed: not queued

	if len(took) < 3 || took[0] != 1 || took[1] != 1 || took[2] != 0 || slices.Max(took[2:]) != 0 {
		t.Fatalf("Notify took %v frames per call, want [1 1 0], then nothing", took)
	}
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrShutdown) {
		t.Fatalf("Take errors %v, want nil, nil, ErrShutdown", errs)
	}

	slow := NewSubscriber(frameSize)
	calls := 0
	slow.Notify(func() { calls++ })
	h.Join(slow, []string{"r"}, nil)
	h.Deliver(message(t, "r", 4))
	h.Deliver(message(t, "r", 5)) // overflows: closed
	if calls < 2 || !slow.Closed() {
		t.Fatalf("slow subscriber: %d calls, closed %v; want 2 and closed", calls, slow.Closed())
	}
}
