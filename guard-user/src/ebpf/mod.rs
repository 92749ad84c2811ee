//! Loading and attaching guard's eBPF programs, and the maps user space drives:
//! `TRACKED` (session membership), `AGENTS` and `AGENT_CGROUPS` (the names and the
//! cgroups whose exec starts a session), `EVENTS` (the ring buffer) and `COUNTERS` (lost records).
//!
//! Programs are attached through links pinned under the pin directory (see
//! [`pins`]): dropping [`Probes`] detaches nothing, and the kernel keeps enforcing
//! after the daemon is gone, until `guard unload`.

mod attach;
pub mod floor;
pub mod mounts;
pub mod pins;
pub mod table;
pub mod tiers;

use std::{fs::File, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
};
use guard_common::{
    AgentName, Config, EventKind, NetData, PathData, RuleRef, Tracked, agent_key, counter,
    daemon_state, rules::InodeKey,
};

use self::pins::{Links, PinDir, Swaps};

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
    #[error("no cgroup2 filesystem is mounted (needed for the network hooks)")]
    NoCgroup2,
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

/// The object built by guard-user/build.rs from guard-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

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

/// What every load needs first: root, tracefs, the cgroup2 mount (opened, for the
/// sock_addr hooks), and the object loaded — against the maps pinned in `pins`
/// (created and pinned there if absent), or with maps of its own.
pub(crate) fn prepare(
    pins: Option<&PinDir>,
    ring_bytes: u32,
) -> Result<(Ebpf, PathBuf, File), Error> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(Error::NotRoot { euid });
    }
    mounts::ensure_tracefs()?;
    let cgroup_path = mounts::cgroup2_root()?;
    let cgroup = File::open(&cgroup_path).map_err(|source| Error::Cgroup {
        path: cgroup_path.clone(),
        source,
    })?;
    let mut loader = EbpfLoader::new();
    loader.map_max_entries("EVENTS", ring_bytes);
    if let Some(pins) = pins {
        for name in pins::PINNED_MAPS {
            loader.map_pin_path(name, pins.map(name));
        }
    }
    let bpf = loader.load(OBJECT).map_err(Error::Load)?;
    Ok((bpf, cgroup_path, cgroup))
}

/// Makes the keys of a set-like map exactly `wanted`: new keys go in first, so a key
/// wanted before and after is never absent.
fn replace_keys<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut HashMap<MapData, K, u32>,
    name: &'static str,
    wanted: &[K],
) -> Result<(), Error> {
    let map_err = |source| Error::Map { map: name, source };
    let wanted: std::collections::HashSet<K> = wanted.iter().copied().collect();
    for key in &wanted {
        map.insert(*key, 1, 0).map_err(map_err)?;
    }
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted.contains(k))
        .collect();
    for k in stale {
        map.remove(&k).map_err(map_err)?;
    }
    Ok(())
}

/// Makes `GUARD_PIDS` this daemon: its tgid and every thread it has now (the kernel
/// adds threads created later and removes each at its exit). An earlier daemon's
/// entries go first (its threads are gone; their exits removed them already unless
/// the programs were being replaced at that moment).
fn register_self(map: &mut HashMap<MapData, u32, u32>) -> Result<(), Error> {
    let map_err = |source| Error::Map {
        map: "GUARD_PIDS",
        source,
    };
    let stale: Vec<u32> = map.keys().filter_map(Result::ok).collect();
    for pid in stale {
        map.remove(&pid).map_err(map_err)?;
    }
    let tgid = std::process::id();
    // The tgid first: from here on the kernel adds new threads itself, so the
    // listing below misses none.
    map.insert(tgid, tgid, 0).map_err(map_err)?;
    let tasks = std::fs::read_dir("/proc/self/task").map_err(|source| Error::Io {
        what: "list /proc/self/task",
        source,
    })?;
    for tid in tasks
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        map.insert(tid, tgid, 0).map_err(map_err)?;
    }
    Ok(())
}

