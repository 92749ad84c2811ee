-- guard-fleet schema 4 (PostgreSQL; the SQLite twin is
-- migrations/sqlite/0004_destinations.sql): the destinations of the sessions
-- already stored, read from their summaries, and their rollup rows.
INSERT INTO session_destinations (host, session_uid, dest, class, started_ms, user_name,
    secrets_read, violations, bytes_out, connects)
SELECT s.host, s.session_uid, COALESCE(d ->> 'host', d ->> 'addr'),
    MIN(COALESCE(d ->> 'class', 'other')),
    s.started_ms, COALESCE(s.user_name, ''), s.secrets_read, s.violations,
    SUM(COALESCE((d ->> 'bytes_out')::BIGINT, 0)),
    SUM(COALESCE((d ->> 'connects')::BIGINT, 0) + COALESCE((d ->> 'sends')::BIGINT, 0))
FROM sessions s,
    json_array_elements(COALESCE(s.summary::json -> 'destinations' -> 'items', '[]'::json)) d
WHERE COALESCE(d ->> 'host', d ->> 'addr') IS NOT NULL
GROUP BY s.host, s.session_uid, 3, s.started_ms, s.user_name, s.secrets_read, s.violations;
INSERT INTO session_days
SELECT 'dest', started_ms / 86400000, class || '/' || dest, user_name, COUNT(*),
    SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END), SUM(secrets_read), SUM(violations),
    SUM(bytes_out), SUM(CASE WHEN class = 'model' THEN bytes_out ELSE 0 END), 0,
    MIN(started_ms), MAX(started_ms)
FROM session_destinations GROUP BY started_ms / 86400000, class || '/' || dest, user_name;
