ALTER TABLE endpoint_api_keys DROP COLUMN rate_limit_burst;
ALTER TABLE endpoint_api_keys DROP COLUMN rate_limit_rps;
ALTER TABLE endpoints DROP COLUMN rate_limit_burst;
ALTER TABLE endpoints DROP COLUMN rate_limit_rps;
