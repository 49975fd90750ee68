-- Upstream servers of every transport: Streamable HTTP and legacy SSE at a `url`, stdio as a
-- `command` with `args` (a JSON array of strings), `env` (a JSON object of strings) and an
-- optional `cwd`; `url` is empty for stdio.

ALTER TABLE mcp_servers
    ADD COLUMN transport TEXT NOT NULL DEFAULT 'streamable_http'
        CHECK (transport IN ('streamable_http', 'sse', 'stdio')),
    ADD COLUMN command TEXT,
    ADD COLUMN args TEXT NOT NULL DEFAULT '[]',
    ADD COLUMN env TEXT NOT NULL DEFAULT '{}',
    ADD COLUMN cwd TEXT,
    ALTER COLUMN url DROP NOT NULL,
    ADD CONSTRAINT mcp_servers_stdio_command CHECK ((transport = 'stdio') = (command IS NOT NULL)),
    ADD CONSTRAINT mcp_servers_http_url CHECK ((transport = 'stdio') = (url IS NULL));
