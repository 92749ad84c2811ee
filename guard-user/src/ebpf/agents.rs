//! The maps that tell the kernel who is who: `AGENTS` (names whose exec starts a
//! session), `AGENT_PROGRAMS` (programs it gives roles by name), `AGENT_CGROUPS`
//! (cgroups whose processes start sessions), `GUARD_PIDS` (this daemon, which
//! sessions may not touch) and `GUARD_PIN` (its pin directory).

use aya::maps::{Array, HashMap, MapData};
use guard_common::{AgentName, SessionVar, agent_key};

use super::{Error, Probes, take};

/// The maps that say which processes start sessions and which programs have roles.
pub(super) struct AgentMaps {
    agents: HashMap<MapData, AgentName, u32>,
    agent_programs: HashMap<MapData, AgentName, u32>,
    session_vars: Array<MapData, SessionVar>,
    agent_cgroups: HashMap<MapData, u64, u32>,
}

impl AgentMaps {
    /// Takes the maps from the loaded object.
    pub(super) fn take(bpf: &mut aya::Ebpf) -> Result<Self, Error> {
        Ok(Self {
            agents: take(bpf, "AGENTS")?,
            agent_programs: take(bpf, "AGENT_PROGRAMS")?,
            session_vars: take(bpf, "SESSION_VARS")?,
            agent_cgroups: take(bpf, "AGENT_CGROUPS")?,
        })
    }

    /// Replaces the names whose exec starts a session, the programs the kernel gives
    /// roles by name, and the variables that carry agents' session ids.
    pub(super) fn set(&mut self, programs: &AgentPrograms) -> Result<(), Error> {
        let wanted: Vec<AgentName> = programs
            .names
            .iter()
            .map(|n| agent_key(n.as_bytes()))
            .collect();
        replace_keys(&mut self.agents, "AGENTS", &wanted)?;
        replace_programs(&mut self.agent_programs, &agent_programs(programs))?;
        set_session_vars(&mut self.session_vars, &programs.known)
    }
}

/// Makes the keys of a set-like map exactly `wanted`: new keys go in first, so a key
/// wanted before and after is never absent.
pub(super) fn replace_keys<K: aya::Pod + Eq + std::hash::Hash>(
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
pub(super) fn register_self(map: &mut HashMap<MapData, u32, u32>) -> Result<(), Error> {
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

/// The programs the kernel knows by name: agents (`names`, whose children are their
/// tools), the MCP servers' commands of the agents' configurations (`mcp`), and the
/// agents' profiles (`known`: their programs, scripts and session variables).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentPrograms {
    pub names: Vec<String>,
    pub mcp: Vec<String>,
    pub known: crate::agents::profile::Known,
}

/// The `AGENT_PROGRAMS` entries for `programs`: each agent name, each MCP server's
/// command, and the programs, scripts and runtimes of the agents' profiles
/// (`agents::profile`; these never start a session).
pub fn agent_programs(programs: &AgentPrograms) -> std::collections::HashMap<AgentName, u32> {
    let mut out = std::collections::HashMap::new();
    for name in &programs.names {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |= guard_common::role::PROGRAM_AGENT;
    }
    for name in &programs.mcp {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |= guard_common::role::PROGRAM_MCP;
    }
    for (name, bits) in programs.known.programs() {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |= bits;
    }
    // For downloads (guard-ebpf fetched.rs): who fetches for a registry, and who
    // runs another file as code.
    for name in crate::event::via::INSTALLERS {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |=
            guard_common::role::PROGRAM_INSTALLER;
    }
    for name in crate::event::via::runner_names() {
        *out.entry(agent_key(name.as_bytes())).or_insert(0) |=
            guard_common::role::PROGRAM_INTERPRETER;
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

/// Puts the profiles' session variables (`CODEX_THREAD_ID`, …) in `SESSION_VARS`,
/// then empty entries, and the package managers' package variable
/// (`npm_package_name`) in its last entry.
fn set_session_vars(
    map: &mut Array<MapData, SessionVar>,
    known: &crate::agents::profile::Known,
) -> Result<(), Error> {
    let mut vars = known.session_vars().filter_map(SessionVar::new);
    for i in 0..guard_common::SESSION_VARS_MAX {
        let var = if i == guard_common::SESSION_VARS_AGENTS {
            SessionVar::package(crate::packages::SCRIPT_PACKAGE_VAR)
        } else {
            vars.next()
        };
        map.set(i, var.unwrap_or_default(), 0)
            .map_err(|source| Error::Map {
                map: "SESSION_VARS",
                source,
            })?;
    }
    Ok(())
}

/// Puts the pin directory's identity in `GUARD_PIN` (device as the kernel encodes
/// it, inode), for the hooks that keep tracked processes out of it.
pub(super) fn protect_pins(
    map: &mut Array<MapData, u64>,
    dir: &std::path::Path,
) -> Result<(), Error> {
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

impl Probes {
    /// Replaces the names whose exec starts a session, and the programs the kernel
    /// gives roles by name.
    pub fn set_agents(&mut self, programs: &AgentPrograms) -> Result<(), Error> {
        self.agents.set(programs)
    }

    /// Replaces the cgroups (by v2 id) whose processes start a session at exec.
    pub fn set_agent_cgroups(&mut self, ids: &[u64]) -> Result<(), Error> {
        replace_keys(&mut self.agents.agent_cgroups, "AGENT_CGROUPS", ids)
    }

    /// Adds one cgroup to those whose processes start a session at exec.
    pub fn add_agent_cgroup(&mut self, id: u64) -> Result<(), Error> {
        self.agents
            .agent_cgroups
            .insert(id, 1, 0)
            .map_err(|source| Error::Map {
                map: "AGENT_CGROUPS",
                source,
            })
    }

    /// Forgets a cgroup that was removed (absent already is fine).
    pub fn remove_agent_cgroup(&mut self, id: u64) {
        let _ = self.agents.agent_cgroups.remove(&id);
    }
}
