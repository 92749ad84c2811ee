-- guard-fleet schema 4 (SQLite; the PostgreSQL twin is
-- migrations/postgres/0004_destinations.sql): the destinations of the sessions
-- already stored, read from their summaries, and their rollup rows.
INSERT INTO session_destinations (host, session_uid, dest, class, started_ms, user_name,
    secrets_read, violations, bytes_out, connects)
SELECT s.host, s.session_uid,
    COALESCE(json_extract(d.value, '$.host'), json_extract(d.value, '$.addr')),
    MIN(COALESCE(json_extract(d.value, '$.class'), 'other')),
    s.started_ms, COALESCE(s.user_name, ''), s.secrets_read, s.violations,
    SUM(COALESCE(json_extract(d.value, '$.bytes_out'), 0)),
    SUM(COALESCE(json_extract(d.value, '$.connects'), 0) + COALESCE(json_extract(d.value, '$.sends'), 0))
FROM sessions s, json_each(s.summary, '$.destinations.items') d
WHERE COALESCE(json_extract(d.value, '$.host'), json_extract(d.value, '$.addr')) IS NOT NULL
GROUP BY s.host, s.session_uid, 3;
INSERT INTO session_days
SELECT 'dest', started_ms / 86400000, class || '/' || dest, user_name, COUNT(*),
    SUM(CASE WHEN secrets_read > 0 THEN 1 ELSE 0 END), SUM(secrets_read), SUM(violations),
    SUM(bytes_out), SUM(CASE WHEN class = 'model' THEN bytes_out ELSE 0 END), 0,
    MIN(started_ms), MAX(started_ms)
FROM session_destinations GROUP BY started_ms / 86400000, class || '/' || dest, user_name;
