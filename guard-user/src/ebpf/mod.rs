//! Loading and attaching guard's eBPF programs, and the maps user space drives:
//! `TRACKED` (session membership), `AGENTS` and `AGENT_CGROUPS` (the names and the
//! cgroups whose exec starts a session), `EVENTS` (the ring buffer) and `COUNTERS` (lost records).
//!
//! Programs are attached through links pinned under the pin directory (see
//! [`pins`]): dropping [`Probes`] detaches nothing, and the kernel keeps enforcing
//! after the daemon is gone, until `guard unload`.

mod agents;
mod attach;
mod dns;
pub mod floor;
pub mod object;
pub mod pins;
mod rules;
mod state;
pub mod table;
pub mod tiers;

use std::{collections::BTreeMap, fs::File, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, RingBuf},
};
use guard_common::Tracked;

use self::agents::{AgentMaps, protect_pins, register_self};
pub use self::agents::{AgentPrograms, agent_programs};
pub use self::dns::{DelegationMaps, DnsMaps, StubPeers};
use self::pins::{Links, PinDir, Swaps};
use self::rules::RuleMaps;
pub use self::state::{DaemonMaps, Lost, Resumed, lost_of};
pub use guard_policy::tables::RuleTables;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("guard must run as root to load eBPF programs (effective uid is {euid})")]
    NotRoot { euid: u32 },
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] crate::host::mounts::Error),
    #[error("cannot open the cgroup2 mount {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load guard's eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no program or map named {0}")]
    Missing(&'static str),
    #[error("cannot load program {program}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "cannot load program {program}: this kernel's verifier refuses its bpf_loop \
         callbacks. The default build of guard's programs needs `bpf_loop` (Linux 5.17, \
         or a kernel that backports it) and callbacks as subprograms (5.13); on other \
         kernels guard loads its compat build (`--ebpf-build auto` or `compat`, \
         docs/kernels.md)"
    )]
    NoBpfLoop {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot attach program {program} to {target}")]
    Attach {
        program: &'static str,
        target: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("map {map} failed")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("pin directory {path}")]
    PinDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{0} is not on a BPF file system (mount one there, or pick a --pin-dir under /sys/fs/bpf)"
    )]
    NotBpffs(PathBuf),
    #[error(
        "another guard daemon{holder} holds the pins in {path}: stop it first, or give this one \
         its own --pin-dir"
    )]
    PinsHeld { path: PathBuf, holder: String },
    #[error("cannot pin at {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("{0} is not a guard pin directory (no maps/DAEMON, no links/): nothing removed")]
    NotGuards(PathBuf),
    #[error(
        "the pins are removed, but the kernel still holds programs {ids:?} after {waited:?} \
         (another process may hold their descriptors)"
    )]
    StillLoaded {
        ids: Vec<u32>,
        waited: std::time::Duration,
    },
    #[error("no pinned link for {0}")]
    NoLink(String),
    #[error("{0}")]
    Startup(String),
    #[error("cannot point the pinned link of {hook} at the new program")]
    LinkUpdate {
        hook: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the link of {hook} cannot be pinned (a kernel before 5.15 attaches tracepoints without bpf_link)"
    )]
    Unpinnable {
        hook: String,
        #[source]
        source: aya::programs::links::LinkError,
    },
}

/// The records' ring buffer by default: 8 MiB, some 60,000 open records.
pub const RING_KIB_DEFAULT: u32 = 8192;

/// `--ring-buffer-kib`: a power of two from 64 KiB (the kernel wants a power-of-two
/// number of pages) to 1 GiB.
pub fn parse_ring_kib(s: &str) -> Result<u32, String> {
    let kib: u32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of KiB: {e}"))?;
    if !(64..=1 << 20).contains(&kib) || !kib.is_power_of_two() {
        return Err(format!(
            "{kib} KiB: the ring buffer is a power of two from 64 to 1048576 KiB"
        ));
    }
    Ok(kib)
}

/// What [`prepare`] gives every load.
pub(crate) struct Prepared {
    /// The object, loaded (its programs not yet).
    pub bpf: Ebpf,
    /// The cgroup2 mount, by path and opened, for the cgroup hooks.
    pub cgroup_path: PathBuf,
    pub cgroup: File,
    /// The kernel's BTF, parsed once, where it has one.
    pub btf: Option<aya::Btf>,
    /// Which build of guard-ebpf was loaded.
    pub build: object::Build,
}

