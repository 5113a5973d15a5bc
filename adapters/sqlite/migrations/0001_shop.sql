-- The embedded store: both contexts and the event bus in one SQLite file.
-- Table names carry the context as a prefix where PostgreSQL uses schemas.
-- The CHECKs are the last line of defence, as in PostgreSQL: stock never
-- goes negative and never stops balancing. Times are epoch milliseconds.

CREATE TABLE orders_orders (
    order_id     TEXT PRIMARY KEY,
    customer_id  TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'COMPLETED', 'CANCELLED')),
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    state        TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version > 0)
);
CREATE INDEX orders_by_customer ON orders_orders (customer_id, created_at DESC, order_id DESC);
CREATE INDEX orders_confirmed ON orders_orders (confirmed_at) WHERE status = 'CONFIRMED';

CREATE TABLE orders_catalogue (
    product_id     TEXT PRIMARY KEY,
    unit_price     INTEGER NOT NULL CHECK (unit_price >= 0),
    currency       TEXT    NOT NULL,
    source_version INTEGER NOT NULL
);

CREATE TABLE inventory_products (
    product_id TEXT PRIMARY KEY,
    name       TEXT    NOT NULL,
    unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    currency   TEXT    NOT NULL,
    available  INTEGER NOT NULL CHECK (available >= 0),
    reserved   INTEGER NOT NULL CHECK (reserved >= 0),
    initial    INTEGER NOT NULL,
    restocked  INTEGER NOT NULL,
    adjusted   INTEGER NOT NULL,
    deducted   INTEGER NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    CONSTRAINT stock_is_conserved CHECK (initial + restocked + adjusted = available + reserved + deducted)
);

CREATE TABLE inventory_reservations (
    order_id TEXT PRIMARY KEY,
    status   TEXT NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'deducted')),
    lines    TEXT NOT NULL
);

CREATE TABLE inventory_movements (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    order_id   TEXT,
    reason     TEXT,
    at         INTEGER NOT NULL
);
CREATE INDEX movements_by_product ON inventory_movements (product_id, seq);

-- One outbox and one inbox per context, as in PostgreSQL.
CREATE TABLE orders_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    envelope    TEXT    NOT NULL,
    leased_by   TEXT,
    lease_until INTEGER,
    sent_at     INTEGER
);
CREATE INDEX orders_outbox_unsent ON orders_outbox (seq) WHERE sent_at IS NULL;

CREATE TABLE inventory_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    envelope    TEXT    NOT NULL,
    leased_by   TEXT,
    lease_until INTEGER,
    sent_at     INTEGER
);
CREATE INDEX inventory_outbox_unsent ON inventory_outbox (seq) WHERE sent_at IS NULL;

CREATE TABLE orders_inbox (
    consumer   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

CREATE TABLE inventory_inbox (
    consumer   TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);

-- The embedded event bus: published messages (the stream), what each
-- consumer has still to handle, and what it gave up on.
CREATE TABLE bus_messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id       TEXT    NOT NULL UNIQUE,
    subject      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    published_at INTEGER NOT NULL
);

CREATE TABLE bus_pending (
    consumer   TEXT    NOT NULL,
    seq        INTEGER NOT NULL REFERENCES bus_messages (seq),
    deliveries INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (consumer, seq)
);
CREATE INDEX bus_pending_visible ON bus_pending (consumer, visible_at, seq);

CREATE TABLE bus_dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    deliveries INTEGER NOT NULL,
    body       BLOB    NOT NULL
);
