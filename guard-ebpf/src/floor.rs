//! Empty programs on exactly guard's hooks, for `guard daemon --floor`: the cost a
//! benchmark measures with them attached is what the choice of hooks costs before
//! guard does any work (the floor guard's own overhead is measured against).

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, raw_tracepoint, tracepoint},
    programs::{
        RawTracePointContext, SkBuffContext, SockAddrContext, SockContext, TracePointContext,
    },
};

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub(crate) fn floor_raw(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The floor of a second program on a raw tracepoint that has one already
/// (`route_exec` on `sched_process_exec`): Linux 6.1 refuses to attach the same
/// program twice to one raw tracepoint (EEXIST).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub(crate) fn floor_raw_again(_ctx: RawTracePointContext) -> i32 {
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub(crate) fn floor_tp(_ctx: TracePointContext) -> u32 {
    0
}

#[cgroup_sock_addr(connect4)]
pub(crate) fn floor_connect4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(connect6)]
pub(crate) fn floor_connect6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(sendmsg4)]
pub(crate) fn floor_sendmsg4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub(crate) fn floor_sendmsg6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(bind4)]
pub(crate) fn floor_bind4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(bind6)]
pub(crate) fn floor_bind6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(recvmsg4)]
pub(crate) fn floor_recvmsg4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(recvmsg6)]
pub(crate) fn floor_recvmsg6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(getpeername4)]
pub(crate) fn floor_getpeername4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(getpeername6)]
pub(crate) fn floor_getpeername6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_skb(egress)]
pub(crate) fn floor_skb_egress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_skb(ingress)]
pub(crate) fn floor_skb_ingress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_sock(sock_release)]
pub(crate) fn floor_sock_release(_ctx: SockContext) -> i32 {
    1
}