/// What every load needs first: root, tracefs, the cgroup2 mount (opened, for the
/// sock_addr hooks), and the object loaded — against the maps pinned in `pins`
/// (created and pinned there if absent), or with maps of its own.
pub(crate) fn prepare(
    pins: Option<&PinDir>,
    ring_bytes: u32,
    choice: object::Choice,
) -> Result<Prepared, Error> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    crate::host::mounts::ensure_tracefs()?;
    let cgroup_path = crate::host::mounts::cgroup2_root()?;
    let cgroup = File::open(&cgroup_path).map_err(|source| Error::Cgroup {
        path: cgroup_path.clone(),
        source,
    })?;
    let mut loader = EbpfLoader::new();
    // The kernel's BTF, parsed once: for the object's CO-RE relocations here, and
    // for the BPF-LSM programs' hooks (`attach`). (Parsing it is a good part of a
    // start in a software-emulated VM.)
    let btf = aya::Btf::from_sys_fs().ok();
    loader.btf(btf.as_ref());
    loader.map_max_entries("EVENTS", ring_bytes);
    if let Some(pins) = pins {
        for name in pins::PINNED_MAPS {
            loader.map_pin_path(name, pins.map(name));
        }
    }
    let build = object::Build::choose(choice, btf.as_ref());
    if build == object::Build::Compat {
        tracing::info!(
            "this kernel has no bpf_loop: loading guard-ebpf's compat build (docs/kernels.md)"
        );
    }
    let bpf = loader.load(build.object()).map_err(Error::Load)?;
    Ok(Prepared {
        bpf,
        cgroup_path,
        cgroup,
        btf,
        build,
    })
}

