//! What is compared (the setups) and what is timed under each (the workloads).

use super::agent_day::{CARGO_DEPS, NPM_DEPS};
use super::codex::SCRIPT;
use super::options::Params;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Setup {
    None,
    Floor,
    GuardOutside,
    GuardInside,
    GuardEnforce,
    Auditd,
    LibbpfTools,
    Bpftrace,
}

pub(super) const SETUPS: [Setup; 8] = [
    Setup::None,
    Setup::Floor,
    Setup::GuardOutside,
    Setup::GuardInside,
    Setup::GuardEnforce,
    Setup::Auditd,
    Setup::LibbpfTools,
    Setup::Bpftrace,
];

impl Setup {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Floor => "floor",
            Self::GuardOutside => "guard-outside",
            Self::GuardInside => "guard-inside",
            Self::GuardEnforce => "guard-enforce",
            Self::Auditd => "auditd",
            Self::LibbpfTools => "libbpf-tools",
            Self::Bpftrace => "bpftrace",
        }
    }

    pub(super) fn description(self) -> &'static str {
        match self {
            Self::None => "nothing attached",
            Self::Floor => "`guard daemon --floor`: empty programs on exactly guard's hooks",
            Self::GuardOutside => {
                "guard daemon running (log-only policy), the workload not in a session"
            }
            Self::GuardInside => {
                "workload run with `guard run` (log-only policy): every event logged to a file"
            }
            Self::GuardEnforce => {
                "workload run with `guard run` under `--policy workstation` (enforce mode)"
            }
            Self::Auditd => {
                "auditd (Debian config, own log file) with exit rules for open/openat/openat2/creat, \
                 execve/execveat, connect, sendto/sendmsg/sendmmsg, clone/clone3/fork/vfork and \
                 exit_group, filtered by the workload's uid"
            }
            Self::LibbpfTools => {
                "`opensnoop -u UID` + `execsnoop -u UID` (+ `tcpconnect -u UID` where the kernel \
                 allows it), output to files"
            }
            Self::Bpftrace => {
                "bpftrace script printing fork/exec/exit, open* (path and result) and \
                 connect/send events with `uid == UID` predicates, output to a file"
            }
        }
    }

    pub(super) fn in_session(self) -> bool {
        matches!(self, Self::GuardInside | Self::GuardEnforce)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Workload {
    Open,
    Files,
    ForkExec,
    Connect,
    Real,
    Build,
    Fetch,
    Cargo,
    Npm,
    Codex,
    Bulk,
    Unix,
    Dns,
}

pub(super) const WORKLOADS: [Workload; 13] = [
    Workload::Open,
    Workload::Files,
    Workload::ForkExec,
    Workload::Connect,
    Workload::Unix,
    Workload::Dns,
    Workload::Real,
    Workload::Build,
    Workload::Fetch,
    Workload::Cargo,
    Workload::Npm,
    Workload::Codex,
    Workload::Bulk,
];

/// Where the dns workload's server (dnsmasq, started by the bench) listens, port 53.
pub(super) const DNS_SERVER: &str = "127.0.0.77";

impl Workload {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Files => "files",
            Self::ForkExec => "fork-exec",
            Self::Connect => "connect",
            Self::Real => "real",
            Self::Build => "build",
            Self::Fetch => "fetch",
            Self::Cargo => "cargo",
            Self::Npm => "npm",
            Self::Codex => "codex",
            Self::Bulk => "bulk",
            Self::Unix => "unix",
            Self::Dns => "dns",
        }
    }

    /// The workload named `name` (`--workload`).
    pub(super) fn by_name(name: &str) -> Option<Self> {
        WORKLOADS.into_iter().find(|w| w.name() == name)
    }

    pub(super) fn description(self, p: &Params) -> String {
        match self {
            Self::Open => format!("open(O_RDONLY) + close of one file, {} times", p.open_n),
            Self::Files => format!(
                "open(O_RDONLY) + close of 8 files in turn, {} times (more files than \
                 a thread's counted repeats: every open judged and recorded)",
                p.open_n
            ),
            Self::ForkExec => format!("fork + exec /bin/true + wait, {} times", p.forkexec_n),
            Self::Connect => format!(
                "TCP connect to a loopback listener the bench owns + close (RST), {} times",
                p.connect_n
            ),
            Self::Real => format!(
                "git over a generated repository of {} files (in tmpfs): `git checkout -q b` \
                 (rewrites {} files), `git checkout -q a`, `git status --porcelain`, {} times",
                p.files, p.changed, p.git_n
            ),
            Self::Build => format!(
                "a small C build (in tmpfs): `gcc -O2 -c` of {} generated files (41 functions \
                 each, including stdio.h, stdlib.h and string.h), one after the other",
                p.build_n
            ),
            Self::Fetch => format!(
                "a build that resolves names (in tmpfs): {} steps of `curl` fetching a \
                 source file from http://deps.bench.example (a loopback HTTP server the bench \
                 owns; the name resolved by glibc, A and AAAA, through the bench's dnsmasq) \
                 then `gcc -O2 -c` of it; in a session every query passes guard's resolver",
                p.fetch_n
            ),
            Self::Cargo => format!(
                "a Rust build (in tmpfs): `cargo build --offline` (debug) of a crate using \
                 {CARGO_DEPS} from crates.io (vendored by the set-up), from a clean target \
                 directory, {} time(s)",
                p.cargo_n
            ),
            Self::Npm => format!(
                "an npm project (in tmpfs) using {NPM_DEPS} from the npm registry: \
                 `npm ci --offline` (node_modules removed and installed again from the \
                 lock file and the cache) then `npm test` (mocha), {} time(s)",
                p.npm_n
            ),
            Self::Codex => format!(
                "the real Codex CLI (npm package, started by its npm wrapper) against a \
                 scripted model (the Responses API, in a network namespace of its own): \
                 `codex exec --sandbox workspace-write` in the git repository, the model \
                 having it run {} shell commands (git status, log and diff, ls, grep, cat, \
                 find, sed), one per turn, {} session(s)",
                SCRIPT.len(),
                p.codex_n
            ),
            Self::Bulk => format!(
                "TCP upload of {} MiB to a loopback sink the bench owns, one connection, \
                 1 MiB writes (egress accounting: every packet passes the cgroup_skb \
                 programs; in a session the socket is tagged and counted)",
                p.bulk_mib
            ),
            Self::Unix => format!(
                "sendmsg of one byte to a Unix datagram socket the workload bound (by its \
                 path name), then recv, {} times",
                p.unix_n
            ),
            Self::Dns => format!(
                "a DNS query (A, bench.example) over a UDP socket connected to a dnsmasq the \
                 bench owns ({DNS_SERVER}:53), and its answer, {} times (in a session the \
                 kernel points the socket at guard's resolver, which forwards the allowed \
                 name to dnsmasq)",
                p.dns_n
            ),
        }
    }

    /// The micro workloads; the others are real programs (git, gcc, cargo, npm, Codex).
    pub(super) fn micro(self) -> bool {
        matches!(
            self,
            Self::Open
                | Self::Files
                | Self::ForkExec
                | Self::Connect
                | Self::Bulk
                | Self::Unix
                | Self::Dns
        )
    }

    /// The workload's default size.
    pub(super) fn size(self, p: &Params) -> u64 {
        match self {
            Self::Open | Self::Files => p.open_n,
            Self::ForkExec => p.forkexec_n,
            Self::Connect => p.connect_n,
            Self::Real => p.git_n,
            Self::Build => p.build_n,
            Self::Fetch => p.fetch_n,
            Self::Cargo => p.cargo_n,
            Self::Npm => p.npm_n,
            Self::Codex => p.codex_n,
            Self::Bulk => p.bulk_mib,
            Self::Unix => p.unix_n,
            Self::Dns => p.dns_n,
        }
    }
}
