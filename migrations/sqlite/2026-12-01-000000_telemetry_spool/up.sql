-- Export batches waiting for the collector (the exporter's durable spool). AUTOINCREMENT keeps
-- ids growing even after the newest rows are deleted, so the smallest id is always the oldest.

CREATE TABLE telemetry_spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    signal TEXT NOT NULL CHECK (signal IN ('traces', 'metrics')),
    items BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE INDEX telemetry_spool_created_at_ms_idx ON telemetry_spool (created_at_ms);
