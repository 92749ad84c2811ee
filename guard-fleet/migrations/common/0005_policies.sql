-- guard-fleet schema 5, the same on PostgreSQL and SQLite: policies from the fleet.

-- The group whose assignment each host takes (`guard.fleet.group`): its policy in
-- force is compared with the assignment's (drift).
ALTER TABLE hosts ADD COLUMN fleet_group TEXT;

-- Every version of every policy uploaded: the text as uploaded (checked by the
-- daemon's own parser before it was stored), never changed once stored.
CREATE TABLE policies (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    text TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    author TEXT NOT NULL,
    PRIMARY KEY (name, version)
);

-- What each group of hosts is assigned: a policy version and the rollout's stage
-- (`observe`, then `enforce`). `serial` counts the group's assignments: hosts
-- refuse one older than what they hold, so an old signed answer replayed does not
-- roll them back.
CREATE TABLE policy_assignments (
    group_name TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    version BIGINT NOT NULL,
    mode TEXT NOT NULL,
    serial BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    author TEXT NOT NULL
);
