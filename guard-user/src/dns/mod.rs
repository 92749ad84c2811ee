//! guard's resolver: sessions' DNS goes through it (the kernel points every
//! connect and send of a session process to port 53 at it, guard-ebpf's `dns.rs`),
//! and it answers only the names the policy allows (`policy::dns`). One resolver
//! runs in each network namespace that session processes use (on its loopback),
//! started when the daemon first sees a session process there and stopped when
//! the namespace's sessions have ended; the daemon's own namespace always has one
//! while the policy turns the resolver on. A namespace with no interface but `lo`
//! needs none: nothing sent there leaves the host.
//!
//! The loop owns [`Resolvers`] and tells it what it sees; each namespace's
//! resolver runs as tasks of its own (`stub`), sharing the names policy through a
//! watch channel.

pub mod netns;
pub mod stub;

use std::{
    collections::{HashMap, HashSet},
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use guard_common::{DnsStub, dns_stub};
use tokio::sync::{mpsc, watch};

use self::{
    netns::Netns,
    stub::{Shared, Stub},
};
use crate::{
    ebpf::{DnsMaps, StubPeers},
    event::SessionId,
    policy::{
        dns::DnsPolicy,
        model::{Action, Dns, Mode, Policy},
    },
};

/// How long a namespace whose resolver could not start waits before another try.
const RETRY: Duration = Duration::from_secs(5);

/// A resolver that started (or could not) in a namespace: sent back to the loop.
pub struct Started {
    netns: u32,
    /// `Ok(None)`: the namespace is isolated (only `lo`), no resolver needed.
    result: io::Result<Option<Stub>>,
}

enum State {
    Starting,
    Running(#[expect(dead_code, reason = "held, not read: dropping it stops the resolver")] Stub),
    Isolated,
    Failed(Instant),
}

/// One network namespace session processes use.
struct Space {
    state: State,
    /// Its sessions (the daemon's own namespace keeps its resolver regardless).
    sessions: HashSet<SessionId>,
    /// A process seen in it, to enter it by (`/proc/PID/ns/net`).
    pid: u32,
}

/// Every namespace's resolver, and the kernel's map of them.
pub struct Resolvers {
    maps: DnsMaps,
    shared: Arc<Shared>,
    policy: watch::Sender<Arc<DnsPolicy>>,
    /// Whether the kernel can point DNS here, or why not.
    tier: Result<(), String>,
    /// `[dns] resolver` in force and the tier there: resolvers run.
    on: bool,
    /// `[dns] upstream`; empty: each namespace's own resolv.conf.
    upstream: Vec<SocketAddr>,
    spaces: HashMap<u32, Space>,
    /// The daemon's own namespace.
    host: u32,
    started: mpsc::Sender<Started>,
}

impl Resolvers {
    /// `tier`: whether the kernel can point sessions' DNS here. Started
    /// resolvers report on `started`, for [`Resolvers::started`].
    pub fn new(
        maps: DnsMaps,
        peers: Option<StubPeers>,
        policy: Arc<DnsPolicy>,
        tier: Result<(), String>,
        started: mpsc::Sender<Started>,
    ) -> io::Result<Self> {
        let (tx, rx) = watch::channel(policy);
        Ok(Self {
            maps,
            shared: Arc::new(Shared {
                policy: rx,
                peers,
                counts: Default::default(),
            }),
            policy: tx,
            tier,
            on: false,
            upstream: Vec::new(),
            spaces: HashMap::new(),
            host: netns::inode("self")?,
            started,
        })
    }

    /// Applies a (re)loaded policy: its names, whether the resolver runs, and
    /// what the kernel refuses where none runs (`dns.names` when unknown names are
    /// refused in enforce mode: a namespace without a resolver yet cannot send
    /// DNS past it).
    pub fn configure(
        &mut self,
        policy: &Policy,
        names: Arc<DnsPolicy>,
    ) -> Result<(), crate::ebpf::Error> {
        self.policy.send_replace(names);
        self.upstream = policy.dns.upstream.clone();
        let on = policy.dns.resolver && self.tier.is_ok();
        if policy.dns.resolver
            && let Err(why) = &self.tier
        {
            tracing::warn!(
                "guard's resolver cannot run here: {why}; sessions' DNS goes where it was sent"
            );
        }
        let refusing = policy.mode == Mode::Enforce
            && matches!(policy.dns.unknown, Some(Action::Deny | Action::Kill));
        let miss_rule = if on && refusing {
            policy
                .rules
                .iter()
                .position(|r| r.id == Dns::RULE)
                .and_then(|i| u16::try_from(i + 1).ok())
                .unwrap_or(0)
        } else {
            0
        };
        if self.on && !on {
            for (netns, _) in self.spaces.drain() {
                self.maps.remove_stub(netns);
            }
        }
        self.on = on;
        self.maps.configure(on, miss_rule)?;
        if on {
            let host = self.host;
            self.want(host, std::process::id(), None);
        }
        Ok(())
    }

    /// A session process (`pid`, of `session`) runs in network namespace `netns`:
    /// the namespace gets a resolver if it has none.
    pub fn want(&mut self, netns: u32, pid: u32, session: Option<SessionId>) {
        if !self.on || netns == 0 {
            return;
        }
        let space = self.spaces.entry(netns).or_insert(Space {
            state: State::Failed(Instant::now() - RETRY),
            sessions: HashSet::new(),
            pid,
        });
        space.sessions.extend(session);
        space.pid = pid;
        let retry = matches!(space.state, State::Failed(at) if at.elapsed() >= RETRY);
        if !retry {
            return;
        }
        space.state = State::Starting;
        let (shared, upstream, host, tx) = (
            Arc::clone(&self.shared),
            self.upstream.clone(),
            self.host,
            self.started.clone(),
        );
        tokio::spawn(async move {
            let result = start(pid, netns == host, shared, upstream).await;
            let _ = tx.send(Started { netns, result }).await;
        });
    }

    /// A resolver started (or did not): the kernel points the namespace's DNS at
    /// it from now on.
    pub fn started(&mut self, s: Started) {
        let Some(space) = self.spaces.get_mut(&s.netns) else {
            // Its sessions ended meanwhile: the resolver stops with `s`.
            return;
        };
        let (state, entry) = match s.result {
            Ok(Some(stub)) => {
                tracing::info!(
                    netns = s.netns,
                    port4 = stub.port4,
                    port6 = stub.port6,
                    "guard's resolver runs in this network namespace"
                );
                let entry = DnsStub {
                    port4: stub.port4,
                    port6: stub.port6,
                    flags: 0,
                };
                (State::Running(stub), Some(entry))
            }
            Ok(None) => (
                State::Isolated,
                Some(DnsStub {
                    flags: dns_stub::ISOLATED,
                    ..DnsStub::default()
                }),
            ),
            Err(e) => {
                tracing::warn!(
                    netns = s.netns,
                    pid = space.pid,
                    "guard's resolver cannot start in this network namespace: {e}"
                );
                // No port: the kernel treats the namespace as one with no resolver
                // (the policy's refusal or pass), and stops waking the daemon for
                // each exec there.
                (State::Failed(Instant::now()), Some(DnsStub::default()))
            }
        };
        space.state = state;
        if let Some(entry) = entry
            && let Err(e) = self.maps.set_stub(s.netns, entry)
        {
            tracing::warn!("{}", crate::ebpf::short_chain(&e));
        }
    }

    /// A session ended: a namespace none of whose sessions runs loses its resolver
    /// (its sockets would keep the namespace alive).
    pub fn session_ended(&mut self, session: SessionId) {
        let host = self.host;
        let mut gone = Vec::new();
        for (netns, space) in &mut self.spaces {
            if space.sessions.remove(&session) && space.sessions.is_empty() && *netns != host {
                gone.push(*netns);
            }
        }
        for netns in gone {
            self.spaces.remove(&netns);
            self.maps.remove_stub(netns);
        }
    }

    /// Namespaces found isolated are looked at again (an interface may have been
    /// moved in since): one that is not any more gets its resolver.
    pub fn recheck(&mut self) {
        let again: Vec<(u32, u32)> = self
            .spaces
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Isolated))
            .filter(|(_, s)| netns::isolated(s.pid).is_ok_and(|isolated| !isolated))
            .map(|(netns, s)| (*netns, s.pid))
            .collect();
        for (netns, pid) in again {
            if let Some(space) = self.spaces.get_mut(&netns) {
                space.state = State::Failed(Instant::now() - RETRY);
            }
            self.want(netns, pid, None);
        }
    }

    /// The namespaces a resolver runs in now.
    pub fn running(&self) -> usize {
        self.spaces
            .values()
            .filter(|s| matches!(s.state, State::Running(_)))
            .count()
    }

    /// Queries answered so far: (forwarded, refused, failed, dropped).
    pub fn counts(&self) -> [u64; 4] {
        self.shared.counts.snapshot()
    }

    /// The daemon stops cleanly: no namespace points at a resolver that is gone
    /// (the policy's refusal where none runs stays in force in the kernel).
    pub fn stop(&mut self) {
        for (netns, _) in self.spaces.drain() {
            self.maps.remove_stub(netns);
        }
    }
}

