//! Every program guard loads, where it attaches, and what it is for: one table
//! that the loader ([`super::attach`]), the tier report ([`super::tiers`]) and the
//! floor benchmark ([`super::floor`]) all read. A program the object lacks, or a
//! table entry with no program, fails the unit test below that parses the embedded
//! object (no root needed).

use guard_common::route;

/// Where a program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `raw_tracepoint/<name>`.
    Raw(&'static str),
    /// `tracepoint/syscalls/<name>`, for each name (one program, several links).
    Syscalls(&'static [&'static str]),
    /// A cgroup `sock_addr` hook at the cgroup2 root (the program's section says
    /// which: connect4/6, sendmsg4/6, bind4/6, recvmsg4/6, getpeername4/6).
    SockAddr,
    /// `cgroup_skb` at the cgroup2 root, each way.
    SkbEgress,
    SkbIngress,
    /// cgroup `sock_release` at the cgroup2 root.
    SockRelease,
    /// `lsm/<hook>` (BPF-LSM).
    Lsm(&'static str),
}

impl Hook {
    /// Whether this is a BPF-LSM hook.
    pub fn is_lsm(self) -> bool {
        matches!(self, Self::Lsm(_))
    }
}

/// What a program is for, which decides what its failure costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Following processes (fork, exec, exit): without these guard cannot run, and
    /// the daemon fails to start, naming the program the kernel refused.
    Process,
    /// Open records and the kill at open.
    Opens,
    /// Connect and send records (the exits of the network system calls).
    NetEvents,
    /// The entries that note the names passed to connect and the sends (Unix
    /// domain sockets).
    Unix,
    /// A route around the hooks, refused (killed) at its system call's entry.
    Route(u32),
    /// cgroup `sock_addr`: network deny with EPERM.
    SockAddr,
    /// cgroup `sock_addr` `recvmsg` and `getpeername`: the answers of DNS the
    /// connect and send hooks pointed at guard's resolver seem to come from the
    /// server asked. All or none: without them no DNS is pointed there.
    DnsRestore,
    /// Byte accounting: all three programs, or none.
    Flows,
    /// BPF-LSM `file_open` and `bprm_check_security`: deny on opens and execs. The
    /// other BPF-LSM groups are attached only when these are.
    LsmOpenExec,
    /// A BPF-LSM self-protection hook, each on its own.
    LsmSelf,
    /// A BPF-LSM hook that refuses routes (bits of `ROUTE_HOOKS`).
    LsmRoute(&'static [u32]),
    /// The BPF-LSM `path_*` hooks (CONFIG_SECURITY_PATH): changes other than opens.
    LsmPaths,
    /// BPF-LSM `unix_stream_connect` and `unix_may_send`.
    LsmUnix,
    /// Self-protection on the tracepoint tier: attached only when the BPF-LSM hook
    /// named here is not (else the refusal would be followed by a kill).
    SelfFallback { unless_lsm: &'static str },
}

/// One program of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The program's name in the object.
    pub program: &'static str,
    pub hook: Hook,
    pub group: Group,
    /// Loaded in its place when the kernel refuses `program` (a hook whose
    /// arguments changed between kernel versions).
    pub alt: Option<&'static str>,
    /// Only the compat build has `program` (and attaches it; its floor too): the
    /// default build does that work elsewhere.
    pub compat_only: bool,
}

const fn e(program: &'static str, hook: Hook, group: Group) -> Entry {
    Entry {
        program,
        hook,
        group,
        alt: None,
        compat_only: false,
    }
}

/// [`e`] of a program only the compat build has.
const fn compat(program: &'static str, hook: Hook, group: Group) -> Entry {
    Entry {
        compat_only: true,
        ..e(program, hook, group)
    }
}

/// Self-protection groups on the tracepoint tier, by the BPF-LSM hook that covers
/// the same attempts where it runs.
const fn fallback(unless_lsm: &'static str) -> Group {
    Group::SelfFallback { unless_lsm }
}

/// The system calls that give a file another name and move no directory, entry and
/// exit.
const NAME_CHANGES: &[&str] = &[
    "sys_enter_link",
    "sys_exit_link",
    "sys_enter_linkat",
    "sys_exit_linkat",
    "sys_enter_unlink",
    "sys_exit_unlink",
];

