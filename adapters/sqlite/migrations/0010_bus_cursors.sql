-- Consumers read the stream from a cursor (bus.rs): a queue row per message
-- and consumer cost the one writer an insert, a lease update and an
-- acknowledging delete per message. What a process has handed out and not
-- settled is now leased in its memory; the file keeps, per consumer, how far
-- it has read (`delivered`), what it holds unsettled (`held`, a JSON array of
-- [sequence, deliveries]) and its ack floor (`acked`: every message at or
-- below it is settled, so the stream is pruned up to the lowest floor).
CREATE TABLE bus_cursors (
    consumer  TEXT    PRIMARY KEY,
    acked     INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    held      TEXT    NOT NULL DEFAULT '[]'
) WITHOUT ROWID;

-- What is queued carries over, and nothing settled comes back: a consumer
-- has read up to the last message it was handed (or to just below its
-- oldest queued one), and holds what is queued up to there, with its
-- deliveries; what is queued above it, it reads next.
WITH reach AS (
    SELECT consumer, min(seq) - 1 AS acked,
           coalesce(max(CASE WHEN deliveries > 0 THEN seq END), min(seq) - 1) AS delivered
    FROM bus_pending GROUP BY consumer
)
INSERT INTO bus_cursors (consumer, acked, delivered, held)
SELECT consumer, acked, delivered, (
    SELECT json_group_array(json_array(seq, deliveries)) FROM (
        SELECT seq, deliveries FROM bus_pending AS q
        WHERE q.consumer = reach.consumer AND q.seq <= reach.delivered ORDER BY seq))
FROM reach;

-- A consumer with nothing queued is done with every message stored so far.
INSERT INTO bus_cursors (consumer, acked, delivered)
SELECT DISTINCT c.value, (SELECT max(seq) FROM bus_messages), (SELECT max(seq) FROM bus_messages)
FROM bus_messages, json_each(bus_messages.consumers) AS c WHERE true
ON CONFLICT (consumer) DO NOTHING;

DROP TRIGGER bus_messages_queue;
DROP TABLE bus_pending;
