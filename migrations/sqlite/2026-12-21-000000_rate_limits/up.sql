-- Optional rate limits (token bucket: requests per second and burst) of endpoints and of API
-- keys; none: unlimited. Both are set or neither.
ALTER TABLE endpoints ADD COLUMN rate_limit_rps DOUBLE CHECK (rate_limit_rps > 0);
ALTER TABLE endpoints ADD COLUMN rate_limit_burst BIGINT CHECK (rate_limit_burst >= 1);
ALTER TABLE endpoint_api_keys ADD COLUMN rate_limit_rps DOUBLE CHECK (rate_limit_rps > 0);
ALTER TABLE endpoint_api_keys ADD COLUMN rate_limit_burst BIGINT CHECK (rate_limit_burst >= 1);
