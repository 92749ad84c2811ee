-- guard-fleet schema 2, the same on PostgreSQL and SQLite: the dashboard at an
-- organisation's size (a million sessions).

-- The sessions list, newest first, walks this index and stops at its page (with
-- the start alone, SQLite sorted every session by the list's tie-breakers).
DROP INDEX sessions_started;
CREATE INDEX sessions_started ON sessions (started_ms, host, session_uid);

-- The overview's rollup.
--
-- One row per day (of a session's start, or of a violation), dimension and name,
-- split by developer where the overview counts distinct developers. The store
-- keeps it in step with `sessions` and `violations` in the same transaction as
-- they change (store/rollup.rs): a new or newer summary adds its session and
-- takes away the one it replaced, retention takes away what it deletes. The
-- overview then reads a few rows per developer and day instead of every session
-- of its window.
--
-- dim        name                      user_name    sessions counts
-- 'user'     the developer ('' none)   ''           sessions
-- 'host'     the host                  ''           sessions
-- 'repo'     the repository URL        developer    sessions (sessions with one only)
-- 'agent'    the agent ('?' unknown)   developer    sessions
-- 'rule'     the rule                  ''           violations (by their own day)
-- 'outcome'  the outcome               ''           violations (by their own day)
--
-- first_ms and last_ms are the earliest and latest start the row has seen; they
-- are not taken back when a session leaves the row.
CREATE TABLE session_days (
    dim TEXT NOT NULL,
    day BIGINT NOT NULL,
    name TEXT NOT NULL,
    user_name TEXT NOT NULL,
    sessions BIGINT NOT NULL,
    sessions_reading_secrets BIGINT NOT NULL,
    secrets_read BIGINT NOT NULL,
    violations BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    model_bytes_out BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (dim, day, name, user_name)
);

-- What the database already holds.
INSERT INTO session_days
SELECT 'user', started_ms / 86400000, COALESCE(user_name, ''), '', COUNT(*),
    SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END), SUM(secrets_read), SUM(violations),
    SUM(bytes_out), SUM(model_bytes_out), SUM(duration_ms), MIN(started_ms), MAX(started_ms)
FROM sessions GROUP BY started_ms / 86400000, COALESCE(user_name, '');
INSERT INTO session_days
SELECT 'host', started_ms / 86400000, host, '', COUNT(*),
    SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END), SUM(secrets_read), SUM(violations),
    SUM(bytes_out), SUM(model_bytes_out), SUM(duration_ms), MIN(started_ms), MAX(started_ms)
FROM sessions GROUP BY started_ms / 86400000, host;
INSERT INTO session_days
SELECT 'repo', started_ms / 86400000, repo_url, COALESCE(user_name, ''), COUNT(*),
    SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END), SUM(secrets_read), SUM(violations),
    SUM(bytes_out), SUM(model_bytes_out), SUM(duration_ms), MIN(started_ms), MAX(started_ms)
FROM sessions WHERE repo_url IS NOT NULL
GROUP BY started_ms / 86400000, repo_url, COALESCE(user_name, '');
INSERT INTO session_days
SELECT 'agent', started_ms / 86400000, COALESCE(agent, '?'), COALESCE(user_name, ''), COUNT(*),
    SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END), SUM(secrets_read), SUM(violations),
    SUM(bytes_out), SUM(model_bytes_out), SUM(duration_ms), MIN(started_ms), MAX(started_ms)
FROM sessions GROUP BY started_ms / 86400000, COALESCE(agent, '?'), COALESCE(user_name, '');
INSERT INTO session_days
SELECT 'rule', ts_ms / 86400000, rule, '', COUNT(*), 0, 0, 0, 0, 0, 0, MIN(ts_ms), MAX(ts_ms)
FROM violations GROUP BY ts_ms / 86400000, rule;
INSERT INTO session_days
SELECT 'outcome', ts_ms / 86400000, outcome, '', COUNT(*), 0, 0, 0, 0, 0, 0, MIN(ts_ms), MAX(ts_ms)
FROM violations GROUP BY ts_ms / 86400000, outcome;
