//! Routes around the open, exec and network hooks, refused for session processes
//! unless the policy allows them (`[sessions]`): io_uring (its operations never
//! pass the system-call tracepoints), `open_by_handle_at` (an open by handle, not
//! by path), raw and packet sockets (below the cgroup sock_addr hooks), and
//! executable mappings of a file an exec rule forbids (a program run by the dynamic
//! loader, `ld.so ./prog`, is mapped, never exec'd), and listening beyond
//! loopback (a session's server other hosts could reach: `bind(2)` of a TCP socket,
//! or of a UDP socket to a port, on an address that is not a loopback one).
//!
//! On every tier a tracepoint at the system call's entry kills the caller (the
//! signal is acted on before the call returns to user space). Where BPF-LSM runs,
//! a `deny` refuses instead: io_uring at the creation of its file
//! (`inode_init_security_anon`, `io_uring_setup` fails with EPERM), sockets at
//! `socket_create`. A bind is refused on every tier by the cgroup `bind4`/`bind6`
//! hooks (EPERM, before the socket has an address). Each refusal is a
//! [`EventKind::Route`] record.

use aya_ebpf::{
    macros::{cgroup_sock_addr, lsm, raw_tracepoint, tracepoint},
    programs::{LsmContext, RawTracePointContext, SockAddrContext, TracePointContext},
};
use guard_common::{
    EPERM, EventKind, PATH_DEPTH, PATH_MAX, RouteBody, flags, route,
    rules::{enforced, rule_flags},
};

use crate::{
    core_read::{self, WALK_TRUNCATED},
    emit::Draft,
    enforce,
    hooks::lsm_hook_runs,
    maps::{PATH_END, PATH_MASK, PATH_SCRATCH, current_tracked},
};

const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
const ARG3: usize = 40;
const ARG4: usize = 48;

const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const AF_PACKET: u64 = 17;
const SOCK_RAW: u64 = 3;
const SOCK_PACKET: u64 = 10;
const SOCK_TYPE_MASK: u64 = 0xf;
const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;

fn arg(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: offsets within the syscalls:sys_enter_* record.
    unsafe { ctx.read_at::<u64>(off) }.unwrap_or(0)
}

/// (session, `Tracked::flags`: root bit and role) of the current process when it is
/// tracked.
#[inline(always)]
fn tracked_session() -> Option<(u64, u32)> {
    let t = current_tracked()?;
    Some((t.session, t.flags))
}

/// The current process's `Tracked::flags` (its role) for a record's header; a rare
/// path, so the second lookup costs nothing that matters.
#[inline(always)]
fn who() -> u32 {
    tracked_session().map_or(0, |(_, who)| who)
}

/// A route record without payload.
#[inline(always)]
fn report(session: u64, rule: u16, body: RouteBody) {
    if let Some(mut draft) = Draft::begin(EventKind::Route, 0, session, who()) {
        draft.header().rule = rule;
        draft.body(body);
        draft.submit::<RouteBody>(0);
    }
}

