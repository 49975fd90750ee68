-- Back to Streamable HTTP servers only: stdio servers (which have no URL) are deleted with their
-- tools and endpoint mappings, SSE servers kept as Streamable HTTP ones.

DELETE FROM mcp_servers WHERE url IS NULL;

CREATE TABLE mcp_servers_old (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    timeout_ms BIGINT,
    created_at BIGINT NOT NULL
);
INSERT INTO mcp_servers_old (id, name, url, enabled, timeout_ms, created_at)
    SELECT id, name, url, enabled, timeout_ms, created_at FROM mcp_servers;

CREATE TEMPORARY TABLE tools_kept AS SELECT * FROM tools;
CREATE TEMPORARY TABLE endpoint_servers_kept AS SELECT * FROM endpoint_servers;
DROP TABLE tools;
DROP TABLE endpoint_servers;
DROP TABLE mcp_servers;
ALTER TABLE mcp_servers_old RENAME TO mcp_servers;

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
