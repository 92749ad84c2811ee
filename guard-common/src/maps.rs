//! Values of the maps user space shares with the kernel.

/// A process followed by guard, keyed in the `TRACKED` map by its tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Session id: the `CLOCK_BOOTTIME` ns at which the session's root was
    /// tracked. Unique per host while it runs.
    pub session: u64,
    /// The process's own start time (`task_struct::start_time`), or 0 when user
    /// space tracked it before the kernel saw it (then the first event fills it in).
    pub start_ns: u64,
    /// The session's root process id.
    pub root_pid: u32,
    /// [`crate::flags::ROOT_PROCESS`] for the root; the process's agent role in
    /// bits 8..11 ([`crate::role`]); [`crate::role::STRUCTURED`]; [`TAINTED`].
    pub flags: u32,
}

/// [`Tracked::flags`]: the process opened for reading a file a `secret = true` rule
/// matched without stopping the open (a `log` or `alert` rule), or descends from one
/// that had before forking it. Set by the kernel at the open (before the open
/// returns), inherited at fork, kept across exec; never cleared. Records of the
/// process carry [`crate::flags::TAINTED`].
pub const TAINTED: u32 = 1 << 14;

/// [`Tracked::flags`]: a delegate ([`role::DELEGATE`]): the process was forked by
/// a known spawner outside every session right after a session process connected
/// to it. Inherited at fork, kept across exec.
pub const DELEGATE: u32 = 1 << 15;

/// [`Tracked::flags`]: the process reached the network (a connect or send, not
/// DNS, that went through): the regular files it opens for writing from then on,
/// and those it had open for writing then (descriptors 0 to 7), are downloads
/// ([`FETCHED`-map entries](FileId)). Kept across exec, not inherited at fork.
pub const FETCHER: u32 = 1 << 16;

/// [`Tracked::flags`]: a package manager, or a process one started
/// ([`role::PROGRAM_INSTALLER`]): never a [`FETCHER`]. Inherited at fork, kept
/// across exec.
pub const INSTALLER: u32 = 1 << 17;

/// A file by identity: the key of the `FETCHED` map (files a session downloaded).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileId {
    /// The kernel's device number (`MKDEV(major, minor)`).
    pub dev: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    pub ino: u64,
}

/// `FETCHED` values: who downloaded the file.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub session: u64,
    /// The process that wrote it (its tgid).
    pub pid: u32,
    /// Reserved, zero.
    pub _reserved: u32,
}

/// Most files remembered as downloads (`FETCHED`, an LRU: the oldest go first).
pub const FETCHED_MAX: u32 = 4096;

/// Why an exec was held for a download (`HELD_FOR` values, set by guard-ebpf's
/// route_exec; an exec record flagged `HELD` was held for a digest).
pub mod held_for {
    /// The file is a download of its session (`FETCHED`).
    pub const DOWNLOAD: u32 = 2;
    /// A shell, interpreter or the loader, in a session with downloads: the script
    /// it runs may be one.
    pub const INTERPRETER: u32 = 4;
}

/// `DELEGATE_ARM` values, keyed by a spawner's tgid: a session process connected to
/// it, so its next fork (before `deadline_ns`) joins that session as a delegate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelegateArm {
    pub session: u64,
    /// `CLOCK_BOOTTIME` ns after which the arm is void.
    pub deadline_ns: u64,
    /// The session's root process.
    pub root_pid: u32,
    /// The connecting process's [`Tracked::flags`] ([`TAINTED`] is passed on).
    pub flags: u32,
}

/// How long after a session's request a spawner's fork joins the session.
pub const DELEGATE_WINDOW_NS: u64 = 1_000_000_000;

