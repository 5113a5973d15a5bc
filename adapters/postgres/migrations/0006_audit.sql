-- The audit log (runtime::audit): entries hash-chained in the order they
-- commit, and the chain's heads, one per append. Nothing may change or
-- remove either: the serving roles are granted SELECT and INSERT only
-- (deploy/postgres-roles.sql), and these triggers refuse UPDATE, DELETE
-- and TRUNCATE to every role. An owner who disables the triggers to
-- tamper anyway breaks the chain, and `shop audit verify` names the entry.
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.entries (
    seq        bigint PRIMARY KEY CHECK (seq > 0),
    context    text   NOT NULL,
    at         bigint NOT NULL,
    actor      text   NOT NULL,
    role       text   NOT NULL,
    action     text   NOT NULL,
    target     text   NOT NULL,
    request_id text   NOT NULL,
    detail     text   NOT NULL,
    prev_hash  text   NOT NULL,
    hash       text   NOT NULL
);
CREATE INDEX audit_by_actor ON audit.entries (actor, seq);
CREATE INDEX audit_by_target ON audit.entries (target, seq);

CREATE TABLE audit.heads (
    seq  bigint PRIMARY KEY CHECK (seq > 0),
    hash text   NOT NULL
);

CREATE FUNCTION audit.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on %.% refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON audit.entries
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER entries_never_truncated BEFORE TRUNCATE ON audit.entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER heads_append_only BEFORE UPDATE OR DELETE ON audit.heads
    FOR EACH ROW EXECUTE FUNCTION audit.append_only();
CREATE TRIGGER heads_never_truncated BEFORE TRUNCATE ON audit.heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit.append_only();

-- Each movement names who caused it, through which request (NULL for the
-- movements recorded before this migration).
ALTER TABLE inventory.movements ADD COLUMN actor text, ADD COLUMN request_id text;
