//! Network: cgroup sock_addr hooks see the destination of every connect and of
//! every datagram sent to an explicit address (unconnected UDP), for IPv4 and IPv6;
//! the system call's exit reports the result.
//!
//! The hooks decide in the kernel: a destination that a `deny` rule matches for a
//! tracked process (`enforce::on_net`) is refused (the hook returns 0 and the
//! call fails with EPERM before any packet leaves); everything else is allowed and
//! reported.
//!
//! Unix domain sockets pass no cgroup hook: the entry of `connect` and `sendto`
//! notes the name a tracked thread passed, and the exit reports it, resolved to the
//! socket file the socket got connected to (its peer's bound path), judged by the
//! file rules on writes (a kill rule kills before the call returns). The BPF-LSM
//! hooks `unix_stream_connect` and `unix_may_send` (lsm.rs) refuse with EPERM.

use aya_ebpf::{
    helpers::generated::{
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
        bpf_probe_read_user,
    },
    macros::{cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, TracePointContext},
};
use guard_common::{
    AF_INET, AF_INET6, AF_UNIX, DNS_PORT, EventKind, NetBody, PATH_DEPTH, TAINTED, Tracked,
    UNIX_PATH_MAX, UnixBody, UnixCall, flags, rules::enforced,
};

use crate::{
    core_read::{self, WALK_TRUNCATED},
    dns::{self, Redirect},
    emit::{Draft, current_ids},
    enforce, flow,
    maps::{
        PATH_END, PATH_MASK, PATH_SCRATCH, PENDING_NET, PENDING_UNIX, PendingNet, PendingUnix,
        SPAWNER_PORTS, SPAWNERS, UNIX_NAME, is_tracked, tracked,
    },
};

const ALLOW: i32 = 1;
const DENY: i32 = 0;
/// `sk_type` of a datagram socket.
const SOCK_DGRAM: u16 = 2;
/// A non-blocking connect under way.
const EINPROGRESS: i64 = 115;

/// The address, port and socket of a sock_addr hook's call (the destination of a
/// connect or send; what a bind binds).
#[inline(always)]
pub(crate) fn dest(ctx: &SockAddrContext, v6: bool) -> NetBody {
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
    body
}

#[inline(always)]
fn note(ctx: &SockAddrContext, kind: EventKind, v6: bool) -> i32 {
    let (tgid, tid) = current_ids();
    let Some(tracked) = tracked(tgid) else {
        return ALLOW;
    };
    let body = dest(ctx, v6);
    let is_root = tracked.flags;
    let mut verdict = enforce::on_net(body.family, &body.addr, body.port, is_root);
    if verdict.is_none() && tracked.flags & TAINTED != 0 {
        // A process that read a secret: the `[taint]` allowlist too.
        verdict = enforce::on_tainted_net(body.family, &body.addr, body.port);
    }
    let (mut event_flags, mut dns_tag) = (0u32, 0u32);
    if body.port == DNS_PORT {
        // DNS goes to guard's resolver, which judges each name: the network rules
        // only say whether it may forward to this server itself.
        match dns::redirect(ctx, &body, verdict.is_none()) {
            Redirect::To { tag } => {
                verdict = None;
                event_flags = u32::from(flags::REDIRECTED);
                dns_tag = tag;
            }
            Redirect::Refuse(rule) => {
                verdict = Some((rule & enforced::RULE_MASK) | enforced::DENIED);
            }
            Redirect::Pass => {}
        }
    }
    // A UDP socket's connect sends nothing: glibc connects one to every address a
    // name resolved to, to learn the source address it would use (RFC 6724
    // sorting), and never sends on it. Its destination is judged at its first
    // send instead: the connect goes through, the socket carries the refusal, and
    // flow.rs drops its packets (the send fails with EPERM, no packet leaves).
    let mut deferred = None;
    if kind == EventKind::Connect && body.sock_type == SOCK_DGRAM && body.port != DNS_PORT {
        deferred = Some(verdict.take().unwrap_or(0));
    }
    if verdict.is_none()
        && let Some(listener) = loopback_spawner(&body)
    {
        // A known spawner on this host (sshd): refused where the policy refuses
        // delegation, else its next fork joins the session.
        // SAFETY: read-only copy of the map value.
        match unsafe { SPAWNERS.get(listener) }.copied() {
            Some(v) if v & u32::from(enforced::DENIED) != 0 => verdict = Some(v as u16),
            // SAFETY: helper without arguments.
            _ => crate::maps::arm_delegate(listener, &tracked, unsafe { bpf_ktime_get_boot_ns() }),
        }
    }
    if verdict.is_none() {
        // Allowed: the socket's bytes are counted from here on (flow.rs), under the
        // destination as given.
        flow::tag(
            ctx,
            &body,
            tracked.session,
            tracked.flags,
            dns_tag,
            deferred,
        );
    }
    let pending = PendingNet {
        body,
        kind: kind as u16,
        rule: verdict.unwrap_or(0),
        flags: event_flags,
    };
    if PENDING_NET.insert(tid, pending, 0).is_err() {
        crate::maps::count(guard_common::counter::PENDING_FULL);
    }
    // Returning 0 from a sock_addr hook makes connect/sendmsg fail with EPERM before
    // any packet is built.
    if verdict.is_some() { DENY } else { ALLOW }
}

