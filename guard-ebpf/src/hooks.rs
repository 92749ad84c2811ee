//! The chain of BPF-LSM programs on one hook: what an earlier program decided, and
//! which of the routes' hooks user space attached (`ROUTE_HOOKS`).

use guard_common::EPERM;

use crate::maps::ROUTE_HOOKS;

/// An earlier BPF-LSM program's refusal on this hook (`retval`, non-zero), passed on
/// bounded to what an LSM program may return: 0 or `-errno` in [-4095, 0], which the
/// verifier checks at every exit since Linux 6.10 (a value it cannot bound is
/// refused: "R0 has unknown scalar value"). Anything outside passes on as EPERM. The
/// two compares are kept apart by barriers on the same value: LLVM would fold them
/// into one unsigned compare of a copy, whose bounds the verifier does not carry
/// back to the value returned.
#[inline(always)]
pub(crate) fn earlier(retval: i32) -> i32 {
    let r = core::hint::black_box(retval);
    if r > 0 {
        return -EPERM;
    }
    let r = core::hint::black_box(r);
    if r < -4095 {
        return -EPERM;
    }
    r
}

/// Whether the BPF-LSM hooks of `route` (`guard_common::route`) run on this kernel:
/// when they do, the tracepoint programs of that route leave the work to them.
#[inline(always)]
pub(crate) fn lsm_hook_runs(route: u32) -> bool {
    ROUTE_HOOKS.get(0).is_some_and(|b| b & (1 << route) != 0)
}
