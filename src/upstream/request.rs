//! One request to an upstream: its CLIENT span, its trace context in `params._meta`, the
//! progress it reports, its cancellation (by the caller, by the deadline, or by dropping the
//! call) and its error, classified.

use std::time::{Duration, Instant};

use opentelemetry::propagation::{Injector, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use rmcp::model::{
    CancelledNotificationParam, ClientRequest, ProgressToken, RequestId, RequestMetaObject, ServerResult,
};
use rmcp::service::{Peer, PeerRequestOptions, RoleClient};
use serde_json::Value;

use super::{metrics, CallContext, Inner, Live, Slot, Target, UpstreamError, Upstreams};

/// A request to send.
pub(super) struct Outgoing<'a> {
    pub(super) method: &'static str,
    pub(super) target: Target<'a>,
    pub(super) request: ClientRequest,
}

/// The reason sent with `notifications/cancelled`.
const CANCELLED_BY_CALLER: &str = "cancelled by the gateway's client";
const TIMED_OUT: &str = "the gateway's timeout for this server passed";
const ABANDONED: &str = "the gateway's client went away";

/// Writes propagation fields into a `_meta` object; empty values are left out.
struct MetaInjector<'a>(&'a mut serde_json::Map<String, Value>);

impl Injector for MetaInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key.to_owned(), Value::String(value));
        }
    }
}

/// Sends `notifications/cancelled` for a request unless disarmed: dropping the call (the
/// caller went away) cancels it upstream too.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
    reason: &'static str,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.id = None;
    }

    /// Cancels now, waiting for the notification to be handed to the transport.
    async fn cancel(&mut self, reason: &'static str) {
        if let Some(id) = self.id.take() {
            let params = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
            let _ = self.peer.notify_cancelled(params).await;
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (peer, reason) = (self.peer.clone(), self.reason);
        runtime.spawn(async move {
            let params = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
            let _ = peer.notify_cancelled(params).await;
        });
    }
}

/// Removes a call's progress route when the call ends.
struct ProgressRoute<'a> {
    slot: &'a Slot,
    token: Option<ProgressToken>,
}

impl Drop for ProgressRoute<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            self.slot.progress.lock().remove(&token);
        }
    }
}

impl Upstreams {
    /// Sends `out` to `server` in its session (waiting, within the server's timeout, for one
    /// to open when there is none), and keeps the server's health.
    pub(super) async fn send(
        &self,
        server: &str,
        out: Outgoing<'_>,
        ctx: CallContext,
    ) -> Result<ServerResult, UpstreamError> {
        let slot = self.slot(server).ok_or(UpstreamError::NotConnected)?;
        let live = match slot.live() {
            Some(live) => live,
            None => match self.wait_for_session(&slot).await {
                Ok(live) => live,
                Err(err) => {
                    slot.failed(&err);
                    return Err(err);
                }
            },
        };
        let outcome = self.inner.send_on(&slot, &live, out, ctx).await;
        match &outcome {
            Err(err) if err.is_connection_failure() => slot.failed(err),
            _ => slot.succeeded(),
        }
        outcome
    }