#[cgroup_sock_addr(connect4)]
pub(crate) fn connect4(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Connect, false)
}

#[cgroup_sock_addr(connect6)]
pub(crate) fn connect6(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Connect, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub(crate) fn sendmsg4(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Send, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub(crate) fn sendmsg6(ctx: SockAddrContext) -> i32 {
    note(&ctx, EventKind::Send, true)
}

/// Attached to sys_exit_{connect,sendto,sendmsg,sendmmsg}.
#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub(crate) fn sys_exit_net(ctx: TracePointContext) -> u32 {
    match try_exit_net(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_exit_net(ctx: &TracePointContext) -> Result<(), ()> {
    let (tgid, tid) = current_ids();
    // Every other process stops at this one lookup. Only tracked threads note a
    // call at its entry, and a process leaves `TRACKED` when its last thread exits
    // or when user space untracks it (the start-up scan's corrections): a call
    // noted just before that stays in the LRU pending maps until the thread's next
    // noted call replaces it.
    let tracked = tracked(tgid).ok_or(())?;
    // SAFETY: read-only copy of the map value.
    let Some(pending) = unsafe { PENDING_NET.get(tid) }.copied() else {
        return exit_unix(ctx, &tracked, tid);
    };
    let _ = PENDING_NET.remove(tid);
    let session = tracked.session;
    let kind = EventKind::from_u16(pending.kind).ok_or(())?;
    // SAFETY: `ret` is at offset 16 of every sys_exit record.
    let ret = unsafe { ctx.read_at::<i64>(16) }.map_err(|_| ())?;
    // A connect or send that reached the network (not DNS, not a UDP socket's
    // connect, which sends nothing): what the process writes is a download.
    let through = ret >= 0 || (kind == EventKind::Connect && ret == -EINPROGRESS);
    let udp_connect = kind == EventKind::Connect && pending.body.sock_type == SOCK_DGRAM;
    if through && pending.rule == 0 && pending.body.port != DNS_PORT && !udp_connect {
        crate::fetched::guard_fetch_connected(tgid, tracked.flags, tracked.session);
    }
    let mut draft = Draft::begin(kind, pending.flags as u16, session, tracked.flags).ok_or(())?;
    draft.header().rule = pending.rule;
    draft.body(NetBody {
        ret,
        ..pending.body
    });
    draft.submit::<NetBody>(0);
    Ok(())
}

// Field offsets in the syscalls:sys_enter_* records: each argument is an 8-byte
// slot after the 16-byte common header and syscall number.
const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG4: usize = 48;
const ARG5: usize = 56;

fn arg(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: offsets within the tracepoint record.
    unsafe { ctx.read_at::<u64>(off) }.unwrap_or(0)
}

/// `connect(fd, addr, addrlen)` of any process: a tracked thread's `AF_UNIX`
/// address is noted for the exit. Every other process pays one lookup.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub(crate) fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    note_unix(
        UnixCall::Connect,
        arg(&ctx, ARG0),
        arg(&ctx, ARG1),
        arg(&ctx, ARG2),
    );
    0
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`: as `connect`, when it names an
/// address.
#[tracepoint(category = "syscalls", name = "sys_enter_sendto")]
pub(crate) fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let addr = arg(&ctx, ARG4);
    if addr != 0 {
        note_unix(UnixCall::SendTo, arg(&ctx, ARG0), addr, arg(&ctx, ARG5));
    }
    0
}

/// `sendmsg(fd, msg, flags)`: as `sendto`, when the message names an address.
#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub(crate) fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    note_unix_msg(UnixCall::SendMsg, arg(&ctx, ARG0), arg(&ctx, ARG1));
    0
}

/// `sendmmsg(fd, msgvec, vlen, flags)`: the address of the first message (one name
/// is noted per call).
#[tracepoint(category = "syscalls", name = "sys_enter_sendmmsg")]
pub(crate) fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    note_unix_msg(UnixCall::SendMmsg, arg(&ctx, ARG0), arg(&ctx, ARG1));
    0
}

/// The address a `struct user_msghdr` at `msg` names (`msg_name`, `msg_namelen`: its
/// first two fields, also the first of a `struct mmsghdr`), noted as [`note_unix`].
#[inline(always)]
fn note_unix_msg(call: UnixCall, fd: u64, msg: u64) {
    let (tgid, tid) = current_ids();
    // Other processes stop here.
    if !is_tracked(tgid) {
        return;
    }
    let mut head = [0u64; 2];
    // SAFETY: 16 bytes of user memory into a stack array; the helper tolerates any
    // address.
    let read = unsafe {
        bpf_probe_read_user(
            head.as_mut_ptr().cast(),
            16,
            msg as *const core::ffi::c_void,
        )
    };
    if read == 0 && head[0] != 0 {
        note_tracked_unix(tid, call, fd, head[0], head[1] & 0xffff_ffff);
    }
}

/// Notes `addr` for the call's exit when the caller is tracked and it is an
/// `AF_UNIX` address.
#[inline(always)]
fn note_unix(call: UnixCall, fd: u64, addr: u64, addrlen: u64) {
    let (tgid, tid) = current_ids();
    if is_tracked(tgid) {
        note_tracked_unix(tid, call, fd, addr, addrlen);
    }
}

/// [`note_unix`] for thread `tid` of a tracked process.
#[inline(always)]
fn note_tracked_unix(tid: u32, call: UnixCall, fd: u64, addr: u64, addrlen: u64) {
    let mut family = 0u16;
    // SAFETY: two bytes of user memory into a stack variable; the helper tolerates
    // any address.
    let read = unsafe {
        bpf_probe_read_user(
            (&raw mut family).cast(),
            2,
            addr as *const core::ffi::c_void,
        )
    };
    if read != 0 || family != AF_UNIX {
        return;
    }
    let len = (addrlen as u32).saturating_sub(2).min(UNIX_PATH_MAX as u32);
    let mut pending = PendingUnix {
        fd: fd as u32,
        call: call as u32,
        len,
        rule: 0,
        peer_pid: 0,
        peer_uid: u32::MAX,
        name: [0; UNIX_NAME],
    };
    if len > 0 {
        // SAFETY: at most UNIX_NAME bytes of user memory into the value's array.
        unsafe {
            bpf_probe_read_user(
                pending.name.as_mut_ptr().cast(),
                ((len - 1) & (UNIX_NAME as u32 - 1)) + 1,
                (addr + 2) as *const core::ffi::c_void,
            )
        };
    }
    let _ = PENDING_UNIX.insert(tid, pending, 0);
}

/// The exit of a `connect` or `sendto` a tracked thread gave an `AF_UNIX` address:
/// a [`EventKind::Unix`] record. A connected socket names the file its peer is
/// bound to, as the kernel resolved it, and is judged by the file rules on writes
/// before the call returns; otherwise the name as given (a relative path joined to
/// the working directory, `@name` for an abstract one).
#[inline(always)]
fn exit_unix(ctx: &TracePointContext, tracked: &Tracked, tid: u32) -> Result<(), ()> {
    // The entry is read in place, not copied: its 144 bytes on this program's stack
    // and the rule checks' callback frames below it pass the 512 bytes Linux 6.1
    // allows a call chain. It leaves the map at the end.
    let pending = PENDING_UNIX.get_ptr(tid).ok_or(())?;
    let result = report_unix(ctx, tracked, pending);
    let _ = PENDING_UNIX.remove(tid);
    result
}

/// The record of [`exit_unix`], from the noted entry `pending`.
#[inline(always)]
fn report_unix(
    ctx: &TracePointContext,
    tracked: &Tracked,
    pending: *const PendingUnix,
) -> Result<(), ()> {
    // SAFETY: the entry stays in the map until exit_unix removes it after this.
    let (fd, call, rule, mut listener) = unsafe {
        (
            (*pending).fd,
            (*pending).call,
            (*pending).rule,
            ((*pending).peer_pid, (*pending).peer_uid),
        )
    };
    // SAFETY: `ret` is at offset 16 of every sys_exit record.
    let ret = unsafe { ctx.read_at::<i64>(16) }.map_err(|_| ())?;
    let pbuf = PATH_SCRATCH.get_ptr_mut(0).ok_or(())?.cast::<u8>();
    let mut draft = Draft::begin(EventKind::Unix, 0, tracked.session, tracked.flags).ok_or(())?;
    draft.header().rule = rule as u16;
    let task = core_read::current();
    let sock = core_read::file_unix_sock(core_read::fd_file(task, fd));
    let peer = if ret >= 0 && call == UnixCall::Connect as u32 {
        core_read::unix_path(core_read::unix_peer(sock))
    } else {
        core::ptr::null()
    };
    let (start, end) = if !peer.is_null() {
        let walk = core_read::path_of(peer, pbuf, PATH_END, PATH_DEPTH as u32);
        if walk & WALK_TRUNCATED != 0 {
            draft.header().flags |= flags::PATH_TRUNCATED;
        }
        let start = walk & !WALK_TRUNCATED;
        // Decided before the connect returns: a killed process sends nothing on it.
        let (rule, found) = enforce::on_unix(
            core_read::path_dentry(peer),
            start & PATH_MASK,
            PATH_END - start,
            tracked.flags,
        );
        if rule != 0 {
            draft.header().rule = rule;
        }
        draft.header().flags |= found & flags::IDENTITY_UNKNOWN;
        (start, PATH_END)
    } else {
        draft.header().flags |= flags::PATH_UNRESOLVED;
        unresolved_name(pending, pbuf, task)?
    };
    if ret >= 0 && call == UnixCall::Connect as u32 {
        // The listener on the other side: a spawner outside every session is
        // asked to work for the session (delegation).
        listener = core_read::sock_peer(sock);
        if let Some(refused) = spawner(listener.0, tracked)
            && draft.header().rule == 0
        {
            draft.header().rule = refused;
        }
    }
    let len = draft.path_payload::<UnixBody>(pbuf, start, end);
    draft.body(UnixBody {
        ret,
        call,
        sock_type: core_read::sock_type(sock) as u16,
        _reserved: 0,
        peer_pid: listener.0,
        peer_uid: listener.1,
    });
    draft.submit::<UnixBody>(len);
    Ok(())
}

/// A session process reached `peer`, a process outside every session: when it is a
/// known spawner (`SPAWNERS`), a refusing policy kills the caller before its call
/// returns (the event's `rule` field is returned); otherwise the spawner's next
/// fork joins the session (`DELEGATE_ARM`).
#[inline(always)]
fn spawner(peer: u32, tracked: &Tracked) -> Option<u16> {
    // SAFETY: presence checks and a read-only copy of the map value.
    if peer == 0 || is_tracked(peer) {
        return None;
    }
    // SAFETY: as above.
    let verdict = *unsafe { SPAWNERS.get(peer) }?;
    if verdict & u32::from(enforced::DENIED) != 0 {
        let rule = (verdict as u16 & enforced::RULE_MASK).checked_sub(1)?;
        return Some(enforce::kill_for(rule));
    }
    // SAFETY: helper without arguments.
    crate::maps::arm_delegate(peer, tracked, unsafe { bpf_ktime_get_boot_ns() });
    None
}

/// A loopback destination a known spawner listens on (sshd on 127.0.0.1:22): its
/// tgid, when it is outside every session.
#[inline(always)]
fn loopback_spawner(body: &NetBody) -> Option<u32> {
    let a = &body.addr;
    let loopback = match body.family {
        AF_INET => a[0] == 127,
        _ => {
            a[..15] == [0; 15] && a[15] == 1
                || a[..10] == [0; 10] && a[10] == 0xff && a[11] == 0xff && a[12] == 127
        }
    };
    if !loopback {
        return None;
    }
    // SAFETY: read-only copy of the map value.
    let tgid = *unsafe { SPAWNER_PORTS.get(body.port) }?;
    (!is_tracked(tgid)).then_some(tgid)
}

/// The name a process gave, in the path scratch: `@name` for an abstract one (a
/// leading 0 byte), a relative path joined to the working directory; returns the
/// (start, end) offsets.
#[inline(always)]
fn unresolved_name(
    pending: *const PendingUnix,
    pbuf: *mut u8,
    task: *const core_read::Task,
) -> Result<(u32, u32), ()> {
    let name = pbuf.wrapping_add(PATH_END as usize + 1);
    // SAFETY: the map entry, alive for the whole program (see exit_unix).
    let (len, first, given) = unsafe {
        (
            (*pending).len.min(UNIX_PATH_MAX as u32),
            (*pending).name[0],
            (*pending).name.as_ptr(),
        )
    };
    if first == 0 {
        // Abstract: the bytes after the 0, exactly `len - 1` of them.
        // SAFETY: PATH_END is below the scratch's size; bounded copy after it.
        unsafe {
            *pbuf.add(PATH_END as usize) = b'@';
            if len > 1 {
                let _ = bpf_probe_read_kernel(
                    name.cast(),
                    ((len - 2) & (UNIX_NAME as u32 - 1)) + 1,
                    given.add(1).cast(),
                );
            }
        }
        return Ok((PATH_END, PATH_END + len.max(1)));
    }
    // SAFETY: a NUL-terminated copy of at most UNIX_NAME bytes after PATH_END.
    let copied = unsafe { bpf_probe_read_kernel_str(name.cast(), UNIX_NAME as u32, given.cast()) };
    let n = (copied.max(1) - 1) as u32 & (UNIX_NAME as u32 - 1);
    if first == b'/' {
        return Ok((PATH_END + 1, PATH_END + 1 + n));
    }
    let walk = core_read::cwd_path(task, pbuf, PATH_END, PATH_DEPTH as u32);
    // SAFETY: PATH_END is below the scratch's size.
    unsafe { *pbuf.add(PATH_END as usize) = b'/' };
    Ok((walk & !WALK_TRUNCATED, PATH_END + 1 + n))
}
