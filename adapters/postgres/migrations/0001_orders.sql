-- The order context: orders, its copy of the catalogue, outbox and inbox.
CREATE SCHEMA IF NOT EXISTS orders;

CREATE TABLE orders.orders (
    order_id     text PRIMARY KEY,
    customer_id  text   NOT NULL,
    status       text   NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'COMPLETED', 'CANCELLED')),
    created_at   bigint NOT NULL,
    confirmed_at bigint,
    -- The whole aggregate; the columns above are copies for queries.
    state        jsonb  NOT NULL,
    version      bigint NOT NULL CHECK (version > 0)
);
CREATE INDEX orders_by_customer ON orders.orders (customer_id, created_at DESC);
-- Reservation expiry scans confirmed orders by confirmation time.
CREATE INDEX orders_confirmed ON orders.orders (confirmed_at) WHERE status = 'CONFIRMED';

CREATE TABLE orders.catalogue (
    product_id     text PRIMARY KEY,
    unit_price     bigint NOT NULL CHECK (unit_price >= 0),
    currency       text   NOT NULL,
    source_version bigint NOT NULL
);

CREATE TABLE orders.outbox (
    seq        bigserial PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    envelope   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    leased_by  text,
    lease_until timestamptz,
    sent_at    timestamptz
);
CREATE INDEX orders_outbox_unsent ON orders.outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX orders_outbox_sent_at ON orders.outbox (sent_at) WHERE sent_at IS NOT NULL;

CREATE TABLE orders.inbox (
    consumer   text        NOT NULL,
    message_id uuid        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
