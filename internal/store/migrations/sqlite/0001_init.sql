-- Notification inbox, SQLite. Booleans are 0/1 integers; created_at is Unix
-- microseconds (UTC).

-- One row per notification per owner (a user id or a group name). For a
-- user's own rows is_read and is_deleted are that user's state; a deleted
-- row stays as a tombstone until pruned so the event stays deduplicated.
CREATE TABLE inbox_items (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    owner      TEXT    NOT NULL CHECK (length(owner) > 0),
    event_id   TEXT    NOT NULL CHECK (length(event_id) > 0),
    event_type TEXT    NOT NULL CHECK (length(event_type) > 0),
    event      BLOB    NOT NULL,
    is_read    INTEGER NOT NULL DEFAULT 0 CHECK (is_read IN (0, 1)),
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    created_at INTEGER NOT NULL,
    UNIQUE (owner, event_id)
) STRICT;

CREATE INDEX inbox_items_owner_id ON inbox_items (owner, id DESC);
CREATE INDEX inbox_items_owner_unread ON inbox_items (owner, id DESC)
    WHERE NOT is_read AND NOT is_deleted;
CREATE INDEX inbox_items_created_at ON inbox_items (created_at);

-- Per-viewer state of rows owned by a group. No row means unread and not
-- deleted.
CREATE TABLE inbox_state (
    user_id    TEXT    NOT NULL CHECK (length(user_id) > 0),
    item_id    INTEGER NOT NULL REFERENCES inbox_items (id) ON DELETE CASCADE,
    is_read    INTEGER NOT NULL DEFAULT 0 CHECK (is_read IN (0, 1)),
    is_deleted INTEGER NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    PRIMARY KEY (user_id, item_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX inbox_state_item_id ON inbox_state (item_id);

-- Notification preferences; no row means the defaults.
CREATE TABLE preferences (
    user_id TEXT    PRIMARY KEY CHECK (length(user_id) > 0),
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    sound   INTEGER NOT NULL CHECK (sound IN (0, 1)),
    email   INTEGER NOT NULL CHECK (email IN (0, 1))
) STRICT, WITHOUT ROWID;

CREATE TABLE preference_muted (
    user_id    TEXT NOT NULL REFERENCES preferences (user_id) ON DELETE CASCADE,
    event_type TEXT NOT NULL CHECK (length(event_type) > 0),
    PRIMARY KEY (user_id, event_type)
) STRICT, WITHOUT ROWID;
