//! Egress accounting: bytes per socket of the sockets tracked processes use.
//!
//! - Tagging: when a tracked process connects a socket, or sends a datagram to an
//!   explicit address, and the sock_addr hook (`net.rs`) lets it through, the socket
//!   gets socket-local storage in [`FLOW_SOCKS`]: the session and process that
//!   tagged it (a record header), the destination, zero counts. The storage belongs
//!   to the socket, not to the process: a socket passed to or inherited by another
//!   process keeps its attribution, and the kernel frees the storage with the socket.
//! - Counting: two cgroup_skb programs on the cgroup2 root see every IP packet of
//!   every socket of the host, egress and ingress. A packet of a socket without
//!   storage (every socket outside sessions) costs the skb's socket pointer, one
//!   `bpf_sk_fullsock` and one `bpf_sk_storage_get` that finds the socket's storage
//!   list empty: a pointer test, no hash. A tagged socket's packet adds `skb->len`
//!   (the IP packet: IP and transport headers included; a TSO/GSO batch is one skb)
//!   to its counts with atomic adds.
//! - Reporting: a [`guard_common::EventKind::Flow`] record with the flow's totals
//!   when the socket is released (cgroup `sock_release`: its last descriptor
//!   closed), when a tracked process points it at another destination, and, for a
//!   long-lived flow, at its first packet at least `flow::REPORT_NS` after its
//!   previous record.
//! - DNS: a packet of a tagged socket whose destination port is 53 (UDP or TCP)
//!   also goes to user space as a [`guard_common::EventKind::Dns`] record with up to
//!   [`guard_common::DNS_PAYLOAD_MAX`] bytes of its transport payload (queries
//!   out, answers in): user space names the session's destinations from the
//!   answers and watches the queries (volume, tunnelling). Untagged sockets never
//!   get here; tagged sockets to other ports pay one compare.

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_xadd},
    ptr,
};

use aya_ebpf::{
    bindings::{
        BPF_F_CLONE, BPF_F_NO_PREALLOC, BPF_RB_NO_WAKEUP, BPF_SK_STORAGE_GET_F_CREATE,
        BPF_TCP_LISTEN, bpf_map_type::BPF_MAP_TYPE_SK_STORAGE, bpf_sock,
    },
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns,
        generated::{
            bpf_get_socket_cookie, bpf_sk_fullsock, bpf_sk_storage_get, bpf_skb_load_bytes,
        },
    },
    macros::{btf_map, cgroup_skb, cgroup_sock},
    programs::{SkBuffContext, SockAddrContext, SockContext},
};
use guard_common::{
    DNS_PAYLOAD_MAX, DNS_PORT, DnsBody, DnsOrig, EventKind, FlowBody, FlowSock, Header, NetBody,
    StubPeer, counter, dns, flow, stub_peer_key,
};

use crate::maps::{EVENTS, STUB_PEERS, count};

/// Socket-local storage as aya's `SkStorage` defines it, with `BPF_F_CLONE`: a
/// listening socket's storage is copied to each connection it accepts (the kernel
/// clones it with the socket). aya's type fixes the flags to `BPF_F_NO_PREALLOC`;
/// the fields are the BTF map definition libbpf and aya read.
#[repr(C)]
pub(crate) struct CloneSkStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; (BPF_F_NO_PREALLOC | BPF_F_CLONE) as usize],
}

// SAFETY: placeholder pointers the loader patches; never dereferenced.
unsafe impl<T> Sync for CloneSkStorage<T> {}

impl<T> CloneSkStorage<T> {
    const fn new() -> Self {
        Self {
            r#type: ptr::null(),
            key: ptr::null(),
            value: ptr::null(),
            max_entries: ptr::null(),
            map_flags: ptr::null(),
        }
    }
}

/// Socket-local storage of the sockets tracked processes connected or sent on,
/// and of the TCP sockets they bound (cloned to the connections accepted).
#[btf_map]
pub(crate) static FLOW_SOCKS: CloneSkStorage<FlowSock> = CloneSkStorage::new();

/// cgroup_skb verdict: let the packet through (accounting never drops).
const PASS: i32 = 1;
/// cgroup_skb verdict: drop the packet (egress: the send fails with EPERM).
const DROP: i32 = 0;

#[repr(C)]
struct FlowRecord {
    header: Header,
    body: FlowBody,
}

