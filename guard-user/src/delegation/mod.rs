//! Work handed to a process outside the session's tree: a session process that
//! connects to a Unix socket or a loopback port of a process outside every session
//! is shown with that process (`Event::listener`: program, pid, user, whether it is
//! a known spawner, one that runs commands on request); a connect to a known
//! spawner breaks `[delegation]`'s rule; and the kernel keeps the spawners of this
//! host in `SPAWNERS` (by tgid) and `SPAWNER_PORTS` (their loopback ports), so
//! that it refuses such connects where the policy says so, and makes a spawner's
//! next fork after a session's request part of that session (role `delegate`).
//!
//! The kernel names a Unix socket's listener itself (`SO_PEERCRED`); the listener
//! of a loopback port is found here, from `/proc/net/tcp{,6}` and the listening
//! socket's owner among `/proc/*/fd` (kept while the socket listens).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::{
    ebpf::DelegationMaps,
    event::{Detail, Event, Listener},
    policy::model::{Action, Delegation, Mode, Policy},
};

/// How often the host's processes are searched for spawners.
const SCAN_EVERY: Duration = Duration::from_secs(5);

/// How long a reading of the host's listening ports names a loopback connect's
/// listener, and how old it must be before a port it lacks is looked for again.
/// Reading them (`/proc/net/tcp`) walks every TCP socket of the host: once per
/// connect, a session connecting in a loop (tens of thousands of sockets in
/// TIME_WAIT) kept the daemon in the kernel for as long as the loop lasted.
const PORTS_FRESH: Duration = Duration::from_millis(200);
const PORTS_RETRY: Duration = Duration::from_millis(10);

/// The program of process `pid`: its executable's file name, else its command
/// name; and the executable's path.
fn program_of(pid: u32) -> (Option<String>, Option<String>) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_owned()
        });
    let name = exe
        .as_deref()
        .and_then(|e| e.rsplit('/').next())
        .map(str::to_owned)
        .or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|c| c.trim_end().to_owned())
        });
    (name, exe)
}

/// The kind of spawner process `pid` is, by its program or its command name.
fn spawner_kind(delegation: &Delegation, pid: u32, program: Option<&str>) -> Option<String> {
    let by_program = program.and_then(|p| delegation.kind_of(p));
    let kind = by_program.or_else(|| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        // tmux's server calls itself "tmux: server".
        let comm = comm.trim_end();
        delegation.kind_of(comm.split(':').next().unwrap_or(comm))
    });
    kind.map(str::to_owned)
}

/// The effective uid of process `pid`.
fn euid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Listening TCP sockets on this host's loopback or any address: port → socket
/// inode, from `/proc/net/tcp` and `/proc/net/tcp6` (of the daemon's namespace).
fn listening_ports() -> HashMap<u16, u64> {
    let mut out = HashMap::new();
    let entries = procfs::net::tcp()
        .into_iter()
        .flatten()
        .chain(procfs::net::tcp6().into_iter().flatten());
    for e in entries {
        let ip = e.local_address.ip();
        let reachable = ip.is_loopback() || ip.is_unspecified();
        if e.state == procfs::net::TcpState::Listen && reachable {
            out.insert(e.local_address.port(), e.inode);
        }
    }
    out
}

/// The process holding socket `inode`, among `pids` (none given: every process).
fn owner_of(inode: u64, pids: Option<&[u32]>) -> Option<u32> {
    let all: Vec<u32>;
    let pids = match pids {
        Some(p) => p,
        None => {
            all = procfs::process::all_processes()
                .ok()?
                .filter_map(|p| p.ok().map(|p| p.pid as u32))
                .collect();
            &all
        }
    };
    pids.iter().copied().find(|pid| {
        procfs::process::Process::new(*pid as i32)
            .and_then(|p| p.fd())
            .is_ok_and(|fds| {
                fds.filter_map(Result::ok).any(
                    |fd| matches!(fd.target, procfs::process::FDTarget::Socket(i) if i == inode),
                )
            })
    })
}

/// What the daemon knows of this host's spawners, and the kernel's copy.
pub struct Spawners {
    maps: DelegationMaps,
    /// Spawners by tgid, with their kind.
    known: HashMap<u32, String>,
    /// The value the kernel holds for each (`SPAWNERS`): 0, or a refusal's rule bits.
    verdict: u32,
    scanned: Option<Instant>,
    /// The listener of each loopback port a session connected to: (socket inode,
    /// pid) while that socket listens.
    ports: HashMap<u16, (u64, u32)>,
    /// The host's listening ports (port → socket inode), and when they were read.
    listening: Option<(Instant, HashMap<u16, u64>)>,
}

impl Spawners {
    pub fn new(maps: DelegationMaps) -> Self {
        Self {
            maps,
            known: HashMap::new(),
            verdict: 0,
            scanned: None,
            ports: HashMap::new(),
            listening: None,
        }
    }

