//! DNS under the policy: a tracked process's connect or send to port 53, at any
//! address, is pointed at guard's resolver in its network namespace (a loopback
//! port the daemon listens on, `DNS_STUB`), which answers only the names the policy
//! allows. The destination as given is kept by socket cookie (`DNS_ORIG`), so that
//! answers read back (`recvmsg`) and the socket's peer (`getpeername`) seem to come
//! from it: resolvers check that an answer comes from the server they asked.
//!
//! Where no resolver of guard's runs in the process's namespace (yet: the daemon
//! starts one when it sees a session there), the policy decides: refused with EPERM
//! under a rule (`dns_stub::MISS_RULE`) where names are an allowlist, else the
//! query goes where it was sent. A namespace the daemon found isolated (no
//! interface but `lo`) keeps its DNS: nothing it sends leaves the host.

use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie, macros::cgroup_sock_addr, programs::SockAddrContext,
};
use guard_common::{AF_INET6, DnsOrig, NetBody, dns_stub};

use crate::{
    core_read,
    emit::current_ids,
    maps::{DNS_CONFIG, DNS_ORIG, DNS_STUB, is_tracked},
};

/// What becomes of a tracked process's DNS connect or send.
pub(crate) enum Redirect {
    /// Pointed at guard's resolver: the `FlowSock::dns` value to tag the socket
    /// with (the resolver's port and how it forwards).
    To { tag: u32 },
    /// Refused with EPERM under this rule (index plus one).
    Refuse(u16),
    /// Left as it is.
    Pass,
}

/// 127.0.0.1 as `bpf_sock_addr::user_ip4` holds it (network order in memory).
const LOOPBACK4: u32 = u32::from_ne_bytes([127, 0, 0, 1]);
/// The last word of ::1 as `user_ip6` holds it.
const LOOPBACK6_LAST: u32 = u32::from_ne_bytes([0, 0, 0, 1]);
/// The third word of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
const MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

#[inline(always)]
fn config(slot: u32) -> u32 {
    DNS_CONFIG.get(slot).copied().unwrap_or(0)
}

/// Whether the IPv6 destination `body` is an IPv4-mapped address (word by word:
/// a slice compare would be a `memcmp` call, which BPF has not).
#[inline(always)]
fn mapped(body: &NetBody) -> bool {
    let a = &body.addr;
    let word = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    word(0) == 0 && word(4) == 0 && word(8) == MAPPED
}

/// Whether sessions' DNS goes to guard's resolver and network namespace `netns` has
/// no entry yet (no resolver, nor found isolated): an exec there wakes the daemon.
#[inline(always)]
pub(crate) fn unserved(netns: u32) -> bool {
    // SAFETY: presence check only.
    config(dns_stub::ON) != 0 && unsafe { DNS_STUB.get(netns) }.is_none()
}