#[inline(always)]
fn map_ptr() -> *mut c_void {
    // The helpers take the map definition's address (what aya's own accessors pass).
    ptr::addr_of!(FLOW_SOCKS).cast_mut().cast()
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Tags the socket of a connect or send a sock_addr hook let through for a tracked
/// process of `session`. A socket already tagged for the same destination keeps
/// its flow; for another destination, the old flow's final record goes first.
/// `refuse`, for a connect of a UDP socket: the `rule` field its sends are refused
/// with (non-zero), or none (0), replacing what an earlier connect set; sends
/// (`None`) leave it as it is.
#[inline(always)]
pub(crate) fn tag(
    ctx: &SockAddrContext,
    dest: &NetBody,
    session: u64,
    who: u32,
    dns: u32,
    refuse: Option<u16>,
) {
    let Some(st) = storage(ctx) else {
        return;
    };
    // A socket bound to listen, then connected: a client after all.
    st.listen = 0;
    let now = now_ns();
    // The resolver a DNS socket is pointed at, whether it was before or not.
    st.dns = dns;
    if let Some(refuse) = refuse {
        st.refuse = u32::from(refuse);
    }
    if st.body.start_ns != 0 {
        if st.body.family == dest.family && st.body.port == dest.port && st.body.addr == dest.addr {
            return;
        }
        report(st, flow::REDIRECT, now);
    }
    set_header(st, session, who, now);
    st.body = FlowBody {
        addr: dest.addr,
        start_ns: now,
        // SAFETY: sock_addr programs may read their socket's cookie.
        cookie: unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) },
        family: dest.family,
        port: dest.port,
        sock_type: dest.sock_type,
        protocol: dest.protocol,
        ..FlowBody::default()
    };
    st.reported_ns = now;
    st.reported_bytes = 0;
    if st.refuse != 0 {
        // Nothing will flow: no flow to report. The header and destination stay
        // for the refused send's record.
        st.body.start_ns = 0;
        st.reported_ns = u64::MAX;
    }
}

/// The socket storage of a sock_addr hook's socket, created zeroed if it has
/// none; `None` (counted as a lost flow) when the kernel has no room.
#[inline(always)]
fn storage(ctx: &SockAddrContext) -> Option<&'static mut FlowSock> {
    // SAFETY: the kernel hands sock_addr programs a valid context whose `sk` is a
    // full socket.
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    // SAFETY: the map is socket storage of `FlowSock` values, zeroed at creation.
    let st = unsafe {
        bpf_sk_storage_get(
            map_ptr(),
            sk.cast(),
            ptr::null_mut(),
            u64::from(BPF_SK_STORAGE_GET_F_CREATE),
        )
    }
    .cast::<FlowSock>();
    if st.is_null() {
        count(counter::lost(EventKind::Flow as u16));
        return None;
    }
    // SAFETY: non-null storage of this socket, valid for this program run.
    Some(unsafe { &mut *st })
}

/// Tags a TCP socket a tracked process of `session` (`who`: its `Tracked::flags`)
/// may bind: no flow of its own (a listener moves no data), but the kernel clones
/// the storage to each connection the socket accepts, whose first packet makes it
/// a flow of the session ([`accepted`]).
#[inline(always)]
pub(crate) fn tag_listener(ctx: &SockAddrContext, session: u64, who: u32) {
    let Some(st) = storage(ctx) else {
        return;
    };
    set_header(st, session, who, now_ns());
    st.body = FlowBody::default();
    st.listen = FlowSock::LISTENER;
    st.dns = 0;
    st.refuse = 0;
    // No record until a connection accepted from it moves data.
    st.reported_ns = u64::MAX;
    st.reported_bytes = 0;
}

