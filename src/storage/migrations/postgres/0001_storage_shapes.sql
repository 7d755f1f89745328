-- The two tables behind the three storage shapes (keyval, map, archive).
-- Keep in step with ../sqlite/0001_storage_shapes.sql: a test compares the tables and columns
-- both dialects produce.

-- Keyval documents (key '') and map entries, one row per (host, user, store, key).
-- COLLATE "C" makes text compare bytewise, like SQLite, so that sorted results (keys, user
-- lists) come out in the same order on both backends whatever the server's locale.
CREATE TABLE kv (
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    key      TEXT COLLATE "C" NOT NULL,
    type     TEXT NOT NULL,
    value    BYTEA NOT NULL,
    PRIMARY KEY (host, username, store, key)
);

-- Map lookups across users (users_with_key) and the users of a keyval store.
CREATE INDEX kv_store_key ON kv (host, store, key);

-- Archive items in insertion order (identity values are never reused).
CREATE TABLE archive (
    sort_id  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host     TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    store    TEXT COLLATE "C" NOT NULL,
    key      TEXT COLLATE "C" NOT NULL CHECK (key <> ''),
    "when"   BIGINT NOT NULL,
    "with"   TEXT COLLATE "C" NOT NULL,
    type     TEXT NOT NULL,
    value    BYTEA NOT NULL
);

-- Item ids are unique per archive; also the lookup for RSM after/before and get().
CREATE UNIQUE INDEX archive_key ON archive (host, username, store, key);
-- Paging through one archive by sort_id.
CREATE INDEX archive_sort_id ON archive (host, username, store, sort_id);
-- Queries filtered by correspondent and time.
CREATE INDEX archive_with_when ON archive (host, username, store, "with", "when");
-- Expiry across all users of a store.
CREATE INDEX archive_when ON archive (host, store, "when");
