//! Processes that are already running when they should be in a session: agents
//! found at start-up, and processes in a chosen cgroup that no exec brought in.
//! Each outermost one becomes a session root (`how: scan`), its descendants
//! members, parents before children so that nothing forked meanwhile escapes (the
//! kernel follows every fork of a process once it is in its map).

use std::collections::HashMap;

use guard_common::{Tracked, flags};

use super::Registry;
use crate::event::{Event, How, SessionId, enrich::Enricher, from_proc::task as task_from_proc};

/// The kernel's session membership (`TRACKED`), as adoption needs it. The daemon
/// implements it over the loaded programs; tests over a map.
pub trait Membership {
    /// Puts `pid` in the map; false when the kernel refused.
    fn track(&mut self, pid: u32, entry: Tracked) -> bool;
    fn untrack(&mut self, pid: u32);
    fn is_tracked(&self, pid: u32) -> bool;
}

/// What adoption needs besides the kernel: the registry it reports into, the
/// enricher for the root's task, and the clock.
pub struct Adopter<'a, M: Membership> {
    pub kernel: &'a mut M,
    pub registry: &'a mut Registry,
    pub enricher: &'a mut Enricher,
    /// Wall-clock ns for the session_start, and the session id (boot ns).
    pub now_ns: i128,
    pub id: SessionId,
}

/// The pids of running processes whose comm is one of `agents`, outermost only
/// (an agent below another agent belongs to the outer session).
pub fn agents_running(agents: &[String]) -> std::io::Result<Vec<u32>> {
    let keys: Vec<[u8; 16]> = agents
        .iter()
        .map(|a| guard_common::agent_key(a.as_bytes()))
        .collect();
    let procs: Vec<(u32, u32, String)> = procfs::process::all_processes()
        .map_err(std::io::Error::other)?
        .filter_map(|p| p.ok()?.stat().ok())
        .map(|s| (s.pid as u32, s.ppid as u32, s.comm))
        .collect();
    let ppid_of: HashMap<u32, u32> = procs.iter().map(|(p, pp, _)| (*p, *pp)).collect();
    let agent_pids: Vec<u32> = procs
        .iter()
        .filter(|(_, _, c)| keys.contains(&guard_common::agent_key(c.as_bytes())))
        .map(|(p, _, _)| *p)
        .collect();
    Ok(outermost(&agent_pids, |p| ppid_of.get(&p).copied()))
}

/// Of `candidates` (processes in chosen cgroups), those no session holds yet and
/// that have no other candidate among their ancestors.
pub fn untracked_roots(candidates: &[u32], kernel: &impl Membership) -> Vec<u32> {
    let me = std::process::id();
    let free: Vec<u32> = candidates
        .iter()
        .copied()
        .filter(|&p| p != me && !kernel.is_tracked(p))
        .collect();
    outermost(&free, |p| proc_stat(p).map(|s| s.ppid as u32))
}

impl<M: Membership> Adopter<'_, M> {
    /// Makes `root`, already running, a session root and its descendants members;
    /// returns the `session_start`, or None when it is tracked already or gone.
    pub fn adopt(self, root: u32) -> Option<Event> {
        if self.kernel.is_tracked(root) {
            return None;
        }
        let entry = Tracked {
            session: self.id.0,
            start_ns: 0,
            root_pid: root,
            flags: u32::from(flags::ROOT_PROCESS),
        };
        if !track_live(self.kernel, root, entry) {
            return None;
        }
        let Some(mut task) = task_from_proc(root) else {
            self.kernel.untrack(root);
            return None;
        };
        self.enricher.enrich_task(&mut task);
        let start = self
            .registry
            .start(self.id, How::Scan, self.now_ns, &task, None);
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            for child in children(pid) {
                let entry = Tracked { flags: 0, ..entry };
                if track_live(self.kernel, child, entry) {
                    let comm = task_from_proc(child).map(|t| t.comm).unwrap_or_default();
                    self.registry.adopt(self.id, child, pid, comm);
                    stack.push(child);
                }
            }
        }
        tracing::info!(pid = root, session = %self.id, "tracking a process that was already running");
        Some(start)
    }
}

