-- Notification inbox, PostgreSQL.

-- One row per notification per owner (a user id or a group name). For a
-- user's own rows is_read and is_deleted are that user's state; a deleted
-- row stays as a tombstone until pruned so the event stays deduplicated.
CREATE TABLE inbox_items (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner      text        NOT NULL CHECK (owner <> ''),
    event_id   text        NOT NULL CHECK (event_id <> ''),
    event_type text        NOT NULL CHECK (event_type <> ''),
    event      bytea       NOT NULL,
    is_read    boolean     NOT NULL DEFAULT false,
    is_deleted boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    CONSTRAINT inbox_items_owner_event_id_key UNIQUE (owner, event_id)
);

CREATE INDEX inbox_items_owner_id_idx ON inbox_items (owner, id DESC);
CREATE INDEX inbox_items_owner_unread_idx ON inbox_items (owner, id DESC)
    WHERE NOT is_read AND NOT is_deleted;
CREATE INDEX inbox_items_created_at_idx ON inbox_items (created_at);

-- Per-viewer state of rows owned by a group. No row means unread and not
-- deleted.
CREATE TABLE inbox_state (
    user_id    text    NOT NULL CHECK (user_id <> ''),
    item_id    bigint  NOT NULL REFERENCES inbox_items (id) ON DELETE CASCADE,
    is_read    boolean NOT NULL DEFAULT false,
    is_deleted boolean NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, item_id)
);

CREATE INDEX inbox_state_item_id_idx ON inbox_state (item_id);

-- Notification preferences; no row means the defaults.
CREATE TABLE preferences (
    user_id text    PRIMARY KEY CHECK (user_id <> ''),
    enabled boolean NOT NULL,
    sound   boolean NOT NULL,
    email   boolean NOT NULL
);

CREATE TABLE preference_muted (
    user_id    text NOT NULL REFERENCES preferences (user_id) ON DELETE CASCADE,
    event_type text NOT NULL CHECK (event_type <> ''),
    PRIMARY KEY (user_id, event_type)
);
