//! Which enforcement tier each action runs on here, and why a stronger one is
//! missing. Built from what [`super::Kernel::load`] managed to load and attach, so
//! it reports the kernel as it is, not as its configuration promises.
//!
//! The tiers, strongest first for files and execs:
//! - BPF-LSM deny: the operation fails with EPERM before anything happens (needs
//!   `CONFIG_BPF_LSM`, `bpf` in the active LSM list, kernel BTF and BPF
//!   trampolines; the `path_*` hooks also need `CONFIG_SECURITY_PATH`);
//! - tracepoint kill: SIGKILL from inside the system call (an exec never runs; a
//!   read never returns data; a write open has happened);
//! - user-space kill: the daemon kills through a pidfd after reading the event.
//!
//! For the network, cgroup sock_addr hooks refuse connects and sends with EPERM.

use serde::Serialize;

/// Where a decision is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// BPF-LSM programs refuse the operation with EPERM before it happens.
    BpfLsmDeny,
    /// A tracepoint program sends SIGKILL from inside the system call.
    TracepointKill,
    /// cgroup `sock_addr` programs refuse connects and sends with EPERM.
    SockAddrDeny,
    /// The daemon kills the process through a pidfd after it read the event.
    UserSpaceKill,
    /// cgroup_skb and `sock_release` programs count the bytes of tracked sockets
    /// (not an enforcement: what the `egress_accounting` row reports on).
    CgroupSkbCount,
}

/// One tier on this host: what of it is attached, and what is missing and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierState {
    pub tier: Tier,
    /// Attached programs of this tier (`lsm/file_open`, …).
    pub hooks: Vec<String>,
    /// Why the tier, or part of it, is not there; `None` when it is complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// What a policy can ask for, by action and operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `kill` on an exec (program name or absolute path).
    ExecKill,
    /// `kill` on a read of a file.
    FileReadKill,
    /// `kill` on a write of a file.
    FileWriteKill,
    /// `deny` on an exec.
    ExecDeny,
    /// `deny` on a read of a file.
    FileReadDeny,
    /// `deny` on a write of a file: open for writing, create, mkdir, link, symlink,
    /// rename, unlink, rmdir, truncate, chmod, chown.
    FileWriteDeny,
    /// `deny` on a connect or send.
    NetworkDeny,
    /// `kill` decided on argv or a glob the kernel cannot match.
    ArgvAndGlobKill,
    /// `kill` or `deny` on an exec of a program named by `digest`.
    ExecDigestKill,
    /// Self-protection (always on, no rule): a session's attempts to signal,
    /// trace, read or blind guard.
    SelfProtection,
    /// Not an action: bytes per socket of tracked processes (flow events).
    EgressAccounting,
    /// `deny` (or `kill`) on a file rule covering a Unix socket file: a connect or
    /// send to it.
    UnixSocketDeny,
    /// Sessions' DNS through guard's resolver, which answers only the names the
    /// policy allows (`[dns]`).
    DnsNames,
    /// `[sessions] io_uring`: a ring whose operations would bypass the hooks.
    RouteIoUring,
    /// `[sessions] open_by_handle_at`: an open by file handle, not by path.
    RouteOpenByHandle,
    /// `[sessions] raw_sockets`: raw and packet sockets, below the cgroup hooks.
    RouteRawSockets,
    /// `[sessions] fileless_exec`: programs run from a memfd or a deleted file.
    RouteFilelessExec,
    /// An exec rule's program mapped executable by the dynamic loader (or by hand).
    RouteExecMapping,
    /// `[sessions] listen`: a session's server bound beyond loopback.
    RouteListen,
}

impl Tier {
    /// The tier's name in `policy_loaded` and `guard status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::BpfLsmDeny => "bpf_lsm",
            Self::TracepointKill => "tracepoint",
            Self::SockAddrDeny => "cgroup_sock_addr",
            Self::UserSpaceKill => "user_space",
            Self::CgroupSkbCount => "cgroup_skb",
        }
    }
}