/// The system calls that may move or remove a directory (`unlinkat` removes
/// directories too), entry and exit.
const TREE_CHANGES: &[&str] = &[
    "sys_enter_rename",
    "sys_exit_rename",
    "sys_enter_renameat",
    "sys_exit_renameat",
    "sys_enter_renameat2",
    "sys_exit_renameat2",
    "sys_enter_unlinkat",
    "sys_exit_unlinkat",
    "sys_enter_rmdir",
    "sys_exit_rmdir",
];

/// The system calls that change the mounts, entry and exit.
const MOUNT_CHANGES: &[&str] = &[
    "sys_enter_mount",
    "sys_exit_mount",
    "sys_enter_umount",
    "sys_exit_umount",
    "sys_enter_move_mount",
    "sys_exit_move_mount",
    "sys_enter_pivot_root",
    "sys_exit_pivot_root",
];

/// The table, in attach order: processes first (what everything else stands on).
pub const TABLE: &[Entry] = &[
    e(
        "sched_process_fork",
        Hook::Raw("sched_process_fork"),
        Group::Process,
    ),
    // Fileless execs, and downloads' execs held (`[sessions] run_downloaded`): a
    // second program on sched_process_exec, attached before the exec program so
    // that its holds come before the exec's record.
    e(
        "route_exec",
        Hook::Raw("sched_process_exec"),
        Group::Route(route::FILELESS_EXEC),
    ),
    e(
        "sched_process_exec",
        Hook::Raw("sched_process_exec"),
        Group::Process,
    ),
    e(
        "sched_process_exit",
        Hook::Raw("sched_process_exit"),
        Group::Process,
    ),
    // The directories the identity walk found clear stay clear only while no
    // directory moved, and the paths the file checks found clear only while no mount
    // changed (guard-ebpf's repeat.rs, enforce/): attached before every program that
    // judges a file, so that none of them remembers one while a change goes unseen.
    e("tree_change", Hook::Syscalls(TREE_CHANGES), Group::Opens),
    e("mounts_change", Hook::Syscalls(MOUNT_CHANGES), Group::Opens),
    // The compat build notes an open's arguments at its entry; the default build
    // reads them at the exit from the registers the call was entered with (guard-ebpf's
    // file.rs), so no program runs at an open's entry.
    compat(
        "sys_enter_openat",
        Hook::Syscalls(&["sys_enter_openat"]),
        Group::Opens,
    ),
    compat(
        "sys_enter_open",
        Hook::Syscalls(&["sys_enter_open"]),
        Group::Opens,
    ),
    compat(
        "sys_enter_creat",
        Hook::Syscalls(&["sys_enter_creat"]),
        Group::Opens,
    ),
    compat(
        "sys_enter_openat2",
        Hook::Syscalls(&["sys_enter_openat2"]),
        Group::Opens,
    ),
    e(
        "sys_exit_open",
        Hook::Syscalls(&[
            "sys_exit_openat",
            "sys_exit_open",
            "sys_exit_creat",
            "sys_exit_openat2",
        ]),
        Group::Opens,
    ),
    // Counted repeats of opens stand for the first only while no file got another
    // name (guard-ebpf's repeat.rs): before and after each such change.
    e("names_change", Hook::Syscalls(NAME_CHANGES), Group::Opens),
    e(
        "sys_exit_net",
        Hook::Syscalls(&[
            "sys_exit_connect",
            "sys_exit_sendto",
            "sys_exit_sendmsg",
            "sys_exit_sendmmsg",
        ]),
        Group::NetEvents,
    ),
    e(
        "sys_enter_io_uring_setup",
        Hook::Syscalls(&["sys_enter_io_uring_setup"]),
        Group::Route(route::IO_URING),
    ),
    e(
        "sys_enter_open_by_handle_at",
        Hook::Syscalls(&["sys_enter_open_by_handle_at"]),
        Group::Route(route::OPEN_BY_HANDLE),
    ),
    e(
        "sys_enter_socket",
        Hook::Syscalls(&["sys_enter_socket"]),
        Group::Route(route::RAW_SOCKET),
    ),
    e(
        "sys_enter_mmap",
        Hook::Syscalls(&["sys_enter_mmap"]),
        Group::Route(route::EXEC_MAPPING),
    ),
    e("connect4", Hook::SockAddr, Group::SockAddr),
    e("connect6", Hook::SockAddr, Group::SockAddr),
    e("sendmsg4", Hook::SockAddr, Group::SockAddr),
    e("sendmsg6", Hook::SockAddr, Group::SockAddr),
    // Listening beyond loopback (`[sessions] listen`), refused with EPERM; and the
    // flow storage of the TCP sockets sessions bind (their accepted connections'
    // bytes).
    e("bind4", Hook::SockAddr, Group::Route(route::LISTEN)),
    e("bind6", Hook::SockAddr, Group::Route(route::LISTEN)),
    e("recvmsg4", Hook::SockAddr, Group::DnsRestore),
    e("recvmsg6", Hook::SockAddr, Group::DnsRestore),
    e("getpeername4", Hook::SockAddr, Group::DnsRestore),
    e("getpeername6", Hook::SockAddr, Group::DnsRestore),
    e(
        "sys_enter_connect",
        Hook::Syscalls(&["sys_enter_connect"]),
        Group::Unix,
    ),
    e(
        "sys_enter_sendto",
        Hook::Syscalls(&["sys_enter_sendto"]),
        Group::Unix,
    ),
    e(
        "sys_enter_sendmsg",
        Hook::Syscalls(&["sys_enter_sendmsg"]),
        Group::Unix,
    ),
    e(
        "sys_enter_sendmmsg",
        Hook::Syscalls(&["sys_enter_sendmmsg"]),
        Group::Unix,
    ),
    e("flow_egress", Hook::SkbEgress, Group::Flows),
    e("flow_ingress", Hook::SkbIngress, Group::Flows),
    e("flow_release", Hook::SockRelease, Group::Flows),
    e("file_open", Hook::Lsm("file_open"), Group::LsmOpenExec),
    e(
        "bprm_check_security",
        Hook::Lsm("bprm_check_security"),
        Group::LsmOpenExec,
    ),
    e("task_kill", Hook::Lsm("task_kill"), Group::LsmSelf),
    e(
        "ptrace_access_check",
        Hook::Lsm("ptrace_access_check"),
        Group::LsmSelf,
    ),
    e("bpf", Hook::Lsm("bpf"), Group::LsmSelf),
    // The hook's arguments changed in 6.11: its other version.
    Entry {
        program: "perf_event_open",
        hook: Hook::Lsm("perf_event_open"),
        group: Group::LsmSelf,
        alt: Some("perf_event_open_1"),
        compat_only: false,
    },
    e("sb_umount", Hook::Lsm("sb_umount"), Group::LsmSelf),
    e(
        "file_send_sigiotask",
        Hook::Lsm("file_send_sigiotask"),
        Group::LsmSelf,
    ),
    e(
        "inode_init_security_anon",
        Hook::Lsm("inode_init_security_anon"),
        Group::LsmRoute(&[route::IO_URING]),
    ),
    e(
        "socket_create",
        Hook::Lsm("socket_create"),
        Group::LsmRoute(&[route::RAW_SOCKET, route::PACKET_SOCKET]),
    ),
    e(
        "route_bprm_check",
        Hook::Lsm("bprm_check_security"),
        Group::LsmRoute(&[route::FILELESS_EXEC]),
    ),
    e("path_mknod", Hook::Lsm("path_mknod"), Group::LsmPaths),
    e("path_mkdir", Hook::Lsm("path_mkdir"), Group::LsmPaths),
    e("path_rmdir", Hook::Lsm("path_rmdir"), Group::LsmPaths),
    e("path_unlink", Hook::Lsm("path_unlink"), Group::LsmPaths),
    e("path_symlink", Hook::Lsm("path_symlink"), Group::LsmPaths),
    e("path_link", Hook::Lsm("path_link"), Group::LsmPaths),
    // The hook gained `flags` in 5.19: its other version.
    Entry {
        program: "path_rename",
        hook: Hook::Lsm("path_rename"),
        group: Group::LsmPaths,
        alt: Some("path_rename_4"),
        compat_only: false,
    },
    e("path_truncate", Hook::Lsm("path_truncate"), Group::LsmPaths),
    e("path_chmod", Hook::Lsm("path_chmod"), Group::LsmPaths),
    e("path_chown", Hook::Lsm("path_chown"), Group::LsmPaths),
    e(
        "unix_stream_connect",
        Hook::Lsm("unix_stream_connect"),
        Group::LsmUnix,
    ),
    e("unix_may_send", Hook::Lsm("unix_may_send"), Group::LsmUnix),
    e(
        "tamper_signal",
        Hook::Syscalls(&[
            "sys_enter_kill",
            "sys_enter_tkill",
            "sys_enter_rt_sigqueueinfo",
        ]),
        fallback("task_kill"),
    ),
    e(
        "tamper_tgsignal",
        Hook::Syscalls(&["sys_enter_tgkill", "sys_enter_rt_tgsigqueueinfo"]),
        fallback("task_kill"),
    ),
    e(
        "tamper_pidfd_signal",
        Hook::Syscalls(&["sys_enter_pidfd_send_signal"]),
        fallback("task_kill"),
    ),
    e(
        "tamper_ptrace",
        Hook::Syscalls(&["sys_enter_ptrace"]),
        fallback("ptrace_access_check"),
    ),
    e(
        "tamper_process_vm",
        Hook::Syscalls(&["sys_enter_process_vm_readv", "sys_enter_process_vm_writev"]),
        fallback("ptrace_access_check"),
    ),
    e(
        "tamper_pidfd_getfd",
        Hook::Syscalls(&["sys_enter_pidfd_getfd"]),
        fallback("ptrace_access_check"),
    ),
    e(
        "tamper_bpf",
        Hook::Syscalls(&["sys_enter_bpf"]),
        fallback("bpf"),
    ),
    e(
        "tamper_perf",
        Hook::Syscalls(&["sys_enter_perf_event_open"]),
        fallback("perf_event_open"),
    ),
    // F_SETOWN has no BPF-LSM hook that can refuse it (file_set_fowner returns
    // nothing): where BPF-LSM runs, the signals themselves are refused when sent
    // (file_send_sigiotask), and this tracepoint is not attached (it would cost
    // every fcntl(2) on the host: measured on a loaded VM, 3.4 -> 8.1 us a call).
    e(
        "tamper_fcntl",
        Hook::Syscalls(&["sys_enter_fcntl"]),
        fallback("file_send_sigiotask"),
    ),
];

