-- Delivery beyond the live stream: devices, contact profiles, delivery
-- policies and each delivery's timeline. The queue itself is River's tables
-- (river_job, ...), created by River's own migrations right after these.

-- A user's web push subscription (token: the endpoint URL; p256dh and auth:
-- its keys) or mobile device token (fcm, apns). A token belongs to one user
-- at a time: registering it again moves it to the new user.
CREATE TABLE devices (
    id         text        PRIMARY KEY,
    user_id    text        NOT NULL CHECK (length(user_id) > 0),
    channel    text        NOT NULL CHECK (channel IN ('webpush', 'fcm', 'apns')),
    token      text        NOT NULL CHECK (length(token) > 0),
    p256dh     text        NOT NULL DEFAULT '',
    auth       text        NOT NULL DEFAULT '',
    label      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    UNIQUE (channel, token)
);

CREATE INDEX devices_user ON devices (user_id);

-- Where and how to reach a user by email, and whether the user is an admin
-- (recorded from their own token), so that the admin group's notifications
-- reach each admin.
CREATE TABLE delivery_profiles (
    user_id    text        PRIMARY KEY CHECK (length(user_id) > 0),
    email      text        NOT NULL DEFAULT '',
    locale     text        NOT NULL DEFAULT '',
    is_admin   boolean     NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL
);

CREATE INDEX delivery_profiles_admins ON delivery_profiles (user_id) WHERE is_admin;

-- A user's delivery rules per event type (JSON); no row: the defaults.
CREATE TABLE delivery_policies (
    user_id    text        PRIMARY KEY CHECK (length(user_id) > 0),
    rules      text        NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Each delivery's timeline: one row per state a delivery went through
-- (queued, scheduled, sent, delivered, retrying, failed, cancelled), and one
-- "live" row per user an event was delivered to on a live stream.
CREATE TABLE delivery_status (
    id          text        PRIMARY KEY,
    event_id    text        NOT NULL CHECK (length(event_id) > 0),
    user_id     text        NOT NULL,
    channel     text        NOT NULL CHECK (length(channel) > 0),
    target      text        NOT NULL DEFAULT '',
    state       text        NOT NULL CHECK (length(state) > 0),
    at          timestamptz NOT NULL,
    attempt     integer     NOT NULL DEFAULT 0,
    detail      text        NOT NULL DEFAULT '',
    provider_id text        NOT NULL DEFAULT ''
);

CREATE INDEX delivery_status_event ON delivery_status (event_id, at);
CREATE INDEX delivery_status_at ON delivery_status (at);
CREATE UNIQUE INDEX delivery_status_live ON delivery_status (event_id, user_id) WHERE channel = 'live';
