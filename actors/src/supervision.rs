//! Panic containment for the pipeline actors.
//!
//! actix's `Supervisor` restarts an actor that stops, but a panic inside a handler would unwind
//! through the arbiter and take the actor, its supervisor and its mailbox down with it. Every
//! handler body therefore runs inside [`guarded`]: a panic is caught, logged, and turned into a
//! stop, which the supervisor answers with a restart (`Supervised::restarting`), counted in
//! `{prefix}_actor_restarts_total` and in `/health`. The mailbox survives the restart.
//!
//! A panic runs the process's panic hook on the panicking thread before it unwinds to
//! [`guarded`]; with `RUST_BACKTRACE` set, the standard hook resolves a backtrace there, which
//! holds the actor (and delays its restart) for a second or more on a loaded machine. Injected
//! faults ([`InjectPanic`], [`injected_fault`]) unwind without the hook.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::{Actor, ActorContext, Context};

use crate::internal_events::ActorPanicked;
use crate::self_metrics::ActorKind;

/// Runs `f`; on a panic, logs it, stops the actor so that its supervisor restarts it, and
/// returns `None`.
pub fn guarded<A, R>(
    kind: ActorKind,
    act: &mut A,
    ctx: &mut Context<A>,
    f: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> Option<R>
where
    A: Actor<Context = Context<A>>,
{
    match catch_unwind(AssertUnwindSafe(|| f(act, ctx))) {
        Ok(value) => Some(value),
        Err(payload) => {
            ActorPanicked { actor: kind, panic: panic_message(payload.as_ref()) }.log();
            ctx.stop();
            None
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Unwinds like a panic with `what` as its message, without running the panic hook: the fault
/// [`InjectPanic`] injects. It takes the path of a real panic through [`guarded`] (logged, the
/// actor stopped and restarted), but not the hook's message and backtrace, whose cost is the
/// environment's (`RUST_BACKTRACE`, debug information, the machine's load) and would decide how
/// long the restart a supervision test waits for takes.
pub fn injected_fault(what: &'static str) -> ! {
    std::panic::resume_unwind(Box::new(what))
}

/// Makes the receiving actor panic inside a guarded handler ([`injected_fault`]): the fault
/// injection behind the supervision tests. Harmless in production (the actor restarts with its
/// state and mailbox).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct InjectPanic;
