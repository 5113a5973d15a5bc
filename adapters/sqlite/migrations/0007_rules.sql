-- The deployment's published rule components (by content hash), one
-- release record per rule name, and the disagreements of versions in
-- shadow (`shop rules`). A release's revision is unique across names and
-- only grows, so the highest one tells a watcher that something changed.
CREATE TABLE rule_components (
    hash TEXT PRIMARY KEY,
    wasm BLOB NOT NULL
);

CREATE TABLE rule_releases (
    name TEXT PRIMARY KEY,
    revision INTEGER NOT NULL UNIQUE,
    record TEXT NOT NULL
);

CREATE TABLE rule_disagreements (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX rule_disagreements_by_name ON rule_disagreements (name, seq);
