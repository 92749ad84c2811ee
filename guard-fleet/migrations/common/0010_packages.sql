-- guard-fleet schema 10, the same on PostgreSQL and SQLite: the packages sessions
-- installed. `session_packages` holds each session's (its summary's `packages`,
-- replaced with each summary, removed with the session); `packages` holds when and
-- where the organisation first saw each package version, kept when the sessions
-- that installed it age out.
CREATE TABLE session_packages (
    host TEXT NOT NULL,
    session_uid TEXT NOT NULL,
    ecosystem TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    repo_url TEXT,
    install_script INTEGER NOT NULL,
    PRIMARY KEY (host, session_uid, ecosystem, name, version)
);
CREATE INDEX session_packages_package ON session_packages (ecosystem, name, version);

CREATE TABLE packages (
    ecosystem TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    first_host TEXT NOT NULL,
    first_session_uid TEXT NOT NULL,
    PRIMARY KEY (ecosystem, name, version)
);
