-- When each API key last opened its endpoint (unix milliseconds), written at most once a minute
-- per key; empty for a key never used.
ALTER TABLE endpoint_api_keys ADD COLUMN last_used_at BIGINT;