/// Agent roles: which part of an agent session a process is. Decided by the kernel
/// at exec, inherited at fork, kept in [`Tracked::flags`] (bits 8..11) and sent in
/// [`crate::Header::role`]. docs/policy.md says how each is recognised.
pub mod role {
    /// Not known: a process tracked before roles were decided (an older daemon's).
    pub const UNKNOWN: u8 = 0;
    /// A process of the session above the agent: `env`, `node`, a shell script,
    /// `guard run` before its exec, or anything of a session whose agent program
    /// was not recognised.
    pub const WRAPPER: u8 = 1;
    /// The process running an agent program (an `AGENT_PROGRAMS` name).
    pub const AGENT: u8 = 2;
    /// The agent's program exec'd again below the agent (Codex's
    /// `codex-linux-sandbox` and `/proc/self/exe` steps), and `bwrap` under them.
    pub const SANDBOX: u8 = 3;
    /// What the model runs: the first other program below the sandbox (or below the
    /// agent, for agents that are not [`STRUCTURED`]), and everything below it.
    pub const TOOL: u8 = 4;
    /// An MCP server of the agent: a program the agent runs itself whose name is
    /// the command of an MCP server in the agent's configuration (`AGENT_PROGRAMS`
    /// with [`PROGRAM_MCP`]), and everything below it.
    pub const MCP: u8 = 5;
    /// The agent's own work: a program a [`STRUCTURED`] agent runs itself (Codex's
    /// start-up `git`, `lsb_release`, its shell snapshot), and everything below it.
    pub const HELPER: u8 = 6;
    /// The highest role number a process gets at exec (and a `scope` may name).
    pub const MAX: u8 = 6;
    /// A process a known spawner outside every session (a tmux server, sshd, …)
    /// forked right after a session process asked it to (`DELEGATE_ARM`): it joins
    /// the session, is judged as a tool (its [`super::Tracked::flags`] hold
    /// [`TOOL`] and [`super::DELEGATE`]) and is reported with this role.
    pub const DELEGATE: u8 = 7;
    /// Where the role sits in [`super::Tracked::flags`].
    pub const SHIFT: u32 = 8;
    /// Mask of the role in [`super::Tracked::flags`].
    pub const MASK: u32 = 0xf << SHIFT;
    /// [`super::Tracked::flags`]: the session's agent runs its tools through its own
    /// program (a sandbox step) and other programs directly as its helpers (Codex).
    pub const STRUCTURED: u32 = 1 << 12;
    /// [`super::Tracked::flags`]: the process's environment held `CODEX_THREAD_ID`
    /// at its last exec.
    pub const HAS_THREAD: u32 = 1 << 13;
    /// `AGENT_PROGRAMS` values: the program is an agent.
    pub const PROGRAM_AGENT: u32 = 1;
    /// `AGENT_PROGRAMS` values: the agent is [`STRUCTURED`].
    pub const PROGRAM_STRUCTURED: u32 = 2;
    /// `AGENT_PROGRAMS` values: the program is an MCP server's command in an
    /// agent's configuration: run by the agent itself, it is [`MCP`].
    pub const PROGRAM_MCP: u32 = 4;
    /// `AGENT_PROGRAMS` values: the program is a JavaScript runtime (`node`, `bun`):
    /// the agent it runs is named by its script, the first argument that is not an
    /// option (`node --max-old-space-size=N /usr/bin/gemini`).
    pub const PROGRAM_RUNTIME: u32 = 8;
    /// `AGENT_PROGRAMS` values: a runtime running a script of this name runs an
    /// agent (Gemini CLI is `node …/gemini`). A runtime started by the agent on its
    /// own script is the agent again (Gemini relaunches itself), not its sandbox.
    pub const PROGRAM_SCRIPT: u32 = 16;
    /// `AGENT_PROGRAMS` values: a package manager (`npm`, `pip`, `cargo`; by the
    /// name it was run as or its file's; a Python with `-m pip`): what it and the
    /// processes it starts download is its registry's, never a download of the
    /// session's ([`super::INSTALLER`]).
    pub const PROGRAM_INSTALLER: u32 = 32;
    /// `AGENT_PROGRAMS` values: a shell, a script interpreter or the dynamic
    /// loader, by its file's name: its exec is held while its session has
    /// downloads, for user space to judge the script it runs.
    pub const PROGRAM_INTERPRETER: u32 = 64;

