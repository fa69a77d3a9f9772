// Package hub fans each event out to the subscribers of its room.
//
// The broker hands the hub every message once per room; the hub encodes it
// once into a Frame and pushes that same Frame onto the queue of every
// subscriber of the room. Pushing never blocks: a subscriber whose queue
// would exceed its byte bound is closed with ErrSlowConsumer and its queue
// released, and everyone else carries on.
//
// The hub also keeps one schedule for all its subscribers (Schedule): a
// stream's heartbeat and token expiry are a heap slot and a tick function
// run by one runtime timer, not a timer per stream.
//
// Concurrency: Hub and Subscriber are safe for concurrent use. Lock order:
// the hub's close lock (Join, CloseAll, CloseCurrent) before a hub shard's
// lock, and a shard's lock before a subscriber's lock, never the reverse;
// the users lock and the schedule's lock are taken alone (a tick function
// runs with no hub lock held).
// Deliver may be called with the broker's room lock held (broker room lock ->
// hub shard lock -> subscriber lock).
package hub
