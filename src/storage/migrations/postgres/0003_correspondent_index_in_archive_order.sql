-- The correspondent index orders each correspondent's items by position (sort_id) instead of
-- time. Searches by correspondent are paged by position (XEP-0313 with filters, XEP-0059 before
-- and after ids, ORDER BY sort_id): with sort_id next to "with", a page is one range read in
-- index order, where the index on "when" left the database two poor choices: reading all of
-- the correspondent's items and sorting them, or walking the user's whole archive in order and
-- skipping other correspondents (which SQLite, having no statistics, chose). A time range
-- within one correspondent is filtered along that range read: the page ends once it has
-- enough items, after reading past this correspondent's items outside the range on the side
-- it starts from.
-- Keep in step with the other dialect's 0003: a test compares the tables and indexes.
DROP INDEX archive_with_when;
CREATE INDEX archive_with_sort_id ON archive (host, username, store, "with", sort_id) WHERE "with" <> '';
