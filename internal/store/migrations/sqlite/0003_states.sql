-- Notification states with their times, and the publisher's metadata.
--
-- is_seen: the notification was shown to its user (badges count unseen
-- ones); seen_at, read_at: when (NULL: not, or before this migration);
-- archived_at: archived since (NULL: in the inbox); snoozed_until: hidden
-- until then, back afterwards (a past value is a snooze that ended);
-- priority 0 (none) to 4 (critical); category and tags (comma-separated)
-- to filter by; expires_at: the notification leaves the inbox then; action:
-- an encoded notify.v1.NotificationAction. Times are Unix microseconds.
ALTER TABLE inbox_items ADD COLUMN is_seen INTEGER NOT NULL DEFAULT 0 CHECK (is_seen IN (0, 1));
ALTER TABLE inbox_items ADD COLUMN seen_at INTEGER;
ALTER TABLE inbox_items ADD COLUMN read_at INTEGER;
ALTER TABLE inbox_items ADD COLUMN archived_at INTEGER;
ALTER TABLE inbox_items ADD COLUMN snoozed_until INTEGER;
ALTER TABLE inbox_items ADD COLUMN priority INTEGER NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 4);
ALTER TABLE inbox_items ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE inbox_items ADD COLUMN tags TEXT NOT NULL DEFAULT '';
ALTER TABLE inbox_items ADD COLUMN expires_at INTEGER;
ALTER TABLE inbox_items ADD COLUMN action BLOB;

-- The same states per viewer of a shared row.
ALTER TABLE inbox_state ADD COLUMN is_seen INTEGER NOT NULL DEFAULT 0 CHECK (is_seen IN (0, 1));
ALTER TABLE inbox_state ADD COLUMN seen_at INTEGER;
ALTER TABLE inbox_state ADD COLUMN read_at INTEGER;
ALTER TABLE inbox_state ADD COLUMN archived_at INTEGER;
ALTER TABLE inbox_state ADD COLUMN snoozed_until INTEGER;

-- What was read before was seen. Rows kept so far get the default
-- priority (2, medium) and the category of their event type, as the
-- service derives it for new rows.
UPDATE inbox_items SET is_seen = 1 WHERE is_read = 1;
UPDATE inbox_state SET is_seen = 1 WHERE is_read = 1;
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
    ELSE '' END;

-- The badge: unseen and unread notifications of an owner's inbox.
CREATE INDEX inbox_items_owner_badge ON inbox_items (owner)
    WHERE NOT is_deleted AND archived_at IS NULL AND (NOT is_read OR NOT is_seen);
-- The archive, lists by category, lists by priority.
CREATE INDEX inbox_items_owner_archived ON inbox_items (owner, id DESC)
    WHERE archived_at IS NOT NULL;
CREATE INDEX inbox_items_owner_category ON inbox_items (owner, category, id DESC);
CREATE INDEX inbox_items_owner_priority ON inbox_items (owner, priority DESC, id DESC);
-- Snoozes that end and notifications that expire: each node's wake-ups,
-- the snoozed lists and pruning.
CREATE INDEX inbox_items_snoozed_until ON inbox_items (snoozed_until)
    WHERE snoozed_until IS NOT NULL;
CREATE INDEX inbox_items_expires_at ON inbox_items (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX inbox_state_snoozed_until ON inbox_state (snoozed_until)
    WHERE snoozed_until IS NOT NULL;