impl Operation {
    /// The `action` of this operation in the `enforcement` rows of `policy_loaded`.
    pub fn key(self) -> &'static str {
        match self {
            Self::ExecKill => "exec_kill",
            Self::FileReadKill => "file_read_kill",
            Self::FileWriteKill => "file_write_kill",
            Self::ExecDeny => "exec_deny",
            Self::FileReadDeny => "file_read_deny",
            Self::FileWriteDeny => "file_write_deny",
            Self::NetworkDeny => "network_deny",
            Self::ArgvAndGlobKill => "argv_and_glob_kill",
            Self::ExecDigestKill => "exec_digest_kill",
            Self::SelfProtection => "self_protection",
            Self::EgressAccounting => "egress_accounting",
            Self::UnixSocketDeny => "unix_socket_deny",
            Self::DnsNames => "dns_names",
            Self::RouteIoUring => "route_io_uring",
            Self::RouteOpenByHandle => "route_open_by_handle_at",
            Self::RouteRawSockets => "route_raw_sockets",
            Self::RouteFilelessExec => "route_fileless_exec",
            Self::RouteExecMapping => "route_exec_mapping",
            Self::RouteListen => "route_listen",
        }
    }
}

/// How one operation is enforced here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionTier {
    pub operation: Operation,
    /// The tier that carries it out; `None` when nothing can (the hooks it needs
    /// are missing: it is only logged).
    pub tier: Option<Tier>,
    /// What the user can rely on, in one sentence.
    pub guarantee: String,
    /// Why a stronger tier is not used, when one exists for this operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// The tiers on this host and the tier of every operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub tiers: Vec<TierState>,
    pub operations: Vec<ActionTier>,
}

/// What loading found, feature by feature: `Err` holds why a feature is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Syscall tracepoints on opens (events and kill at open).
    pub open_tracepoints: Result<(), String>,
    /// cgroup sock_addr hooks.
    pub sock_addr: Result<(), String>,
    /// Sessions' DNS pointed at guard's resolver: the connect and send hooks, and
    /// the `recvmsg`/`getpeername` ones that give the answers their source back.
    pub dns_resolver: Result<(), String>,
    /// `lsm/file_open` and `lsm/bprm_check_security`.
    pub lsm_open_exec: Result<(), String>,
    /// The `lsm/path_*` hooks: `Err` names the ones missing and why.
    pub lsm_paths: Result<(), String>,
    /// Self-protection by group (named by its BPF-LSM hook: `task_kill`,
    /// `ptrace_access_check`, `bpf`, `perf_event_open`): the tier that carries it,
    /// or why neither could be attached.
    pub self_protection: Vec<(&'static str, Result<Tier, String>)>,
    /// Whether `lsm/sb_umount` refuses unmounting the pins' file system.
    pub lsm_umount: bool,
    /// The byte-accounting programs (cgroup_skb egress/ingress, sock_release).
    pub flows: Result<(), String>,
    /// The entries of `connect` and `sendto` that note Unix socket names.
    pub unix: Result<(), String>,
    /// `lsm/unix_stream_connect` and `lsm/unix_may_send`.
    pub lsm_unix: Result<(), String>,
    /// The tracepoint programs that refuse routes (`guard_common::route`
    /// numbers): the tier that carries each, or why it is missing.
    pub routes: Vec<(u32, Result<Tier, String>)>,
    /// Bits of `ROUTE_HOOKS`: the routes BPF-LSM refuses with EPERM.
    pub route_hooks: u32,
    /// Attached programs, as `kind/name`.
    pub attached: Vec<String>,
}

/// The changes other than an open that `file_write_deny` refuses, each by its
/// BPF-LSM path hook (`path_mknod`: a create, which an `O_CREAT` open reaches first).
const PATH_CHANGES: &[(&str, &str)] = &[
    ("path_mknod", "create"),
    ("path_mkdir", "mkdir"),
    ("path_link", "link"),
    ("path_symlink", "symlink"),
    ("path_rename", "rename"),
    ("path_unlink", "unlink"),
    ("path_rmdir", "rmdir"),
    ("path_truncate", "truncate"),
    ("path_chmod", "chmod"),
    ("path_chown", "chown"),
];

