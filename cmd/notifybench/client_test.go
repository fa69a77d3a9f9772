package main

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/broker"
	"github.com/maxloyalty/notify/internal/hub"
)

// recordSink records sink calls as strings.
type recordSink struct{ calls []string }

func (r *recordSink) connected(c *notifyv1.Connected) {
	r.calls = append(r.calls, fmt.Sprintf("connected %s %d rooms", c.UserId, len(c.Rooms)))
}

func (r *recordSink) event(room, epoch string, offset uint64, sent int64) {
	r.calls = append(r.calls, fmt.Sprintf("event %s %s %d %d", room, epoch, offset, sent))
}

func (r *recordSink) disconnected(d *notifyv1.Disconnected) {
	r.calls = append(r.calls, fmt.Sprintf("disconnected %v %d", d.Reason, len(d.Positions)))
}

// frameBytes encodes a published request's event as the hub does for room.
func frameBytes(t *testing.T, req *notifyv1.PublishRequest, room string, offset uint64) []byte {
	t.Helper()
	ev := &notifyv1.Event{Id: "id", PublishTime: timestamppb.Now(),
		Payload: &notifyv1.Event_PointsAdded{PointsAdded: req.GetPointsAdded()}}
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return hub.NewFrame(broker.Message{Room: room, Offset: offset, Epoch: "ep", Data: data}).Bytes
}

func TestDecodersAgree(t *testing.T) {
	tmpl := newEventTemplate(300)
	sent := time.Unix(1700000000, 123456789)
	var msgs [][]byte
	connected, _ := proto.Marshal(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Connected{Connected: &notifyv1.Connected{
		UserId: "u1", HeartbeatInterval: durationpb.New(time.Second),
		Rooms: []*notifyv1.RoomState{{Room: "guest:a", Epoch: "ep", Offset: 3}},
	}}})
	msgs = append(msgs, connected)
	// Three frames coalesced into one message, with an unread count.
	var many []byte
	for i := range 3 {
		many = append(many, frameBytes(t, tmpl.request([]string{"guest:a"}, sent.Add(time.Duration(i)), ""), "guest:a", uint64(4+i))...)
	}
	many = append(many, hub.NewUnreadFrame(7).Bytes...)
	msgs = append(msgs, many)
	heartbeat, _ := proto.Marshal(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Heartbeat{Heartbeat: &notifyv1.Heartbeat{Time: timestamppb.Now()}}})
	msgs = append(msgs, heartbeat)
	// A last event and the Disconnected in one message.
	last := frameBytes(t, tmpl.request([]string{"guest:a"}, sent, ""), "guest:a", 7)
	dis, _ := proto.Marshal(&notifyv1.SubscribeResponse{Control: &notifyv1.SubscribeResponse_Disconnected{Disconnected: &notifyv1.Disconnected{
		Reason: notifyv1.DisconnectReason_DISCONNECT_REASON_SLOW_CONSUMER, Positions: []*notifyv1.StreamPosition{{Room: "guest:a", Offset: 7}},
	}}})
	msgs = append(msgs, append(last, dis...))

	var got [2]recordSink
	for i, mode := range []string{"full", "wire"} {
		d, err := newDecoder(mode)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := d.decode(m, &got[i]); err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
		}
	}
	want := []string{
		"connected u1 1 rooms",
		fmt.Sprintf("event guest:a ep 4 %d", sent.UnixNano()),
		fmt.Sprintf("event guest:a ep 5 %d", sent.UnixNano()+1),
		fmt.Sprintf("event guest:a ep 6 %d", sent.UnixNano()+2),
		fmt.Sprintf("event guest:a ep 7 %d", sent.UnixNano()),
		"disconnected DISCONNECT_REASON_SLOW_CONSUMER 1",
	}
	for i, mode := range []string{"full", "wire"} {
		if !slices.Equal(got[i].calls, want) {
			t.Errorf("%s decoder calls:\n%q\nwant\n%q", mode, got[i].calls, want)
		}
	}
	if _, err := newDecoder("fast"); err == nil {
		t.Error("unknown decoder accepted")
	}
	if err := decodeWire([]byte{0x0a, 0x05, 0x01}, &recordSink{}); err == nil {
		t.Error("truncated message accepted by the wire decoder")
	}
}

func TestEventTemplateSizeAndStamp(t *testing.T) {
	for _, size := range []int{0, 64, 128, 200, 1024, 4096} {
		tmpl := newEventTemplate(size)
		req := tmpl.request([]string{"guest:a"}, time.Now(), "")
		got := proto.Size(req.GetPointsAdded())
		if got != tmpl.size {
			t.Errorf("payload %d: template says %d bytes, request has %d", size, tmpl.size, got)
		}
		if size >= 128 && got != size {
			t.Errorf("payload %d: encoded PointsAdded is %d bytes", size, got)
		}
	}
	at := time.Unix(1700000000, 42)
	if got := sentTime(newEventTemplate(64).request(nil, at, "").GetPointsAdded().TransactionId); got != at.UnixNano() {
		t.Errorf("sentTime = %d, want %d", got, at.UnixNano())
	}
	if sentTime("t1") != 0 || sentTime("nbxyz") != 0 {
		t.Error("foreign transaction ids should give 0")
	}
}

func TestProcParsers(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\tnotifyd\nVmPeak:\t  9999 kB\nVmRSS:\t   12345 kB\nThreads: 8\n"))
	if err != nil || rss != 12345<<10 {
		t.Errorf("parseVmRSS = %d, %v", rss, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Error("missing VmRSS accepted")
	}
	// The command name may contain spaces and parentheses.
	cpu, err := parseStatCPU([]byte("4242 (notify d) (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 100 0\n"))
	if err != nil || cpu != 4*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 4s", cpu, err)
	}
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:2382 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0
`)
	if got := listeningInodes(table, 9090); !slices.Equal(got, []string{"111"}) {
		t.Errorf("listeningInodes(9090) = %v, want [111]", got)
	}
	busy, err := parseSystemBusy([]byte("cpu  100 5 50 9000 20 3 2 1 40 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n"))
	if err != nil || busy != 1610*time.Millisecond {
		t.Errorf("parseSystemBusy = %v, %v; want 1.61s (user nice system irq softirq steal)", busy, err)
	}
	if st, err := readProc(os.Getpid()); err != nil || st.RSS <= 0 {
		t.Errorf("readProc(self) = %+v, %v", st, err)
	}
}