/// At a system call's entry: kills the caller when the route's rule says so (a
/// `deny` kills too unless the route's LSM hook runs), and reports it.
#[inline(always)]
fn at_entry(route_id: u32, family: u16, sock_type: u16) -> u32 {
    let Some((session, is_root)) = tracked_session() else {
        return 0;
    };
    let verdict = if lsm_hook_runs(route_id) {
        rule_flags::KILL
    } else {
        rule_flags::KILL | rule_flags::DENY
    };
    let Some(rule) = enforce::route_pick(route_id as u8, verdict, is_root) else {
        return 0;
    };
    let rule = enforce::kill_for(rule);
    report(
        session,
        rule,
        RouteBody {
            ret: 0,
            route: route_id,
            family,
            sock_type,
            ..RouteBody::default()
        },
    );
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_io_uring_setup")]
pub(crate) fn sys_enter_io_uring_setup(_ctx: TracePointContext) -> u32 {
    at_entry(route::IO_URING, 0, 0)
}

#[tracepoint(category = "syscalls", name = "sys_enter_open_by_handle_at")]
pub(crate) fn sys_enter_open_by_handle_at(_ctx: TracePointContext) -> u32 {
    at_entry(route::OPEN_BY_HANDLE, 0, 0)
}

/// The route a `socket(family, type, …)` takes, if it is one.
#[inline(always)]
fn socket_route(family: u64, sock_type: u64) -> Option<u32> {
    let t = sock_type & SOCK_TYPE_MASK;
    if family == AF_PACKET || t == SOCK_PACKET {
        Some(route::PACKET_SOCKET)
    } else if (family == AF_INET || family == AF_INET6) && t == SOCK_RAW {
        Some(route::RAW_SOCKET)
    } else {
        None
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_socket")]
pub(crate) fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    if tracked_session().is_none() {
        return 0;
    }
    let (family, sock_type) = (arg(&ctx, ARG0), arg(&ctx, ARG1));
    match socket_route(family, sock_type) {
        Some(r) => at_entry(r, family as u16, (sock_type & SOCK_TYPE_MASK) as u16),
        None => 0,
    }
}

/// `mmap(addr, len, prot, flags, fd, off)` with PROT_EXEC of a file: killed when an
/// exec rule forbids the file (by path or file name), before the mapping returns.
#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub(crate) fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    match try_mmap(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_mmap(ctx: &TracePointContext) -> Result<(), ()> {
    let (session, is_root) = tracked_session().ok_or(())?;
    let (prot, map_flags, fd) = (arg(ctx, ARG2), arg(ctx, ARG3), arg(ctx, ARG4) as i64 as i32);
    if prot & PROT_EXEC == 0 || map_flags & MAP_ANONYMOUS != 0 || fd < 0 {
        return Ok(());
    }
    let file = core_read::fd_file(core_read::current(), fd as u32);
    if file.is_null() {
        return Ok(());
    }
    let pbuf = PATH_SCRATCH.get_ptr_mut(0).ok_or(())?.cast::<u8>();
    let walk = core_read::file_path(file, pbuf, PATH_END, PATH_DEPTH as u32);
    let start = walk & !WALK_TRUNCATED;
    let len = PATH_END.saturating_sub(start);
    let path = pbuf.wrapping_add((start & PATH_MASK) as usize);
    let rule = enforce::on_map(file, path, len, is_root);
    if rule == 0 {
        return Ok(());
    }
    let mut draft = Draft::begin(EventKind::Route, 0, session, who()).ok_or(())?;
    draft.header().rule = rule;
    let mut n = len;
    if walk & WALK_TRUNCATED != 0 || n > PATH_MAX as u32 {
        draft.header().flags |= flags::PATH_TRUNCATED;
    }
    n = n.min(PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
    let src = PATH_END - n;
    // SAFETY: both regions are bounded by masks the verifier tracks.
    unsafe {
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            draft.payload_ptr::<RouteBody>(0).cast(),
            n,
            pbuf.add((src & PATH_MASK) as usize).cast(),
        );
    }
    draft.body(RouteBody {
        ret: 0,
        route: route::EXEC_MAPPING,
        family: 0,
        sock_type: 0,
        ..RouteBody::default()
    });
    draft.submit::<RouteBody>(n);
    Ok(())
}

/// An LSM refusal: reports it and returns -EPERM.
#[inline(always)]
fn refuse(session: u64, rule: u16, route_id: u32, family: u16, sock_type: u16) -> i32 {
    report(
        session,
        ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED,
        RouteBody {
            ret: -i64::from(EPERM),
            route: route_id,
            family,
            sock_type,
            ..RouteBody::default()
        },
    );
    -EPERM
}

/// `inode_init_security_anon(inode, name, context_inode)`: io_uring_setup creates
/// its ring's file as the anonymous inode "[io_uring]" through this hook; refusing
/// it makes io_uring_setup fail with EPERM before any ring exists.
#[lsm(hook = "inode_init_security_anon")]
pub(crate) fn inode_init_security_anon(ctx: LsmContext) -> i32 {
    let (name, retval): (*const u8, i32) = (ctx.arg(1), ctx.arg(3));
    if retval != 0 {
        return crate::hooks::earlier(retval);
    }
    let Some((session, is_root)) = tracked_session() else {
        return 0;
    };
    let Some(rule) = enforce::route_pick(route::IO_URING as u8, rule_flags::DENY, is_root) else {
        return 0;
    };
    // struct qstr { u64 hash_len; const unsigned char *name; }: a stable layout.
    let mut ptr = 0u64;
    let mut text = [0u8; 11];
    // SAFETY: reads through the helpers, which tolerate any address.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (&raw mut ptr).cast(),
            8,
            name.wrapping_add(8).cast(),
        );
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            text.as_mut_ptr().cast(),
            11,
            ptr as *const core::ffi::c_void,
        );
    }
    if &text != b"[io_uring]\0" {
        return 0;
    }
    refuse(session, rule, route::IO_URING, 0, 0)
}

