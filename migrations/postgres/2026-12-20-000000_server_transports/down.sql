-- Back to Streamable HTTP servers only: stdio servers (which have no URL) are deleted with their
-- tools and endpoint mappings, SSE servers kept as Streamable HTTP ones.

DELETE FROM mcp_servers WHERE url IS NULL;
ALTER TABLE mcp_servers
    DROP CONSTRAINT mcp_servers_http_url,
    DROP CONSTRAINT mcp_servers_stdio_command,
    ALTER COLUMN url SET NOT NULL,
    DROP COLUMN cwd,
    DROP COLUMN env,
    DROP COLUMN args,
    DROP COLUMN command,
    DROP COLUMN transport;
