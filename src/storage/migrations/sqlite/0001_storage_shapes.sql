-- The two tables behind the three storage shapes (keyval, map, archive).
-- Keep in step with ../postgres/0001_storage_shapes.sql: a test compares the tables and
-- columns both dialects produce.

-- Keyval documents (key '') and map entries, one row per (host, user, store, key).
-- Text compares bytewise (SQLite's BINARY collation), as in the PostgreSQL schema.
CREATE TABLE kv (
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    key      TEXT NOT NULL,
    type     TEXT NOT NULL,
    value    BLOB NOT NULL,
    PRIMARY KEY (host, username, store, key)
);

-- Map lookups across users (users_with_key) and the users of a keyval store.
CREATE INDEX kv_store_key ON kv (host, store, key);

-- Archive items in insertion order. AUTOINCREMENT keeps sort_id growing even after the newest
-- rows are deleted, so that a paging position is never reused.
CREATE TABLE archive (
    sort_id  INTEGER PRIMARY KEY AUTOINCREMENT,
    host     TEXT NOT NULL,
    username TEXT NOT NULL,
    store    TEXT NOT NULL,
    key      TEXT NOT NULL CHECK (key <> ''),
    "when"   INTEGER NOT NULL,
    "with"   TEXT NOT NULL,
    type     TEXT NOT NULL,
    value    BLOB NOT NULL
);

-- Item ids are unique per archive; also the lookup for RSM after/before and get().
CREATE UNIQUE INDEX archive_key ON archive (host, username, store, key);
-- Paging through one archive by sort_id.
CREATE INDEX archive_sort_id ON archive (host, username, store, sort_id);
-- Queries filtered by correspondent and time.
CREATE INDEX archive_with_when ON archive (host, username, store, "with", "when");
-- Expiry across all users of a store.
CREATE INDEX archive_when ON archive (host, store, "when");
