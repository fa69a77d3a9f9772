// Package store is the durable notification inbox: one row per notification
// per owner, per-viewer read and deleted state for rows shared by a group,
// and per-user notification preferences.
//
// Two implementations have the same method set: SQLite (a single file, pure
// Go driver) and Postgres (a pgx connection pool). Open picks one from a DSN
// or path; both satisfy Store. Each applies its embedded, versioned schema
// migrations when opened.
//
// # Owners and viewers
//
// A row's owner is either a user id (a personal notification) or a group name
// such as "group:admin" (a shared notification). A Viewer is a user id plus
// the groups whose rows that user sees. Personal rows carry their own read and
// deleted flags; shared rows keep read and deleted state per viewer, so one
// member marking a shared row read, or deleting it, does not affect another
// member. The store trusts the Viewer it is given: checking that a user really
// belongs to the groups named is the caller's job. A GroupsOnly viewer sees
// the groups' rows only, with the user's state: someone acting for the user
// in the shared inbox.
//
// # States
//
// Each viewer has, for each item it sees, states with their times: seen
// (shown; badges count unseen items), read (reading sees too), archived
// (out of the inbox, kept) and snoozed until a time. "The inbox" is the
// items neither archived nor snoozed; UnreadCount, UnreadCounts and the
// unseen and unread Counts are of the inbox. A snooze hides an item until
// its end and makes it unseen and unread: the item comes back by itself
// when the end passes, with no write, so that every node can tell when
// (NextWake, SnoozesEnded) and announce it to its own streams. Archiving
// ends a snooze; snoozing unarchives. Update changes items by id, and
// UpdateWhere every item matching a Filter (state, event types,
// categories, priorities), each in one transaction.
//
// Items carry the publisher's metadata: a priority (0 to 4, which List can
// order by), a category and tags, an optional action (opaque) and an
// optional expiry, after which the item is neither listed, counted nor
// found, and Prune deletes it (ExpiredOwners tells whose counts changed).
//
// A row may name the restaurant its event is from (NewItem.Restaurant):
// HasEventFrom tells whether an owner has, or had until Prune removed the
// rows, an event from a restaurant, whatever the owner deleted.
//
// A deleted personal row is kept as a hidden tombstone until Prune removes it,
// so that a redelivered event (same owner and event id) stays deduplicated
// and does not reappear.
//
// # Delivery
//
// Beside the inbox the store keeps what reaches users elsewhere: devices
// (web push subscriptions and mobile tokens, a token belonging to one user
// at a time), profiles (email address, locale, and whether the user's own
// token said admin, which makes the admin group's recipients), delivery
// policies (rules per event type) and each delivery's timeline (Status).
// The delivery queue is River's, in River's own tables of the same
// database, migrated by River's migrator right after the store's own. Its
// jobs are inserted in the inbox's transactions: InsertWith runs a hook in
// the Insert transaction, shared by group commit like any Insert, with a
// Tx through which the hook reads devices and profiles, records timeline
// steps and hands River the driver's transaction (Tx.SQL, Tx.PGX). InTx
// gives workers the same Tx outside Insert, so that a timeline step, the
// removal of a device a provider reports gone, and River's completion of
// the job commit together.
//
// # Concurrency contract
//
// Every method of *SQLite and *Postgres is safe for concurrent use by any
// number of goroutines. Each method that writes runs in a single transaction:
// it either takes full effect or none (Insert of a batch, MarkRead or Update
// of many ids, UpdateWhere, Prune). Reads see only committed data. SQLite serialises all writes
// through one connection, waiting up to its busy timeout for other processes,
// and serves reads from a separate pool of read-only connections (WAL mode),
// so reads do not wait for writes; each committed SQLite write is synced to
// disk (synchronous=FULL) before the method returns, so it survives a crash.
//
// # Group commit
//
// Insert calls made at the same time share transactions, so that one commit
// (and one fsync) serves many of them. A committer goroutine (one for
// SQLite, two for PostgreSQL) takes every call waiting when it is free, up
// to 256 rows (a larger call goes alone and is never split), writes each
// call's rows, commits once and answers every caller. It never waits to
// gather calls: on an idle store a call is committed at once, and under load
// the calls that arrive during one commit form the next batch.
//
// Each call keeps its own outcome. Insert returns nil only once its rows are
// committed, and an error only when they were not: if a shared transaction
// fails, the call whose rows failed is retried alone and the others are
// committed together without it (when the commit itself failed, every call
// is retried alone); only an unavailable database or Close fails the whole
// batch. Rows are unique per owner and event id, so two calls of one batch
// with the same row store it once, as the first call wrote it. A caller whose
// ctx ends while it waits returns ctx's error at once: if its transaction had
// not begun, its rows are not written; if it had, they may be committed with
// the other calls' rows. Repeating the call (the service's publisher retries
// with the same idempotency key, hence the same row key) then stores nothing
// twice. A shared transaction is abandoned only when all of its callers have
// given up. Close commits the calls already queued (aborting after 5 s, when
// the calls left fail with ErrUnavailable), and Insert calls after Close fail
// with ErrUnavailable.
//
// Item ids increase with insertion, and List pages by id (keyset paging), so
// a cursor stays valid while new rows arrive: they appear before the first
// page, never in a later one. (On PostgreSQL two concurrent Insert
// transactions may commit out of id order; a page read between the two
// commits can then miss the row that commits last.) Close should be called
// after all other calls have returned; calls after Close fail, and a second
// Close does nothing.
//
// # Errors
//
// Errors wrap one of the sentinels where one applies, for errors.Is:
// ErrInvalid for bad arguments (including malformed cursors and ids),
// ErrNotFound for ids that do not exist or are not visible to the viewer, and
// ErrUnavailable, together with the driver's own error, when the database
// cannot be reached (or, for SQLite, stays locked by another process past the
// busy timeout). A cancelled or expired context yields an error wrapping the
// context's error; it is ErrUnavailable only if it struck while connecting.
package store