/// Loaded and attached programs with the maps user space uses.
pub struct Probes {
    // Owns the programs (each also held by its pinned link).
    bpf: Ebpf,
    tracked: HashMap<MapData, u32, Tracked>,
    /// Who starts sessions, and which programs have roles (agents.rs).
    agents: AgentMaps,
    /// The policy's tables and settings (rules.rs).
    rules: RuleMaps,
    /// `HELD`: the processes held at exec, until the pipeline takes the map.
    held: Option<HashMap<MapData, u32, u64>>,
    /// `FETCHED` and `HELD_FOR`: the files sessions downloaded and the processes
    /// held for one, until the pipeline takes the maps.
    downloads: Option<crate::digest::DownloadMaps>,
    /// The daemon's own state in the pinned maps (`guard_common::daemon_state`)
    /// and the kernel's counters (state.rs).
    pub daemon: DaemonMaps,
    /// `DNS_STUB` and `DNS_CONFIG`, until the daemon takes them.
    dns: Option<DnsMaps>,
    /// `SPAWNERS` and `SPAWNER_PORTS`, until the pipeline takes them.
    delegation: Option<DelegationMaps>,
    /// `STUB_PEERS`, until guard's resolver takes it.
    stub_peers: Option<HashMap<MapData, u32, guard_common::StubPeer>>,
    /// Whether sessions' DNS can be pointed at guard's resolver here, or why not.
    pub dns_resolver: Result<(), String>,
    /// The pin directory, locked while this value lives.
    pins: PinDir,
    /// Set when an earlier daemon's pins were adopted.
    pub resumed: Option<Resumed>,
    /// How this start put each hook's link in place.
    pub swaps: Swaps,
    /// Whether the BPF-LSM `file_open` and `bprm_check_security` hooks are
    /// attached, or why not.
    pub lsm: Result<(), String>,
    /// The tier each action runs on here (for `policy_loaded` and `guard status`).
    pub enforcement: tiers::Enforcement,
    /// The build of guard-ebpf loaded (`--ebpf-build`).
    pub build: object::Build,
    /// Tracepoint links that cannot be pinned (before Linux 5.15): attached while
    /// this value lives.
    unpinned: Vec<pins::Held>,
    /// Keeps the kernel's per-program run-time statistics on while guard runs
    /// (`--bpf-stats`).
    _stats: Option<std::os::fd::OwnedFd>,
    /// Names of what is attached, for `/healthz` and logs.
    pub attached: Vec<String>,
    /// The programs the verifier refused at one of its limits, with its words.
    pub over_limits: BTreeMap<String, String>,
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    bpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, Error> {
    let map = bpf.take_map(name).ok_or(Error::Missing(name))?;
    T::try_from(map).map_err(|source| Error::Map { map: name, source })
}

impl Probes {
    /// Loads every program against the maps pinned in `pin_dir` (created there on the
    /// first start), sets the agent names, and puts every program on its hook in
    /// place of an earlier daemon's (see [`pins::Links`]). The ring buffer is
    /// returned apart so the daemon can poll it while using the rest.
    /// With `bpf_stats`, the kernel's per-program run-time statistics are on while the
    /// value lives (they cost every BPF program on the host two clock reads a run).
    pub fn load(
        agents: &AgentPrograms,
        bpf_stats: bool,
        pin_dir: &std::path::Path,
        ring_bytes: u32,
        choice: object::Choice,
    ) -> Result<(Self, RingBuf<MapData>), Error> {
        let pins = PinDir::lock(pin_dir)?;
        let adopting = pins.has_state();
        let started = std::time::Instant::now();
        let Prepared {
            mut bpf,
            cgroup,
            btf,
            build,
            ..
        } = prepare(Some(&pins), ring_bytes, choice)?;
        let object = started.elapsed();
        let mut links = Links::open(&pins)?;
        let mut daemon = DaemonMaps::take(&mut bpf)?;
        let resumed = daemon.start(adopting)?;
        let mut agent_maps = AgentMaps::take(&mut bpf)?;
        agent_maps.set(agents)?;
        let attach::Attached {
            probe,
            route_hooks,
            verified,
            over_limits,
        } = attach::all(&mut bpf, &cgroup, &mut links, btf.as_ref())?;
        tracing::info!(
            build = build.name(),
            object_ms = object.as_millis(),
            verify_ms = verified.as_millis(),
            attach_ms = (started.elapsed() - object - verified).as_millis(),
            "programs loaded"
        );
        let mut hooks_map: Array<MapData, u32> = take(&mut bpf, "ROUTE_HOOKS")?;
        hooks_map
            .set(0, route_hooks, 0)
            .map_err(|source| Error::Map {
                map: "ROUTE_HOOKS",
                source,
            })?;
        let (swaps, unpinned) = links.finish();
        for (name, program) in bpf.programs_mut() {
            if program.fd().is_ok() {
                let name = name.to_owned();
                if let Err(e) = pins.pin_program(&name, |path| program.pin(path)) {
                    tracing::warn!("{}", short_chain(&e));
                }
            }
        }
        let lsm = probe.lsm_open_exec.clone();
        let dns_resolver = probe.dns_resolver.clone();
        let attached = probe.attached.clone();
        let enforcement = tiers::Enforcement::from_probe(&probe);
        for line in enforcement.log_lines() {
            tracing::info!("{line}");
        }
        let events: RingBuf<MapData> = take(&mut bpf, "EVENTS")?;
        if let Ok(info) = aya::maps::MapInfo::from_pin(pins.map("EVENTS"))
            && info.max_entries() != ring_bytes
        {
            tracing::warn!(
                "the pinned ring buffer holds {} KiB, not the {} KiB asked for: it was \
                 created by an earlier daemon (`guard unload` lets the next start make a new one)",
                info.max_entries() / 1024,
                ring_bytes / 1024
            );
        }
        let tracked = take(&mut bpf, "TRACKED")?;
        let rules = RuleMaps::take(&mut bpf)?;
        let held = Some(take(&mut bpf, "HELD")?);
        let downloads = Some(crate::digest::DownloadMaps {
            fetched: take(&mut bpf, "FETCHED")?,
            held_for: take(&mut bpf, "HELD_FOR")?,
        });
        let dns = Some(DnsMaps::take(&mut bpf)?);
        let delegation = Some(DelegationMaps::take(&mut bpf)?);
        let stub_peers = Some(take(&mut bpf, "STUB_PEERS")?);
        let mut guard_pids: HashMap<MapData, u32, u32> = take(&mut bpf, "GUARD_PIDS")?;
        register_self(&mut guard_pids)?;
        let mut guard_pin: Array<MapData, u64> = take(&mut bpf, "GUARD_PIN")?;
        protect_pins(&mut guard_pin, pins.path())?;
        let mut kernel = Self {
            bpf,
            tracked,
            agents: agent_maps,
            rules,
            held,
            downloads,
            daemon,
            dns,
            delegation,
            stub_peers,
            dns_resolver,
            pins,
            resumed,
            swaps,
            lsm,
            enforcement,
            build,
            unpinned,
            _stats: if bpf_stats {
                aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()
            } else {
                None
            },
            attached,
            over_limits,
        };
        kernel.daemon.alive();
        Ok((kernel, events))
    }

    /// What the kernel does here, as the judge needs to know it.
    /// The `HELD` map, for the one that decides held execs (the pipeline).
    pub fn take_held(&mut self) -> Option<HashMap<MapData, u32, u64>> {
        self.held.take()
    }

    /// The maps of downloads (`FETCHED`, `HELD_FOR`), for the one that decides
    /// held execs (the pipeline).
    pub fn take_downloads(&mut self) -> Option<crate::digest::DownloadMaps> {
        self.downloads.take()
    }

