//! The tables, as diesel sees them. Both backends share these definitions; the migrations under
//! `migrations/sqlite` and `migrations/postgres` create them with each backend's column types.

diesel::table! {
    /// Upstream MCP servers the gateway aggregates.
    mcp_servers (id) {
        /// Row id.
        id -> BigInt,
        /// Unique name, `^[A-Za-z0-9_-]{1,64}$` without `__`.
        name -> Text,
        /// How the server is reached: `streamable_http`, `sse` or `stdio`.
        transport -> Text,
        /// URL of an HTTP server (`streamable_http`, `sse`); none for `stdio`.
        url -> Nullable<Text>,
        /// Program of a `stdio` server; none for the HTTP ones.
        command -> Nullable<Text>,
        /// Arguments of the program, a JSON array of strings.
        args -> Text,
        /// Environment of the program, a JSON object of strings (credentials: never shown).
        env -> Text,
        /// Working directory of the program; none: the gateway's.
        cwd -> Nullable<Text>,
        /// Whether the gateway calls it.
        enabled -> Bool,
        /// Per-call timeout in milliseconds; none means the gateway's default.
        timeout_ms -> Nullable<BigInt>,
        /// Unix milliseconds.
        created_at -> BigInt,
    }
}

diesel::table! {
    /// MCP endpoints the gateway serves.
    endpoints (id) {
        /// Row id.
        id -> BigInt,
        /// Unique name, `^[A-Za-z0-9_-]{1,64}$`.
        name -> Text,
        /// Free text.
        description -> Text,
        /// Whether a request needs one of the endpoint's API keys.
        auth_required -> Bool,
        /// Unix milliseconds.
        created_at -> BigInt,
        /// Requests per second the endpoint admits on average; none: unlimited.
        rate_limit_rps -> Nullable<Double>,
        /// Requests the endpoint admits at once; set with `rate_limit_rps`.
        rate_limit_burst -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Which servers an endpoint aggregates.
    endpoint_servers (endpoint_id, server_id) {
        /// The endpoint.
        endpoint_id -> BigInt,
        /// The server.
        server_id -> BigInt,
    }
}

diesel::table! {
    /// API keys of endpoints, stored as hashes.
    endpoint_api_keys (id) {
        /// Row id.
        id -> BigInt,
        /// The endpoint the key opens.
        endpoint_id -> BigInt,
        /// Hex SHA-256 of the key.
        key_hash -> Text,
        /// The key's first characters, for display.
        prefix -> Text,
        /// Unix milliseconds.
        created_at -> BigInt,
        /// Unix milliseconds of the last request the key opened (to the minute); none if never.
        last_used_at -> Nullable<BigInt>,
        /// Requests per second the key opens on average; none: unlimited.
        rate_limit_rps -> Nullable<Double>,
        /// Requests the key opens at once; set with `rate_limit_rps`.
        rate_limit_burst -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// Tools the upstream servers offer, as last listed.
    tools (id) {
        /// Row id.
        id -> BigInt,
        /// The server offering it.
        server_id -> BigInt,
        /// Tool name, unique per server.
        name -> Text,
        /// Description from the server.
        description -> Text,
        /// JSON Schema of the arguments, as JSON text.
        input_schema -> Text,
        /// Whether endpoints expose it.
        enabled -> Bool,
        /// Little-endian `f32`s of the description's embedding.
        embedding -> Nullable<Binary>,
        /// Unix milliseconds of the last sync.
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// One row per tool call: outcome and timing, never arguments or results.
    tool_executions (id) {
        /// Row id.
        id -> BigInt,
        /// The endpoint it came through, if any.
        endpoint -> Nullable<Text>,
        /// The tool as the client named it.
        tool_name -> Text,
        /// Whether it succeeded.
        success -> Bool,
        /// Duration in milliseconds.
        duration_ms -> Double,
        /// The error, when it failed.
        error_message -> Nullable<Text>,
        /// The trace of the call.
        trace_id -> Nullable<Text>,
        /// Unix milliseconds.
        created_at -> BigInt,
    }
}

diesel::joinable!(endpoint_servers -> endpoints (endpoint_id));
diesel::joinable!(endpoint_servers -> mcp_servers (server_id));
diesel::joinable!(endpoint_api_keys -> endpoints (endpoint_id));
diesel::joinable!(tools -> mcp_servers (server_id));

diesel::allow_tables_to_appear_in_same_query!(
    mcp_servers,
    endpoints,
    endpoint_servers,
    endpoint_api_keys,
    tools,
    tool_executions,
);
