-- Log record batches join the spool: the signal check admits 'logs'. SQLite cannot change a
-- check in place, so the table is rebuilt with its rows.

CREATE TABLE telemetry_spool_upgrade (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL CHECK (signal IN ('traces', 'metrics', 'logs')),
    items BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
INSERT INTO telemetry_spool_upgrade (id, signal, items, size_bytes, attempts, created_at_ms, lease_until_ms, body)
    SELECT id, signal, items, size_bytes, attempts, created_at_ms, lease_until_ms, body FROM telemetry_spool;
DROP TABLE telemetry_spool;
ALTER TABLE telemetry_spool_upgrade RENAME TO telemetry_spool;
CREATE INDEX telemetry_spool_created_at_ms_idx ON telemetry_spool (created_at_ms);