    pub fn kernel(&self) -> guard_policy::judge::Kernel {
        guard_policy::judge::Kernel {
            lsm: self.lsm.is_ok(),
            exec_mapping: self
                .attached
                .iter()
                .any(|a| a == "tracepoint/syscalls/sys_enter_mmap"),
        }
    }

    /// The pin directory this daemon holds.
    pub fn pin_dir(&self) -> &std::path::Path {
        self.pins.path()
    }

    /// Every entry of the kernel's tracked set (pid, entry).
    pub fn tracked_all(&self) -> Vec<(u32, Tracked)> {
        self.tracked.iter().filter_map(Result::ok).collect()
    }

    /// Puts `pid` in the kernel's tracked set (a session root or a scanned member).
    pub fn track(&mut self, pid: u32, entry: Tracked) -> Result<(), Error> {
        self.tracked
            .insert(pid, entry, 0)
            .map_err(|source| Error::Map {
                map: "TRACKED",
                source,
            })
    }

    /// Takes `pid` out of the kernel's tracked set (absent already is fine).
    pub fn untrack(&mut self, pid: u32) {
        let _ = self.tracked.remove(&pid);
    }

    /// Run time (ns) and run count of each loaded program, where the kernel's BPF
    /// statistics are on.
    pub fn program_stats(&self) -> Vec<(String, u64, u64)> {
        self.bpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some((
                    name.to_owned(),
                    info.run_time().as_nanos() as u64,
                    info.run_count(),
                ))
            })
            .collect()
    }

    /// The instructions the verifier processed to accept each loaded program,
    /// where the kernel counts them (Linux 5.16 and later).
    pub fn verified_insns(&self) -> BTreeMap<String, u32> {
        self.bpf
            .programs()
            .filter_map(|(name, p)| {
                let count = p.info().ok()?.verified_instruction_count()?;
                Some((name.to_owned(), count))
            })
            .collect()
    }

    /// What the kernel reports attached now, observed rather than remembered: the
    /// names of this object's programs that a live link runs, and how many such
    /// links there are (one per attachment in `attached`). A link detached behind
    /// guard's back (`bpftool link detach`) drops out of both.
    pub fn attached_in_kernel(&self) -> (Vec<String>, usize) {
        let ours: std::collections::HashMap<u32, &str> = self
            .bpf
            .programs()
            .filter_map(|(name, p)| Some((p.info().ok()?.id(), name)))
            .collect();
        let mut names = Vec::new();
        let mut links = 0;
        for link in aya::programs::loaded_links().filter_map(Result::ok) {
            if let Some(name) = ours.get(&link.program_id()) {
                links += 1;
                names.push((*name).to_owned());
            }
        }
        // Attachments without a bpf_link (tracepoints before 5.15) are not listed by
        // the kernel; they are in place while the daemon holds them.
        links += self.unpinned.len();
        names.extend(self.unpinned.iter().map(|h| h.program.to_owned()));
        names.sort();
        names.dedup();
        (names, links)
    }

    pub fn is_tracked(&self, pid: u32) -> bool {
        self.tracked(pid).is_some()
    }

    /// The kernel's tracked-set entry of `pid` (its session and role), if it has one.
    pub fn tracked(&self, pid: u32) -> Option<Tracked> {
        self.tracked.get(&pid, 0).ok()
    }
}

/// The error chain, with a verifier log cut to its last lines (the complaint is at
/// the end; the whole log is at debug level).
pub(crate) fn short_chain(e: &dyn std::error::Error) -> String {
    let full = error_chain(e);
    let Some((head, log)) = full.split_once("Verifier output: ") else {
        return full;
    };
    tracing::debug!("verifier log: {log}");
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
        // The closing statistics say nothing of the complaint, which precedes them.
        .filter(|l| {
            !["verification time", "stack depth", "processed "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    let head = head.trim_end().trim_end_matches('.');
    if lines.is_empty() {
        // No verifier run (EPERM before it): the chain's end repeats the errno.
        return head.to_owned();
    }
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    format!("{head}; verifier: {tail}")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn program_mut<'a, T>(bpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = bpf.program_mut(name).ok_or(Error::Missing(name))?;
    program.try_into().map_err(|source| Error::Program {
        program: name,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_ring_kib;

    #[test]
    fn ring_sizes_are_powers_of_two_within_bounds() {
        assert_eq!(parse_ring_kib("64"), Ok(64));
        assert_eq!(parse_ring_kib("8192"), Ok(8192));
        assert_eq!(parse_ring_kib("1048576"), Ok(1 << 20));
        for bad in ["32", "100", "2097152", "0", "-1", "8M", ""] {
            let err = parse_ring_kib(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
