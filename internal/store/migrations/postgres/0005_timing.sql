-- Time: quiet hours and digests in preferences, open digest windows and
-- throttle windows (the jobs that close them are River's).

-- The user's IANA time zone ('' is UTC), quiet hours as minutes after
-- midnight in it (-1: none), and digest rules (JSON, by event type).
ALTER TABLE preferences ADD COLUMN time_zone text NOT NULL DEFAULT '';
ALTER TABLE preferences ADD COLUMN quiet_start integer NOT NULL DEFAULT -1 CHECK (quiet_start BETWEEN -1 AND 1439);
ALTER TABLE preferences ADD COLUMN quiet_end integer NOT NULL DEFAULT -1 CHECK (quiet_end BETWEEN -1 AND 1439);
ALTER TABLE preferences ADD COLUMN digests text NOT NULL DEFAULT '[]';

-- An open digest: events of one type for one user (and one value of the
-- rule's key field) gathered until closes_at, when one summary is sent.
-- At most one open window per user, type and key: later events join it.
CREATE TABLE digest_windows (
    id          text        PRIMARY KEY,
    user_id     text        NOT NULL CHECK (length(user_id) > 0),
    event_type  text        NOT NULL CHECK (length(event_type) > 0),
    digest_key  text        NOT NULL DEFAULT '',
    owner       text        NOT NULL,
    opened_at   timestamptz NOT NULL,
    closes_at   timestamptz NOT NULL,
    count       bigint      NOT NULL CHECK (count > 0),
    points      bigint      NOT NULL DEFAULT 0,
    event_ids   text        NOT NULL DEFAULT '[]',
    last_event  bytea       NOT NULL,
    email       text        NOT NULL DEFAULT '',
    locale      text        NOT NULL DEFAULT '',
    UNIQUE (user_id, event_type, digest_key)
);

CREATE INDEX digest_windows_closes ON digest_windows (closes_at);

-- Throttle windows, per user, event type, channel and target: the sends of
-- the window that began at window_start (their jobs, so that a job run
-- again is not counted twice), and those held back (counted, with their
-- points and the last one) to fold into the next send.
CREATE TABLE delivery_throttles (
    user_id      text        NOT NULL,
    event_type   text        NOT NULL,
    channel      text        NOT NULL,
    target       text        NOT NULL,
    window_start timestamptz NOT NULL,
    sent         bigint      NOT NULL DEFAULT 0,
    held         bigint      NOT NULL DEFAULT 0,
    held_points  bigint      NOT NULL DEFAULT 0,
    last_held    text        NOT NULL DEFAULT '',
    sent_jobs    text        NOT NULL DEFAULT '[]',
    PRIMARY KEY (user_id, event_type, channel, target)
);
