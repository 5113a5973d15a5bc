-- Outboxes become logs read by a cursor, and the inboxes go, as in
-- PostgreSQL (its migration 0003 says why). SQLite cannot drop a UNIQUE
-- column, so each outbox is rebuilt; AUTOINCREMENT keeps numbers from being
-- reused once published rows are pruned.
DROP TABLE orders_inbox;
DROP TABLE inventory_inbox;

CREATE TABLE orders_outbox_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
INSERT INTO orders_outbox_log (seq, envelope, at) SELECT seq, envelope, coalesce(sent_at, 0) FROM orders_outbox;
CREATE TABLE orders_outbox_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    position    INTEGER NOT NULL,
    holder      TEXT,
    lease_until INTEGER
);
INSERT INTO orders_outbox_cursor (id, position)
SELECT 1, coalesce((SELECT min(seq) - 1 FROM orders_outbox WHERE sent_at IS NULL), (SELECT max(seq) FROM orders_outbox), 0);
DROP TABLE orders_outbox;
ALTER TABLE orders_outbox_log RENAME TO orders_outbox;

CREATE TABLE inventory_outbox_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    envelope TEXT    NOT NULL,
    at       INTEGER NOT NULL
);
INSERT INTO inventory_outbox_log (seq, envelope, at) SELECT seq, envelope, coalesce(sent_at, 0) FROM inventory_outbox;
CREATE TABLE inventory_outbox_cursor (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    position    INTEGER NOT NULL,
    holder      TEXT,
    lease_until INTEGER
);
INSERT INTO inventory_outbox_cursor (id, position)
SELECT 1, coalesce((SELECT min(seq) - 1 FROM inventory_outbox WHERE sent_at IS NULL), (SELECT max(seq) FROM inventory_outbox), 0);
DROP TABLE inventory_outbox;
ALTER TABLE inventory_outbox_log RENAME TO inventory_outbox;

-- Intake counts the saga's backlog (PENDING orders), as in PostgreSQL.
CREATE INDEX orders_pending ON orders_orders (order_id) WHERE status = 'PENDING';
