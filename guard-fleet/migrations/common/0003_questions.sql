-- guard-fleet schema 3, the same on PostgreSQL and SQLite: the security team's
-- questions (who sent what where; hosts' clocks and heartbeats).

-- Each host's clock against the server's (the host's record time less the server's
-- when it received the batch: positive when the host's clock is ahead), and when
-- its daemon last said it was alive (a heartbeat, sent when it has nothing else
-- to send).
ALTER TABLE hosts ADD COLUMN clock_skew_ms BIGINT;
ALTER TABLE hosts ADD COLUMN heartbeat_ms BIGINT;

-- A session whose host stamped it in the future (its clock ahead): the start the
-- host gave. `started_ms` is then that start less the host's clock skew (at most
-- the time the server received it), so it neither inflates a day to come nor sorts
-- first.
ALTER TABLE sessions ADD COLUMN host_started_ms BIGINT;

-- Each session's destinations as its stored summary lists them (by name, else
-- address), replaced with it as its violations are; with the session's start,
-- developer, secrets read and violations for the rollup (`dest` rows of
-- session_days: name `<class>/<dest>`, by developer).
CREATE TABLE session_destinations (
    host TEXT NOT NULL,
    session_uid TEXT NOT NULL,
    dest TEXT NOT NULL,
    class TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    secrets_read BIGINT NOT NULL,
    violations BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    connects BIGINT NOT NULL,
    PRIMARY KEY (host, session_uid, dest)
);
CREATE INDEX session_destinations_dest ON session_destinations (dest, started_ms);