/// Agent programs the kernel recognises for roles whatever `[agents] names` says
/// (by the name of the exec'd file), with their `role::PROGRAM_*` bits. Codex runs
/// its tools through its own binary (a sandbox step) and its own helpers directly:
/// it is `STRUCTURED`. These names never start a session.
pub const KNOWN_AGENT_PROGRAMS: &[(&str, u32)] = &[(
    "codex",
    guard_common::role::PROGRAM_AGENT | guard_common::role::PROGRAM_STRUCTURED,
)];

/// The programs the kernel knows by name: agents (`names`, whose children are their
/// tools) and the MCP servers' commands of the agents' configurations (`mcp`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentPrograms {
    pub names: Vec<String>,
    pub mcp: Vec<String>,
}

/// The `AGENT_PROGRAMS` entries for `programs`: each agent name, each MCP server's
/// command, and the known programs.
pub fn agent_programs(programs: &AgentPrograms) -> std::collections::HashMap<AgentName, u32> {
    let mut out = std::collections::HashMap::new();
    for name in &programs.names {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |= guard_common::role::PROGRAM_AGENT;
    }
    for name in &programs.mcp {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |= guard_common::role::PROGRAM_MCP;
    }
    for (name, bits) in KNOWN_AGENT_PROGRAMS {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |= bits;
    }
    out
}

/// Makes `AGENT_PROGRAMS` hold exactly `wanted`.
fn replace_programs(
    map: &mut HashMap<MapData, AgentName, u32>,
    wanted: &std::collections::HashMap<AgentName, u32>,
) -> Result<(), Error> {
    let map_err = |source| Error::Map {
        map: "AGENT_PROGRAMS",
        source,
    };
    for (key, bits) in wanted {
        map.insert(*key, *bits, 0).map_err(map_err)?;
    }
    let stale: Vec<AgentName> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !wanted.contains_key(k))
        .collect();
    for k in stale {
        map.remove(&k).map_err(map_err)?;
    }
    Ok(())
}

/// Puts the pin directory's identity in `GUARD_PIN` (device as the kernel encodes
/// it, inode), for the hooks that keep tracked processes out of it.
fn protect_pins(map: &mut Array<MapData, u64>, dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir).map_err(|source| Error::PinDir {
        path: dir.to_owned(),
        source,
    })?;
    let kdev = u64::from(crate::identity::kernel_dev(meta.dev()));
    let map_err = |source| Error::Map {
        map: "GUARD_PIN",
        source,
    };
    map.set(guard_common::guard_pin::DEV, kdev, 0)
        .map_err(map_err)?;
    map.set(guard_common::guard_pin::INO, meta.ino(), 0)
        .map_err(map_err)
}
/// `counter::LEN` before egress accounting raised it to 24: pinned `COUNTERS` and
/// `DAEMON` maps an older daemon created keep their smaller size (a pinned map is
/// adopted as it is), so the slots past it may be missing and read as zero; the
/// kernel's counts there are then lost (`count` finds no slot).
const LEN_BEFORE_FLOWS: usize = 16;

