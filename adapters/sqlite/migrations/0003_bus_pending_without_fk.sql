-- The stream is pruned now (bus.rs): deleting a message would make SQLite
-- look for rows referencing it in bus_pending, a full scan per message
-- without an index on seq alone. The reference protected nothing the bus
-- does not: a message and its pending row are written in one transaction,
-- and only messages no consumer waits for are pruned. So bus_pending is
-- rebuilt without it.
CREATE TABLE bus_pending_new (
    consumer   TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, seq)
);
INSERT INTO bus_pending_new (consumer, seq, deliveries, visible_at)
SELECT consumer, seq, deliveries, visible_at FROM bus_pending;
DROP TABLE bus_pending;
ALTER TABLE bus_pending_new RENAME TO bus_pending;
CREATE INDEX bus_pending_visible ON bus_pending (consumer, visible_at, seq);
