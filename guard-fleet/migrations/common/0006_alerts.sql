-- guard-fleet schema 6, the same on PostgreSQL and SQLite: alerts.

-- The outbox: one row per alert rule, destination and event that matched it,
-- written in the transaction that stored the event (an event is stored once, so
-- its alert is queued once). Replicas deliver from here: a row is leased to one
-- replica (`lease_owner`, until `lease_ms`) while it sends; a replica that dies
-- mid-delivery leaves a lease that runs out, and another sends the row.
-- `state`: `pending`, `sent`, or `failed` (given up after the retries).
CREATE TABLE alert_outbox (
    alert TEXT NOT NULL,
    destination TEXT NOT NULL,
    host TEXT NOT NULL,
    record_id TEXT NOT NULL,
    session_uid TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    rule TEXT NOT NULL,
    outcome TEXT NOT NULL,
    text TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    due_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_ms BIGINT NOT NULL,
    done_ms BIGINT,
    error TEXT,
    PRIMARY KEY (alert, destination, host, record_id)
);
CREATE INDEX alert_outbox_due ON alert_outbox (state, due_ms);
CREATE INDEX alert_outbox_created ON alert_outbox (created_ms);

-- When each alert last went to each destination: what came since waits out the
-- alert's window and goes as one message with a count.
CREATE TABLE alert_sends (
    alert TEXT NOT NULL,
    destination TEXT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (alert, destination)
);