    /// The role of `flags` (a [`super::Tracked::flags`] value), as rules judge
    /// it: a delegate is a tool.
    pub const fn of(flags: u32) -> u8 {
        ((flags & MASK) >> SHIFT) as u8
    }

    /// The role records report for `flags`: [`DELEGATE`] for a delegate.
    pub const fn reported(flags: u32) -> u8 {
        if flags & super::DELEGATE != 0 {
            DELEGATE
        } else {
            of(flags)
        }
    }

    /// The name used in policies and JSON events.
    pub const fn name(role: u8) -> &'static str {
        match role {
            WRAPPER => "wrapper",
            AGENT => "agent",
            SANDBOX => "sandbox",
            TOOL => "tool",
            MCP => "mcp",
            HELPER => "helper",
            DELEGATE => "delegate",
            _ => "unknown",
        }
    }

    /// The role named `name` (not `unknown`).
    pub fn parse(name: &str) -> Option<u8> {
        (WRAPPER..=MAX).find(|r| name == self::name(*r))
    }
}

/// A session's record budget in the `SESSION_LIMITS` map (a token bucket), and its
/// count of dropped records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Records the session may still send now.
    pub tokens: u64,
    /// `CLOCK_BOOTTIME` ns of the last refill.
    pub refilled_ns: u64,
    /// Records dropped in all.
    pub dropped: u64,
    /// `dropped` as of the last `Limit` record.
    pub reported: u64,
    /// `CLOCK_BOOTTIME` ns of the last `Limit` record: drops are reported at most
    /// once a second (and at the records that are never dropped).
    pub reported_ns: u64,
}

/// The socket-local storage (`FLOW_SOCKS`) of a socket a tracked process connected
/// or sent on: who tagged it, where it goes, and its byte counts. Freed by the
/// kernel with the socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSock {
    /// The header of the flow's records: the process that tagged the socket
    /// (session, pid, comm, ids); `kind` and `ts_ns` are set at each record.
    pub header: crate::Header,
    /// What the records report (totals, destination, flow identity).
    pub body: crate::FlowBody,
    /// `CLOCK_BOOTTIME` ns of the flow's latest record (or its start).
    pub reported_ns: u64,
    /// `bytes_out + bytes_in` as of the latest record.
    pub reported_bytes: u64,
    /// A DNS socket the sock_addr hook pointed at guard's resolver: the
    /// resolver's port in bits 0..15, [`FlowSock::DNS_ALLOWED`], and
    /// [`FlowSock::DNS_REDIRECTED`]; 0 for every other socket.
    pub dns: u32,
    /// A UDP socket a tracked process connected to a destination the rules
    /// refuse: the record's `rule` field (`enforced` bits and rule) its sends are
    /// refused with (its connect sent nothing and was let through), and
    /// [`FlowSock::REFUSE_REPORTED`] once the first refused send was reported; 0
    /// for every other socket.
    pub refuse: u32,
    /// [`FlowSock::LISTENER`] on a TCP socket a tracked process bound (its
    /// storage is cloned to the connections it accepts); [`FlowSock::ACCEPTED`] on
    /// such a connection once its peer is known; 0 on every other socket.
    pub listen: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// Spare, zero (room to grow without changing the pinned map's value size).
    pub _spare: [u64; 2],
}

impl FlowSock {
    /// [`FlowSock::listen`]: a socket a tracked process bound to listen on.
    pub const LISTENER: u32 = 1;
    /// [`FlowSock::listen`]: a connection accepted from such a socket.
    pub const ACCEPTED: u32 = 2;
    /// [`FlowSock::refuse`]: the socket's first refused send was reported (the
    /// rest are dropped without a record).
    pub const REFUSE_REPORTED: u32 = 1 << 31;
    /// [`FlowSock::dns`]: the socket's DNS goes to guard's resolver.
    pub const DNS_REDIRECTED: u32 = 1 << 31;
    /// [`FlowSock::dns`]: the network rules let the process reach the original
    /// destination itself.
    pub const DNS_ALLOWED: u32 = 1 << 16;
}

