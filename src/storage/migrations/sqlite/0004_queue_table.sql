-- Archives kept as queues (Storage::queue): items each user holds a short time and reads back
-- in order, as the inbox holds messages until a client has them. The columns are those of the
-- archive table; the only index is the key's. An item then costs two B-tree entries to write
-- and two to delete (the row and its key) instead of four: in the durable chat benchmark that
-- was 10-13% of the server's CPU per message. Reads in order find the user's items through the
-- key index and sort them; expiry scans the table, which holds only what waits for delivery.
-- Keep in step with the other dialect's 0004: a test compares the tables and indexes.
CREATE TABLE queue (
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
CREATE UNIQUE INDEX queue_key ON queue (host, username, store, key);

-- The inbox (store 'offline') is the queue kept so far in the archive table: its items move,
-- in their order and with their keys.
INSERT INTO queue (host, username, store, key, "when", "with", type, value)
    SELECT host, username, store, key, "when", "with", type, value FROM archive
    WHERE store = 'offline' ORDER BY sort_id;
DELETE FROM archive WHERE store = 'offline';
