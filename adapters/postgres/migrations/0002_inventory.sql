-- The inventory context: stock, reservations, the movement audit trail,
-- outbox and inbox. The CHECKs are the last line of defence: whatever a lock
-- or a rule gets wrong, stock never goes negative and never stops balancing.
CREATE SCHEMA IF NOT EXISTS inventory;

CREATE TABLE inventory.products (
    product_id text PRIMARY KEY,
    name       text   NOT NULL,
    unit_price bigint NOT NULL CHECK (unit_price >= 0),
    currency   text   NOT NULL,
    available  bigint NOT NULL CHECK (available >= 0),
    reserved   bigint NOT NULL CHECK (reserved >= 0),
    initial    bigint NOT NULL,
    restocked  bigint NOT NULL,
    adjusted   bigint NOT NULL,
    deducted   bigint NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    CONSTRAINT stock_is_conserved CHECK (initial + restocked + adjusted = available + reserved + deducted)
);

CREATE TABLE inventory.reservations (
    order_id text PRIMARY KEY,
    status   text  NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'deducted')),
    lines    jsonb NOT NULL
);

CREATE TABLE inventory.movements (
    seq        bigserial PRIMARY KEY,
    product_id text   NOT NULL,
    kind       text   NOT NULL,
    quantity   bigint NOT NULL,
    order_id   text,
    reason     text,
    at         bigint NOT NULL
);
CREATE INDEX movements_by_product ON inventory.movements (product_id, seq);

CREATE TABLE inventory.outbox (
    seq        bigserial PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    leased_by  text,
    lease_until timestamptz,
    sent_at    timestamptz
);
CREATE INDEX inventory_outbox_unsent ON inventory.outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX inventory_outbox_sent_at ON inventory.outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE TABLE inventory.inbox (
    consumer   text        NOT NULL,
    message_id uuid        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