/// Decides a tracked process's connect or send to `body` (port 53), and points the
/// call at guard's resolver when that is the decision. `allowed`: the network rules
/// let the process reach `body` itself.
#[inline(always)]
pub(crate) fn redirect(ctx: &SockAddrContext, body: &NetBody, allowed: bool) -> Redirect {
    if config(dns_stub::ON) == 0 {
        return Redirect::Pass;
    }
    let miss = || match config(dns_stub::MISS_RULE) {
        0 => Redirect::Pass,
        rule => Redirect::Refuse(rule as u16),
    };
    let netns = core_read::net_ns(core_read::current());
    // SAFETY: read-only copy of the map value.
    let Some(stub) = (unsafe { DNS_STUB.get(netns) }).copied() else {
        return miss();
    };
    if stub.flags & dns_stub::ISOLATED != 0 {
        return Redirect::Pass;
    }
    let v6 = body.family == AF_INET6 && !mapped(body);
    let port = if v6 { stub.port6 } else { stub.port4 };
    if port == 0 {
        return miss();
    }
    // SAFETY: sock_addr programs may read their socket's cookie.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let orig = DnsOrig {
        addr: body.addr,
        family: body.family,
        port: body.port,
        stub_port: port,
        allowed: u8::from(allowed),
        _reserved: 0,
    };
    // Without the original destination the answers could not be given back its
    // address: the call is refused rather than sent elsewhere unrecorded.
    if DNS_ORIG.insert(cookie, orig, 0).is_err() {
        return miss();
    }
    // SAFETY: the kernel hands sock_addr programs a valid, writable context.
    let sa = unsafe { &mut *ctx.sock_addr };
    if body.family == AF_INET6 {
        sa.user_ip6 = if v6 {
            [0, 0, 0, LOOPBACK6_LAST]
        } else {
            [0, 0, MAPPED, LOOPBACK4]
        };
    } else {
        sa.user_ip4 = LOOPBACK4;
    }
    sa.user_port = u32::from(port.to_be());
    let mut tag = u32::from(port) | guard_common::FlowSock::DNS_REDIRECTED;
    if allowed {
        tag |= guard_common::FlowSock::DNS_ALLOWED;
    }
    Redirect::To { tag }
}

/// Gives a redirected socket's answers (`recvmsg`) or peer (`getpeername`) the
/// address it sent to: the context names guard's resolver.
#[inline(always)]
fn restore(ctx: &SockAddrContext, v6: bool) {
    let (tgid, _) = current_ids();
    // Every other process stops at this one lookup.
    if !is_tracked(tgid) {
        return;
    }
    // SAFETY: sock_addr programs may read their socket's cookie.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // SAFETY: read-only copy of the map value.
    let Some(orig) = (unsafe { DNS_ORIG.get(cookie) }).copied() else {
        return;
    };
    // SAFETY: the kernel hands sock_addr programs a valid, writable context.
    let sa = unsafe { &mut *ctx.sock_addr };
    if u16::from_be(sa.user_port as u16) != orig.stub_port {
        return;
    }
    if v6 {
        let (w2, w3) = (sa.user_ip6[2], sa.user_ip6[3]);
        let from_stub = sa.user_ip6[0] == 0
            && sa.user_ip6[1] == 0
            && ((w2 == 0 && w3 == LOOPBACK6_LAST) || (w2 == MAPPED && w3 == LOOPBACK4));
        if !from_stub {
            return;
        }
        let mut words = [0u32; 4];
        if orig.family == AF_INET6 {
            for (i, w) in words.iter_mut().enumerate() {
                *w = u32::from_ne_bytes([
                    orig.addr[i * 4],
                    orig.addr[i * 4 + 1],
                    orig.addr[i * 4 + 2],
                    orig.addr[i * 4 + 3],
                ]);
            }
        } else {
            words[2] = MAPPED;
            words[3] = u32::from_ne_bytes([orig.addr[0], orig.addr[1], orig.addr[2], orig.addr[3]]);
        }
        sa.user_ip6 = words;
    } else {
        if sa.user_ip4 != LOOPBACK4 {
            return;
        }
        sa.user_ip4 = u32::from_ne_bytes([orig.addr[0], orig.addr[1], orig.addr[2], orig.addr[3]]);
    }
    sa.user_port = u32::from(orig.port.to_be());
}

/// sock_addr programs return 1 to let the call go on.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(recvmsg4)]
pub(crate) fn recvmsg4(ctx: SockAddrContext) -> i32 {
    restore(&ctx, false);
    ALLOW
}

#[cgroup_sock_addr(recvmsg6)]
pub(crate) fn recvmsg6(ctx: SockAddrContext) -> i32 {
    restore(&ctx, true);
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub(crate) fn getpeername4(ctx: SockAddrContext) -> i32 {
    restore(&ctx, false);
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub(crate) fn getpeername6(ctx: SockAddrContext) -> i32 {
    restore(&ctx, true);
    ALLOW
}
