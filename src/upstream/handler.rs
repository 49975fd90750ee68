//! The SDK's client handler of one upstream session: what the gateway does with the upstream's
//! notifications and requests.
//!
//! - `notifications/{tools,prompts,resources}/list_changed`: the list is fetched again, the
//!   discovery replaced, and [`UpstreamEvent::ListChanged`] broadcast (after the refresh, so a
//!   listener reads the new list);
//! - `notifications/progress`: handed to the call whose progress token it carries, by
//!   [`ProgressTap`] as the transport receives it (the SDK handles each notification in a task
//!   of its own, so a handler could see the last progress after the call's response);
//! - `notifications/message`: logged with the server's name, at the level it names;
//! - `sampling/createMessage`, `elicitation/create`, `roots/list`: answered with a JSON-RPC
//!   error ("method not found", with a message saying the gateway does not forward it), so the
//!   upstream knows at once instead of waiting for an answer.
//!
//! Sampling, roots and logging are deprecated by the protocol's next revision (SEP-2577), and
//! the SDK marks them so; servers of the current revisions still use them.
#![allow(deprecated)]

use std::sync::Weak;

use rmcp::model::JsonRpcMessage;
use rmcp::model::{
    ClientCapabilities, ClientInfo, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ErrorCode, ErrorData, Implementation, ListRootsResult, LoggingLevel, LoggingMessageNotificationParam,
    RequestMetaObject, ServerNotification,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use rmcp::transport::Transport;
use rmcp::ClientHandler;

use super::{Inner, ListKind, Slot, UpstreamEvent, CLIENT_NAME};

/// Longest `notifications/message` payload logged, in bytes of its JSON.
const MAX_LOGGED_BYTES: usize = 4096;

/// The client handler of one session.
pub(super) struct GatewayClient {
    pub(super) inner: Weak<Inner>,
    pub(super) slot: Weak<Slot>,
    pub(super) server: String,
    /// The `_meta` of the `initialize` request: the trace context of its span.
    pub(super) initialize_meta: Option<RequestMetaObject>,
}

/// The error answering a request the gateway does not forward.
fn not_forwarded(method: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::METHOD_NOT_FOUND,
        format!("the MetaMCP gateway does not forward {method} requests of upstream servers to its clients"),
        None,
    )
}

impl GatewayClient {
    /// Refreshes `kind` in the background and announces it.
    fn list_changed(&self, kind: ListKind) {
        let (Some(inner), Some(slot)) = (self.inner.upgrade(), self.slot.upgrade()) else { return };
        tokio::spawn(async move {
            if let Err(err) = inner.refresh(&slot, kind).await {
                tracing::warn!(server = %slot.name, error = %err, ?kind, "an upstream's changed list could not be fetched");
            }
            let _ = inner.events.send(UpstreamEvent::ListChanged { server: slot.name.clone(), kind });
        });
    }
}

impl ClientHandler for GatewayClient {
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        tracing::debug!(server = %self.server, "refused an upstream's sampling request");
        Err(not_forwarded("sampling/createMessage"))
    }

    async fn list_roots(&self, _context: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        Err(not_forwarded("roots/list"))
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        tracing::debug!(server = %self.server, "refused an upstream's elicitation request");
        Err(not_forwarded("elicitation/create"))
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let mut data = params.data.to_string();
        if data.len() > MAX_LOGGED_BYTES {
            let mut end = MAX_LOGGED_BYTES;
            while !data.is_char_boundary(end) {
                end -= 1;
            }
            data.truncate(end);
            data.push('…');
        }
        let logger = params.logger.as_deref().unwrap_or("");
        match params.level {
            LoggingLevel::Debug => tracing::debug!(server = %self.server, logger, data, "upstream log"),
            LoggingLevel::Info | LoggingLevel::Notice => {
                tracing::info!(server = %self.server, logger, data, "upstream log")
            }
            LoggingLevel::Warning => tracing::warn!(server = %self.server, logger, data, "upstream log"),
            _ => tracing::error!(server = %self.server, logger, data, "upstream log"),
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed(ListKind::Tools);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed(ListKind::Prompts);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changed(ListKind::Resources);
    }

    fn get_info(&self) -> ClientInfo {
        let mut info =
            ClientInfo::new(ClientCapabilities::default(), Implementation::new(CLIENT_NAME, env!("CARGO_PKG_VERSION")));
        info.meta = self.initialize_meta.clone();
        info
    }
}

/// A transport whose received `notifications/progress` are handed, in order and before any
/// later message (the call's response among them) reaches the SDK, to the call waiting for
/// them. Every message still goes on to the SDK.
pub(super) struct ProgressTap<T> {
    pub(super) inner: T,
    pub(super) slot: Weak<Slot>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for ProgressTap<T> {
    type Error = T::Error;

    fn name() -> std::borrow::Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: rmcp::model::ClientJsonRpcMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::model::ServerJsonRpcMessage> {
        let message = self.inner.receive().await;
        if let Some(JsonRpcMessage::Notification(notification)) = &message {
            if let ServerNotification::ProgressNotification(progress) = &notification.notification {
                if let Some(slot) = self.slot.upgrade() {
                    let sender = slot.progress.lock().get(&progress.params.progress_token).cloned();
                    // The call may have ended a moment ago: its receiver is gone, nothing to do.
                    if let Some(sender) = sender {
                        let _ = sender.send(progress.params.clone());
                    }
                }
            }
        }
        message
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
