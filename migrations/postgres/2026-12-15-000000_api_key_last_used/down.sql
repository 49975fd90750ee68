ALTER TABLE endpoint_api_keys DROP COLUMN last_used_at;
