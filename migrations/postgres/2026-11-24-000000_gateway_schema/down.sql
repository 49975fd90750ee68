DROP TABLE tool_executions;
DROP TABLE tools;
DROP TABLE endpoint_api_keys;
DROP TABLE endpoint_servers;
DROP TABLE endpoints;
DROP TABLE mcp_servers;
