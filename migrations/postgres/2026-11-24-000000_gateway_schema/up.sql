-- The gateway's schema on PostgreSQL. Times are unix milliseconds.

CREATE TABLE mcp_servers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    timeout_ms BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    auth_required BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoint_servers (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    PRIMARY KEY (endpoint_id, server_id)
);
CREATE INDEX endpoint_servers_server_id_idx ON endpoint_servers (server_id);

CREATE TABLE endpoint_api_keys (
    id BIGSERIAL PRIMARY KEY,
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX endpoint_api_keys_endpoint_id_idx ON endpoint_api_keys (endpoint_id);

CREATE TABLE tools (
    id BIGSERIAL PRIMARY KEY,
    server_id BIGINT NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    input_schema TEXT NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    embedding BYTEA,
    updated_at BIGINT NOT NULL,
    UNIQUE (server_id, name)
);

CREATE TABLE tool_executions (
    id BIGSERIAL PRIMARY KEY,
    endpoint TEXT,
    tool_name TEXT NOT NULL,
    success BOOLEAN NOT NULL,
    duration_ms DOUBLE PRECISION NOT NULL,
    error_message TEXT,
    trace_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX tool_executions_created_at_idx ON tool_executions (created_at);
CREATE INDEX tool_executions_tool_name_idx ON tool_executions (tool_name);
CREATE INDEX tool_executions_endpoint_idx ON tool_executions (endpoint);
