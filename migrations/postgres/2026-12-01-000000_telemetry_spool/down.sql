DROP TABLE telemetry_spool;
