package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	notify "github.com/maxloyalty/notify/clients/go"
	notifyv1 "github.com/maxloyalty/notify/gen/notify/v1"
)

func publishCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	cf := bindConn(fs)
	var rooms multi
	fs.Var(&rooms, "room", "room to publish in (repeatable; none: derived from the event)")
	key := fs.String("key", "", "idempotency key (default: a random one, kept across the call's retries)")
	raw := fs.String("json", "", "the whole PublishRequest as JSON instead of an event and fields")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: notifyctl publish [flags] <eventType> field=value...\n  e.g. notifyctl publish pointsAdded guestId=g1 restaurantId=r1 amount=100 newBalance=600")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	req, err := buildPublish(*raw, fs.Args())
	if err != nil {
		return err
	}
	payload, err := payloadOf(req)
	if err != nil {
		return err
	}
	opts := []notify.PublishOption{notify.Rooms(req.Rooms...), notify.Rooms(rooms...)}
	if req.Room != "" {
		opts = append(opts, notify.Rooms(req.Room))
	}
	opts = append(opts, notify.IdempotencyKey(req.IdempotencyKey), notify.IdempotencyKey(*key))
	c, err := cf.dial(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Publish(ctx, payload, opts...)
	if err != nil {
		return err
	}
	b, err := protojson.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, string(b))
	return err
}

var payloadOneof = (&notifyv1.PublishRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")

// payloadOf returns the event a PublishRequest carries.
func payloadOf(req *notifyv1.PublishRequest) (notify.Payload, error) {
	m := req.ProtoReflect()
	fd := m.WhichOneof(payloadOneof)
	if fd == nil {
		return nil, fmt.Errorf("an event is required, e.g. pointsAdded")
	}
	return m.Get(fd).Message().Interface(), nil
}

// buildPublish makes a PublishRequest from --json, or from an event type
// (its JSON name, e.g. pointsAdded) and field=value pairs. Values that read
// as JSON numbers or booleans are sent as such; the rest as strings (enums
// by name, timestamps as RFC 3339). The schema checks every field.
func buildPublish(raw string, args []string) (*notifyv1.PublishRequest, error) {
	req := &notifyv1.PublishRequest{}
	if raw != "" {
		if len(args) > 0 {
			return nil, fmt.Errorf("give either --json or an event type with fields, not both")
		}
		if err := protojson.Unmarshal([]byte(raw), req); err != nil {
			return nil, fmt.Errorf("--json: %w", err)
		}
		return req, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("an event type is required, e.g. pointsAdded (or --json)")
	}
	fields := map[string]any{}
	for _, kv := range args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want field=value", kv)
		}
		var val any
		if json.Unmarshal([]byte(v), &val) != nil {
			val = v
		}
		if _, isObj := val.(map[string]any); isObj {
			val = v
		}
		fields[k] = val
	}
	b, err := json.Marshal(map[string]any{args[0]: fields})
	if err != nil {
		return nil, err
	}
	if err := protojson.Unmarshal(b, req); err != nil {
		return nil, fmt.Errorf("event %s: %w", args[0], err)
	}
	return req, nil
}
