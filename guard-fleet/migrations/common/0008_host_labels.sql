-- guard-fleet schema 8, the same on PostgreSQL and SQLite: assignments by label.

-- What a host says of itself (`[fleet] labels`), as the export sends it: `KEY=VALUE`
-- pairs in key order, comma-separated (`env=ci,team=payments`). An assignment to
-- `label:KEY=VALUE` covers the host when neither its group nor its credential has one.
ALTER TABLE hosts ADD COLUMN labels TEXT;