/// The DNS port: a tracked process's connects and sends to it, at any address, go
/// to guard's resolver instead ([`DnsStub`]).
pub const DNS_PORT: u16 = 53;

/// `DNS_STUB` values, keyed by a network namespace's inode number: where guard's
/// resolver listens in that namespace (on its loopback), so that the sock_addr
/// hooks point session processes' DNS there. Written by user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStub {
    /// UDP and TCP port on 127.0.0.1 (host order); 0: none for IPv4.
    pub port4: u16,
    /// UDP and TCP port on ::1 (host order); 0: none for IPv6.
    pub port6: u16,
    /// [`dns_stub`] bits.
    pub flags: u32,
}

/// Bits of [`DnsStub::flags`], and the `DNS_CONFIG` slots.
pub mod dns_stub {
    /// The namespace has no interface but `lo`: nothing it sends can leave the
    /// host, so its DNS is left as it is (no resolver of guard's runs there).
    pub const ISOLATED: u32 = 1;
    /// `DNS_CONFIG` slot: the rule (index plus one) under which a session's DNS
    /// is refused in a namespace where guard's resolver does not run (yet); 0:
    /// such DNS goes where it was sent, judged by the network rules.
    pub const MISS_RULE: u32 = 0;
    /// `DNS_CONFIG` slot: non-zero when sessions' DNS goes to guard's resolver at
    /// all (`[dns] resolver`).
    pub const ON: u32 = 1;
    /// Slots of `DNS_CONFIG`.
    pub const LEN: u32 = 2;
}

/// `DNS_ORIG` values, keyed by socket cookie: where a session socket's DNS was
/// sent before the sock_addr hook pointed it at guard's resolver, so that the
/// answers seem to come from there (`recvmsg`, `getpeername`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsOrig {
    /// The original destination: 4 bytes for IPv4, 16 for IPv6, network order.
    pub addr: [u8; 16],
    /// [`crate::AF_INET`] or [`crate::AF_INET6`] of the original destination.
    pub family: u16,
    /// The original port (host order).
    pub port: u16,
    /// guard's resolver's port the socket was pointed at (host order).
    pub stub_port: u16,
    /// 1 when the network rules allow the session process to reach the original
    /// destination itself (guard's resolver then forwards there).
    pub allowed: u8,
    /// Reserved, zero.
    pub _reserved: u8,
}

/// `STUB_PEERS` values, keyed by [`stub_peer_key`]: who sent the DNS message guard's
/// resolver got from a loopback port, as the kernel saw the packet leave the
/// session's socket. The resolver reads it to judge the query by the session's
/// process (its taint) and to forward it where it was sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StubPeer {
    /// The session.
    pub session: u64,
    /// The process that tagged the socket (its connect or send).
    pub pid: u32,
    /// Its agent role ([`role`]).
    pub role: u16,
    /// [`crate::flags`] of its records ([`crate::flags::TAINTED`]).
    pub flags: u16,
    /// Where the message was sent before the redirection.
    pub orig: DnsOrig,
}

/// The `STUB_PEERS` key of a message from local port `port` over `protocol`
/// (`IPPROTO_TCP` 6, `IPPROTO_UDP` 17).
pub const fn stub_peer_key(protocol: u16, port: u16) -> u32 {
    (protocol as u32) << 16 | port as u32
}

/// Bytes of a [`SessionVar`]'s name, `=` included.
pub const SESSION_VAR_LEN: usize = 32;
/// Entries of `SESSION_VARS`: the environment variables that carry agents' session
/// ids (the first [`SESSION_VARS_AGENTS`]) and the package variable (the last),
/// searched for at once.
pub const SESSION_VARS_MAX: u32 = 5;
/// Entries of `SESSION_VARS` for agents' session variables: all but the last.
pub const SESSION_VARS_AGENTS: u32 = SESSION_VARS_MAX - 1;

