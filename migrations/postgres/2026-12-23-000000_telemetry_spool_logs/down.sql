-- Back to traces and metrics only: spooled log batches are removed.

DELETE FROM telemetry_spool WHERE signal = 'logs';
ALTER TABLE telemetry_spool DROP CONSTRAINT telemetry_spool_signal_check;
ALTER TABLE telemetry_spool ADD CONSTRAINT telemetry_spool_signal_check CHECK (signal IN ('traces', 'metrics'));
