-- Customer data (runtime::customer_data): each customer's data key,
-- wrapped under a key-encryption key the database never sees, and each
-- order's delivery details sealed under its customer's key. Erasure
-- deletes the key; the sealed rows stay, unreadable.
CREATE TABLE orders.customer_keys (
    customer_id text   PRIMARY KEY,
    key_id      text   NOT NULL UNIQUE,
    kek_id      text   NOT NULL,
    wrapped     text   NOT NULL,
    created_at  bigint NOT NULL
);

CREATE TABLE orders.deliveries (
    order_id text PRIMARY KEY,
    key_id   text NOT NULL,
    sealed   text NOT NULL
);