/// The first packet of a connection a session's listening socket accepted (its
/// storage, cloned from the listener's): the flow starts, to the peer.
#[inline(always)]
fn accepted(ctx: &SkBuffContext, st: &mut FlowSock, sk: *const bpf_sock) {
    // SAFETY: a full socket's fields, readable by cgroup_skb programs: each one
    // load at a constant offset from the socket (the verifier allows no pointer
    // arithmetic on it, so no array copies).
    let (family, dst_ip4, dst_port) = unsafe { ((*sk).family, (*sk).dst_ip4, (*sk).dst_port) };
    // SAFETY: as above.
    let dst_ip6 = unsafe {
        [
            ptr::read_volatile(&raw const (*sk).dst_ip6[0]),
            ptr::read_volatile(&raw const (*sk).dst_ip6[1]),
            ptr::read_volatile(&raw const (*sk).dst_ip6[2]),
            ptr::read_volatile(&raw const (*sk).dst_ip6[3]),
        ]
    };
    let mut addr = [0u8; 16];
    if family == u32::from(guard_common::AF_INET6) {
        for (i, w) in dst_ip6.iter().enumerate() {
            addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    } else {
        addr[..4].copy_from_slice(&dst_ip4.to_ne_bytes());
    }
    let now = now_ns();
    st.listen = FlowSock::ACCEPTED;
    st.header.ts_ns = now;
    st.body = FlowBody {
        addr,
        start_ns: now,
        // SAFETY: cgroup_skb programs may read their packet's socket cookie.
        cookie: unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) },
        family: family as u16,
        port: u16::from_be(dst_port),
        sock_type: 1,
        protocol: 6,
        flags: flow::ACCEPTED,
        ..FlowBody::default()
    };
    st.reported_ns = now;
    st.reported_bytes = 0;
}

/// The header of the records of `st`'s flows: the current process (of `session`;
/// `who`: its `Tracked::flags`) as the one that tagged the socket, at `now`.
#[inline(always)]
fn set_header(st: &mut FlowSock, session: u64, who: u32, now: u64) {
    st.header = current_header(EventKind::Flow, session, who, now);
}

/// A record's header for the current process (of `session`; `who`: its
/// `Tracked::flags`) at `now`, built with the helpers cgroup programs may call
/// (`emit::Draft` may signal, which they may not on every kernel).
#[inline(always)]
pub(crate) fn current_header(kind: EventKind, session: u64, who: u32, now: u64) -> Header {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let mut header = Header {
        kind: kind as u16,
        // A flow of a tainted process is reported as tainted.
        flags: if who & guard_common::TAINTED != 0 {
            guard_common::flags::TAINTED
        } else {
            0
        },
        payload_len: 0,
        ts_ns: now,
        session,
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        // bpf_get_current_task is a base helper for a loader with CAP_PERFMON (root).
        ppid: crate::core_read::ppid(crate::core_read::current()),
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        rule: 0,
        role: u16::from(guard_common::role::reported(who)),
        comm: [0; 16],
    };
    // The program's name, not the thread's (`tokio-rt-worker`): the flow's last
    // record often comes after the process's exit, when user space can no longer
    // name the program from its exec.
    crate::core_read::leader_comm(crate::core_read::current(), &mut header.comm);
    header
}

#[repr(C)]
struct SendRecord {
    header: Header,
    body: NetBody,
}

