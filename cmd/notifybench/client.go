package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
	"github.com/maxloyalty/notify/internal/auth"
)

// tokenTTL is the lifetime of minted tokens: longer than any run.
const tokenTTL = 6 * time.Hour

// minter mints HS256 tokens with the node's secret.
type minter struct{ s *auth.Signer }

func newMinter(secret string) minter { return minter{auth.NewSigner([]byte(secret))} }

func (m minter) mint(c auth.Claims) (string, error) { return m.s.Mint(c, tokenTTL) }

func (m minter) service() (string, error) {
	return m.mint(auth.Claims{Subject: "notifybench", Role: notifyv1.Role_ROLE_SERVICE})
}

// subscriberToken mints a token allowed to subscribe to room for subscriber
// i: the guest itself for guest:{id}, a cashier of the restaurant for a
// restaurant room (each with a subject of its own, as real users), and a
// service otherwise.
func (m minter) subscriberToken(room string, i int) (string, error) {
	kind, id, _ := strings.Cut(room, ":")
	switch kind {
	case "guest", "user":
		return m.mint(auth.Claims{Subject: id, Role: notifyv1.Role_ROLE_GUEST})
	case "restaurant":
		rid, _, _ := strings.Cut(id, ":")
		return m.mint(auth.Claims{Subject: "nb-cashier-" + strconv.Itoa(i), Role: notifyv1.Role_ROLE_CASHIER, RestaurantID: rid})
	}
	return m.mint(auth.Claims{Subject: "nb-svc-" + strconv.Itoa(i), Role: notifyv1.Role_ROLE_SERVICE})
}

// withToken adds the bearer token to ctx's outgoing metadata.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// dialGRPC opens a connection to addr and starts connecting it, over TLS
// trusting roots when roots is not nil. window and connWindow are the
// client's HTTP/2 receive windows: large, so that flow control never makes
// the server wait for this process.
func dialGRPC(addr string, window, connWindow int32, roots *x509.CertPool) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if roots != nil {
		creds = credentials.NewTLS(&tls.Config{RootCAs: roots})
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithReadBufferSize(64<<10),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		return nil, err
	}
	conn.Connect()
	return conn, nil
}

// rawMsg holds one received message's bytes, reused across messages.
type rawMsg struct{ b []byte }

// rawCodec sends protobuf messages and receives raw bytes, so that the
// subscriber decodes them itself (fully or by scanning, see decoder).
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	r.b = r.b[:0]
	for _, b := range data {
		r.b = append(r.b, b.ReadOnlyData()...)
	}
	return nil
}

func (rawCodec) Name() string { return "proto" }

// subscribeMethod is the full name of NotificationService.Subscribe.
const subscribeMethod = "/notify.v1.NotificationService/Subscribe"

// eventSink receives what a decoded SubscribeResponse carries.
type eventSink interface {
	connected(*notifyv1.Connected)
	event(room, epoch string, offset uint64, sentUnixNano int64)
	disconnected(*notifyv1.Disconnected)
}

// decoder turns SubscribeResponse bytes into sink calls. "full" decodes
// with the generated types (proto.Unmarshal); "wire" scans the protobuf
// wire format for the few fields the benchmark needs (room, offset, epoch,
// the PointsAdded transaction id holding the send time) and decodes only
// control messages fully: less client CPU on a machine shared with the
// server. Both give the same calls (see the tests).
type decoder struct {
	wire bool
	resp notifyv1.SubscribeResponse
}

func newDecoder(mode string) (*decoder, error) {
	switch mode {
	case "full", "":
		return &decoder{}, nil
	case "wire":
		return &decoder{wire: true}, nil
	}
	return nil, fmt.Errorf("--decode: %q is not full or wire", mode)
}

func (d *decoder) decode(b []byte, s eventSink) error {
	if d.wire {
		return decodeWire(b, s)
	}
	d.resp.Reset()
	if err := proto.Unmarshal(b, &d.resp); err != nil {
		return err
	}
	if c := d.resp.GetConnected(); c != nil {
		s.connected(c)
	}
	for _, ev := range d.resp.Events {
		s.event(ev.Room, ev.Epoch, ev.Offset, sentTime(ev.GetPointsAdded().GetTransactionId()))
	}
	if dis := d.resp.GetDisconnected(); dis != nil {
		s.disconnected(dis)
	}
	return nil
}

