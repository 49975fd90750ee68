-- Export batches waiting for the collector (the exporter's durable spool). The sequence never
-- goes back, so the smallest id is always the oldest.

CREATE TABLE telemetry_spool (
    id BIGSERIAL PRIMARY KEY,
    signal TEXT NOT NULL CHECK (signal IN ('traces', 'metrics')),
    items BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    body BYTEA NOT NULL
);
CREATE INDEX telemetry_spool_created_at_ms_idx ON telemetry_spool (created_at_ms);
