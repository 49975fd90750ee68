-- Log record batches join the spool: the signal check admits 'logs'.

ALTER TABLE telemetry_spool DROP CONSTRAINT telemetry_spool_signal_check;
ALTER TABLE telemetry_spool ADD CONSTRAINT telemetry_spool_signal_check CHECK (signal IN ('traces', 'metrics', 'logs'));
