-- Consumers read the stream from a cursor (bus.rs): a queue row per message
-- and consumer cost the one writer an insert, a lease update and an
-- acknowledging delete per message. What a process has handed out and not
-- settled is now leased in its memory; the file keeps, per consumer, how far
-- it has read (`delivered`), what it holds unsettled (`held`, a JSON array of
-- [sequence, deliveries]) and its ack floor (`acked`: every message at or
-- below it is settled), written with each group of acknowledgements.
CREATE TABLE bus_cursors (
    consumer  TEXT    PRIMARY KEY,
    acked     INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    held      TEXT    NOT NULL DEFAULT '[]'
) WITHOUT ROWID;

-- Messages stored before migration 0009 name no consumers; their queue rows
-- do, and pruning and reading now go by the names.
UPDATE bus_messages SET consumers = (
    SELECT json_group_array(consumer) FROM bus_pending WHERE bus_pending.seq = bus_messages.seq)
WHERE consumers = '[]' AND seq IN (SELECT seq FROM bus_pending);

-- Everything queued is held, with its deliveries (one never delivered has 0,
-- and comes as a first delivery), and each consumer has read the whole
-- stream: nothing queued is lost, and nothing settled comes back.
INSERT INTO bus_cursors (consumer, acked, delivered, held)
SELECT consumer, min(seq) - 1, coalesce((SELECT max(seq) FROM bus_messages), max(seq)),
       json_group_array(json_array(seq, deliveries))
FROM bus_pending GROUP BY consumer;

-- A consumer with nothing queued is done with every message stored so far.
INSERT INTO bus_cursors (consumer, acked, delivered)
SELECT DISTINCT c.value, (SELECT max(seq) FROM bus_messages), (SELECT max(seq) FROM bus_messages)
FROM bus_messages, json_each(bus_messages.consumers) AS c WHERE true
ON CONFLICT (consumer) DO NOTHING;

DROP TRIGGER bus_messages_queue;
DROP TABLE bus_pending;