    /// A (re)loaded policy: what a connect to a spawner gets in the kernel, and
    /// which programs are spawners (the host is searched again).
    pub fn configure(&mut self, policy: &Policy) {
        let refuse = policy.mode == Mode::Enforce
            && matches!(policy.delegation.action, Some(Action::Deny | Action::Kill));
        self.verdict = if refuse {
            policy
                .rules
                .iter()
                .position(|r| r.id == Delegation::RULE)
                .and_then(|i| u16::try_from(i + 1).ok())
                .map_or(0, |r| u32::from(r | guard_common::rules::enforced::DENIED))
        } else {
            0
        };
        self.scanned = None;
        self.scan(&policy.delegation, |_| false);
    }

    /// Searches the host's processes for spawners when due (every few seconds),
    /// and writes what changed to the kernel's maps. `tracked`: a session's
    /// process (never a spawner outside every session).
    pub fn scan(&mut self, delegation: &Delegation, tracked: impl Fn(u32) -> bool) {
        if self.scanned.is_some_and(|at| at.elapsed() < SCAN_EVERY) {
            return;
        }
        self.scanned = Some(Instant::now());
        let Ok(all) = procfs::process::all_processes() else {
            return;
        };
        let mut found: HashMap<u32, String> = HashMap::new();
        for p in all.filter_map(Result::ok) {
            let pid = p.pid as u32;
            if pid == std::process::id() || tracked(pid) {
                continue;
            }
            let (program, _) = program_of(pid);
            if let Some(kind) = spawner_kind(delegation, pid, program.as_deref()) {
                found.insert(pid, kind);
            }
        }
        for pid in self.known.keys().filter(|p| !found.contains_key(p)) {
            self.maps.remove_spawner(*pid);
        }
        for pid in found.keys() {
            self.maps.set_spawner(*pid, self.verdict);
        }
        // Their listening ports on loopback.
        let pids: Vec<u32> = found.keys().copied().collect();
        let mut ports = Vec::new();
        for (port, inode) in listening_ports() {
            if let Some(pid) = owner_of(inode, Some(&pids)) {
                ports.push((port, pid));
            }
        }
        self.maps.set_ports(&ports);
        self.known = found;
    }

    /// Fills in `ev`'s listener (a Unix socket's, named by the kernel; a loopback
    /// port's, found here): its program, user and kind of spawner. A listener in a
    /// session is no delegation: it is dropped. A spawner the last search missed
    /// is added now (the kernel refuses and arms from its next connect on).
    pub fn annotate(
        &mut self,
        ev: &mut Event,
        delegation: &Delegation,
        in_session: impl Fn(u32) -> bool,
    ) {
        if ev.listener.is_none()
            && let Detail::Connect { addr, port, .. } = ev.detail
            && addr.to_canonical().is_loopback()
            && let Some(pid) = self.port_owner(port, addr)
        {
            ev.listener = Some(Box::new(Listener {
                pid,
                uid: euid_of(pid),
                ..Listener::default()
            }));
        }
        let Some(listener) = ev.listener.as_mut() else {
            return;
        };
        if in_session(listener.pid) || listener.pid == std::process::id() {
            ev.listener = None;
            return;
        }
        let (program, exe) = program_of(listener.pid);
        listener.spawner = spawner_kind(delegation, listener.pid, program.as_deref());
        listener.program = program;
        listener.exe = exe;
        listener.user = listener
            .uid
            .and_then(uzers::get_user_by_uid)
            .map(|u| u.name().to_string_lossy().into_owned());
        if let Some(kind) = &listener.spawner
            && !self.known.contains_key(&listener.pid)
        {
            self.known.insert(listener.pid, kind.clone());
            self.maps.set_spawner(listener.pid, self.verdict);
        }
    }

    /// The host's listening ports, read again when [`PORTS_FRESH`] has passed, or
    /// when `port` is not among them and [`PORTS_RETRY`] has (a listener that
    /// started since).
    fn listening(&mut self, port: u16) -> &HashMap<u16, u64> {
        let read = match self.listening.take() {
            Some((at, ports))
                if at.elapsed() < PORTS_FRESH
                    && (at.elapsed() < PORTS_RETRY || ports.contains_key(&port)) =>
            {
                (at, ports)
            }
            _ => (Instant::now(), listening_ports()),
        };
        &self.listening.insert(read).1
    }

    /// The process listening on loopback `port` (cached while its socket listens).
    fn port_owner(&mut self, port: u16, _addr: IpAddr) -> Option<u32> {
        let inode = *self.listening(port).get(&port)?;
        if let Some((i, pid)) = self.ports.get(&port)
            && *i == inode
        {
            return Some(*pid);
        }
        let pid = owner_of(inode, None)?;
        if let Some((_, live)) = &self.listening {
            self.ports.retain(|p, _| live.contains_key(p));
        }
        self.ports.insert(port, (inode, pid));
        Some(pid)
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::model::Delegation;

    #[test]
    fn the_built_in_spawners_load_and_name_their_programs() {
        let d = Delegation::default();
        assert!(d.spawners.len() >= 6, "{:?}", d.spawners);
        assert_eq!(d.kind_of("tmux"), Some("tmux"));
        assert_eq!(d.kind_of("sshd"), Some("sshd"));
        assert_eq!(d.kind_of("dockerd"), Some("docker"));
        assert_eq!(d.kind_of("bash"), None);
        assert!(d.spawners.iter().all(|s| !s.what.is_empty()));
    }
}
