//! The upstream's MCP server: its tools, declared with the SDK's `#[tool_router]` / `#[tool]`
//! macros so every `inputSchema` is the one the SDK generates from a `schemars` type, and the
//! `ServerHandler` that records calls and pages `tools/list`.

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::{ToolRoute, ToolRouter};
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;

use super::recorded::Shared;

/// Text of the `fail` tool's error result.
pub const FAILURE_TEXT: &str = "upstream failure";

/// Description of the `weather` tool (the one vector-search tests look for).
pub const WEATHER_DESCRIPTION: &str = "Get the current weather forecast for a city";

/// The five built-in tool names, sorted as `tools/list` returns them.
pub const BUILTIN_TOOLS: [&str; 5] = ["add", "echo", "fail", "slow", "weather"];

/// Arguments of `echo`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `add`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// Left operand.
    pub a: f64,
    /// Right operand.
    pub b: f64,
}

/// Arguments of `slow`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SlowArgs {
    /// How long to sleep before answering, in milliseconds.
    pub ms: u64,
}

/// Arguments of `fail`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FailArgs {
    /// Text the error result repeats after [`FAILURE_TEXT`], as a tool that echoes its arguments
    /// in an error would.
    #[serde(default)]
    pub text: Option<String>,
}

/// Arguments of `weather`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WeatherArgs {
    /// The city to forecast.
    pub city: String,
}

/// One instance per MCP session (the streamable HTTP service clones it from a factory); all share
/// the upstream's recordings.
#[derive(Clone)]
pub struct UpstreamServer {
    name: String,
    page_size: Option<usize>,
    shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl UpstreamServer {
    #[tool(description = "Echo the given text back")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two numbers")]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Sleep for the given number of milliseconds, then answer \"done\"")]
    async fn slow(&self, Parameters(SlowArgs { ms }): Parameters<SlowArgs>) -> String {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        "done".to_string()
    }

    #[tool(description = "Always fail with a tool error result")]
    async fn fail(&self, Parameters(FailArgs { text }): Parameters<FailArgs>) -> CallToolResult {
        let text = match text {
            Some(text) => format!("{FAILURE_TEXT}: {text}"),
            None => FAILURE_TEXT.to_owned(),
        };
        CallToolResult::error(vec![ContentBlock::text(text)])
    }

    #[tool(description = "Get the current weather forecast for a city")]
    async fn weather(&self, Parameters(WeatherArgs { city }): Parameters<WeatherArgs>) -> String {
        format!("sunny in {city}")
    }
}

impl UpstreamServer {
    /// The server for one upstream: the built-in tools plus `extra_tools` generated ones.
    pub fn new(name: &str, page_size: Option<usize>, extra_tools: usize, shared: Arc<Shared>) -> Self {
        let mut tool_router = Self::tool_router();
        for i in 0..extra_tools {
            tool_router.add_route(generated_tool(i));
        }
        UpstreamServer { name: name.to_string(), page_size, shared, tool_router }
    }
}

/// `tool_{i}`: no arguments, answers its own name.
fn generated_tool(i: usize) -> ToolRoute<UpstreamServer> {
    let name = format!("tool_{i}");
    let schema = serde_json::json!({ "type": "object", "properties": {} });
    let schema = match schema {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let tool = Tool::new(name, format!("Generated tool number {i}"), schema);
    ToolRoute::new_dyn(tool, |context: ToolCallContext<'_, UpstreamServer>| {
        let text = context.name.to_string();
        Box::pin(async move { Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into()) })
    })
}

impl ServerHandler for UpstreamServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(self.name.clone(), "1.0.0"))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.clone().map(serde_json::Value::Object).unwrap_or(serde_json::Value::Null);
        self.shared.record_tool_call(request.name.to_string(), arguments);
        self.tool_router.call(ToolCallContext::new(self, request, context)).await
    }

    /// All tools, or one page of `page_size` when configured; the cursor is the next offset.
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.tool_router.list_all();
        let Some(page_size) = self.page_size.filter(|&n| n > 0) else {
            return Ok(ListToolsResult::with_all_items(tools));
        };
        let start = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .ok()
                .filter(|&n| n <= tools.len())
                .ok_or_else(|| ErrorData::invalid_params(format!("unknown cursor {cursor:?}"), None))?,
        };
        let end = (start + page_size).min(tools.len());
        let mut page = ListToolsResult::with_all_items(tools[start..end].to_vec());
        if end < tools.len() {
            page.next_cursor = Some(end.to_string());
        }
        Ok(page)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tool_router.get(name).cloned()
    }
}

/// The names `tools/list` returns for `extra_tools` generated tools plus the built-ins, sorted.
pub fn expected_tool_names(extra_tools: usize) -> Vec<String> {
    let mut names: Vec<String> = BUILTIN_TOOLS.iter().map(|s| s.to_string()).collect();
    names.extend((0..extra_tools).map(|i| format!("tool_{i}")));
    names.sort();
    names
}
