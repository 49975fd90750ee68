-- Upstream servers of every transport: Streamable HTTP and legacy SSE at a `url`, stdio as a
-- `command` with `args` (a JSON array of strings), `env` (a JSON object of strings) and an
-- optional `cwd`; `url` is empty for stdio.
--
-- SQLite cannot drop NOT NULL from a column, so `mcp_servers` is rebuilt. Dropping it while the
-- foreign keys are enforced (and PRAGMA foreign_keys cannot change inside the migration's
-- transaction) would cascade to `tools` and `endpoint_servers`: their rows are set aside, the
-- tables dropped first and created again after, with their ids.

CREATE TABLE mcp_servers_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    transport TEXT NOT NULL DEFAULT 'streamable_http'
        CHECK (transport IN ('streamable_http', 'sse', 'stdio')),
    url TEXT,
    command TEXT,
    args TEXT NOT NULL DEFAULT '[]',
    env TEXT NOT NULL DEFAULT '{}',
    cwd TEXT,
    enabled BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    timeout_ms BIGINT,
    created_at BIGINT NOT NULL,
    CHECK ((transport = 'stdio') = (command IS NOT NULL)),
    CHECK ((transport = 'stdio') = (url IS NULL))
);
INSERT INTO mcp_servers_new (id, name, transport, url, enabled, timeout_ms, created_at)
    SELECT id, name, 'streamable_http', url, enabled, timeout_ms, created_at FROM mcp_servers;

CREATE TEMPORARY TABLE tools_kept AS SELECT * FROM tools;
CREATE TEMPORARY TABLE endpoint_servers_kept AS SELECT * FROM endpoint_servers;
DROP TABLE tools;
DROP TABLE endpoint_servers;
DROP TABLE mcp_servers;
ALTER TABLE mcp_servers_new RENAME TO mcp_servers;

CREATE TABLE endpoint_servers (
    endpoint_id BIGINT NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    server_id BIGINT NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    PRIMARY KEY (endpoint_id, server_id)
);
CREATE INDEX endpoint_servers_server_id_idx ON endpoint_servers (server_id);
INSERT INTO endpoint_servers (endpoint_id, server_id) SELECT endpoint_id, server_id FROM endpoint_servers_kept;

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
INSERT INTO tools (id, server_id, name, description, input_schema, enabled, embedding, updated_at)
    SELECT id, server_id, name, description, input_schema, enabled, embedding, updated_at FROM tools_kept;

DROP TABLE tools_kept;
DROP TABLE endpoint_servers_kept;
