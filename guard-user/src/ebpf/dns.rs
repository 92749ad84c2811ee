//! The maps that point sessions' DNS at guard's resolver (guard-ebpf's `dns.rs`):
//! where the resolver listens in each network namespace (`DNS_STUB`), whether the
//! kernel points DNS there at all and what it refuses where none runs
//! (`DNS_CONFIG`), and who sent each message the resolver gets (`STUB_PEERS`, read
//! by the resolver itself).

use aya::maps::{Array, HashMap, MapData};
use guard_common::{DnsStub, StubPeer, dns_stub, stub_peer_key};

use super::{Error, Probes, take};

/// `DNS_STUB` and `DNS_CONFIG`, written by the daemon's loop.
pub struct DnsMaps {
    stubs: HashMap<MapData, u32, DnsStub>,
    config: Array<MapData, u32>,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> Error {
    move |source| Error::Map { map, source }
}

impl DnsMaps {
    pub(super) fn take(bpf: &mut aya::Ebpf) -> Result<Self, Error> {
        Ok(Self {
            stubs: take(bpf, "DNS_STUB")?,
            config: take(bpf, "DNS_CONFIG")?,
        })
    }

    /// Where the resolver listens in network namespace `netns` (its inode number).
    pub fn set_stub(&mut self, netns: u32, stub: DnsStub) -> Result<(), Error> {
        self.stubs
            .insert(netns, stub, 0)
            .map_err(map_err("DNS_STUB"))
    }

    /// No resolver of guard's runs in `netns` any more.
    pub fn remove_stub(&mut self, netns: u32) {
        let _ = self.stubs.remove(&netns);
    }

    /// Every namespace the map names (an earlier daemon's entries among them).
    pub fn stubs(&self) -> Vec<u32> {
        self.stubs.keys().filter_map(Result::ok).collect()
    }

    /// Whether the kernel points sessions' DNS at the resolver (`on`), and the
    /// rule (index plus one; 0: none) under which it refuses DNS in a namespace
    /// where no resolver of guard's runs.
    pub fn configure(&mut self, on: bool, miss_rule: u16) -> Result<(), Error> {
        self.config
            .set(dns_stub::MISS_RULE, u32::from(miss_rule), 0)
            .map_err(map_err("DNS_CONFIG"))?;
        self.config
            .set(dns_stub::ON, u32::from(on), 0)
            .map_err(map_err("DNS_CONFIG"))
    }
}

/// `STUB_PEERS`, read by guard's resolver: who sent the message it got from a
/// loopback port.
pub struct StubPeers(HashMap<MapData, u32, StubPeer>);

impl StubPeers {
    /// The sender of a message from local port `port` over `protocol`
    /// (`libc::IPPROTO_UDP`, `libc::IPPROTO_TCP`), as the kernel saw it leave.
    pub fn get(&self, protocol: u16, port: u16) -> Option<StubPeer> {
        self.0.get(&stub_peer_key(protocol, port), 0).ok()
    }
}

impl Probes {
    /// The DNS maps the loop writes (taken once: `None` after).
    pub fn take_dns(&mut self) -> Option<DnsMaps> {
        self.dns.take()
    }

    /// The senders' map guard's resolver reads (taken once).
    pub fn take_stub_peers(&mut self) -> Option<StubPeers> {
        self.stub_peers.take().map(StubPeers)
    }
}

/// `SPAWNERS` and `SPAWNER_PORTS`: the known spawners of this host (outside every
/// session), kept by `crate::delegation`.
pub struct DelegationMaps {
    spawners: HashMap<MapData, u32, u32>,
    ports: HashMap<MapData, u16, u32>,
}

impl DelegationMaps {
    pub(super) fn take(bpf: &mut aya::Ebpf) -> Result<Self, Error> {
        Ok(Self {
            spawners: take(bpf, "SPAWNERS")?,
            ports: take(bpf, "SPAWNER_PORTS")?,
        })
    }

    /// Spawner `pid`: what a session's connect to it gets (0: reported, and its
    /// next fork joins the session; else a refusal's rule bits).
    pub fn set_spawner(&mut self, pid: u32, verdict: u32) {
        if let Err(e) = self.spawners.insert(pid, verdict, 0) {
            tracing::warn!("SPAWNERS: {e}");
        }
    }

    pub fn remove_spawner(&mut self, pid: u32) {
        let _ = self.spawners.remove(&pid);
    }

    /// The loopback ports spawners listen on, as (port, pid): the map holds these
    /// and no others.
    pub fn set_ports(&mut self, ports: &[(u16, u32)]) {
        let stale: Vec<u16> = self
            .ports
            .keys()
            .filter_map(Result::ok)
            .filter(|p| !ports.iter().any(|(q, _)| q == p))
            .collect();
        for port in stale {
            let _ = self.ports.remove(&port);
        }
        for (port, pid) in ports {
            if let Err(e) = self.ports.insert(port, pid, 0) {
                tracing::warn!("SPAWNER_PORTS: {e}");
            }
        }
    }
}

impl Probes {
    /// The spawners' maps (taken once).
    pub fn take_delegation(&mut self) -> Option<DelegationMaps> {
        self.delegation.take()
    }
}