/// Lost records by kind, and children that escaped tracking (map full).
pub type Lost = (Vec<(&'static str, u64)>, u64);

/// What the rule maps hold, as the policy compiler made it: path and name rules,
/// destination rules (prefix bits, key, value; the generation byte is set at
/// install), and the config they come with.
#[derive(Clone, Copy, Debug)]
pub struct RuleTables<'a> {
    pub paths: &'a [(u32, PathData, RuleRef)],
    pub nets: &'a [(u32, NetData, RuleRef)],
    /// The `[taint]` allowlist when the policy denies tainted egress (`TAINT_NET`).
    pub taint_nets: &'a [(u32, NetData, RuleRef)],
    pub config: Config,
}

/// What the previous daemon on this pin directory left behind.
#[derive(Clone, Copy, Debug)]
pub struct Resumed {
    /// Its pid.
    pub pid: u32,
    /// `CLOCK_BOOTTIME` ns of its last sign of life (within 10 ms of its end).
    pub alive_ns: u64,
    /// Whether it stopped cleanly (SIGTERM/SIGINT) rather than died.
    pub clean_stop: bool,
    /// `COUNTERS` as it last reported them.
    pub reported: [u64; counter::LEN as usize],
}

/// Loaded and attached programs with the maps user space uses.
pub struct Probes {
    // Owns the programs (each also held by its pinned link).
    bpf: Ebpf,
    tracked: HashMap<MapData, u32, Tracked>,
    counters: PerCpuArray<MapData, u64>,
    agents: HashMap<MapData, AgentName, u32>,
    agent_programs: HashMap<MapData, AgentName, u32>,
    agent_cgroups: HashMap<MapData, u64, u32>,
    path_rules: LpmTrie<MapData, PathData, RuleRef>,
    net_rules: LpmTrie<MapData, NetData, RuleRef>,
    taint_net: LpmTrie<MapData, NetData, RuleRef>,
    config: Array<MapData, Config>,
    /// Rules on concrete files and directories by identity, and their count by
    /// generation (`crate::identity`).
    inode_rules: HashMap<MapData, InodeKey, RuleRef>,
    inode_count: Array<MapData, u32>,
    /// The daemon's own state in the pinned maps (`guard_common::daemon_state`).
    daemon: Array<MapData, u64>,
    /// The pin directory, locked while this value lives.
    pins: PinDir,
    /// Generation of the rules in force.
    generation: u8,
    /// Set when an earlier daemon's pins were adopted.
    pub resumed: Option<Resumed>,
    /// How this start put each hook's link in place.
    pub swaps: Swaps,
    /// Whether the BPF-LSM `file_open` and `bprm_check_security` hooks are
    /// attached, or why not.
    pub lsm: Result<(), String>,
    /// The tier each action runs on here (for `policy_loaded` and `guard status`).
    pub enforcement: tiers::Enforcement,
    /// Keeps the kernel's per-program run-time statistics on while guard runs
    /// (`--bpf-stats`).
    _stats: Option<std::os::fd::OwnedFd>,
    /// Names of what is attached, for `/healthz` and logs.
    pub attached: Vec<String>,
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
    ) -> Result<(Self, RingBuf<MapData>), Error> {
        let pins = PinDir::lock(pin_dir)?;
        let adopting = pins.has_state();
        let (mut bpf, _, cgroup) = prepare(Some(&pins), ring_bytes)?;
        let mut links = Links::open(&pins)?;
        let mut daemon: Array<MapData, u64> = take(&mut bpf, "DAEMON")?;
        let resumed = if adopting {
            Some(read_resumed(&daemon)?)
        } else {
            None
        };
        let starts = daemon_get(&daemon, daemon_state::STARTS)?;
        daemon_set(
            &mut daemon,
            daemon_state::PID,
            u64::from(std::process::id()),
        )?;
        daemon_set(&mut daemon, daemon_state::CLEAN_STOP, 0)?;
        daemon_set(&mut daemon, daemon_state::STARTS, starts + 1)?;
        let mut agents_map: HashMap<MapData, AgentName, u32> = take(&mut bpf, "AGENTS")?;
        let wanted: Vec<AgentName> = agents
            .names
            .iter()
            .map(|n| agent_key(n.as_bytes()))
            .collect();
        replace_keys(&mut agents_map, "AGENTS", &wanted)?;
        let mut programs_map: HashMap<MapData, AgentName, u32> = take(&mut bpf, "AGENT_PROGRAMS")?;
        replace_programs(&mut programs_map, &agent_programs(agents))?;
        let attach::Attached { probe, route_hooks } = attach::all(&mut bpf, &cgroup, &mut links)?;
        let mut hooks_map: Array<MapData, u32> = take(&mut bpf, "ROUTE_HOOKS")?;
        hooks_map
            .set(0, route_hooks, 0)
            .map_err(|source| Error::Map {
                map: "ROUTE_HOOKS",
                source,
            })?;
        let swaps = links.finish();
        for (name, program) in bpf.programs_mut() {
            if program.fd().is_ok() {
                let name = name.to_owned();
                if let Err(e) = pins.pin_program(&name, |path| program.pin(path)) {
                    tracing::warn!("{}", short_chain(&e));
                }
            }
        }
        let lsm = probe.lsm_open_exec.clone();
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
        let counters = take(&mut bpf, "COUNTERS")?;
        let path_rules = take(&mut bpf, "PATH_RULES")?;
        let net_rules = take(&mut bpf, "NET_RULES")?;
        let taint_net = take(&mut bpf, "TAINT_NET")?;
        let config: Array<MapData, Config> = take(&mut bpf, "CONFIG")?;
        let inode_rules = take(&mut bpf, "INODE_RULES")?;
        let inode_count = take(&mut bpf, "INODE_COUNT")?;
        // Rules an earlier daemon installed are in force under this generation: the
        // next install must write the other one.
        let generation = config
            .get(&0, 0)
            .map(|c| (c.generation & 1) as u8)
            .unwrap_or(0);
        let agent_cgroups = take(&mut bpf, "AGENT_CGROUPS")?;
        let mut guard_pids: HashMap<MapData, u32, u32> = take(&mut bpf, "GUARD_PIDS")?;
        register_self(&mut guard_pids)?;
        let mut guard_pin: Array<MapData, u64> = take(&mut bpf, "GUARD_PIN")?;
        protect_pins(&mut guard_pin, pins.path())?;
        let mut kernel = Self {
            bpf,
            tracked,
            counters,
            agents: agents_map,
            agent_programs: programs_map,
            agent_cgroups,
            path_rules,
            net_rules,
            taint_net,
            config,
            inode_rules,
            inode_count,
            daemon,
            pins,
            generation,
            resumed,
            swaps,
            lsm,
            enforcement,
            _stats: if bpf_stats {
                aya::sys::enable_stats(aya::sys::Stats::RunTime).ok()
            } else {
                None
            },
            attached,
        };
        kernel.alive();
        Ok((kernel, events))
    }

    /// What the kernel does here, as the judge needs to know it.
    pub fn kernel(&self) -> crate::policy::judge::Kernel {
        crate::policy::judge::Kernel {
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

    /// Records a sign of life for the next daemon's gap report (cheap: one map
    /// write; done at each drain of the ring buffer).
    pub fn alive(&mut self) {
        let _ = daemon_set(
            &mut self.daemon,
            daemon_state::ALIVE_NS,
            crate::event::clock::boot_ns(),
        );
    }

    /// A clean stop: the last sign of life, and the mark the next daemon reports.
    pub fn stopped(&mut self) {
        self.alive();
        let _ = daemon_set(&mut self.daemon, daemon_state::CLEAN_STOP, 1);
    }

    /// Every entry of the kernel's tracked set (pid, entry).
    pub fn tracked_all(&self) -> Vec<(u32, Tracked)> {
        self.tracked.iter().filter_map(Result::ok).collect()
    }

    /// `COUNTERS`, each summed over CPUs.
    pub fn counters(&self) -> Result<[u64; counter::LEN as usize], Error> {
        let mut out = [0u64; counter::LEN as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let v = match self.counters.get(&(i as u32), 0) {
                Ok(v) => v,
                // Pins of a daemon from before the counters grew have fewer slots.
                Err(_) if i >= LEN_BEFORE_FLOWS => continue,
                Err(source) => {
                    return Err(Error::Map {
                        map: "COUNTERS",
                        source,
                    });
                }
            };
            *slot = v.iter().sum();
        }
        Ok(out)
    }

    /// Notes `counters` as reported (the next daemon counts only what comes after
    /// them as lost in its gap).
    pub fn mark_reported(&mut self, counters: &[u64; counter::LEN as usize]) {
        for (i, v) in counters.iter().enumerate() {
            let _ = daemon_set(&mut self.daemon, daemon_state::COUNTED_BASE + i as u32, *v);
        }
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

    /// Replaces the names whose exec starts a session, and the programs the kernel
    /// gives roles by name.
    pub fn set_agents(&mut self, programs: &AgentPrograms) -> Result<(), Error> {
        let wanted: Vec<AgentName> = programs
            .names
            .iter()
            .map(|n| agent_key(n.as_bytes()))
            .collect();
        replace_keys(&mut self.agents, "AGENTS", &wanted)?;
        replace_programs(&mut self.agent_programs, &agent_programs(programs))
    }

    /// Replaces the cgroups (by v2 id) whose processes start a session at exec.
    pub fn set_agent_cgroups(&mut self, ids: &[u64]) -> Result<(), Error> {
        replace_keys(&mut self.agent_cgroups, "AGENT_CGROUPS", ids)
    }

    /// Adds one cgroup to those whose processes start a session at exec.
    pub fn add_agent_cgroup(&mut self, id: u64) -> Result<(), Error> {
        self.agent_cgroups
            .insert(id, 1, 0)
            .map_err(|source| Error::Map {
                map: "AGENT_CGROUPS",
                source,
            })
    }

    /// Forgets a cgroup that was removed (absent already is fine).
    pub fn remove_agent_cgroup(&mut self, id: u64) {
        let _ = self.agent_cgroups.remove(&id);
    }

    /// Installs a rule set with no gap: the new entries go in under the unused
    /// generation, one write to `CONFIG` switches to them, then the old ones go.
    /// On error the rules in force stay in force.
    /// The identity entries (`identity`) go in under the same generation.
    pub fn install(
        &mut self,
        rules: RuleTables<'_>,
        identity: &crate::identity::Identity,
    ) -> Result<(), Error> {
        let next = self.generation ^ 1;
        self.clear_generation(next)?;
        put_generation(&mut self.path_rules, "PATH_RULES", rules.paths, next)?;
        put_generation(&mut self.net_rules, "NET_RULES", rules.nets, next)?;
        put_generation(&mut self.taint_net, "TAINT_NET", rules.taint_nets, next)?;
        let inodes = identity.entries(next);
        self.put_inodes(&inodes)?;
        self.set_inode_count(next, inodes.len())?;
        let config = Config {
            generation: u32::from(next),
            ..rules.config
        };
        self.config.set(0, config, 0).map_err(|source| Error::Map {
            map: "CONFIG",
            source,
        })?;
        let old = self.generation;
        self.generation = next;
        self.clear_generation(old)
    }

    fn clear_generation(&mut self, generation: u8) -> Result<(), Error> {
        clear_generation(&mut self.path_rules, "PATH_RULES", generation)?;
        clear_generation(&mut self.net_rules, "NET_RULES", generation)?;
        clear_generation(&mut self.taint_net, "TAINT_NET", generation)?;
        self.set_inode_count(generation, 0)?;
        self.retain_inodes(generation, &[])
    }

    fn put_inodes(&mut self, inodes: &[(InodeKey, RuleRef)]) -> Result<(), Error> {
        for (key, value) in inodes {
            self.inode_rules
                .insert(key, value, 0)
                .map_err(|source| Error::Map {
                    map: "INODE_RULES",
                    source,
                })?;
        }
        Ok(())
    }

    fn set_inode_count(&mut self, generation: u8, n: usize) -> Result<(), Error> {
        self.inode_count
            .set(u32::from(generation), n as u32, 0)
            .map_err(|source| Error::Map {
                map: "INODE_COUNT",
                source,
            })
    }

    /// Removes the identity entries of `generation` that are not in `keep`.
    fn retain_inodes(&mut self, generation: u8, keep: &[(InodeKey, RuleRef)]) -> Result<(), Error> {
        let keep: std::collections::HashSet<InodeKey> = keep.iter().map(|(k, _)| *k).collect();
        let stale: Vec<InodeKey> = self
            .inode_rules
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.generation == generation && !keep.contains(k))
            .collect();
        for k in stale {
            self.inode_rules.remove(&k).map_err(|source| Error::Map {
                map: "INODE_RULES",
                source,
            })?;
        }
        Ok(())
    }

    /// Brings the identity entries in force up to date with `identity` (after it
    /// resolved its files again): new entries first, then the stale ones go.
    pub fn refresh_identity(&mut self, identity: &crate::identity::Identity) -> Result<(), Error> {
        let generation = self.generation;
        let inodes = identity.entries(generation);
        self.put_inodes(&inodes)?;
        self.retain_inodes(generation, &inodes)?;
        self.set_inode_count(generation, inodes.len())
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
        names.sort();
        names.dedup();
        (names, links)
    }

    pub fn is_tracked(&self, pid: u32) -> bool {
        self.tracked.get(&pid, 0).is_ok()
    }
}

/// Lost records by kind (plus those over sessions' limits and those the pending maps
/// had no room for), and children that escaped tracking because the map was full, out
/// of `COUNTERS` values.
pub fn lost_of(counters: &[u64; counter::LEN as usize]) -> Lost {
    let at = |i: u32| counters.get(i as usize).copied().unwrap_or(0);
    let mut by_kind: Vec<(&'static str, u64)> = EventKind::ALL
        .iter()
        .map(|kind| (kind.name(), at(counter::lost(*kind as u16))))
        .collect();
    // Plain records dropped by sessions' `[limits]`, and system calls of tracked
    // threads the full pending maps could not hold.
    by_kind.push(("over_session_limit", at(counter::OVER_LIMIT)));
    by_kind.push(("pending_full", at(counter::PENDING_FULL)));
    by_kind.push(("dns_unread", at(counter::DNS_UNREAD)));
    (by_kind, at(counter::TRACK_FULL))
}

fn daemon_get(daemon: &Array<MapData, u64>, slot: u32) -> Result<u64, Error> {
    daemon.get(&slot, 0).map_err(|source| Error::Map {
        map: "DAEMON",
        source,
    })
}

fn daemon_set(daemon: &mut Array<MapData, u64>, slot: u32, value: u64) -> Result<(), Error> {
    daemon.set(slot, value, 0).map_err(|source| Error::Map {
        map: "DAEMON",
        source,
    })
}

fn read_resumed(daemon: &Array<MapData, u64>) -> Result<Resumed, Error> {
    let mut reported = [0u64; counter::LEN as usize];
    for (i, slot) in reported.iter_mut().enumerate() {
        *slot = match daemon_get(daemon, daemon_state::COUNTED_BASE + i as u32) {
            Ok(v) => v,
            // Pins of a daemon from before the counters grew: those slots never existed.
            Err(_) if i >= LEN_BEFORE_FLOWS => 0,
            Err(e) => return Err(e),
        };
    }
    Ok(Resumed {
        pid: daemon_get(daemon, daemon_state::PID)? as u32,
        alive_ns: daemon_get(daemon, daemon_state::ALIVE_NS)?,
        clean_stop: daemon_get(daemon, daemon_state::CLEAN_STOP)? == 1,
        reported,
    })
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

/// A rule trie keyed by `[generation, …]` bytes (see `guard_common::rules`).
type RuleTrie<const N: usize> = LpmTrie<MapData, [u8; N], RuleRef>;

/// Inserts `entries` under `generation`.
fn put_generation<const N: usize>(
    trie: &mut RuleTrie<N>,
    map: &'static str,
    entries: &[(u32, [u8; N], RuleRef)],
    generation: u8,
) -> Result<(), Error> {
    for (bits, data, value) in entries {
        let mut data = *data;
        data[0] = generation;
        trie.insert(&Key::new(*bits, data), *value, 0)
            .map_err(|source| Error::Map { map, source })?;
    }
    Ok(())
}

/// Removes every entry of `generation`.
fn clear_generation<const N: usize>(
    trie: &mut RuleTrie<N>,
    map: &'static str,
    generation: u8,
) -> Result<(), Error> {
    let stale: Vec<Key<[u8; N]>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.data()[0] == generation)
        .collect();
    for k in stale {
        trie.remove(&k)
            .map_err(|source| Error::Map { map, source })?;
    }
    Ok(())
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