/// An environment variable the exec program looks for in a tool's environment: an
/// entry of `SESSION_VARS`. Unused entries have `len` 0.
///
/// - [`SessionVar::SESSION`]: its value is an agent's session (or thread) id, as the
///   agent sets it for its tools (`CODEX_THREAD_ID=`, `CLAUDE_CODE_SESSION_ID=`).
/// - [`SessionVar::PACKAGE`]: its value names the package whose script the process
///   runs, as a package manager sets it for the scripts it runs (npm's
///   `npm_package_name=`). It wins over a session variable: the record then carries
///   [`crate::PACKAGE_MARK`] and the package's name instead of the thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionVar {
    /// Bytes of `name` in use, `=` included (2 to [`SESSION_VAR_LEN`]).
    pub len: u32,
    /// [`SessionVar::SESSION`] or [`SessionVar::PACKAGE`].
    pub kind: u32,
    /// The name followed by `=`, NUL padded.
    pub name: [u8; SESSION_VAR_LEN],
}

impl SessionVar {
    /// A variable whose value is an agent's session id.
    pub const SESSION: u32 = 0;
    /// A variable whose value is the package whose script runs.
    pub const PACKAGE: u32 = 1;

    /// The entry for session variable `name` (without `=`); None when it does not fit.
    pub fn new(name: &str) -> Option<Self> {
        Self::of_kind(name, Self::SESSION)
    }

    /// The entry for package variable `name` (without `=`); None when it does not fit.
    pub fn package(name: &str) -> Option<Self> {
        Self::of_kind(name, Self::PACKAGE)
    }

    fn of_kind(name: &str, kind: u32) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= SESSION_VAR_LEN || bytes.contains(&b'=') {
            return None;
        }
        let mut out = Self {
            len: bytes.len() as u32 + 1,
            kind,
            name: [0; SESSION_VAR_LEN],
        };
        out.name[..bytes.len()].copy_from_slice(bytes);
        out.name[bytes.len()] = b'=';
        Some(out)
    }
}

/// Size of `AGENTS` map keys: an agent name as it appears in `comm`.
pub type AgentName = [u8; crate::COMM_LEN];

/// Builds an `AGENTS` key from a program name: the kernel truncates `comm` to 15
/// bytes, so longer names are cut the same way.
pub fn agent_key(name: &[u8]) -> AgentName {
    let mut key = [0u8; crate::COMM_LEN];
    let n = if name.len() < crate::COMM_LEN {
        name.len()
    } else {
        crate::COMM_LEN - 1
    };
    key[..n].copy_from_slice(&name[..n]);
    key
}

/// Indexes of the `COUNTERS` per-CPU array.
pub mod counter {
    /// Records of kind `n` (1-based [`crate::EventKind`]) that did not fit in the ring
    /// buffer live at index `n`.
    pub const LOST_BASE: u32 = 0;
    /// Lost records by kind use `LOST_BASE + kind`, kinds up to 10 (see
    /// `EventKind`); the counters below start past them.
    /// A fork whose child could not be added to `TRACKED` (map full): the child
    /// escaped tracking.
    pub const TRACK_FULL: u32 = 11;
    /// Plain records dropped because their session was over its rate limit.
    pub const OVER_LIMIT: u32 = 12;
    /// Network calls (and, in the compat build, opens: the default build reads an
    /// open's arguments at its exit) of tracked threads that found the map of
    /// pending system calls full: neither reported nor checked against the rules at
    /// exit.
    pub const PENDING_FULL: u32 = 13;
    /// Tamper attempts: a tracked process signalled, traced, read or tried to blind
    /// guard (each also a [`crate::EventKind::Tamper`] record).
    pub const TAMPER: u32 = 14;
    /// [`crate::EventKind::Flow`] records that did not fit in the ring buffer (the
    /// kind's number is past the `LOST_BASE` range).
    pub const LOST_FLOW: u32 = 16;
    /// [`crate::EventKind::Dns`] records that did not fit in the ring buffer.
    pub const LOST_DNS: u32 = 20;
    /// DNS packets of tracked sockets whose payload could not be read from the
    /// packet (a header the kernel side does not parse, e.g. IPv6 extension
    /// headers, or a failed load): not reported.
    pub const DNS_UNREAD: u32 = 21;
    /// Opens by session processes whose file's ancestors could not be walked to the
    /// root within `IDENTITY_DEPTH` levels while identity rules exist (each open
    /// record also carries `flags::IDENTITY_UNKNOWN`).
    pub const IDENTITY_UNKNOWN: u32 = 17;
    /// Opens that a rule matched by identity (device, inode) and not by path.
    pub const IDENTITY_HITS: u32 = 18;
    /// [`crate::EventKind::Unix`] records that did not fit in the ring buffer.
    pub const LOST_UNIX: u32 = 22;
    /// Repeated opens the kernel counted for a thread whose count it could not send
    /// (no room in the ring buffer for the [`crate::flags::REPEATS`] record, or a
    /// budget-exempt slot left by a thread it did not see exit).
    pub const REPEATS_UNREPORTED: u32 = 23;
    /// Number of counters.
    pub const LEN: u32 = 24;

