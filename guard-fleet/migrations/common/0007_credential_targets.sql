-- guard-fleet schema 7, the same on PostgreSQL and SQLite: assignments by credential.

-- The credential a host sends with, as an assignment names it: `host:NAME` (a host
-- token's or client certificate's name) or `cluster:NAME` (a cluster token's). An
-- assignment to it covers the host when the host's own group has none.
ALTER TABLE hosts ADD COLUMN credential TEXT;