// Field numbers read by decodeWire.
const (
	respEventsField       = 1
	respConnectedField    = 2
	respDisconnectedField = 4
	eventRoomField        = 2
	eventOffsetField      = 3
	eventEpochField       = 4
	eventPointsAddedField = 10
	pointsTxField         = 7
)

var errWire = errors.New("malformed protobuf")

func decodeWire(b []byte, s eventSink) error {
	var dis *notifyv1.Disconnected
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errWire
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		switch num {
		case respEventsField:
			if err := wireEvent(v, s); err != nil {
				return err
			}
		case respConnectedField:
			c := &notifyv1.Connected{}
			if err := proto.Unmarshal(v, c); err != nil {
				return err
			}
			s.connected(c)
		case respDisconnectedField:
			// As proto.Unmarshal does: repeated occurrences of a message
			// field merge; it is reported after the events.
			if dis == nil {
				dis = &notifyv1.Disconnected{}
			}
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, dis); err != nil {
				return err
			}
		}
	}
	if dis != nil {
		s.disconnected(dis)
	}
	return nil
}

func wireEvent(b []byte, s eventSink) error {
	var (
		room, epoch string
		offset      uint64
		sent        int64
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		switch {
		case num == eventOffsetField && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errWire
			}
			offset, b = v, b[n:]
			continue
		case typ == protowire.BytesType && (num == eventRoomField || num == eventEpochField || num == eventPointsAddedField):
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errWire
			}
			b = b[n:]
			switch num {
			case eventRoomField:
				room = string(v)
			case eventEpochField:
				epoch = string(v)
			default:
				sent = wireSent(v)
			}
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return errWire
		}
		b = b[n:]
	}
	s.event(room, epoch, offset, sent)
	return nil
}

// wireSent finds PointsAdded.transaction_id in an encoded PointsAdded.
func wireSent(b []byte) int64 {
	var sent int64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return sent
		}
		b = b[n:]
		if num == pointsTxField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return sent
			}
			sent, b = sentTime(string(v)), b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return sent
		}
		b = b[n:]
	}
	return sent
}

// The send time travels as the transaction id "nb<unix nanos>".
const sentPrefix = "nb"

func sentID(unixNano int64) string { return sentPrefix + strconv.FormatInt(unixNano, 10) }

// sentTime is the send time in a transaction id, or 0.
func sentTime(tx string) int64 {
	if !strings.HasPrefix(tx, sentPrefix) {
		return 0
	}
	n, err := strconv.ParseInt(tx[len(sentPrefix):], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// eventTemplate is the PointsAdded every benchmark publishes, padded with
// its description so that the encoded PointsAdded is payload bytes long
// (or as short as it can be).
type eventTemplate struct {
	base *notifyv1.PointsAdded
	size int
}

func newEventTemplate(payload int) eventTemplate {
	base := &notifyv1.PointsAdded{
		GuestId:        "nb-guest",
		CardId:         "nb-card",
		Amount:         10,
		NewBalance:     1000,
		RestaurantId:   "r1",
		RestaurantName: "Bench",
		TransactionId:  sentID(time.Now().UnixNano()),
	}
	size := proto.Size(base)
	if pad := payload - size - 2; pad > 0 {
		// The description's tag and length take 2 bytes up to 127 bytes,
		// 3 up to 16383.
		if pad > 127 {
			pad--
		}
		base.Description = strings.Repeat("x", pad)
		size = proto.Size(base)
	}
	return eventTemplate{base: base, size: size}
}

// request builds a publish of the template in rooms, stamped with sent.
func (t eventTemplate) request(rooms []string, sent time.Time, idempotencyKey string) *notifyv1.PublishRequest {
	b := t.base
	ev := &notifyv1.PointsAdded{
		GuestId:        b.GuestId,
		CardId:         b.CardId,
		Amount:         b.Amount,
		NewBalance:     b.NewBalance,
		RestaurantId:   b.RestaurantId,
		RestaurantName: b.RestaurantName,
		TransactionId:  sentID(sent.UnixNano()),
		Description:    b.Description,
	}
	return &notifyv1.PublishRequest{
		Rooms:          rooms,
		IdempotencyKey: idempotencyKey,
		Payload:        &notifyv1.PublishRequest_PointsAdded{PointsAdded: ev},
	}
}
