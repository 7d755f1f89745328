-- Items with no correspondent (an empty "with") stay out of the correspondent index. A store
-- that is never searched by correspondent (the offline inbox) leaves "with" empty, and each of
-- its items then costs three index entries instead of four, on insert and again on delete.
-- Queries by correspondent repeat the index's condition (`"with" <> ''`), so that both
-- databases see that the partial index covers them.
-- Keep in step with the other dialect's 0002: a test compares the tables and indexes.
DROP INDEX archive_with_when;
CREATE INDEX archive_with_when ON archive (host, username, store, "with", "when") WHERE "with" <> '';