/// Reports the first send of a socket its connect's destination refuses, as the
/// `send` the sock_addr hooks never see (a connected UDP socket's): the rule, the
/// destination, EPERM.
#[inline(always)]
fn report_refused(st: &FlowSock) {
    let Some(mut entry) = EVENTS.reserve::<SendRecord>(0) else {
        count(counter::lost(EventKind::Send as u16));
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reserved ring-buffer slot of SendRecord's size; `st` is
    // this socket's storage.
    unsafe {
        ptr::copy_nonoverlapping(&raw const st.header, &raw mut (*record).header, 1);
        (*record).header.kind = EventKind::Send as u16;
        (*record).header.ts_ns = now_ns();
        (*record).header.payload_len = 0;
        (*record).header.rule = st.refuse as u16;
        (*record).body = NetBody {
            addr: st.body.addr,
            // -EPERM: what the send returned.
            ret: -1,
            family: st.body.family,
            port: st.body.port,
            sock_type: st.body.sock_type,
            protocol: st.body.protocol,
        };
    }
    // A refusal wakes the daemon: it is a violation.
    entry.submit(0);
}

/// Sends the flow's record with its totals as of now.
#[inline(always)]
fn report(st: &mut FlowSock, reason: u32, now: u64) {
    let Some(mut entry) = EVENTS.reserve::<FlowRecord>(0) else {
        count(counter::lost(EventKind::Flow as u16));
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reserved ring-buffer slot of FlowRecord's size; `st` is
    // this socket's storage.
    unsafe {
        ptr::copy_nonoverlapping(&raw const st.header, &raw mut (*record).header, 1);
        (*record).header.kind = EventKind::Flow as u16;
        (*record).header.ts_ns = now;
        (*record).header.payload_len = 0;
        ptr::copy_nonoverlapping(&raw const st.body, &raw mut (*record).body, 1);
        (*record).body.reason = reason;
    }
    // The daemon reads flows at its drain beat; nothing here needs a prompt wake-up.
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    st.reported_bytes = st.body.bytes_out.wrapping_add(st.body.bytes_in);
}

#[repr(C)]
struct DnsRecord {
    header: Header,
    body: DnsBody,
    payload: [u8; DNS_PAYLOAD_MAX],
}

/// Copies a DNS packet's transport payload (the message, cut to
/// [`DNS_PAYLOAD_MAX`]) to user space with the flow's header.
#[inline(always)]
fn dns_record(ctx: &SkBuffContext, st: &FlowSock, egress: bool, len: u32) {
    // cgroup_skb programs see the packet from its network header on.
    let Ok(first) = ctx.load::<u8>(0) else {
        count(counter::DNS_UNREAD);
        return;
    };
    let mut off: u32 = match first >> 4 {
        4 => u32::from(first & 0x0f) * 4,
        // Extension headers are not followed: such packets are counted, not read.
        6 => 40,
        _ => {
            count(counter::DNS_UNREAD);
            return;
        }
    };
    if st.body.sock_type == 1 {
        // TCP: the data offset (header length in words) is the high nibble of byte 12.
        let Ok(doff) = ctx.load::<u8>(off as usize + 12) else {
            count(counter::DNS_UNREAD);
            return;
        };
        off += u32::from(doff >> 4) * 4;
    } else {
        off += 8;
    }
    if len <= off {
        // A bare TCP segment (handshake, ACK): no DNS bytes.
        return;
    }
    // Opaque to LLVM, so that the zero test below stays: the verifier cannot relate
    // `len` and `off`, and refuses a load whose size may be zero.
    let whole = core::hint::black_box(len - off);
    if whole == 0 {
        return;
    }
    let mut n = whole;
    if n > DNS_PAYLOAD_MAX as u32 {
        n = DNS_PAYLOAD_MAX as u32;
    }
    // 1..=DNS_PAYLOAD_MAX in a form every verifier reads off the instructions (Linux
    // 6.1 refuses a load whose size may be zero, and does not carry the tests above
    // over to the copy of `n` it checks): opaque to LLVM, so the mask stays.
    let n = (core::hint::black_box(n).wrapping_sub(1) & (DNS_PAYLOAD_MAX as u32 - 1)) + 1;
    let Some(mut entry) = EVENTS.reserve::<DnsRecord>(0) else {
        count(counter::lost(EventKind::Dns as u16));
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reserved ring-buffer slot of DnsRecord's size; `n` is
    // 1..=DNS_PAYLOAD_MAX, the payload array's size; the load reads the context's
    // packet.
    let loaded = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            off,
            (&raw mut (*record).payload).cast(),
            n,
        )
    };
    if loaded != 0 {
        entry.discard(0);
        count(counter::DNS_UNREAD);
        return;
    }
    // SAFETY: as above.
    unsafe {
        ptr::copy_nonoverlapping(&raw const st.header, &raw mut (*record).header, 1);
        (*record).header.kind = EventKind::Dns as u16;
        (*record).header.ts_ns = now_ns();
        (*record).header.payload_len = n;
        (*record).body = DnsBody {
            addr: st.body.addr,
            cookie: st.body.cookie,
            len: whole,
            family: st.body.family,
            port: st.body.port,
            sock_type: st.body.sock_type,
            direction: if egress { dns::OUT } else { dns::IN },
            flags: if st.dns & FlowSock::DNS_REDIRECTED != 0 {
                dns::VIA_RESOLVER
            } else {
                0
            },
        };
    }
    // Read at the drain beat, before the connect that follows the answer (the
    // ring buffer keeps their order).
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
}

/// Tells guard's resolver who sends the message it is about to get from local
/// port `port` of this redirected DNS socket: the packet leaves the socket here,
/// before the resolver can read it.
#[inline(always)]
fn stub_peer(st: &FlowSock, port: u32) {
    let peer = StubPeer {
        session: st.header.session,
        pid: st.header.pid,
        role: st.header.role,
        flags: st.header.flags,
        orig: DnsOrig {
            addr: st.body.addr,
            family: st.body.family,
            port: st.body.port,
            stub_port: st.dns as u16,
            allowed: u8::from(st.dns & FlowSock::DNS_ALLOWED != 0),
            _reserved: 0,
        },
    };
    let key = stub_peer_key(st.body.protocol, port as u16);
    let _ = STUB_PEERS.insert(key, peer, 0);
}

/// An atomic add (BPF `lock xadd`): two CPUs may count packets of one socket at
/// once (UDP sends from several threads, ingress on several queues). `core` offers no
/// `AtomicU64::fetch_add` on the BPF target (it has no compare-and-swap), so the
/// intrinsic: an add whose result is unused is the oldest BPF atomic, on every kernel.
#[inline(always)]
fn add(counter: &mut u64, n: u64) {
    // SAFETY: a u64 in socket storage, 8-aligned, valid for this program run.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, n) };
}

/// Counts one packet of the skb's socket if the socket is tagged; false when the
/// packet must be dropped (a send its socket's connect refused).
#[inline(always)]
fn account(ctx: &SkBuffContext, egress: bool) -> bool {
    let skb = ctx.skb.skb;
    // SAFETY: `sk` is a readable field of the cgroup_skb context (may be null).
    let sk: *mut bpf_sock = unsafe { (*skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return true;
    }
    // SAFETY: helper on the context's socket pointer, checked for null above.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return true;
    }
    // SAFETY: a full socket; no creation (flags 0): a miss for untagged sockets.
    let st = unsafe { bpf_sk_storage_get(map_ptr(), full.cast(), ptr::null_mut(), 0) }
        .cast::<FlowSock>();
    if st.is_null() {
        return true;
    }
    // SAFETY: non-null storage of this socket, valid for this program run.
    let st = unsafe { &mut *st };
    if st.listen == FlowSock::LISTENER {
        // SAFETY: a full socket's field.
        if unsafe { (*full).state } == BPF_TCP_LISTEN {
            return true; // the listener's own packets (SYNs): no flow
        }
        accepted(ctx, st, full);
    }
    if egress && st.refuse != 0 {
        // A UDP socket connected to a refused destination: nothing it sends leaves.
        if st.refuse & FlowSock::REFUSE_REPORTED == 0 {
            st.refuse |= FlowSock::REFUSE_REPORTED;
            report_refused(st);
        }
        return false;
    }
    // SAFETY: context field read.
    let len = u64::from(unsafe { (*skb).len });
    if egress {
        add(&mut st.body.bytes_out, len);
        add(&mut st.body.packets_out, 1);
    } else {
        add(&mut st.body.bytes_in, len);
        add(&mut st.body.packets_in, 1);
    }
    if st.body.port == DNS_PORT {
        if egress && st.dns & FlowSock::DNS_REDIRECTED != 0 {
            // SAFETY: context field read.
            stub_peer(st, unsafe { (*skb).local_port });
        }
        // SAFETY: context field read.
        dns_record(ctx, st, egress, unsafe { (*skb).len });
    }
    let now = now_ns();
    // A released socket has `reported_ns` at u64::MAX: no more periodic records.
    if now.saturating_sub(st.reported_ns) >= flow::REPORT_NS {
        st.reported_ns = now;
        report(st, flow::PERIODIC, now);
    }
    true
}

#[cgroup_skb(egress)]
pub(crate) fn flow_egress(ctx: SkBuffContext) -> i32 {
    if account(&ctx, true) { PASS } else { DROP }
}

#[cgroup_skb(ingress)]
pub(crate) fn flow_ingress(ctx: SkBuffContext) -> i32 {
    account(&ctx, false);
    PASS
}

/// The socket's last descriptor closed: the flow's final record.
#[cgroup_sock(sock_release)]
pub(crate) fn flow_release(ctx: SockContext) -> i32 {
    // SAFETY: cgroup sock programs pass their context as the socket; no creation.
    let st = unsafe { bpf_sk_storage_get(map_ptr(), ctx.sock.cast(), ptr::null_mut(), 0) }
        .cast::<FlowSock>();
    if !st.is_null() {
        // SAFETY: non-null storage of this socket, valid for this program run.
        let st = unsafe { &mut *st };
        if st.body.start_ns != 0 && st.reported_ns != u64::MAX {
            report(st, flow::CLOSE, now_ns());
            st.reported_ns = u64::MAX;
        }
    }
    PASS
}
