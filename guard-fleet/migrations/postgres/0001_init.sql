-- guard-fleet schema 1 (PostgreSQL). Times are unix milliseconds (observed_ns:
-- nanoseconds), JSON is TEXT: the one query layer (sqlx's Any driver) reads both
-- backends the same way. The SQLite twin is migrations/sqlite/0001_init.sql.

-- One row per authenticated host identity.
CREATE TABLE hosts (
    host TEXT PRIMARY KEY,
    host_name TEXT NOT NULL,
    host_id TEXT,
    arch TEXT,
    guard_version TEXT,
    os_version TEXT,
    boot_id TEXT,
    policy_name TEXT,
    policy_mode TEXT,
    tiers TEXT,
    k8s_cluster TEXT,
    k8s_node TEXT,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE INDEX hosts_last_seen ON hosts (last_seen_ms);

-- The newest summary of each session. Updated in place every summary_interval
-- while the session runs: room on each page for HOT updates.
CREATE TABLE sessions (
    host TEXT NOT NULL,
    session_uid TEXT NOT NULL,
    session_id TEXT NOT NULL,
    record_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    observed_ns BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_rank BIGINT NOT NULL,
    agent TEXT,
    agent_version TEXT,
    user_name TEXT,
    uid BIGINT,
    repo_url TEXT,
    repo_branch TEXT,
    repo_commit TEXT,
    workspace TEXT,
    conversation_id TEXT,
    started_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    duration_ms BIGINT NOT NULL,
    commands BIGINT NOT NULL,
    files_read BIGINT NOT NULL,
    files_written BIGINT NOT NULL,
    secrets_read BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    model_bytes_out BIGINT NOT NULL,
    model_bytes_in BIGINT NOT NULL,
    violations BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (host, session_uid)
) WITH (fillfactor = 80);
CREATE INDEX sessions_started ON sessions (started_ms);
CREATE INDEX sessions_user ON sessions (user_name, started_ms);
CREATE INDEX sessions_repo ON sessions (repo_url, started_ms);
CREATE INDEX sessions_agent ON sessions (agent, started_ms);
CREATE INDEX sessions_host ON sessions (host, started_ms);
CREATE INDEX sessions_uid ON sessions (session_uid);
CREATE INDEX sessions_id ON sessions (session_id);
CREATE INDEX sessions_updated ON sessions (updated_ms);
CREATE INDEX sessions_running ON sessions (updated_ms) WHERE state = 'running';

-- The violation list of each session's stored summary, replaced with it.
CREATE TABLE violations (
    host TEXT NOT NULL,
    session_uid TEXT NOT NULL,
    ordinal BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL,
    pid BIGINT NOT NULL,
    comm TEXT NOT NULL,
    what TEXT NOT NULL,
    rule TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    alert BIGINT NOT NULL,
    PRIMARY KEY (host, session_uid, ordinal)
);
CREATE INDEX violations_ts ON violations (ts_ms);
CREATE INDEX violations_rule ON violations (rule, outcome);

-- The bounded index of events: deduplicated on (host, record id), deleted by age
-- and count (of receipt, so a host's wrong clock cannot keep rows forever).
CREATE TABLE events (
    host TEXT NOT NULL,
    record_id TEXT NOT NULL,
    session_uid TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT,
    outcome TEXT,
    text TEXT NOT NULL,
    event TEXT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (host, record_id)
);
CREATE INDEX events_session ON events (host, session_uid, ts_ms);
CREATE INDEX events_received ON events (received_ms);
