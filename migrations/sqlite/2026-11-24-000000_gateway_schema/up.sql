-- The gateway's schema on SQLite. Times are unix milliseconds; booleans are 0/1.

CREATE TABLE mcp_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    timeout_ms BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    auth_required BOOLEAN NOT NULL DEFAULT 0 CHECK (auth_required IN (0, 1)),
    created_at BIGINT NOT NULL
);

CREATE TABLE endpoint_servers (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    PRIMARY KEY (endpoint_id, server_id)
);
CREATE INDEX endpoint_servers_server_id_idx ON endpoint_servers (server_id);

CREATE TABLE endpoint_api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX endpoint_api_keys_endpoint_id_idx ON endpoint_api_keys (endpoint_id);

CREATE TABLE tools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id BIGINT NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    input_schema TEXT NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    embedding BLOB,
    updated_at BIGINT NOT NULL,
    UNIQUE (server_id, name)
);

CREATE TABLE tool_executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint TEXT,
    tool_name TEXT NOT NULL,
    success BOOLEAN NOT NULL CHECK (success IN (0, 1)),
    duration_ms DOUBLE NOT NULL,
    error_message TEXT,
    trace_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX tool_executions_created_at_idx ON tool_executions (created_at);
CREATE INDEX tool_executions_tool_name_idx ON tool_executions (tool_name);
CREATE INDEX tool_executions_endpoint_idx ON tool_executions (endpoint);
