//! The upstream's MCP server ([`McpUpstream`](super::McpUpstream)'s tools) over stdio, for a
//! process the gateway starts as a stdio upstream: a test or bench binary that calls
//! [`serve_stdio`] when an environment variable tells it to.

use std::sync::Arc;

use rmcp::ServiceExt;

use super::recorded::Shared;
use super::tools::UpstreamServer;

/// Serves the upstream's tools, named `name`, on stdin/stdout until stdin closes. `Err` says why
/// the session could not start.
pub fn serve_stdio(name: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building the stdio server's runtime: {e}"))?;
    runtime.block_on(async {
        let server = UpstreamServer::new(name, None, 0, Arc::new(Shared::default()));
        let running = server.serve(rmcp::transport::stdio()).await.map_err(|e| format!("serving MCP on stdio: {e}"))?;
        running.waiting().await.map_err(|e| format!("the stdio session ended badly: {e}"))?;
        Ok(())
    })
}
