// Package broker assigns each event its per-room offset, keeps a bounded
// history per room, remembers idempotency keys, and hands every published
// message to the node's handler in offset order.
//
// An idempotency key is kept with the fingerprint of the request that first
// used it: a repeat with the same fingerprint is a duplicate (the first
// result, nothing delivered again), one with another fingerprint fails with
// ErrKeyReused.
//
// Memory is the embedded, single-node implementation. Its methods are safe
// for concurrent use. Within one room, the handler is called with the room's
// lock held, so it sees offsets in strictly increasing order and must not
// block or call back into the broker.
package broker
