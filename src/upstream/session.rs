//! Starting one session of an upstream, whatever its transport: the transport (an HTTP client
//! session, the legacy SSE stream, or a child process with its stderr logged), the MCP
//! handshake in its CLIENT span (whose context travels in the `initialize` request's `_meta`),
//! then the discovery of everything the server offers.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt as _;
use opentelemetry::propagation::{Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use rmcp::model::RequestMetaObject;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::ServiceExt as _;
use serde_json::Value;
use tokio::process::ChildStderr;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

use super::error::io_kind_words;
use super::handler::{GatewayClient, ProgressTap};
use super::http::TracedHttp;
use super::legacy_sse::{LegacySseConfig, LegacySseTransport};
use super::{Discovery, Inner, Live, ServerSpec, Slot, Target, UpstreamError};

/// A running session of the SDK with the gateway's handler.
pub(super) type Running = RunningService<RoleClient, GatewayClient>;

/// The variables a stdio child inherits from the gateway; everything else of the gateway's
/// environment (its database URL, its admin token) stays out. The server's own `env` is added.
const INHERITED_ENV: [&str; 10] =
    ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LC_ALL", "TMPDIR", "TZ"];
/// Longest stderr line of a stdio child logged as one line; longer ones are cut.
const MAX_STDERR_LINE: usize = 8192;

/// Writes propagation fields into a `_meta` object.
struct MetaInjector<'a>(&'a mut serde_json::Map<String, Value>);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key.to_owned(), Value::String(value));
        }
    }
}

/// Opens a session of `slot`'s server and discovers what it offers, within its timeout. The
/// session is published in the slot (calls may use it from then on) before the discovery runs.
pub(super) async fn establish(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
) -> Result<(Running, Arc<Discovery>), UpstreamError> {
    let outcome = tokio::time::timeout(slot.timeout, open_and_discover(inner, slot))
        .await
        .unwrap_or(Err(UpstreamError::Timeout(slot.timeout)));
    inner.telemetry.set_upstream_up(&slot.name, outcome.is_ok());
    match &outcome {
        Ok(_) => slot.succeeded(),
        Err(err) => {
            slot.failed(err);
            slot.health.connected.store(false, Ordering::Relaxed);
            slot.state.send_modify(|state| {
                state.live = None;
                state.attempts += 1;
            });
        }
    }
    outcome
}

async fn open_and_discover(inner: &Arc<Inner>, slot: &Arc<Slot>) -> Result<(Running, Arc<Discovery>), UpstreamError> {
    let parent = Context::current();
    let cx = start_initialize_span(inner, slot, &parent);
    let mut meta = serde_json::Map::new();
    inner.propagator.inject_context(cx.as_ref().unwrap_or(&parent), &mut MetaInjector(&mut meta));
    let handler = GatewayClient {
        inner: Arc::downgrade(inner),
        slot: Arc::downgrade(slot),
        server: slot.name.clone(),
        initialize_meta: (!meta.is_empty()).then(|| RequestMetaObject(meta.into())),
    };
    let started = std::time::Instant::now();
    let opened = open(inner, slot, handler).await;
    let version =
        opened.as_ref().ok().and_then(|running| running.peer().peer_info()).map(|i| i.protocol_version.to_string());
    let error_type = opened.as_ref().err().map(|err| match err {
        UpstreamError::Rpc { code } => code.to_string(),
        other => other.kind().to_owned(),
    });
    inner.record_operation(
        slot,
        "initialize",
        Target::None,
        version.as_deref(),
        error_type.as_deref(),
        started.elapsed(),
    );
    if let Some(cx) = &cx {
        let span = cx.span();
        match &opened {
            Ok(running) => {
                if let Some(info) = running.peer().peer_info() {
                    span.set_attribute(KeyValue::new("mcp.protocol.version", info.protocol_version.to_string()));
                }
            }
            Err(err) => {
                span.set_attribute(KeyValue::new("error.type", err.kind()));
                if let UpstreamError::Rpc { code } = err {
                    span.set_attribute(KeyValue::new("rpc.response.status_code", code.to_string()));
                }
                span.set_status(Status::error(err.kind()));
            }
        }
        span.end();
    }
    let running = opened?;
    let protocol_version = running.peer().peer_info().map(|info| info.protocol_version.to_string()).unwrap_or_default();
    let live = Live { peer: running.peer().clone(), protocol_version };
    slot.health.connected.store(true, Ordering::Relaxed);
    slot.state.send_modify(|state| {
        state.live = Some(live.clone());
        state.attempts += 1;
    });
    let discovered = match inner.discover(slot, &live).await {
        Ok(discovery) => discovery,
        Err(err) => {
            let mut running = running;
            let _ = running.close().await;
            return Err(err);
        }
    };
    let discovered = Arc::new(discovered);
    *slot.discovery.write() = Some(discovered.clone());
    Ok((running, discovered))
}

