//! Network: cgroup sock_addr hooks see the destination of every connect and of
//! every datagram sent to an explicit address (unconnected UDP), for IPv4 and IPv6;
//! the system call's exit reports the result.
//!
//! The hooks decide in the kernel: a destination that a `deny` rule matches for a
//! tracked process (`enforce::on_net`) is refused (the hook returns 0 and the
//! call fails with EPERM before any packet leaves); everything else is allowed and
//! reported.

use aya_ebpf::{
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use guard_common::{AF_INET, AF_INET6, EventKind, NetBody, TAINTED};

use crate::{
    emit::{Draft, current_ids},
    enforce, flow,
    maps::{PENDING_NET, PendingNet, TRACKED},
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[inline(always)]
fn note(ctx: &SockAddrContext, kind: EventKind, v6: bool) -> i32 {
    let (tgid, tid) = current_ids();
    // SAFETY: read-only copy of the map value.
    let Some(tracked) = (unsafe { TRACKED.get(tgid) }).copied() else {
        return ALLOW;
    };
    // SAFETY: the kernel hands sock_addr programs a valid context.
    let sa = unsafe { &*ctx.sock_addr };
    let mut body = NetBody {
        port: u16::from_be(sa.user_port as u16),
        sock_type: sa.type_ as u16,
        protocol: sa.protocol as u16,
        ..NetBody::default()
    };
    if v6 {
        body.family = AF_INET6;
        let words = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        for (i, w) in words.iter().enumerate() {
            body.addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    } else {
        body.family = AF_INET;
        body.addr[..4].copy_from_slice(&sa.user_ip4.to_ne_bytes());
    }
    let is_root = tracked.flags;
    let mut verdict = enforce::on_net(body.family, &body.addr, body.port, is_root);
    if verdict.is_none() && tracked.flags & TAINTED != 0 {
        // A process that read a secret: the `[taint]` allowlist too.
        verdict = enforce::on_tainted_net(body.family, &body.addr, body.port);
    }
    if verdict.is_none() {
        // Allowed: the socket's bytes are counted from here on (flow.rs).
        flow::tag(ctx, &body, tracked.session, tracked.flags);
    }
    let pending = PendingNet {
        body,
        kind: kind as u16,
        rule: verdict.unwrap_or(0),
        _reserved: 0,
    };
    if PENDING_NET.insert(tid, pending, 0).is_err() {
        crate::maps::count(guard_common::counter::PENDING_FULL);
    }
    // Returning 0 from a sock_addr hook makes connect/sendmsg fail with EPERM before
    // any packet is built.
    if verdict.is_some() { DENY } else { ALLOW }
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Connect, false)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Connect, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Send, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Send, true)
}

/// Attached to sys_exit_{connect,sendto,sendmsg,sendmmsg}.
#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_net(ctx: TracePointContext) -> u32 {
    match try_exit_net(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_exit_net(ctx: &TracePointContext) -> Result<(), ()> {
    let (tgid, tid) = current_ids();
    // SAFETY: read-only copy of the map value.
    let pending = *unsafe { PENDING_NET.get(tid) }.ok_or(())?;
    let _ = PENDING_NET.remove(tid);
    // SAFETY: read-only copy of the map value.
    let tracked = *unsafe { TRACKED.get(tgid) }.ok_or(())?;
    let session = tracked.session;
    let kind = EventKind::from_u16(pending.kind).ok_or(())?;
    // SAFETY: `ret` is at offset 16 of every sys_exit record.
    let ret = unsafe { ctx.read_at::<i64>(16) }.map_err(|_| ())?;
    let mut draft = Draft::begin(kind, 0, session, tracked.flags).ok_or(())?;
    draft.header().rule = pending.rule;
    draft.body(NetBody {
        ret,
        ..pending.body
    });
    draft.submit::<NetBody>(0);
    Ok(())
}