/// `socket_create(family, type, protocol, kern)`: a raw or packet socket of a
/// session process is refused with EPERM.
#[lsm(hook = "socket_create")]
pub(crate) fn socket_create(ctx: LsmContext) -> i32 {
    let (family, sock_type, kern, retval): (i32, i32, i32, i32) =
        (ctx.arg(0), ctx.arg(1), ctx.arg(3), ctx.arg(4));
    if retval != 0 {
        return crate::hooks::earlier(retval);
    }
    if kern != 0 {
        return 0;
    }
    let Some((session, is_root)) = tracked_session() else {
        return 0;
    };
    let (family, sock_type) = (family as u64, sock_type as u64);
    let Some(r) = socket_route(family, sock_type) else {
        return 0;
    };
    match enforce::route_pick(r as u8, rule_flags::DENY, is_root) {
        Some(rule) => refuse(
            session,
            rule,
            r,
            family as u16,
            (sock_type & SOCK_TYPE_MASK) as u16,
        ),
        None => 0,
    }
}

/// The exec of a file without a name in the file system (a memfd, a deleted file),
/// as a route record naming it (`memfd:NAME`, `<old path> (deleted)`), with the
/// `[sessions] fileless_exec` rule's verdict: `kill` kills (the program never runs
/// an instruction), `deny` refuses (BPF-LSM). Reported also when the rule only
/// logs or alerts (user space judges it), never when it allows (no rule).
#[inline(always)]
fn fileless_exec(bprm: *const core::ffi::c_void, lsm: bool) -> Result<i32, ()> {
    let (session, is_root) = tracked_session().ok_or(())?;
    let file = core_read::binprm_file(bprm);
    let how = core_read::file_fileless(file);
    if how == 0 {
        return Ok(0);
    }
    if enforce::route_rule(route::FILELESS_EXEC as u8).access == 0 {
        return Ok(0); // `fileless_exec = "allow"`
    }
    let verdict = if lsm {
        rule_flags::DENY
    } else if lsm_hook_runs(route::FILELESS_EXEC) {
        rule_flags::KILL
    } else {
        rule_flags::KILL | rule_flags::DENY
    };
    let picked = enforce::route_pick(route::FILELESS_EXEC as u8, verdict, is_root);
    if lsm && picked.is_none() {
        return Ok(0); // allowed here: sched_process_exec reports it
    }
    let mut draft = Draft::begin(EventKind::Route, 0, session, who()).ok_or(())?;
    let n = if how == 1 {
        core_read::dentry_name(
            core_read::file_dentry(file),
            draft.payload_ptr::<RouteBody>(0),
            253,
        )
    } else {
        const DELETED: &[u8; 10] = b" (deleted)";
        let pbuf = PATH_SCRATCH.get_ptr_mut(0).ok_or(())?.cast::<u8>();
        let end = PATH_END - DELETED.len() as u32;
        let walk = core_read::file_path(file, pbuf, end, PATH_DEPTH as u32);
        if walk & WALK_TRUNCATED != 0 {
            draft.header().flags |= flags::PATH_TRUNCATED;
        }
        // SAFETY: PATH_END < the scratch's size.
        unsafe {
            core::ptr::copy_nonoverlapping(DELETED.as_ptr(), pbuf.add(end as usize), 10);
        }
        let mut n = PATH_END.saturating_sub(walk & !WALK_TRUNCATED);
        if n > PATH_MAX as u32 {
            draft.header().flags |= flags::PATH_TRUNCATED;
        }
        n = n.min(PATH_MAX as u32) & guard_common::PATH_LEN_MASK;
        let src = PATH_END - n;
        // SAFETY: both regions are bounded by masks the verifier tracks.
        unsafe {
            let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                draft.payload_ptr::<RouteBody>(0).cast(),
                n,
                pbuf.add((src & PATH_MASK) as usize).cast(),
            );
        }
        n
    };
    let (rule, ret, verdict) = match picked {
        Some(rule) if lsm => (
            ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED,
            -i64::from(EPERM),
            -EPERM,
        ),
        Some(rule) => (enforce::kill_for(rule), 0, 0),
        None => (0, 0, 0),
    };
    draft.header().rule = rule;
    draft.body(RouteBody {
        ret,
        route: route::FILELESS_EXEC,
        family: 0,
        sock_type: 0,
        ..RouteBody::default()
    });
    draft.submit::<RouteBody>(n);
    Ok(verdict)
}

/// `sched_process_exec(task, old_pid, bprm)`: a fileless program is killed before
/// its first instruction (`kill`), and reported.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub(crate) fn route_exec(ctx: RawTracePointContext) -> i32 {
    let bprm = ctx.arg::<u64>(2) as *const core::ffi::c_void;
    let _ = fileless_exec(bprm, false);
    // Downloads' execs (fetched.rs): this program runs before the exec program.
    crate::fetched::at_exec(bprm);
    0
}

