-- guard-fleet schema 9, the same on PostgreSQL and SQLite: alert rules kept in the
-- fleet (made with an admin token: `PUT /api/alert-rules/NAME`), beside the ones of
-- the configuration file. The lists are JSON arrays of strings; an empty one is
-- "any" (`kinds`: violations), as in `[[alerts.rule]]`.
CREATE TABLE alert_rules (
    name TEXT NOT NULL PRIMARY KEY,
    kinds TEXT NOT NULL,
    rules TEXT NOT NULL,
    outcomes TEXT NOT NULL,
    destinations TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    author TEXT NOT NULL
);