/// The CLIENT span of the handshake; `None` when telemetry is off.
fn start_initialize_span(inner: &Inner, slot: &Slot, parent: &Context) -> Option<Context> {
    let tracer = inner.telemetry.tracer()?;
    let transport = slot.spec.transport();
    let mut attributes = vec![
        KeyValue::new("mcp.method.name", "initialize"),
        KeyValue::new("network.transport", transport.network_transport()),
        KeyValue::new("metamcp.upstream.server", slot.name.clone()),
        KeyValue::new("metamcp.upstream.transport", transport.as_str()),
    ];
    if let Some((address, port)) = &slot.address {
        attributes.push(KeyValue::new("server.address", address.clone()));
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", i64::from(*port)));
        }
    }
    let span = tracer
        .span_builder("initialize")
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer, parent);
    Some(parent.with_span(span))
}

/// The transport of the slot's spec, and the MCP handshake over it.
async fn open(inner: &Inner, slot: &Arc<Slot>, handler: GatewayClient) -> Result<Running, UpstreamError> {
    let (timeout, max) = (slot.timeout, inner.config.max_response_bytes);
    let initialized = match &slot.spec {
        ServerSpec::StreamableHttp { url } => {
            let http = inner.http.clone().ok_or_else(no_http_client)?;
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                .max_concurrent_requests(inner.config.max_concurrent_requests)
                .max_sse_event_size(max)
                .max_json_response_size(max)
                // The upstream's words never reach an error of ours: read no diagnostic body.
                .max_error_response_size(0)
                .reinit_on_expired_session(true);
            let client = TracedHttp { client: http, observed: slot.observed.clone(), max_bytes: max };
            let transport = StreamableHttpClientTransport::with_client(client, config);
            handler.serve(ProgressTap { inner: transport, slot: Arc::downgrade(slot) }).await
        }
        ServerSpec::Sse { url } => {
            let http = inner.http.clone().ok_or_else(no_http_client)?;
            let url = url::Url::parse(url).map_err(|_| UpstreamError::Connect("invalid URL".to_owned()))?;
            let mut config = LegacySseConfig::new(url);
            config.max_event_bytes = max;
            config.endpoint_timeout = timeout;
            config.post_timeout = timeout;
            let transport = LegacySseTransport::connect(http, config)
                .await
                .map_err(|err| err.classify().unwrap_or_else(|| super::error::classify(&err, timeout, max)))?;
            *slot.legacy_end.lock() = Some(transport.stream_end());
            handler.serve(ProgressTap { inner: transport, slot: Arc::downgrade(slot) }).await
        }
        ServerSpec::Stdio { command, args, env, cwd } => {
            let (child, stderr) = spawn(command, args, env, cwd.as_deref())?;
            slot.pid.store(child.id().unwrap_or(0), Ordering::Relaxed);
            if let Some(stderr) = stderr {
                tokio::spawn(log_stderr(slot.name.clone(), stderr));
            }
            handler.serve(ProgressTap { inner: child, slot: Arc::downgrade(slot) }).await
        }
    };
    initialized.map_err(|err| UpstreamError::from_initialize(&err, timeout, max))
}

fn no_http_client() -> UpstreamError {
    UpstreamError::Connect("the gateway's HTTP client could not be built".to_owned())
}

/// Spawns a stdio server: its command and arguments, a minimal environment plus its own, its
/// working directory, stdin and stdout piped to the SDK, stderr piped to the log.
fn spawn(
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&str>,
) -> Result<(TokioChildProcess, Option<ChildStderr>), UpstreamError> {
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args).env_clear().kill_on_drop(true);
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(env);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    TokioChildProcess::builder(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| UpstreamError::Spawn(io_kind_words(err.kind()).to_owned()))
}

/// Logs each stderr line of a stdio child with its server's name, until the child closes it.
async fn log_stderr(server: String, stderr: ChildStderr) {
    let mut lines = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_STDERR_LINE));
    while let Some(line) = lines.next().await {
        match line {
            Ok(line) => tracing::info!(server = %server, line = %line, "upstream stderr"),
            Err(LinesCodecError::MaxLineLengthExceeded) => {
                tracing::info!(server = %server, "upstream stderr: a line longer than {MAX_STDERR_LINE} bytes was skipped")
            }
            Err(LinesCodecError::Io(err)) => {
                tracing::debug!(server = %server, error = %err, "the upstream's stderr could not be read");
                break;
            }
        }
    }
}