/// The self-protection groups, by the BPF-LSM hook that carries each where it
/// runs (the `self_protection` row's parts): each has tracepoint fallbacks.
pub fn self_protection_groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = TABLE
        .iter()
        .filter_map(|e| match e.group {
            Group::SelfFallback { unless_lsm } => Some(unless_lsm),
            _ => None,
        })
        .collect();
    groups.dedup();
    groups
}

/// Syscall tracepoints whose absence on an architecture is no error (open(2) and
/// creat(2) do not exist everywhere).
pub fn optional_tracepoint(tp: &str) -> bool {
    matches!(
        tp,
        "sys_enter_open"
            | "sys_enter_creat"
            | "sys_exit_open"
            | "sys_exit_creat"
            | "sys_enter_rename"
            | "sys_exit_rename"
            | "sys_enter_link"
            | "sys_exit_link"
            | "sys_enter_unlink"
            | "sys_exit_unlink"
            | "sys_enter_rmdir"
            | "sys_exit_rmdir"
    )
}

/// The empty program of `guard daemon --floor` on `hook` (guard-ebpf's floor.rs);
/// `None` for the BPF-LSM hooks (the floor is measured where they do not load).
pub fn floor_program(entry: &Entry) -> Option<&'static str> {
    Some(match (entry.hook, entry.program) {
        // The second program on its raw tracepoint (see guard-ebpf's floor.rs).
        (Hook::Raw(_), "route_exec") => "floor_raw_again",
        (Hook::Raw(_), _) => "floor_raw",
        (Hook::Syscalls(_), _) => "floor_tp",
        (Hook::SockAddr, "connect4") => "floor_connect4",
        (Hook::SockAddr, "connect6") => "floor_connect6",
        (Hook::SockAddr, "sendmsg4") => "floor_sendmsg4",
        (Hook::SockAddr, "sendmsg6") => "floor_sendmsg6",
        (Hook::SockAddr, "bind4") => "floor_bind4",
        (Hook::SockAddr, "bind6") => "floor_bind6",
        (Hook::SockAddr, "recvmsg4") => "floor_recvmsg4",
        (Hook::SockAddr, "recvmsg6") => "floor_recvmsg6",
        (Hook::SockAddr, "getpeername4") => "floor_getpeername4",
        (Hook::SockAddr, "getpeername6") => "floor_getpeername6",
        (Hook::SkbEgress, _) => "floor_skb_egress",
        (Hook::SkbIngress, _) => "floor_skb_ingress",
        (Hook::SockRelease, _) => "floor_sock_release",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use aya_obj::ProgramSection as S;

    use super::*;

    /// Whether a program of `section` can attach to `hook`.
    fn fits(section: &S, hook: Hook) -> bool {
        match hook {
            Hook::Raw(_) => matches!(section, S::RawTracePoint),
            Hook::Syscalls(_) => matches!(section, S::TracePoint),
            Hook::SockAddr => matches!(section, S::CgroupSockAddr { .. }),
            Hook::SkbEgress | Hook::SkbIngress => matches!(section, S::CgroupSkb { .. }),
            Hook::SockRelease => matches!(section, S::CgroupSock { .. }),
            Hook::Lsm(_) => matches!(section, S::Lsm { .. }),
        }
    }

    /// Every program the table names, and every floor program, exists in both builds
    /// of guard-ebpf with the type its hook needs (a compat-only program in the compat
    /// build only); every pinned map exists (the compat build's pending opens in
    /// that build only).
    #[test]
    fn the_object_has_every_program_and_map_the_table_names() {
        use super::super::object::Build;
        for build in [Build::Default, Build::Compat] {
            has_every_program_and_map(build.object(), build == Build::Compat);
        }
    }

    fn has_every_program_and_map(object: &[u8], compat: bool) {
        let object = aya_obj::Object::parse(object).expect("parse the eBPF object");
        let mut seen = HashSet::new();
        for entry in TABLE {
            assert!(
                seen.insert((entry.program, format!("{:?}", entry.hook))),
                "{} is in the table twice on the same hook",
                entry.program
            );
            if entry.compat_only && !compat {
                assert!(
                    !object.programs.contains_key(entry.program),
                    "the default build has {}, which only the compat build attaches",
                    entry.program
                );
                continue;
            }
            let names = std::iter::once(entry.program).chain(entry.alt);
            for name in names.chain(floor_program(entry)) {
                let program = object
                    .programs
                    .get(name)
                    .unwrap_or_else(|| panic!("the eBPF object has no program {name}"));
                assert!(
                    fits(&program.section, entry.hook),
                    "{name}: section {:?} cannot attach to {:?}",
                    program.section,
                    entry.hook
                );
            }
        }
        for map in super::super::pins::PINNED_MAPS {
            assert_eq!(
                object.maps.contains_key(map),
                compat || map != "PENDING_OPEN",
                "the eBPF object's map {map} (compat build: {compat})"
            );
        }
    }

    /// `tree_change` and `mounts_change` move the epochs that keep the identity
    /// walk's clear directories and the file checks' clear paths true: they are
    /// attached before every program that judges a file
    /// (the opens, the Unix connects and sends, every BPF-LSM hook), or one of those
    /// could remember a directory while a move goes unseen.
    #[test]
    fn tree_change_is_attached_before_every_program_that_judges_a_file() {
        let at = |name: &str| TABLE.iter().position(|e| e.program == name);
        for epoch in ["tree_change", "mounts_change"] {
            let tree = at(epoch).unwrap_or_else(|| panic!("{epoch} is in the table"));
            for (i, entry) in TABLE.iter().enumerate() {
                let judges = entry.program == "sys_exit_open"
                    || matches!(entry.group, Group::Unix)
                    || matches!(entry.hook, Hook::Lsm(_));
                if judges {
                    assert!(tree < i, "{} is attached before {epoch}", entry.program);
                }
            }
        }
    }

    /// Linux 6.1 refuses one program twice on a raw tracepoint (EEXIST): each raw
    /// tracepoint's floor programs differ, as guard's own do.
    #[test]
    fn no_floor_program_is_attached_twice_to_a_raw_tracepoint() {
        let mut seen = HashSet::new();
        for entry in TABLE {
            if let (Hook::Raw(tp), Some(floor)) = (entry.hook, floor_program(entry)) {
                assert!(
                    seen.insert((tp, floor)),
                    "{floor} would be attached to {tp} twice (for {})",
                    entry.program
                );
            }
        }
    }

    #[test]
    fn every_self_protection_group_has_a_bpf_lsm_hook() {
        let lsm: Vec<&str> = TABLE
            .iter()
            .filter_map(|e| match (e.hook, e.group) {
                (Hook::Lsm(h), Group::LsmSelf) => Some(h),
                _ => None,
            })
            .collect();
        for group in self_protection_groups() {
            assert!(lsm.contains(&group), "{group} has no BPF-LSM entry");
        }
    }
}
