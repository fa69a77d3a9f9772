-- The restaurant an event is from (its restaurant_id, '' when it has none),
-- so that the service can tell which restaurants have sent an owner events
-- (a guest confirms actions only at those). Rows written before this
-- migration have ''.
ALTER TABLE inbox_items ADD COLUMN restaurant_id text NOT NULL DEFAULT '';

CREATE INDEX inbox_items_owner_restaurant_idx ON inbox_items (owner, restaurant_id)
    WHERE restaurant_id <> '';