    /// Asks the supervisor for an attempt now and waits for its outcome (bounded by the
    /// server's timeout).
    async fn wait_for_session(&self, slot: &Slot) -> Result<Live, UpstreamError> {
        let mut state = slot.state.subscribe();
        let attempts = state.borrow().attempts;
        slot.wake.notify_one();
        let waited = tokio::time::timeout(slot.timeout, async {
            loop {
                {
                    let current = state.borrow_and_update();
                    if let Some(live) = current.live.clone().filter(|l| !l.peer.is_transport_closed()) {
                        return Some(live);
                    }
                    if current.attempts > attempts {
                        return None;
                    }
                }
                if state.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(Some(live)) => Ok(live),
            Ok(None) => {
                let kind = *slot.health.last_error_kind.lock();
                Err(match kind {
                    Some("spawn") => UpstreamError::Spawn("the command could not be started".to_owned()),
                    _ => UpstreamError::NotConnected,
                })
            }
            Err(_) => Err(UpstreamError::Timeout(slot.timeout)),
        }
    }
}

impl Inner {
    /// Sends `out` in the session `live` of `slot`: a CLIENT span, the trace context in
    /// `_meta`, progress routed to `ctx.progress`, cancellation by `ctx.cancel` or the timeout.
    pub(super) async fn send_on(
        &self,
        slot: &Slot,
        live: &Live,
        out: Outgoing<'_>,
        ctx: CallContext,
    ) -> Result<ServerResult, UpstreamError> {
        let started = Instant::now();
        let parent = Context::current();
        let cx = self.start_span(slot, live, &out, &ctx, &parent);
        let mut meta = serde_json::Map::new();
        self.propagator.inject_context(cx.as_ref().unwrap_or(&parent), &mut MetaInjector(&mut meta));
        let options = PeerRequestOptions::no_options().with_meta(RequestMetaObject(meta.into()));
        let sent = live.peer.send_request_with_option(out.request, options).await;
        let outcome = match sent {
            Err(err) => Err(UpstreamError::from_service(&err, slot.timeout, self.config.max_response_bytes)),
            Ok(handle) => {
                if let Some(cx) = &cx {
                    cx.span().set_attribute(KeyValue::new("jsonrpc.request.id", request_id_text(&handle.id)));
                }
                let _route = ProgressRoute {
                    slot,
                    token: ctx.progress.map(|sender| {
                        slot.progress.lock().insert(handle.progress_token.clone(), sender);
                        handle.progress_token.clone()
                    }),
                };
                let mut guard =
                    CancelOnDrop { peer: live.peer.clone(), id: Some(handle.id.clone()), reason: ABANDONED };
                let cancelled = async {
                    match &ctx.cancel {
                        Some(token) => token.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                let deadline = slot.timeout.min(LONGEST_TIMEOUT);
                tokio::select! {
                    response = handle.await_response() => {
                        guard.disarm();
                        response.map_err(|err| UpstreamError::from_service(&err, slot.timeout, self.config.max_response_bytes))
                    }
                    () = cancelled => {
                        guard.cancel(CANCELLED_BY_CALLER).await;
                        Err(UpstreamError::Cancelled)
                    }
                    () = tokio::time::sleep(deadline) => {
                        guard.cancel(TIMED_OUT).await;
                        Err(UpstreamError::Timeout(slot.timeout))
                    }
                }
            }
        };
        let outcome = outcome.map_err(|err| slot.explain(err));
        let error_type = metrics::error_type(&outcome);
        if let Some(cx) = &cx {
            finish_span(cx, &outcome, error_type.as_deref());
        }
        let version = Some(live.protocol_version.as_str());
        self.record_operation(slot, out.method, out.target, version, error_type.as_deref(), started.elapsed());
        outcome
    }

    /// The CLIENT span of one request, a child of the caller's context; `None` when telemetry
    /// is off.
    fn start_span(
        &self,
        slot: &Slot,
        live: &Live,
        out: &Outgoing<'_>,
        ctx: &CallContext,
        parent: &Context,
    ) -> Option<Context> {
        let tracer = self.telemetry.tracer()?;
        let transport = slot.spec.transport();
        let mut attributes = vec![
            KeyValue::new("mcp.method.name", out.method),
            KeyValue::new("mcp.protocol.version", live.protocol_version.clone()),
            KeyValue::new("network.transport", transport.network_transport()),
            KeyValue::new("metamcp.upstream.server", slot.name.clone()),
            KeyValue::new("metamcp.upstream.transport", transport.as_str()),
        ];
        let name = match out.target {
            Target::Tool(tool) => {
                attributes.push(KeyValue::new("gen_ai.tool.name", tool.to_owned()));
                attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                format!("{} {tool}", out.method)
            }
            Target::Prompt(prompt) => {
                attributes.push(KeyValue::new("gen_ai.prompt.name", prompt.to_owned()));
                format!("{} {prompt}", out.method)
            }
            Target::None => out.method.to_owned(),
        };
        if let Some((address, port)) = &slot.address {
            attributes.push(KeyValue::new("server.address", address.clone()));
            if let Some(port) = port {
                attributes.push(KeyValue::new("server.port", i64::from(*port)));
            }
        }
        if let Some(session) = slot.observed.session_fingerprint() {
            attributes.push(KeyValue::new("mcp.session.id", session));
        }
        if let Some(id) = &ctx.request_id {
            attributes.push(KeyValue::new("metamcp.caller.request_id", id.clone()));
        }
        if let Some(session) = &ctx.session_fingerprint {
            attributes.push(KeyValue::new("metamcp.caller.session", session.clone()));
        }
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, parent);
        Some(parent.with_span(span))
    }
}

/// Timeouts beyond this (`Duration::MAX`, say) are cut to it, so a deadline can always be set.
const LONGEST_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

/// A JSON-RPC id as text.
pub(super) fn request_id_text(id: &RequestId) -> String {
    match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::String(s) => s.to_string(),
    }
}

/// Records the outcome on the span and ends it.
fn finish_span(cx: &Context, outcome: &Result<ServerResult, UpstreamError>, error_type: Option<&str>) {
    let span = cx.span();
    if let Some(kind) = error_type {
        span.set_attribute(KeyValue::new("error.type", kind.to_owned()));
        match outcome {
            Err(UpstreamError::Rpc { code }) => {
                span.set_attribute(KeyValue::new("rpc.response.status_code", code.to_string()));
                span.set_status(Status::error(format!("JSON-RPC error {code}")));
            }
            Err(err) => span.set_status(Status::error(err.kind())),
            Ok(_) => span.set_status(Status::error("the tool reported an error")),
        }
    }
    span.end();
}
