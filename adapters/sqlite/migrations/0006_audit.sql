-- The audit log (runtime::audit): entries hash-chained in the order they
-- commit, and the chain's heads, one per append. The triggers refuse any
-- change or removal; whoever drops them to tamper anyway breaks the chain,
-- and `shop audit verify` names the entry.
CREATE TABLE audit_entries (
    seq        INTEGER PRIMARY KEY CHECK (seq > 0),
    context    TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);
CREATE INDEX audit_by_actor ON audit_entries (actor, seq);
CREATE INDEX audit_by_target ON audit_entries (target, seq);

CREATE TABLE audit_heads (
    seq  INTEGER PRIMARY KEY CHECK (seq > 0),
    hash TEXT    NOT NULL
);

CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- Each movement names who caused it, through which request (NULL for the
-- movements recorded before this migration).
ALTER TABLE inventory_movements ADD COLUMN actor TEXT;
ALTER TABLE inventory_movements ADD COLUMN request_id TEXT;
