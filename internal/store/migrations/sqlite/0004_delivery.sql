-- Delivery beyond the live stream: devices, contact profiles, delivery
-- policies and each delivery's timeline. The queue itself is River's tables
-- (river_job, ...), created by River's own migrations right after these.
-- Times are Unix microseconds.

-- A user's web push subscription (token: the endpoint URL; p256dh and auth:
-- its keys) or mobile device token (fcm, apns). A token belongs to one user
-- at a time: registering it again moves it to the new user.
CREATE TABLE devices (
    id         TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL CHECK (length(user_id) > 0),
    channel    TEXT    NOT NULL CHECK (channel IN ('webpush', 'fcm', 'apns')),
    token      TEXT    NOT NULL CHECK (length(token) > 0),
    p256dh     TEXT    NOT NULL DEFAULT '',
    auth       TEXT    NOT NULL DEFAULT '',
    label      TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (channel, token)
) STRICT;

CREATE INDEX devices_user ON devices (user_id);

-- Where and how to reach a user by email, and whether the user is an admin
-- (recorded from their own token), so that the admin group's notifications
-- reach each admin.
CREATE TABLE delivery_profiles (
    user_id    TEXT    PRIMARY KEY CHECK (length(user_id) > 0),
    email      TEXT    NOT NULL DEFAULT '',
    locale     TEXT    NOT NULL DEFAULT '',
    is_admin   INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX delivery_profiles_admins ON delivery_profiles (user_id) WHERE is_admin = 1;

-- A user's delivery rules per event type (JSON); no row: the defaults.
CREATE TABLE delivery_policies (
    user_id    TEXT    PRIMARY KEY CHECK (length(user_id) > 0),
    rules      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Each delivery's timeline: one row per state a delivery went through
-- (queued, scheduled, sent, delivered, retrying, failed, cancelled), and one
-- "live" row per user an event was delivered to on a live stream.
CREATE TABLE delivery_status (
    id          TEXT    PRIMARY KEY,
    event_id    TEXT    NOT NULL CHECK (length(event_id) > 0),
    user_id     TEXT    NOT NULL,
    channel     TEXT    NOT NULL CHECK (length(channel) > 0),
    target      TEXT    NOT NULL DEFAULT '',
    state       TEXT    NOT NULL CHECK (length(state) > 0),
    at          INTEGER NOT NULL,
    attempt     INTEGER NOT NULL DEFAULT 0,
    detail      TEXT    NOT NULL DEFAULT '',
    provider_id TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX delivery_status_event ON delivery_status (event_id, at);
CREATE INDEX delivery_status_at ON delivery_status (at);
CREATE UNIQUE INDEX delivery_status_live ON delivery_status (event_id, user_id) WHERE channel = 'live';