/// Starts the resolver of the namespace process `pid` runs in (`host`: the
/// daemon's own).
async fn start(
    pid: u32,
    host: bool,
    shared: Arc<Shared>,
    upstream: Vec<SocketAddr>,
) -> io::Result<Option<Stub>> {
    if host {
        let upstream = if upstream.is_empty() {
            nameservers("/")
        } else {
            upstream
        };
        return Stub::start(Netns::Host, shared, upstream).await.map(Some);
    }
    if netns::isolated(pid)? {
        return Ok(None);
    }
    let ns = tokio::task::spawn_blocking(move || Netns::enter(pid))
        .await
        .map_err(io::Error::other)??;
    let upstream = if upstream.is_empty() {
        // The namespace's own servers, as its processes see them.
        nameservers(&format!("/proc/{pid}/root"))
    } else {
        upstream
    };
    Stub::start(ns, shared, upstream).await.map(Some)
}

/// The name servers of `<root>/etc/resolv.conf`, port 53.
fn nameservers(root: &str) -> Vec<SocketAddr> {
    let path = std::path::Path::new(root).join("etc/resolv.conf");
    let Ok(text) = std::fs::read(&path) else {
        return Vec::new();
    };
    match hickory_resolver::system_conf::parse_resolv_conf(text) {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|s| SocketAddr::new(s.ip, 53))
            .collect(),
        Err(e) => {
            tracing::debug!("{}: {e}", path.display());
            Vec::new()
        }
    }
}
