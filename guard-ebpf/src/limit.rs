//! Per-session record budgets (`[limits] rate`/`burst`): a token bucket per session
//! in `SESSION_LIMITS`. A plain record beyond the budget is dropped and counted, per
//! session and in `counter::OVER_LIMIT`; records that carry a decision (a kill or a
//! denial, a session start, the root's exit, exec records when user space decides
//! exec kills) are always sent. Drops are reported (a `Limit` record before the
//! record sent) at most once a second, and before every record that is never dropped.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_send_signal},
};
use guard_common::{Bucket, Config, SIGKILL, counter};

use crate::maps::{SESSION_LIMITS, count_n};

const NS_PER_SEC: u64 = 1_000_000_000;
/// Least time between two reports of a session's drops.
const REPORT_NS: u64 = NS_PER_SEC;
/// Refill at most this much idle time at once: keeps `elapsed * rate` far from
/// overflow (user space caps the rate at 10^6 per second).
const MAX_REFILL_NS: u64 = 10 * NS_PER_SEC;

pub(crate) enum Take {
    /// Send the record; first report `unreported` drops (of `total`) when non-zero.
    /// `over`: the session has no budget left now.
    Send {
        unreported: u64,
        total: u64,
        over: bool,
    },
    /// Dropped and counted.
    Drop,
}

/// Charges one record, standing for `weight` system calls, to `session`'s budget.
/// `exempt` records are never dropped and cost nothing, but report drops and see
/// whether the session is over. A drop counts `weight`.
#[inline(always)]
pub(crate) fn take(session: u64, cfg: &Config, exempt: bool, weight: u64) -> Take {
    let rate = u64::from(cfg.limit_rate);
    let burst = u64::from(cfg.limit_burst).max(1);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let bucket = match SESSION_LIMITS.get_ptr_mut(session) {
        Some(b) => b,
        None => {
            let fresh = Bucket {
                tokens: burst,
                refilled_ns: now,
                dropped: 0,
                reported: 0,
                reported_ns: now,
            };
            // Another CPU may have created it meanwhile: NOEXIST keeps theirs.
            let _ = SESSION_LIMITS.insert(session, fresh, u64::from(BPF_NOEXIST));
            match SESSION_LIMITS.get_ptr_mut(session) {
                Some(b) => b,
                // Not even an LRU slot: send unlimited rather than lose the record.
                None => {
                    return Take::Send {
                        unreported: 0,
                        total: 0,
                        over: false,
                    };
                }
            }
        }
    };
    // SAFETY: a pointer into the map's value, valid for this program run. Other
    // CPUs may update the same bucket at the same instant: tokens, refill time and
    // the session's drop count are then approximate (core has no atomic add for the
    // BPF target); `counter::OVER_LIMIT`, per CPU, counts every drop exactly.
    unsafe {
        let elapsed = now.saturating_sub((*bucket).refilled_ns).min(MAX_REFILL_NS);
        let add = elapsed * rate / NS_PER_SEC;
        if add > 0 {
            (*bucket).tokens = ((*bucket).tokens + add).min(burst);
            (*bucket).refilled_ns = now;
        }
        if !exempt {
            if (*bucket).tokens == 0 {
                (*bucket).dropped += weight;
                count_n(counter::OVER_LIMIT, weight);
                if cfg.limit_kill != 0 {
                    // `on_loss = "kill"`: what the session does can no longer be seen
                    // in full, so the process that went unseen dies (as at a kill rule,
                    // on its return to user space).
                    let _ = bpf_send_signal(SIGKILL);
                }
                return Take::Drop;
            }
            (*bucket).tokens -= 1;
        }
        let total = (*bucket).dropped;
        let mut unreported = total.saturating_sub((*bucket).reported);
        // One report a second at most: in a storm, a report before every record
        // let through would double them. A record that carries a decision reports
        // at once, so the root's exit closes the account.
        if unreported > 0 && !exempt && now.saturating_sub((*bucket).reported_ns) < REPORT_NS {
            unreported = 0;
        }
        if unreported > 0 {
            (*bucket).reported = total;
            (*bucket).reported_ns = now;
        }
        Take::Send {
            unreported,
            total,
            over: (*bucket).tokens == 0,
        }
    }
}

/// Forgets a session's budget (its root exited; drops were reported first).
#[inline(always)]
pub(crate) fn forget(session: u64) {
    let _ = SESSION_LIMITS.remove(session);
}
