-- Outboxes become logs read by a cursor, and the inboxes go.
--
-- Publishing no longer writes per event (no lease, no sent mark): events are
-- numbered in commit order (writers take the outbox's advisory lock before
-- numbering, see schema.rs), one cursor row per context says how far the
-- relay got, and published rows are pruned in bulk after a retention period.
-- Every message handler is idempotent by the state it changes (a
-- reservation per order, an order's status, a catalogue entry's source
-- version), so no message needs remembering: the inboxes are dropped.

DROP TABLE orders.inbox;
DROP TABLE inventory.inbox;

-- Times in milliseconds since the epoch, as in SQLite: the relay's code
-- is shared (crate shop-adapter-sql).
CREATE TABLE orders.outbox_cursor (
    id          int PRIMARY KEY CHECK (id = 1),
    position    bigint NOT NULL,
    holder      text,
    lease_until bigint
);
INSERT INTO orders.outbox_cursor (id, position)
SELECT 1, coalesce((SELECT min(seq) - 1 FROM orders.outbox WHERE sent_at IS NULL),
                   (SELECT max(seq) FROM orders.outbox), 0);

CREATE TABLE inventory.outbox_cursor (LIKE orders.outbox_cursor INCLUDING ALL);
INSERT INTO inventory.outbox_cursor (id, position)
SELECT 1, coalesce((SELECT min(seq) - 1 FROM inventory.outbox WHERE sent_at IS NULL),
                   (SELECT max(seq) FROM inventory.outbox), 0);

DROP INDEX orders.orders_outbox_unsent;
DROP INDEX orders.orders_outbox_sent_at;
ALTER TABLE orders.outbox ADD COLUMN at bigint;
UPDATE orders.outbox SET at = (extract(epoch FROM created_at) * 1000)::bigint;
ALTER TABLE orders.outbox ALTER COLUMN at SET NOT NULL,
    DROP COLUMN created_at, DROP COLUMN event_id, DROP COLUMN leased_by, DROP COLUMN lease_until, DROP COLUMN sent_at;

DROP INDEX inventory.inventory_outbox_unsent;
DROP INDEX inventory.inventory_outbox_sent_at;
ALTER TABLE inventory.outbox ADD COLUMN at bigint;
UPDATE inventory.outbox SET at = (extract(epoch FROM created_at) * 1000)::bigint;
ALTER TABLE inventory.outbox ALTER COLUMN at SET NOT NULL,
    DROP COLUMN created_at, DROP COLUMN event_id, DROP COLUMN leased_by, DROP COLUMN lease_until, DROP COLUMN sent_at;

-- Intake counts the saga's backlog (PENDING orders) to shed load: a partial
-- index keeps that count proportional to the backlog, not to all orders.
CREATE INDEX orders_pending ON orders.orders (order_id) WHERE status = 'PENDING';