impl Probe {
    /// `file_write_deny`'s guarantee when some path hooks did not load (Linux
    /// before 6.1 cannot attach `path_chown`, whose ids are passed by value): what
    /// the hooks that run refuse, and what nothing refuses.
    fn partial_write_deny(&self) -> String {
        let runs = |hook: &str| {
            self.attached.iter().any(|a| {
                a.strip_prefix("lsm/")
                    .is_some_and(|name| name == hook || name.starts_with(&format!("{hook}-")))
            })
        };
        let (refused, not): (Vec<_>, Vec<_>) = PATH_CHANGES.iter().partition(|(h, _)| runs(h));
        let names = |changes: Vec<&(&str, &str)>| {
            changes
                .iter()
                .map(|(_, change)| *change)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if refused.is_empty() {
            format!(
                "opens for writing fail with EPERM; other changes are not refused ({})",
                names(not)
            )
        } else {
            format!(
                "opens for writing and {} fail with EPERM and change nothing; not refused: {}",
                names(refused),
                names(not)
            )
        }
    }

    fn hooks(&self, prefix: &str) -> Vec<String> {
        self.attached
            .iter()
            .filter(|a| a.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn missing(r: &Result<(), String>) -> Option<String> {
    r.as_ref().err().cloned()
}

impl Enforcement {
    /// The tiers and per-operation enforcement that `probe` allows.
    #[expect(
        clippy::too_many_lines,
        reason = "each tier, and a row per operation with its guarantee as `guard status` shows it"
    )]
    pub fn from_probe(probe: &Probe) -> Self {
        let lsm_missing = match (&probe.lsm_open_exec, &probe.lsm_paths) {
            (Ok(()), Ok(())) => None,
            (Err(a), _) => Some(a.clone()),
            (Ok(()), Err(b)) => Some(b.clone()),
        };
        let tiers = vec![
            TierState {
                tier: Tier::BpfLsmDeny,
                hooks: probe.hooks("lsm/"),
                missing: lsm_missing,
            },
            TierState {
                tier: Tier::TracepointKill,
                hooks: probe
                    .attached
                    .iter()
                    .filter(|a| a.starts_with("raw_tracepoint/") || a.starts_with("tracepoint/"))
                    .cloned()
                    .collect(),
                missing: missing(&probe.open_tracepoints).map(|why| format!("opens: {why}")),
            },
            TierState {
                tier: Tier::SockAddrDeny,
                hooks: probe.hooks("cgroup/"),
                missing: missing(&probe.sock_addr),
            },
            TierState {
                tier: Tier::UserSpaceKill,
                hooks: Vec::new(),
                missing: None,
            },
            TierState {
                tier: Tier::CgroupSkbCount,
                hooks: probe
                    .attached
                    .iter()
                    .filter(|a| a.starts_with("cgroup_skb/") || a.starts_with("cgroup_sock/"))
                    .cloned()
                    .collect(),
                missing: missing(&probe.flows),
            },
        ];
        let opens = probe.open_tracepoints.is_ok();
        let lsm = probe.lsm_open_exec.is_ok();
        let lsm_why =
            missing(&probe.lsm_open_exec).map(|why| format!("BPF-LSM unavailable: {why}"));
        let read_kill = if opens {
            (
                Some(Tier::TracepointKill),
                "killed before the open returns: the data is never seen".to_owned(),
            )
        } else {
            (
                None,
                "not enforced: the open tracepoints did not load".to_owned(),
            )
        };
        let write_kill = if opens {
            (
                Some(Tier::TracepointKill),
                "killed after the open: a truncate or create has happened".to_owned(),
            )
        } else {
            (
                None,
                "not enforced: the open tracepoints did not load".to_owned(),
            )
        };
        let exec_deny = if lsm {
            (
                Some(Tier::BpfLsmDeny),
                "the exec fails with EPERM: the program never runs".to_owned(),
                None,
            )
        } else {
            (
                Some(Tier::TracepointKill),
                "acts as kill: the program never runs, the caller is killed".to_owned(),
                lsm_why.clone(),
            )
        };
        let read_deny = if lsm {
            (
                Some(Tier::BpfLsmDeny),
                "the open fails with EPERM: no data is read, the process lives".to_owned(),
                None,
            )
        } else {
            (
                read_kill.0,
                format!("acts as kill: {}", read_kill.1),
                lsm_why.clone(),
            )
        };
        let write_deny = match (&probe.lsm_open_exec, &probe.lsm_paths) {
            (Ok(()), Ok(())) => (
                Some(Tier::BpfLsmDeny),
                "fails with EPERM and nothing changes: no open for writing, create, mkdir, \
                 link, symlink, rename, unlink, rmdir, truncate, chmod or chown"
                    .to_owned(),
                None,
            ),
            (Ok(()), Err(why)) => (
                Some(Tier::BpfLsmDeny),
                probe.partial_write_deny(),
                Some(format!("BPF-LSM path hooks unavailable: {why}")),
            ),
            (Err(_), _) => (
                write_kill.0,
                format!("acts as kill: {}", write_kill.1),
                lsm_why.clone(),
            ),
        };
        let network = match &probe.sock_addr {
            Ok(()) => (
                Some(Tier::SockAddrDeny),
                "the connect or send fails with EPERM: no packet leaves".to_owned(),
                None,
            ),
            Err(why) => (
                None,
                "not enforced: the cgroup sock_addr hooks did not load".to_owned(),
                Some(why.clone()),
            ),
        };
        let self_protection = self_protection(probe, lsm_why.clone());
        let op =
            |operation, (tier, guarantee, fallback): (Option<Tier>, String, Option<String>)| {
                ActionTier {
                    operation,
                    tier,
                    guarantee,
                    fallback,
                }
            };
        let operations = vec![
            op(
                Operation::ExecKill,
                (
                    Some(Tier::TracepointKill),
                    "killed at sched_process_exec: the program never runs".to_owned(),
                    None,
                ),
            ),
            op(Operation::FileReadKill, (read_kill.0, read_kill.1, None)),
            op(Operation::FileWriteKill, (write_kill.0, write_kill.1, None)),
            op(Operation::ExecDeny, exec_deny),
            op(Operation::FileReadDeny, read_deny),
            op(Operation::FileWriteDeny, write_deny),
            op(Operation::NetworkDeny, network),
            op(
                Operation::ArgvAndGlobKill,
                (
                    Some(Tier::UserSpaceKill),
                    "killed through a pidfd after the event: the operation has happened".to_owned(),
                    None,
                ),
            ),
            op(
                Operation::ExecDigestKill,
                (
                    Some(Tier::TracepointKill),
                    "held (SIGSTOP) at sched_process_exec before its first instruction, hashed \
                     by the daemon, then killed: the program never runs an instruction"
                        .to_owned(),
                    None,
                ),
            ),
            op(Operation::SelfProtection, self_protection),
            op(
                Operation::EgressAccounting,
                match &probe.flows {
                    Ok(()) => (
                        Some(Tier::CgroupSkbCount),
                        "bytes each way of every socket a session process connected or sent on, \
                         counted in the kernel at IP level (headers included), as flow events"
                            .to_owned(),
                        None,
                    ),
                    Err(why) => (
                        None,
                        "not counted: the byte-accounting programs did not load (connects and \
                         sends are still reported and enforced)"
                            .to_owned(),
                        Some(why.clone()),
                    ),
                },
            ),
            op(Operation::UnixSocketDeny, unix_socket(probe)),
            op(
                Operation::DnsNames,
                match &probe.dns_resolver {
                    Ok(()) => (
                        Some(Tier::SockAddrDeny),
                        "a session's DNS (port 53 at any address, UDP and TCP) goes to guard's \
                         resolver, which answers only the names the policy allows: a refused \
                         name never leaves the host"
                            .to_owned(),
                        None,
                    ),
                    Err(why) => (
                        None,
                        "not enforced: DNS goes where it was sent, judged by the network rules; \
                         names are reported and judged after the fact"
                            .to_owned(),
                        Some(why.clone()),
                    ),
                },
            ),
        ];
        let mut operations = operations;
        operations.extend(routes(probe, &lsm_why));
        Self { tiers, operations }
    }

    /// One row per operation, for `policy_loaded` and `guard status`.
    pub fn rows(&self) -> Vec<guard_common::protocol::Enforcement> {
        self.operations
            .iter()
            .map(|o| guard_common::protocol::Enforcement {
                action: o.operation.key().to_owned(),
                tier: o.tier.map_or("none", Tier::name).to_owned(),
                guarantee: o.guarantee.clone(),
                fallback_reason: o.fallback.clone(),
            })
            .collect()
    }

    /// The start-up lines: one per tier that is missing or incomplete.
    pub fn log_lines(&self) -> Vec<String> {
        self.tiers
            .iter()
            .filter_map(|t| {
                let why = t.missing.as_ref()?;
                Some(match t.tier {
                    Tier::BpfLsmDeny => format!(
                        "BPF-LSM deny incomplete ({why}): the enforcement report says what \
                         `deny` refuses and where it falls back"
                    ),
                    Tier::TracepointKill => format!("tracepoint programs missing ({why})"),
                    Tier::SockAddrDeny => {
                        format!("network hooks missing ({why}): network rules are only logged")
                    }
                    Tier::UserSpaceKill => why.clone(),
                    Tier::CgroupSkbCount => {
                        format!("byte accounting missing ({why}): no flow events")
                    }
                })
            })
            .collect()
    }
}

/// The rows of the routes around the hooks (docs/routes.md): BPF-LSM refuses some
/// with EPERM where it runs; each has a tracepoint that kills at the call's entry.
fn routes(probe: &Probe, lsm_why: &Option<String>) -> Vec<ActionTier> {
    use guard_common::route;
    let lsm = |r: u32| probe.route_hooks & (1 << r) != 0;
    let tp = |r: u32| -> Result<(), String> {
        match probe.routes.iter().find(|(route, _)| *route == r) {
            Some((_, Ok(_))) => Ok(()),
            Some((_, Err(why))) => Err(why.clone()),
            None => Err("its program is not attached".to_owned()),
        }
    };
    let row = |operation: Operation,
               lsm_route: Option<u32>,
               tp_route: u32,
               denied: &str,
               killed: &str| {
        // `lsm_why` says "BPF-LSM unavailable: …" already.
        let fallback_lsm = lsm_route.and_then(|_| lsm_why.clone());
        let (tier, guarantee, fallback) = match (lsm_route.is_some_and(lsm), tp(tp_route)) {
            (true, _) => (Some(Tier::BpfLsmDeny), denied.to_owned(), None),
            (false, Ok(())) => (Some(Tier::TracepointKill), killed.to_owned(), fallback_lsm),
            (false, Err(why)) => (
                None,
                "not refused: neither its BPF-LSM hook nor its tracepoint is attached".to_owned(),
                Some(why),
            ),
        };
        ActionTier {
            operation,
            tier,
            guarantee,
            fallback,
        }
    };
    vec![
        row(
            Operation::RouteIoUring,
            Some(route::IO_URING),
            route::IO_URING,
            "io_uring_setup fails with EPERM: no ring, the process lives",
            "killed at io_uring_setup's entry: it never gets a ring to submit to",
        ),
        row(
            Operation::RouteOpenByHandle,
            None,
            route::OPEN_BY_HANDLE,
            "",
            "killed at open_by_handle_at's entry: nothing is opened",
        ),
        row(
            Operation::RouteRawSockets,
            Some(route::RAW_SOCKET),
            route::RAW_SOCKET,
            "socket() of a raw or packet socket fails with EPERM: the process lives",
            "killed at socket()'s entry: no raw or packet socket is made",
        ),
        row(
            Operation::RouteFilelessExec,
            Some(route::FILELESS_EXEC),
            route::FILELESS_EXEC,
            "the exec of a memfd or deleted file is refused with EPERM (`deny`) or killed \
             (`kill`) before it runs; named as the kernel names it",
            "killed at sched_process_exec when the policy says `kill`: the program never \
             runs; named as the kernel names it (`alert`: reported)",
        ),
        row(
            Operation::RouteExecMapping,
            None,
            route::EXEC_MAPPING,
            "",
            "killed at the executable mapping of a program an exec rule forbids (the loader \
             maps it before it runs): the program never runs",
        ),
        listen(&tp),
    ]
}

/// The `route_listen` row: the cgroup `bind4`/`bind6` hooks refuse on every tier.
fn listen(attached: &dyn Fn(u32) -> Result<(), String>) -> ActionTier {
    let (tier, guarantee, fallback) = match attached(guard_common::route::LISTEN) {
        Ok(()) => (
            Some(Tier::SockAddrDeny),
            "bind() beyond loopback fails with EPERM before the socket has an address: \
             nothing can connect to it, the process lives (`kill` acts as `deny`)"
                .to_owned(),
            None,
        ),
        Err(why) => (
            None,
            "not refused: the bind hooks are not attached".to_owned(),
            Some(why),
        ),
    };
    ActionTier {
        operation: Operation::RouteListen,
        tier,
        guarantee,
        fallback,
    }
}

/// The `unix_socket_deny` row: a connect or send to a Unix socket file a `deny` (or
/// `kill`) file rule on writes covers.
fn unix_socket(probe: &Probe) -> (Option<Tier>, String, Option<String>) {
    match (&probe.lsm_unix, &probe.unix) {
        (Ok(()), _) => (
            Some(Tier::BpfLsmDeny),
            "the connect or send fails with EPERM: nothing reaches the socket, the process lives"
                .to_owned(),
            None,
        ),
        (Err(lsm), Ok(())) => (
            Some(Tier::TracepointKill),
            "a connect is killed before it returns: the connection was made, nothing is sent \
             on it; a datagram sent to an address is reported, not stopped (its sender is \
             killed after it left)"
                .to_owned(),
            Some(format!("BPF-LSM unavailable: {lsm}")),
        ),
        (Err(_), Err(why)) => (
            None,
            "not enforced: the connect and send entries did not load".to_owned(),
            Some(why.clone()),
        ),
    }
}

/// The `self_protection` row: BPF-LSM refusals where every group's hook runs,
/// else kills at the system call, saying which groups are which.
fn self_protection(
    probe: &Probe,
    lsm_why: Option<String>,
) -> (Option<Tier>, String, Option<String>) {
    let groups = &probe.self_protection;
    let missing: Vec<String> = groups
        .iter()
        .filter_map(|(g, r)| r.as_ref().err().map(|why| format!("{g}: {why}")))
        .collect();
    let by = |tier: Tier| -> Vec<&str> {
        groups
            .iter()
            .filter(|(_, r)| r.as_ref().ok() == Some(&tier))
            .map(|(g, _)| *g)
            .collect()
    };
    let (lsm, killed) = (by(Tier::BpfLsmDeny), by(Tier::TracepointKill));
    let opens_lsm = probe.lsm_open_exec.is_ok();
    if !groups.is_empty() && killed.is_empty() && missing.is_empty() && opens_lsm {
        let umount = if probe.lsm_umount {
            ""
        } else {
            " (unmounting the BPF file system is not refused: lsm/sb_umount missing)"
        };
        return (
            Some(Tier::BpfLsmDeny),
            format!(
                "a session's signals to guard, ptrace and process_vm access, opens of its /proc files and pins, pin removals, bpf() and perf_event_open() fail with EPERM: guard is untouched{umount}"
            ),
            None,
        );
    }
    let mut guarantee = "the offender is killed at the system call: a signal it sent guard or a bpf() call it made has taken effect; an open of guard's /proc files or pins never returns data"
        .to_owned();
    if !lsm.is_empty() {
        guarantee.push_str(&format!(
            "; refused with EPERM by BPF-LSM: {}",
            lsm.join(", ")
        ));
    }
    if !missing.is_empty() {
        guarantee.push_str(&format!("; not enforced: {}", missing.join("; ")));
    }
    let fallback = lsm_why.or_else(|| {
        let not_lsm: Vec<&str> = groups
            .iter()
            .filter(|(_, r)| r.as_ref().ok() != Some(&Tier::BpfLsmDeny))
            .map(|(g, _)| *g)
            .collect();
        (!not_lsm.is_empty()).then(|| format!("BPF-LSM hooks missing: {}", not_lsm.join(", ")))
    });
    (Some(Tier::TracepointKill), guarantee, fallback)
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_are_rows_with_their_tier() {
        let mut p = probe(Ok(()), Ok(()));
        let e = Enforcement::from_probe(&p);
        let io = of(&e, Operation::RouteIoUring);
        assert_eq!(io.tier, Some(Tier::TracepointKill), "{io:?}");
        let raw = of(&e, Operation::RouteRawSockets);
        assert_eq!(raw.tier, None, "{raw:?}");
        assert!(raw.fallback.is_some(), "{raw:?}");
        p.route_hooks = 1 << guard_common::route::IO_URING;
        let e = Enforcement::from_probe(&p);
        let io = of(&e, Operation::RouteIoUring);
        assert_eq!(io.tier, Some(Tier::BpfLsmDeny), "{io:?}");
        assert!(io.guarantee.contains("EPERM"), "{io:?}");
        assert!(
            e.rows().iter().any(|r| r.action == "route_exec_mapping"),
            "{:?}",
            e.rows()
        );
    }

    use super::*;

    /// docs/events.md's table of `enforcement` rows (under `policy_loaded`) names
    /// every row the daemon writes, and no other.
    #[test]
    fn the_docs_name_every_enforcement_row() {
        let docs = include_str!("../../../docs/events.md");
        let mut documented = std::collections::BTreeSet::new();
        let mut inside = false;
        for line in docs.lines() {
            if line.starts_with("| action | what it is about |") {
                inside = true;
            } else if inside && line.starts_with("| `") {
                documented.extend(line.split('`').nth(1));
            } else if inside && !line.starts_with('|') {
                break;
            }
        }
        let e = Enforcement::from_probe(&probe(Ok(()), Ok(())));
        let rows: std::collections::BTreeSet<String> =
            e.rows().into_iter().map(|r| r.action).collect();
        assert_eq!(
            documented,
            rows.iter().map(String::as_str).collect(),
            "docs/events.md's enforcement rows"
        );
    }

    /// Without BPF-LSM, each row that falls back says why once.
    #[test]
    fn a_fallback_says_why_once() {
        let e = Enforcement::from_probe(&probe(Err("no BTF".into()), Err("no BTF".into())));
        let mut fallbacks = 0;
        for r in e.rows() {
            if let Some(why) = &r.fallback_reason {
                fallbacks += 1;
                assert!(
                    why.matches("unavailable").count() <= 1,
                    "{}: {why}",
                    r.action
                );
                assert!(why.matches("no BTF").count() <= 1, "{}: {why}", r.action);
            }
        }
        assert!(fallbacks >= 5, "{:?}", e.rows());
    }

    fn probe(lsm: Result<(), String>, paths: Result<(), String>) -> Probe {
        Probe {
            open_tracepoints: Ok(()),
            sock_addr: Ok(()),
            dns_resolver: Ok(()),
            lsm_unix: lsm.clone(),
            unix: Ok(()),
            lsm_open_exec: lsm,
            lsm_paths: paths,
            self_protection: vec![
                ("task_kill", Ok(Tier::BpfLsmDeny)),
                ("bpf", Ok(Tier::BpfLsmDeny)),
            ],
            lsm_umount: true,
            flows: Ok(()),
            routes: vec![(guard_common::route::IO_URING, Ok(Tier::TracepointKill))],
            route_hooks: 0,
            attached: vec![
                "raw_tracepoint/sched_process_exec".into(),
                "cgroup/connect4".into(),
                "lsm/file_open".into(),
            ],
        }
    }

    fn of(e: &Enforcement, op: Operation) -> &ActionTier {
        e.operations
            .iter()
            .find(|o| o.operation == op)
            .expect("every operation is reported")
    }

    #[test]
    fn full_bpf_lsm_denies_every_write() {
        let e = Enforcement::from_probe(&probe(Ok(()), Ok(())));
        let w = of(&e, Operation::FileWriteDeny);
        assert_eq!(w.tier, Some(Tier::BpfLsmDeny));
        assert_eq!(w.fallback, None);
        assert!(w.guarantee.contains("rename"), "{}", w.guarantee);
        assert_eq!(e.tiers[0].hooks, ["lsm/file_open"]);
        assert_eq!(e.tiers[0].missing, None);
        assert!(e.log_lines().is_empty());
    }

    #[test]
    fn without_bpf_lsm_deny_falls_back_to_kill_and_says_why() {
        let why = "cannot load lsm/file_open: Operation not permitted".to_owned();
        let e = Enforcement::from_probe(&probe(Err(why.clone()), Err(why.clone())));
        for op in [
            Operation::ExecDeny,
            Operation::FileReadDeny,
            Operation::FileWriteDeny,
        ] {
            let a = of(&e, op);
            assert_eq!(a.tier, Some(Tier::TracepointKill), "{op:?}");
            assert!(a.guarantee.starts_with("acts as kill"), "{op:?}");
            assert!(a.fallback.as_deref().is_some_and(|f| f.contains(&why)));
        }
        let lines = e.log_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(&why));
        let rows = e.rows();
        let write = rows
            .iter()
            .find(|r| r.action == "file_write_deny")
            .expect("a file_write_deny row");
        assert_eq!(write.tier, "tracepoint");
        assert!(write.guarantee.contains("acts as kill"));
        assert!(
            write
                .fallback_reason
                .as_deref()
                .is_some_and(|f| f.contains(&why))
        );
    }

    #[test]
    fn without_path_hooks_only_opens_are_refused() {
        let e = Enforcement::from_probe(&probe(Ok(()), Err("lsm/path_mkdir: no".into())));
        let w = of(&e, Operation::FileWriteDeny);
        assert_eq!(w.tier, Some(Tier::BpfLsmDeny));
        assert_eq!(
            w.guarantee,
            "opens for writing fail with EPERM; other changes are not refused (create, \
             mkdir, link, symlink, rename, unlink, rmdir, truncate, chmod, chown)"
        );
        assert!(
            w.fallback
                .as_deref()
                .is_some_and(|f| f.contains("path_mkdir"))
        );
    }

    /// Linux 5.10: every path hook but `path_chown` (its ids passed by value), the
    /// rename hook by its pre-5.19 program.
    #[test]
    fn without_one_path_hook_the_guarantee_names_what_is_not_refused() {
        let mut p = probe(
            Ok(()),
            Err("cannot load path_chown: Invalid argument".into()),
        );
        for (hook, _) in PATH_CHANGES.iter().filter(|(h, _)| *h != "path_chown") {
            p.attached.push(if *hook == "path_rename" {
                "lsm/path_rename-path_rename_4".to_owned()
            } else {
                format!("lsm/{hook}")
            });
        }
        let e = Enforcement::from_probe(&p);
        let w = of(&e, Operation::FileWriteDeny);
        assert_eq!(w.tier, Some(Tier::BpfLsmDeny));
        assert_eq!(
            w.guarantee,
            "opens for writing and create, mkdir, link, symlink, rename, unlink, rmdir, \
             truncate, chmod fail with EPERM and change nothing; not refused: chown"
        );
        assert!(
            w.fallback
                .as_deref()
                .is_some_and(|f| f.contains("path_chown"))
        );
    }

    #[test]
    fn self_protection_says_which_tier_carries_it() {
        let e = Enforcement::from_probe(&probe(Ok(()), Ok(())));
        let s = of(&e, Operation::SelfProtection);
        assert_eq!(s.tier, Some(Tier::BpfLsmDeny));
        assert!(s.guarantee.contains("EPERM"), "{}", s.guarantee);
        let why = "cannot load lsm/file_open: Operation not permitted".to_owned();
        let mut p = probe(Err(why.clone()), Err(why.clone()));
        p.self_protection = vec![
            ("task_kill", Ok(Tier::TracepointKill)),
            ("bpf", Err("cannot attach tamper_bpf".into())),
        ];
        let e = Enforcement::from_probe(&p);
        let s = of(&e, Operation::SelfProtection);
        assert_eq!(s.tier, Some(Tier::TracepointKill));
        assert!(s.guarantee.contains("has taken effect"), "{}", s.guarantee);
        assert!(s.guarantee.contains("not enforced: bpf"), "{}", s.guarantee);
        assert!(s.fallback.as_deref().is_some_and(|f| f.contains(&why)));
    }

    #[test]
    fn unix_sockets_are_refused_by_bpf_lsm_or_killed_at_connect() {
        let e = Enforcement::from_probe(&probe(Ok(()), Ok(())));
        let u = of(&e, Operation::UnixSocketDeny);
        assert_eq!(u.tier, Some(Tier::BpfLsmDeny));
        assert!(u.guarantee.contains("EPERM"), "{}", u.guarantee);
        let why = "cannot load lsm/file_open: Operation not permitted".to_owned();
        let e = Enforcement::from_probe(&probe(Err(why.clone()), Err(why.clone())));
        let u = of(&e, Operation::UnixSocketDeny);
        assert_eq!(u.tier, Some(Tier::TracepointKill));
        assert!(
            u.guarantee.contains("reported, not stopped"),
            "{}",
            u.guarantee
        );
        assert!(u.fallback.as_deref().is_some_and(|f| f.contains(&why)));
        let mut p = probe(Err(why.clone()), Err(why));
        p.unix = Err("cannot attach sys_enter_connect".into());
        let u = of(&Enforcement::from_probe(&p), Operation::UnixSocketDeny).clone();
        assert_eq!(u.tier, None);
        assert!(u.fallback.is_some_and(|f| f.contains("sys_enter_connect")));
    }

    #[test]
    fn serialises_with_snake_case_names() {
        let e = Enforcement::from_probe(&probe(Ok(()), Ok(())));
        let v = serde_json::to_value(&e).expect("serialises");
        assert_eq!(v["tiers"][0]["tier"], "bpf_lsm_deny");
        assert_eq!(v["operations"][0]["operation"], "exec_kill");
        assert_eq!(v["operations"][0]["tier"], "tracepoint_kill");
        assert!(v["tiers"][0].get("missing").is_none());
    }
}
