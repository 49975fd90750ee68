//! The supervisor of one upstream's session: it waits for the session to end, and unless the
//! gateway ended it, starts it again with exponential backoff (doubling from
//! [`UpstreamsConfig::restart_initial_backoff`](super::UpstreamsConfig) up to
//! `restart_max_backoff`; a session that lived that long starts the backoff afresh). A call
//! that finds no session wakes it for an attempt at once (but never two attempts closer than
//! the initial backoff). A session started again after one ended is a restart: counted, and
//! announced with the lists that changed meanwhile.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::session::{establish, Running};
use super::{Discovery, Inner, ListKind, Slot, UpstreamEvent};

/// Longest wait for a session to close once the gateway ends it.
const CLOSE_WAIT: Duration = Duration::from_secs(8);

/// Supervises `slot`'s session, `first` being the one `connect` opened (if it could).
pub(super) async fn supervise(inner: Weak<Inner>, slot: Arc<Slot>, first: Option<(Running, Arc<Discovery>)>) {
    let Some((initial, max)) =
        inner.upgrade().map(|i| (i.config.restart_initial_backoff, i.config.restart_max_backoff))
    else {
        return;
    };
    let initial = initial.max(Duration::from_millis(1));
    let mut running = first.map(|(running, _)| running);
    let mut backoff = initial;
    let mut last_attempt = Instant::now();
    let mut had_session = false;
    loop {
        if let Some(session) = running.take() {
            let started = Instant::now();
            let version = session.peer().peer_info().map(|info| info.protocol_version.to_string()).unwrap_or_default();
            let ended_by_us = watch_session(&slot, session).await;
            slot.health.connected.store(false, Ordering::Relaxed);
            slot.state.send_modify(|state| state.live = None);
            if let Some(strong) = inner.upgrade() {
                let error_type = (!ended_by_us).then_some("session_ended");
                strong.record_session(&slot, &version, error_type, started.elapsed());
                if !ended_by_us {
                    strong.telemetry.set_upstream_up(&slot.name, false);
                }
            }
            if ended_by_us {
                return;
            }
            tracing::warn!(server = %slot.name, transport = %slot.spec.transport(), "the upstream session ended; starting it again");
            if started.elapsed() >= max {
                backoff = initial;
            }
            had_session = true;
        }
        if slot.stop.is_cancelled() {
            return;
        }
        tokio::select! {
            () = slot.stop.cancelled() => return,
            () = tokio::time::sleep_until(last_attempt + backoff) => {}
            () = slot.wake.notified() => {
                tokio::select! {
                    () = slot.stop.cancelled() => return,
                    () = tokio::time::sleep_until(last_attempt + initial) => {}
                }
            }
        }
        backoff = (backoff * 2).min(max.max(initial));
        let Some(strong) = inner.upgrade() else { return };
        last_attempt = Instant::now();
        let previous = slot.discovery.read().clone();
        let attempt = tokio::select! {
            () = slot.stop.cancelled() => return,
            attempt = establish(&strong, &slot) => attempt,
        };
        match attempt {
            Ok((session, discovery)) => {
                tracing::info!(server = %slot.name, "the upstream session is open again");
                if had_session {
                    slot.health.restarts.fetch_add(1, Ordering::Relaxed);
                    strong.telemetry.record_upstream_restart(&slot.name);
                    let _ = strong.events.send(UpstreamEvent::Restarted { server: slot.name.clone() });
                }
                announce_changes(&strong, &slot, previous.as_deref(), &discovery);
                running = Some(session);
            }
            Err(err) => {
                let failures = slot.health.consecutive_failures.load(Ordering::Relaxed);
                if failures.is_power_of_two() {
                    tracing::warn!(server = %slot.name, error = %err, failures, "the upstream session could not be opened");
                } else {
                    tracing::debug!(server = %slot.name, error = %err, failures, "the upstream session could not be opened");
                }
            }
        }
    }
}

/// Waits for the session to end. `true`: the gateway ended it (the slot was stopped), and it
/// is closed (a stdio child stopped) by the time this returns.
async fn watch_session(slot: &Slot, session: Running) -> bool {
    let cancel = session.cancellation_token();
    let waiting = session.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        _ = &mut waiting => false,
        () = slot.stop.cancelled() => {
            cancel.cancel();
            if tokio::time::timeout(CLOSE_WAIT, waiting).await.is_err() {
                tracing::warn!(server = %slot.name, "the upstream session did not close in time");
            }
            true
        }
    }
}

/// Broadcasts a [`UpstreamEvent::ListChanged`] for each list that differs from before.
fn announce_changes(inner: &Inner, slot: &Slot, previous: Option<&Discovery>, current: &Discovery) {
    let Some(previous) = previous else { return };
    let changed = [
        (ListKind::Tools, previous.tools != current.tools),
        (ListKind::Prompts, previous.prompts != current.prompts),
        (
            ListKind::Resources,
            previous.resources != current.resources || previous.resource_templates != current.resource_templates,
        ),
    ];
    for (kind, differs) in changed {
        if differs {
            let _ = inner.events.send(UpstreamEvent::ListChanged { server: slot.name.clone(), kind });
        }
    }
}
