-- API keys of third-party callers. Only the SHA-256 digest of a key is
-- kept; `shop apikey` manages them.
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('customer', 'admin', 'payment')),
    digest TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER
);