/// Tracks a running process found in /proc. Its exit removes the entry, unless it
/// exited before the entry went in: then the process is gone, or another one has its
/// pid, and the entry is taken out again.
fn track_live(kernel: &mut impl Membership, pid: u32, entry: Tracked) -> bool {
    let start = |pid: u32| proc_stat(pid).map(|s| s.starttime);
    let Some(before) = start(pid) else {
        return false;
    };
    if !kernel.track(pid, entry) {
        return false;
    }
    if start(pid) != Some(before) {
        kernel.untrack(pid);
        return false;
    }
    true
}

/// The candidates that have no other candidate among their ancestors.
pub fn outermost(candidates: &[u32], ppid: impl Fn(u32) -> Option<u32>) -> Vec<u32> {
    candidates
        .iter()
        .copied()
        .filter(|&pid| {
            let mut up = ppid(pid).unwrap_or(0);
            for _ in 0..64 {
                if up <= 1 {
                    return true;
                }
                if candidates.contains(&up) {
                    return false;
                }
                up = ppid(up).unwrap_or(0);
            }
            true
        })
        .collect()
}

fn proc_stat(pid: u32) -> Option<procfs::process::Stat> {
    procfs::process::Process::new(pid as i32).ok()?.stat().ok()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Map(HashMap<u32, Tracked>);

    impl Membership for Map {
        fn track(&mut self, pid: u32, entry: Tracked) -> bool {
            self.0.insert(pid, entry);
            true
        }
        fn untrack(&mut self, pid: u32) {
            self.0.remove(&pid);
        }
        fn is_tracked(&self, pid: u32) -> bool {
            self.0.contains_key(&pid)
        }
    }

    #[test]
    fn outermost_keeps_roots_only() {
        // 10 → 11 → 12, and 20 alone; 11 and 12 are below 10.
        let parent = HashMap::from([(10, 1), (11, 10), (12, 11), (20, 1)]);
        let roots = outermost(&[12, 11, 10, 20], |p| parent.get(&p).copied());
        assert_eq!(roots, vec![10, 20]);
    }

    #[test]
    fn adopts_a_running_tree_parents_first() {
        // A shell of this test's own with one child: the shell becomes the root.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("spawn");
        let root = shell.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let child = loop {
            if let Some(&c) = children(root).first() {
                break c;
            }
            assert!(std::time::Instant::now() < deadline, "sh never forked");
            std::thread::yield_now();
        };
        let mut kernel = Map::default();
        let mut registry = Registry::default();
        let mut enricher = Enricher::new(std::path::Path::new("/"));
        let start = Adopter {
            kernel: &mut kernel,
            registry: &mut registry,
            enricher: &mut enricher,
            now_ns: 7,
            id: SessionId(99),
        }
        .adopt(root)
        .expect("session_start");
        assert_eq!(start.session, Some(SessionId(99)));
        assert_eq!(kernel.0[&root].flags, u32::from(flags::ROOT_PROCESS));
        assert_eq!(kernel.0[&child].flags, 0);
        assert_eq!(kernel.0[&child].root_pid, root);
        assert_eq!(
            registry.members(Some(SessionId(99)), None),
            vec![child, root],
            "deepest first"
        );
        // A second adoption of a tracked root does nothing.
        let again = Adopter {
            kernel: &mut kernel,
            registry: &mut registry,
            enricher: &mut enricher,
            now_ns: 8,
            id: SessionId(100),
        }
        .adopt(root);
        assert!(again.is_none());
        crate::action::kill(child).expect("kill sleep");
        crate::action::kill(root).expect("kill sh");
        shell.wait().expect("wait");
    }

    #[test]
    fn a_vanished_process_is_not_adopted() {
        let mut gone = std::process::Command::new("true").spawn().expect("spawn");
        let pid = gone.id();
        gone.wait().expect("reap");
        let mut kernel = Map::default();
        let adopted = Adopter {
            kernel: &mut kernel,
            registry: &mut Registry::default(),
            enricher: &mut Enricher::new(std::path::Path::new("/")),
            now_ns: 0,
            id: SessionId(1),
        }
        .adopt(pid);
        assert!(adopted.is_none());
        assert!(kernel.0.is_empty(), "nothing left in the map");
    }
}
