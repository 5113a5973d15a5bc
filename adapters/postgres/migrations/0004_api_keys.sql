-- API keys of third-party callers, for every instance to read. Only the
-- SHA-256 digest of a key is kept; `shop apikey` manages them.
CREATE SCHEMA IF NOT EXISTS access;

CREATE TABLE access.api_keys (
    name text PRIMARY KEY,
    role text NOT NULL CHECK (role IN ('customer', 'admin', 'payment')),
    digest text NOT NULL UNIQUE,
    created_ms bigint NOT NULL,
    expires_ms bigint,
    revoked_ms bigint
);
