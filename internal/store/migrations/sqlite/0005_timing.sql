-- Time: quiet hours and digests in preferences, open digest windows and
-- throttle windows (the jobs that close them are River's). Times are Unix
-- microseconds.

-- The user's IANA time zone ('' is UTC), quiet hours as minutes after
-- midnight in it (-1: none), and digest rules (JSON, by event type).
ALTER TABLE preferences ADD COLUMN time_zone TEXT NOT NULL DEFAULT '';
ALTER TABLE preferences ADD COLUMN quiet_start INTEGER NOT NULL DEFAULT -1 CHECK (quiet_start BETWEEN -1 AND 1439);
ALTER TABLE preferences ADD COLUMN quiet_end INTEGER NOT NULL DEFAULT -1 CHECK (quiet_end BETWEEN -1 AND 1439);
ALTER TABLE preferences ADD COLUMN digests TEXT NOT NULL DEFAULT '[]';

-- An open digest: events of one type for one user (and one value of the
-- rule's key field) gathered until closes_at, when one summary is sent.
-- At most one open window per user, type and key: later events join it.
CREATE TABLE digest_windows (
    id          TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL CHECK (length(user_id) > 0),
    event_type  TEXT    NOT NULL CHECK (length(event_type) > 0),
    digest_key  TEXT    NOT NULL DEFAULT '',
    owner       TEXT    NOT NULL,
    opened_at   INTEGER NOT NULL,
    closes_at   INTEGER NOT NULL,
    count       INTEGER NOT NULL CHECK (count > 0),
    points      INTEGER NOT NULL DEFAULT 0,
    event_ids   TEXT    NOT NULL DEFAULT '[]',
    last_event  BLOB    NOT NULL,
    email       TEXT    NOT NULL DEFAULT '',
    locale      TEXT    NOT NULL DEFAULT '',
    UNIQUE (user_id, event_type, digest_key)
) STRICT;

CREATE INDEX digest_windows_closes ON digest_windows (closes_at);

-- Throttle windows, per user, event type, channel and target: the sends of
-- the window that began at window_start (their jobs, so that a job run
-- again is not counted twice), and those held back (counted, with their
-- points and the last one) to fold into the next send.
CREATE TABLE delivery_throttles (
    user_id      TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    target       TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    sent         INTEGER NOT NULL DEFAULT 0,
    held         INTEGER NOT NULL DEFAULT 0,
    held_points  INTEGER NOT NULL DEFAULT 0,
    last_held    TEXT    NOT NULL DEFAULT '',
    sent_jobs    TEXT    NOT NULL DEFAULT '[]',
    PRIMARY KEY (user_id, event_type, channel, target)
) STRICT, WITHOUT ROWID;
