//! Performs the state machine's spool calls on a [`Spool`]. Every call blocks: the actor runs
//! them on the runtime's blocking pool (or, at a shutdown deadline, on its own thread).

use super::state::{Refreshed, SpoolCall, SpoolReply};
use crate::spool::Spool;

/// Makes `call` on `spool` and returns its answer.
pub(crate) fn execute(spool: &dyn Spool, call: SpoolCall) -> SpoolReply {
    match call {
        SpoolCall::Append { records, max_bytes } => SpoolReply::Appended(spool.append(records, max_bytes)),
        SpoolCall::Claim { limit, lease } => SpoolReply::Claimed(spool.claim_oldest(limit, lease)),
        SpoolCall::Remove { ids } => SpoolReply::Removed(spool.remove(&ids)),
        SpoolCall::Release { id, attempts } => SpoolReply::Released(spool.release(id, attempts)),
        SpoolCall::Refresh { remove, expire_before, moved, max_bytes } => {
            let mut done = Refreshed::default();
            if !remove.is_empty() {
                if let Err(err) = spool.remove(&remove) {
                    done.error = Some(err);
                    return SpoolReply::Refreshed(done);
                }
            }
            done.removed = true;
            if let Some(cutoff) = expire_before {
                match spool.expire(cutoff) {
                    Ok(expired) => done.expired = expired,
                    Err(err) => {
                        done.error = Some(err);
                        return SpoolReply::Refreshed(done);
                    }
                }
            }
            if !moved.is_empty() {
                match spool.append(moved, max_bytes) {
                    Ok(evicted) => done.moved = Some(evicted),
                    Err(err) => {
                        done.error = Some(err);
                        return SpoolReply::Refreshed(done);
                    }
                }
            } else {
                done.moved = Some(Vec::new());
            }
            match spool.stats() {
                Ok(stats) => done.stats = Some(stats),
                Err(err) => done.error = Some(err),
            }
            SpoolReply::Refreshed(done)
        }
    }
}
