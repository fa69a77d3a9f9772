-- Notification states with their times, and the publisher's metadata.
--
-- is_seen: the notification was shown to its user (badges count unseen
-- ones); seen_at, read_at: when (NULL: not, or before this migration);
-- archived_at: archived since (NULL: in the inbox); snoozed_until: hidden
-- until then, back afterwards (a past value is a snooze that ended);
-- priority 0 (none) to 4 (critical); category and tags (comma-separated)
-- to filter by; expires_at: the notification leaves the inbox then; action:
-- an encoded notify.v1.NotificationAction.
ALTER TABLE inbox_items
    ADD COLUMN is_seen       boolean     NOT NULL DEFAULT false,
    ADD COLUMN seen_at       timestamptz,
    ADD COLUMN read_at       timestamptz,
    ADD COLUMN archived_at   timestamptz,
    ADD COLUMN snoozed_until timestamptz,
    ADD COLUMN priority      smallint    NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 4),
    ADD COLUMN category      text        NOT NULL DEFAULT '',
    ADD COLUMN tags          text        NOT NULL DEFAULT '',
    ADD COLUMN expires_at    timestamptz,
    ADD COLUMN action        bytea;

-- The same states per viewer of a shared row.
ALTER TABLE inbox_state
    ADD COLUMN is_seen       boolean     NOT NULL DEFAULT false,
    ADD COLUMN seen_at       timestamptz,
    ADD COLUMN read_at       timestamptz,
    ADD COLUMN archived_at   timestamptz,
    ADD COLUMN snoozed_until timestamptz;

-- What was read before was seen. Rows kept so far get the default
-- priority (2, medium) and the category of their event type, as the
-- service derives it for new rows.
UPDATE inbox_items SET is_seen = true WHERE is_read;
UPDATE inbox_state SET is_seen = true WHERE is_read;
UPDATE inbox_items SET category = CASE event_type
    WHEN 'points_added' THEN 'points'
    WHEN 'points_redeemed' THEN 'points'
    WHEN 'points_expired' THEN 'points'
    WHEN 'card_created' THEN 'card'
    WHEN 'guest_card_updated' THEN 'card'
    WHEN 'guest_registered' THEN 'guests'
    WHEN 'restaurant_guest_joined' THEN 'guests'
    WHEN 'restaurant_status_changed' THEN 'restaurant'
    WHEN 'restaurant_transaction' THEN 'transactions'
    WHEN 'system_alert' THEN 'alerts'
    WHEN 'admin_notification' THEN 'alerts'
    WHEN 'action_confirmed' THEN 'actions'
    ELSE '' END
WHERE category = '';

-- The badge: unseen and unread notifications of an owner's inbox.
CREATE INDEX inbox_items_owner_badge_idx ON inbox_items (owner)
    WHERE NOT is_deleted AND archived_at IS NULL AND (NOT is_read OR NOT is_seen);
-- The archive, lists by category, lists by priority.
CREATE INDEX inbox_items_owner_archived_idx ON inbox_items (owner, id DESC)
    WHERE archived_at IS NOT NULL;
CREATE INDEX inbox_items_owner_category_idx ON inbox_items (owner, category, id DESC);
CREATE INDEX inbox_items_owner_priority_idx ON inbox_items (owner, priority DESC, id DESC);
-- Snoozes that end and notifications that expire: each node's wake-ups,
-- the snoozed lists and pruning.
CREATE INDEX inbox_items_snoozed_until_idx ON inbox_items (snoozed_until)
    WHERE snoozed_until IS NOT NULL;
CREATE INDEX inbox_items_expires_at_idx ON inbox_items (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX inbox_state_snoozed_until_idx ON inbox_state (snoozed_until)
    WHERE snoozed_until IS NOT NULL;
