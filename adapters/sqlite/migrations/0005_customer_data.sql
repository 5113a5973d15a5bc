-- Customer data (runtime::customer_data): each customer's data key,
-- wrapped under a key-encryption key the database never sees, and each
-- order's delivery details sealed under its customer's key. Erasure
-- deletes the key; the sealed rows stay, unreadable.
CREATE TABLE orders_customer_keys (
    customer_id TEXT    PRIMARY KEY,
    key_id      TEXT    NOT NULL UNIQUE,
    kek_id      TEXT    NOT NULL,
    wrapped     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE orders_deliveries (
    order_id TEXT PRIMARY KEY,
    key_id   TEXT NOT NULL,
    sealed   TEXT NOT NULL
);