/// `bprm_check_security(bprm)`: a fileless program is refused (`deny`).
#[lsm(hook = "bprm_check_security")]
pub(crate) fn route_bprm_check(ctx: LsmContext) -> i32 {
    let (bprm, retval): (*const core::ffi::c_void, i32) = (ctx.arg(0), ctx.arg(1));
    if retval != 0 {
        return crate::hooks::earlier(retval);
    }
    // Err: not a session process, or nothing to refuse.
    fileless_exec(bprm, true).unwrap_or_default()
}

/// `SOCK_STREAM`.
const SOCK_STREAM: u32 = 1;

/// Whether `addr` (network order; 4 bytes used for IPv4) is a loopback address:
/// 127.0.0.0/8, `::1`, or 127.0.0.0/8 mapped into IPv6.
#[inline(always)]
fn loopback(v6: bool, addr: &[u8; 16]) -> bool {
    if !v6 {
        return addr[0] == 127;
    }
    let zero_to = |n: usize| addr[..n].iter().all(|b| *b == 0);
    (zero_to(15) && addr[15] == 1)
        || (zero_to(10) && addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127)
}

/// `bind(2)` of an IPv4 or IPv6 socket by a session process: a TCP socket, or a
/// UDP socket bound to a port, on an address that is not a loopback one listens
/// beyond the host ([`route::LISTEN`]). The `[sessions] listen` rule refuses it
/// (`deny`, and `kill` too: EPERM, on every tier) or has it reported
/// (`log`, `alert`). A TCP socket it may bind gets its flow storage (flow.rs): the
/// connections it accepts are counted as the session's.
#[inline(always)]
fn at_bind(ctx: &SockAddrContext, v6: bool) -> i32 {
    const ALLOW: i32 = 1;
    const DENY: i32 = 0;
    let Some((session, who)) = tracked_session() else {
        return ALLOW;
    };
    let d = crate::net::dest(ctx, v6);
    let mut body = RouteBody {
        route: route::LISTEN,
        family: d.family,
        sock_type: d.sock_type,
        addr: d.addr,
        port: d.port,
        ..RouteBody::default()
    };
    let stream = u32::from(d.sock_type) == SOCK_STREAM;
    let beyond = (stream || body.port != 0) && !loopback(v6, &body.addr);
    // The rule, when the policy does not allow the route (`listen = "allow"`).
    let ruled = beyond && enforce::route_rule(route::LISTEN as u8).access != 0;
    // Refused (`kill` too: a cgroup hook cannot signal on every kernel, 6.1's has
    // no bpf_send_signal); else logged or alerted on by user space.
    let refused = if ruled {
        enforce::route_pick(
            route::LISTEN as u8,
            rule_flags::DENY | rule_flags::KILL,
            who,
        )
    } else {
        None
    };
    if refused.is_none() && stream {
        crate::flow::tag_listener(ctx, session, who);
    }
    if ruled {
        let rule = refused.map_or(0, |rule| {
            body.ret = -i64::from(EPERM);
            ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED
        });
        report_bind(session, who, rule, body);
    }
    if refused.is_some() { DENY } else { ALLOW }
}

#[repr(C)]
struct RouteRecord {
    header: guard_common::Header,
    body: RouteBody,
}

/// A `listen` route record, written straight to the ring buffer: a cgroup hook
/// cannot go through `emit::Draft`, whose session budget may signal (6.1 has no
/// bpf_send_signal for cgroup programs). A refusal wakes the daemon.
#[inline(always)]
fn report_bind(session: u64, who: u32, rule: u16, body: RouteBody) {
    let Some(mut entry) = crate::maps::EVENTS.reserve::<RouteRecord>(0) else {
        crate::maps::count(guard_common::counter::lost(EventKind::Route as u16));
        return;
    };
    // SAFETY: helper without arguments.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() };
    let mut header = crate::flow::current_header(EventKind::Route, session, who, now);
    header.rule = rule;
    entry.write(RouteRecord { header, body });
    entry.submit(0);
}

#[cgroup_sock_addr(bind4)]
pub(crate) fn bind4(ctx: SockAddrContext) -> i32 {
    at_bind(&ctx, false)
}

#[cgroup_sock_addr(bind6)]
pub(crate) fn bind6(ctx: SockAddrContext) -> i32 {
    at_bind(&ctx, true)
}
