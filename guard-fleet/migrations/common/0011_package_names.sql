-- guard-fleet schema 11, the same on PostgreSQL and SQLite: when this fleet recorded
-- each package version (its own clock), so that hosts pull the organisation's
-- package names a page at a time, since what they last had (`GET /v1/packages`,
-- `[packages] first_seen`). Versions recorded before this schema read as 0: the
-- first pull of every host gets them.
ALTER TABLE packages ADD COLUMN recorded_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX packages_recorded ON packages (recorded_ms);