    /// The index counting lost records of kind `kind`.
    pub const fn lost(kind: u16) -> u32 {
        if kind == crate::EventKind::Flow as u16 {
            LOST_FLOW
        } else if kind == crate::EventKind::Dns as u16 {
            LOST_DNS
        } else if kind == crate::EventKind::Unix as u16 {
            LOST_UNIX
        } else {
            LOST_BASE + kind as u32
        }
    }
}

/// Slots of the `DAEMON` array: what a daemon leaves in the pinned maps for the next
/// one (the kernel never reads them). Every value is a `u64`.
pub mod daemon_state {
    /// `CLOCK_BOOTTIME` ns of the running daemon's latest sign of life (written at
    /// each drain of the ring buffer, and at a clean stop).
    pub const ALIVE_NS: u32 = 0;
    /// The pid of the daemon that last held the pins.
    pub const PID: u32 = 1;
    /// 1 when that daemon stopped cleanly (SIGTERM/SIGINT), 0 while it runs or
    /// after a crash.
    pub const CLEAN_STOP: u32 = 2;
    /// How many daemons have held these pins (1 for the one that created them).
    pub const STARTS: u32 = 3;
    /// Slot `COUNTED_BASE + i` holds `COUNTERS[i]` as the daemons last reported it:
    /// what the kernel counted above it is news for the next report.
    pub const COUNTED_BASE: u32 = 16;
    /// Number of slots.
    pub const LEN: u32 = COUNTED_BASE + super::counter::LEN;
}

/// Slots of the `GUARD_PIN` array: the identity of guard's pin directory, which
/// tracked processes may not open or change (0 in `INO`: none set).
pub mod guard_pin {
    /// The directory's device as the kernel encodes it (`MKDEV(major, minor)`,
    /// major << 20 | minor), not as `stat(2)` reports it.
    pub const DEV: u32 = 0;
    /// The directory's inode number.
    pub const INO: u32 = 1;
    /// Number of slots.
    pub const LEN: u32 = 2;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::Tracked {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::Bucket {}
    unsafe impl aya::Pod for super::SessionVar {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::DnsStub {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::DnsOrig {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::StubPeer {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::DelegateArm {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::FileId {}
    // SAFETY: plain `#[repr(C)]` integers with no padding.
    unsafe impl aya::Pod for super::Fetched {}
}

/// The epochs of the kernel's repeat cache (`OPEN_EPOCH`, an array of u64): a
/// counted open stands for the open first reported only while both are unchanged.
pub mod epoch {
    /// Bumped by the kernel before and after every rename, link, unlink, rmdir and
    /// mount change on the host: whatever could give a file another path.
    pub const FILES: u32 = 0;
    /// Bumped by user space at every change of the rules in the kernel (policy
    /// loads, identity refreshes). 0 until the daemon has installed its rules:
    /// nothing is counted then.
    pub const RULES: u32 = 1;
    /// Entries of `OPEN_EPOCH`.
    pub const LEN: u32 = 2;
}
