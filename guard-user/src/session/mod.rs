//! Sessions and their process trees, as user space knows them from events. The
//! kernel's `TRACKED` map is the authority on membership; this registry mirrors it
//! to label events, derive session start/end, and feed `guard top`.

pub mod calls;
pub mod cgroups;
pub mod repo;
pub mod scan;
pub mod view;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
};

use crate::event::{Detail, Event, How, SessionId, Task};

/// Ended sessions kept for display before the oldest are forgotten.
const KEEP_ENDED: usize = 256;

pub use guard_common::protocol::Counts;

#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub agent: String,
    pub root_pid: u32,
    pub how: How,
    pub started_ns: i128,
    pub ended_ns: Option<i128>,
    pub uid: u32,
    pub user: Option<Arc<str>>,
    pub container: Option<Arc<str>>,
    pub pod: Option<Arc<str>>,
    /// The container's names, from its runtime's state.
    pub meta: Option<Arc<crate::container::runtime::ContainerMeta>>,
    pub cwd: Option<String>,
    pub counts: Counts,
    /// The process running the agent's program (role `agent`), once seen.
    pub agent_pid: Option<u32>,
    /// Which agent it is (`agents::profile`), once its program is seen; `agent` is
    /// then this id rather than the name the session started by.
    pub profile: Option<Arc<str>>,
    /// Agent thread ids seen in the session, first seen first (at most
    /// [`KEEP_THREADS`]).
    pub agent_threads: Vec<Arc<str>>,
    /// How its root confined itself with Landlock (`guard run --landlock`).
    pub landlock: Option<String>,
    /// What its root's mount namespace hides and makes read-only (`guard run`).
    pub mount_ns: Option<String>,
    /// The paths the daemon named for its root's mount namespace to hide
    /// (`guard run`): an open below a hidden directory finds nothing there.
    pub hidden: std::collections::HashSet<std::path::PathBuf>,
    /// The repository `cwd` belongs to, read at the start.
    pub repository: Option<guard_common::report::Repository>,
    /// What confined the agent's process at its exec (the root's until the agent's
    /// program is seen): tools are judged inside or outside a sandbox against it.
    pub agent_confinement: Option<guard_common::Confinement>,
    /// A tool of the session ran inside a sandbox: the agent runs its tools in one,
    /// so a tool outside it escaped (`[sessions] unsandboxed_tools`).
    pub sandboxed_tools: bool,
    /// The tool calls its agent declared through guard's hook.
    pub calls: calls::Calls,
    /// The rollout files its agent writes (Codex's, one per thread: `agents::calls`),
    /// as it opens them for writing (at most `agents::calls::ROLLOUTS_MAX`): the
    /// calls it made, read at the session's end when no hook declared them.
    pub rollouts: Vec<Arc<str>>,
}

/// Whether a process confined as `c` runs inside a sandbox its agent's process
/// (`agent`) is not in: other namespaces (bubblewrap, containers, `unshare`), or a
/// seccomp filter the agent does not have. A namespace that could not be read
/// (0) counts as the agent's.
pub fn inside_sandbox(c: &guard_common::Confinement, agent: &guard_common::Confinement) -> bool {
    let differs = |a: u32, b: u32| a != 0 && b != 0 && a != b;
    differs(c.user_ns, agent.user_ns)
        || differs(c.net_ns, agent.net_ns)
        || differs(c.mnt_ns, agent.mnt_ns)
        || (c.seccomp != 0 && agent.seccomp == 0)
}

/// Agent thread ids kept per session (one per conversation; a session has few).
const KEEP_THREADS: usize = 16;

#[derive(Clone, Debug)]
pub struct Proc {
    pub session: SessionId,
    pub ppid: u32,
    /// The program's name (its `comm` at exec, or its parent's program's).
    pub comm: String,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub role: u8,
    pub agent_thread: Option<Arc<str>>,
    /// The package whose script it runs (`Task::package`).
    pub package: Option<Arc<str>>,
    /// The declared tool call it works for (`Task::call`).
    pub call: Option<Arc<str>>,
    /// A tool's program: inside its agent's sandbox or not (from its exec's
    /// confinement); a fork's is its parent's.
    pub sandboxed: Option<bool>,
}

/// Secrets a process read, with those its ancestors had read when they forked it.
#[derive(Clone, Debug)]
struct SecretsRead {
    session: SessionId,
    paths: Vec<Arc<str>>,
}

/// Secret paths remembered per process (the first ones read).
const KEEP_SECRETS: usize = 16;

#[derive(Default)]
pub struct Registry {
    sessions: BTreeMap<SessionId, Session>,
    procs: HashMap<u32, Proc>,
    /// Taint: the secrets each session process (and its ancestors, before forking
    /// it) read through a rule that let the read happen, by pid. Kept after the
    /// process exits (its sockets' last flow records come later); forgotten with its
    /// session, replaced when the pid starts another process of a session.
    secrets: HashMap<u32, SecretsRead>,
    /// Processes that exited, last gone last (at most [`KEEP_GONE`]): records of a
    /// process can come after its exit (the counts of repeated opens of a thread
    /// that exited together with the one that reported the exit) and are still named
    /// after its program.
    gone: VecDeque<(u32, Proc)>,
}

/// Exited processes remembered to name their late records.
const KEEP_GONE: usize = 256;

fn cwd_of(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

impl Registry {
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// Session `id`, running or ended and still remembered.
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    pub fn procs(&self) -> impl Iterator<Item = (&u32, &Proc)> {
        self.procs.iter()
    }

    /// Whether process `pid` is a member of a session.
    pub fn has_proc(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    /// Names the agent of `session` (a profile's id, from its agent's exec); true
    /// the first time.
    pub fn name_agent(&mut self, session: SessionId, profile: &Arc<str>) -> bool {
        match self.sessions.get_mut(&session) {
            Some(s) if s.profile.is_none() => {
                s.profile = Some(Arc::clone(profile));
                profile.as_ref().clone_into(&mut s.agent);
                true
            }
            _ => false,
        }
    }

    /// Records a new session whose root is `task` and returns its `session_start`.
    /// `cwd`: its working directory where the kernel read it at the exec; else
    /// read from `/proc` now.
    pub fn start(
        &mut self,
        id: SessionId,
        how: How,
        ts_ns: i128,
        task: &Task,
        cwd: Option<String>,
    ) -> Event {
        let cwd = cwd.or_else(|| cwd_of(task.pid));
        let repository = cwd.as_deref().map(|d| repo::read(std::path::Path::new(d)));
        self.sessions.insert(
            id,
            Session {
                id,
                agent: task.comm.clone(),
                root_pid: task.pid,
                how,
                started_ns: ts_ns,
                ended_ns: None,
                uid: task.uid,
                user: task.user.clone(),
                container: task.container.clone(),
                pod: task.pod.clone(),
                meta: task.meta.clone(),
                cwd: cwd.clone(),
                counts: Counts::default(),
                agent_pid: None,
                profile: None,
                agent_threads: Vec::new(),
                landlock: None,
                mount_ns: None,
                hidden: Default::default(),
                repository: repository.clone(),
                agent_confinement: None,
                sandboxed_tools: false,
                calls: calls::Calls::default(),
                rollouts: Vec::new(),
            },
        );
        self.procs.insert(
            task.pid,
            Proc {
                session: id,
                ppid: task.ppid,
                comm: task.comm.clone(),
                exe: None,
                argv: Vec::new(),
                role: task.role,
                agent_thread: task.agent_thread.clone(),
                package: task.package.clone(),
                call: None,
                sandboxed: None,
            },
        );
        self.secrets.remove(&task.pid);
        Event::derived(
            ts_ns,
            Some(id),
            task.clone(),
            Detail::SessionStart {
                agent: task.comm.clone(),
                root_pid: task.pid,
                how,
                cwd,
                repository,
            },
        )
    }

    /// Whether `ev` is the exec of a tool outside a sandbox in a session whose
    /// tools ran inside one before (`[sessions] unsandboxed_tools`).
    pub fn escaped_sandbox(&self, ev: &Event) -> bool {
        ev.sandboxed == Some(false)
            && ev
                .session
                .and_then(|id| self.sessions.get(&id))
                .is_some_and(|s| s.sandboxed_tools)
    }

    /// A tool call the hook process `pid` declared for its session: its event (the
    /// hook's process, at `ts_ns`), once the session's calls know it. `uid`: the
    /// hook's user, from its connection.
    pub fn declare(
        &mut self,
        pid: u32,
        uid: u32,
        ts_ns: i128,
        call: guard_common::protocol::ToolCall,
    ) -> Result<Event, String> {
        let proc = self
            .procs
            .get(&pid)
            .ok_or_else(|| format!("process {pid} is in no session guard follows"))?;
        let session = self
            .sessions
            .get_mut(&proc.session)
            .ok_or_else(|| format!("process {pid}'s session has ended"))?;
        session.calls.hook(pid);
        let id = match call.phase {
            guard_common::protocol::CallPhase::Start => {
                session.calls.start(&call.id, call.command.as_deref())
            }
            guard_common::protocol::CallPhase::End => session.calls.end(&call.id),
        };
        let task = Task {
            pid,
            tid: pid,
            ppid: proc.ppid,
            uid,
            comm: proc.comm.clone(),
            role: proc.role,
            agent_thread: call
                .thread
                .as_deref()
                .map(Arc::from)
                .or_else(|| proc.agent_thread.clone()),
            call: Some(id),
            ..Task::default()
        };
        Ok(Event::derived(
            ts_ns,
            Some(session.id),
            task,
            Detail::ToolCall {
                phase: call.phase,
                tool: call.tool,
                command: call.command,
                rollout: false,
            },
        ))
    }

    /// Whether `ev` is a process working on (an exec, a connect, a send) after the
    /// tool call it works for ended (`[sessions] undeclared`).
    pub fn outlived_call(&self, ev: &Event) -> bool {
        matches!(
            ev.detail,
            Detail::Exec { .. } | Detail::Connect { .. } | Detail::Send { .. }
        ) && ev.task.call.as_deref().is_some_and(|call| {
            ev.session
                .and_then(|id| self.sessions.get(&id))
                .is_some_and(|s| s.calls.has_ended(call))
        })
    }

    /// Whether the event's process is its session's root.
    /// Records how session `session`'s root, `pid`, confined itself: with Landlock
    /// as `landlock` says, in a mount namespace of its own as `mount_ns` says. Only
    /// its root may say so.
    pub fn confined(
        &mut self,
        pid: u32,
        session: &str,
        (landlock, mount_ns): (Option<String>, Option<String>),
    ) -> Result<(), String> {
        let s = self
            .sessions
            .values_mut()
            .find(|s| s.id.to_string() == session)
            .ok_or_else(|| format!("no session {session}"))?;
        if s.root_pid != pid {
            return Err(format!(
                "only session {session}'s root may say how it is confined"
            ));
        }
        s.landlock = landlock;
        s.mount_ns = mount_ns;
        Ok(())
    }

    /// Records the paths the daemon named for session `id`'s mount namespace to hide.
    pub fn set_hidden(&mut self, id: SessionId, hidden: Vec<std::path::PathBuf>) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.hidden = hidden.into_iter().collect();
        }
    }

    /// Whether `path` lies below a directory `session`'s mount namespace hides (an
    /// empty tmpfs: a root process finds nothing there, ENOENT, rather than EACCES).
    /// A lookup per directory above `path`, however many the session hides.
    pub fn hidden_below(&self, session: Option<SessionId>, path: &str) -> bool {
        session
            .and_then(|id| self.sessions.get(&id))
            .filter(|s| s.mount_ns.is_some() && !s.hidden.is_empty())
            .is_some_and(|s| {
                std::path::Path::new(path)
                    .ancestors()
                    .skip(1)
                    .any(|a| s.hidden.contains(a))
            })
    }

    /// Whether `session`'s root confined itself (Landlock, a mount namespace): a
    /// refused open there was refused by that confinement.
    pub fn is_confined(&self, session: Option<SessionId>) -> bool {
        session
            .and_then(|id| self.sessions.get(&id))
            .is_some_and(|s| s.landlock.is_some() || s.mount_ns.is_some())
    }

    pub fn is_root(&self, ev: &Event) -> bool {
        ev.session
            .and_then(|id| self.sessions.get(&id))
            .is_some_and(|s| s.root_pid == ev.task.pid)
    }

    /// Adds a process found by the start-up scan to a session.
    pub fn adopt(&mut self, id: SessionId, pid: u32, ppid: u32, comm: String) {
        self.procs.insert(
            pid,
            Proc {
                session: id,
                ppid,
                comm,
                exe: None,
                argv: Vec::new(),
                role: 0,
                agent_thread: None,
                package: None,
                call: None,
                sandboxed: None,
            },
        );
    }

    /// Names the program and the agent thread of `ev` from what the registry knows of
    /// its process: `comm` becomes the program's name (the name at its exec, which the
    /// kernel took from the exec'd file) and the thread's own name moves to `thread`;
    /// a process whose exec carried no agent thread id has its parent's.
    pub fn annotate(&self, ev: &mut Event) {
        if ev.task.role == guard_common::role::TOOL
            && let Some(c) = ev.confinement
            && let Some(agent) = ev
                .session
                .and_then(|id| self.sessions.get(&id))
                .and_then(|s| s.agent_confinement)
        {
            ev.sandboxed = Some(inside_sandbox(&c, &agent));
        }
        if matches!(
            ev.detail,
            Detail::Connect { .. } | Detail::Send { .. } | Detail::Flow(_) | Detail::Unix { .. }
        ) && let Some(read) = self.secrets.get(&ev.task.pid)
            && Some(read.session) == ev.session
        {
            ev.tainted_by.clone_from(&read.paths);
        }
        let pid = ev.task.pid;
        let Some(proc) = self.procs.get(&pid).or_else(|| {
            let session = ev.session?;
            self.gone
                .iter()
                .rev()
                .find(|(p, proc)| *p == pid && proc.session == session)
                .map(|(_, proc)| proc)
        }) else {
            return;
        };
        if proc.session != ev.session.unwrap_or(proc.session) {
            return;
        }
        if ev.task.agent_thread.is_none() {
            ev.task.agent_thread.clone_from(&proc.agent_thread);
        }
        if ev.task.package.is_none() {
            ev.task.package.clone_from(&proc.package);
        }
        if ev.task.call.is_none() {
            ev.task.call.clone_from(&proc.call);
        }
        if let Detail::Exec { exe, argv, .. } = &ev.detail {
            // A crate's build script runs that crate's code: its package, whatever
            // it inherited (as npm's script variable names an install script's).
            if let Some(name) = crate::packages::build_script(exe) {
                ev.task.package = Some(Arc::from(name));
            } else if crate::packages::build_backend_hook(argv)
                && let Some(name) = crate::packages::source_tree_name(std::path::Path::new(
                    &format!("/proc/{pid}/cwd"),
                ))
            {
                // A Python build backend runs the project's own code (its
                // `setup.py`): the project whose source tree it works in.
                ev.task.package = Some(Arc::from(name));
            }
            // The agent's child's exec, with several calls open: the call whose
            // command it runs. (Any process of the agent's: Gemini CLI relaunches
            // itself and starts its tools from the second.)
            let by_agent = self
                .procs
                .get(&proc.ppid)
                .is_some_and(|p| p.role == guard_common::role::AGENT);
            if let Some(call) = self
                .sessions
                .get(&proc.session)
                .filter(|s| by_agent || s.agent_pid == Some(proc.ppid))
                .and_then(|s| s.calls.of_exec(argv))
            {
                ev.task.call = Some(call);
            }
            // The exec'd thread is the process's only one: its comm is the program's.
            return;
        }
        if !proc.comm.is_empty() && proc.comm != ev.task.comm {
            ev.task.thread = Some(std::mem::replace(&mut ev.task.comm, proc.comm.clone()));
        }
    }

    /// The event to report before `ev`: a `session_start` when `ev` is the first
    /// sight of a session the kernel started (an agent's exec).
    pub fn before(&mut self, ev: &Event) -> Option<Event> {
        let id = ev.session?;
        // A flow is reported by its socket, which may outlive the session (or be
        // closed after its record was forgotten): it never starts one.
        if self.sessions.contains_key(&id) || matches!(ev.detail, Detail::Flow(_) | Detail::Dns(_))
        {
            return None;
        }
        let how = match ev.detail {
            Detail::Exec {
                by_cgroup: true, ..
            } => How::Container,
            _ => How::Exec,
        };
        Some(self.start(id, how, ev.ts_ns, &ev.task, ev.cwd.clone()))
    }

    /// Applies `ev` to the registry; returns a `session_end` when the root exited.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per kind of event, each updating the session and its processes"
    )]
    pub fn after(&mut self, ev: &Event) -> Option<Event> {
        let id = ev.session?;
        let pid = ev.task.pid;
        let session = self.sessions.get_mut(&id)?;
        if ev.violation.is_some() {
            session.counts.violations += 1;
        }
        match &ev.detail {
            Detail::Fork { child_pid } => {
                session.counts.fork += 1;
                let parent = self.procs.get(&pid);
                // What the agent's own process (any of them: Gemini CLI's tools
                // come from its relaunched process) starts works for the call open
                // now.
                let call = if session.agent_pid == Some(pid)
                    || ev.task.role == guard_common::role::AGENT
                {
                    session.calls.for_new()
                } else {
                    ev.task.call.clone()
                };
                let proc = Proc {
                    session: id,
                    ppid: pid,
                    comm: ev.task.comm.clone(),
                    exe: parent.and_then(|p| p.exe.clone()),
                    argv: parent.map(|p| p.argv.clone()).unwrap_or_default(),
                    role: ev.task.role,
                    agent_thread: ev.task.agent_thread.clone(),
                    package: ev.task.package.clone(),
                    call,
                    sandboxed: parent.and_then(|p| p.sandboxed),
                };
                self.procs.insert(*child_pid, proc);
                // Taint is inherited at fork.
                match self.secrets.get(&pid).filter(|r| r.session == id).cloned() {
                    Some(read) => self.secrets.insert(*child_pid, read),
                    None => self.secrets.remove(child_pid),
                };
            }
            Detail::Exec { exe, argv, .. } => {
                session.counts.exec += 1;
                let proc = self.procs.entry(pid).or_insert_with(|| Proc {
                    session: id,
                    ppid: ev.task.ppid,
                    comm: String::new(),
                    exe: None,
                    argv: Vec::new(),
                    role: 0,
                    agent_thread: None,
                    package: None,
                    call: None,
                    sandboxed: None,
                });
                proc.comm = ev.task.comm.clone();
                proc.exe = Some(exe.clone());
                proc.argv = argv.clone();
                proc.role = ev.task.role;
                proc.agent_thread = ev.task.agent_thread.clone();
                proc.package = ev.task.package.clone();
                proc.call = ev.task.call.clone();
                proc.sandboxed = ev.sandboxed;
                let agent_exec =
                    ev.task.role == guard_common::role::AGENT && session.agent_pid.is_none();
                let root_before_agent = session.agent_pid.is_none() && session.root_pid == pid;
                if agent_exec {
                    session.agent_pid = Some(pid);
                }
                if agent_exec || root_before_agent {
                    session.agent_confinement = ev.confinement;
                    // The session is its agent's: a wrapper above it (`guard run` as
                    // root, `setpriv --reuid`, `sudo -u`) named it and ran as another
                    // user. Until the agent's own exec, the root's latest program (for
                    // `guard run`) and user stand for it; a profile's id, once
                    // recognised, names it for good.
                    if session.profile.is_none()
                        && (agent_exec || session.how == How::Run)
                        && !ev.task.comm.is_empty()
                    {
                        session.agent.clone_from(&ev.task.comm);
                    }
                    if session.uid != ev.task.uid {
                        session.uid = ev.task.uid;
                        session.user.clone_from(&ev.task.user);
                    }
                }
                if ev.sandboxed == Some(true) {
                    session.sandboxed_tools = true;
                }
                if let Some(thread) = &ev.task.agent_thread
                    && session.agent_threads.len() < KEEP_THREADS
                    && !session.agent_threads.contains(thread)
                {
                    session.agent_threads.push(Arc::clone(thread));
                }
            }
            Detail::Limit {
                dropped, child_pid, ..
            } => {
                session.counts.dropped += dropped;
                // Not tracked by the kernel, still the session's: killed with it, and
                // reported as a straggler if it outlives the root.
                if let Some(child) = child_pid {
                    self.procs.insert(
                        *child,
                        Proc {
                            session: id,
                            ppid: pid,
                            comm: ev.task.comm.clone(),
                            exe: None,
                            argv: Vec::new(),
                            role: ev.task.role,
                            agent_thread: ev.task.agent_thread.clone(),
                            package: ev.task.package.clone(),
                            call: ev.task.call.clone(),
                            sandboxed: None,
                        },
                    );
                }
            }
            Detail::Open {
                path,
                flags,
                ret,
                repeats,
                ..
            } => {
                // A count of repeated opens stands for that many opens.
                session.counts.open += (*repeats).max(1);
                if session.rollouts.len() < crate::agents::calls::ROLLOUTS_MAX
                    && session.profile.as_deref() == Some(crate::agents::calls::ROLLOUT_AGENT)
                    && ev.task.role == guard_common::role::AGENT
                    && *ret >= 0
                    && crate::event::access::writes(*flags)
                    && crate::agents::calls::is_rollout(path)
                    && !session.rollouts.iter().any(|r| **r == **path)
                {
                    session.rollouts.push(Arc::from(path.as_str()));
                }
                // A secret read that nothing stopped taints the process.
                if *ret >= 0
                    && let Some(v) = &ev.violation
                    && v.secret
                    && v.outcome.let_through()
                    && crate::event::access::reads(*flags)
                {
                    let read = self.secrets.entry(pid).or_insert_with(|| SecretsRead {
                        session: id,
                        paths: Vec::new(),
                    });
                    if read.session != id {
                        *read = SecretsRead {
                            session: id,
                            paths: Vec::new(),
                        };
                    }
                    if read.paths.len() < KEEP_SECRETS && !read.paths.iter().any(|p| **p == **path)
                    {
                        read.paths.push(Arc::from(path.as_str()));
                    }
                }
            }
            Detail::Flow(f) => {
                session.counts.bytes_out += f.new_out;
                session.counts.bytes_in += f.new_in;
            }
            Detail::Connect { .. }
            | Detail::Unix {
                call: guard_common::UnixCall::Connect,
                ..
            } => session.counts.connect += 1,
            Detail::Send { .. } | Detail::Unix { .. } => session.counts.send += 1,
            Detail::Dns(_) => {}
            // Counted as a violation above (every route record is one).
            Detail::Route { .. } => {}
            Detail::Exit { root, .. } => {
                if let Some(proc) = self.procs.remove(&pid) {
                    if self.gone.len() == KEEP_GONE {
                        self.gone.pop_front();
                    }
                    self.gone.push_back((pid, proc));
                }
                if *root && session.ended_ns.is_none() {
                    session.ended_ns = Some(ev.ts_ns);
                    let mut stragglers: Vec<u32> = self
                        .procs
                        .iter()
                        .filter(|(_, p)| p.session == id)
                        .map(|(pid, _)| *pid)
                        .collect();
                    stragglers.sort_unstable();
                    let end = Event::derived(
                        ev.ts_ns,
                        Some(id),
                        ev.task.clone(),
                        Detail::SessionEnd {
                            root_pid: pid,
                            stragglers,
                            killed: Vec::new(),
                            agent: session.agent.clone(),
                            agent_user: session.user.as_deref().map(str::to_owned),
                        },
                    );
                    self.forget_old();
                    return Some(end);
                }
            }
            Detail::SessionStart { .. }
            | Detail::SessionEnd { .. }
            | Detail::ToolCall { .. }
            | Detail::Lost { .. }
            | Detail::PolicyLoaded { .. }
            | Detail::PolicyRejected { .. }
            | Detail::Resumed(_)
            | Detail::Tamper(_) => {}
        }
        None
    }

    fn forget_old(&mut self) {
        let ended: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| s.ended_ns.is_some() && !self.procs.values().any(|p| p.session == s.id))
            .map(|s| s.id)
            .collect();
        if ended.len() > KEEP_ENDED {
            for id in &ended[..ended.len() - KEEP_ENDED] {
                self.sessions.remove(id);
            }
            let sessions = &self.sessions;
            self.secrets
                .retain(|_, r| sessions.contains_key(&r.session));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::{self, task};
    use guard_common::protocol::Outcome;

    fn ev(pid: u32, session: u64, detail: Detail) -> Event {
        Event::derived(1, Some(SessionId(session)), task(pid, 1, "codex"), detail)
    }

    fn exec(root: bool) -> Detail {
        test_support::exec("/usr/bin/codex", &[], root)
    }

    /// A registry with session 7 running: its root 10 (exec'd) and the root's child 11.
    fn running() -> Registry {
        let mut r = Registry::default();
        let root = ev(10, 7, exec(true));
        r.before(&root);
        r.after(&root);
        r.after(&ev(10, 7, Detail::Fork { child_pid: 11 }));
        r
    }

    fn open(path: &str, ret: i64, repeats: u64) -> Detail {
        Detail::Open {
            path: path.into(),
            resolved: true,
            truncated: false,
            flags: 0,
            call: guard_common::OpenCall::Openat,
            ret,
            repeats,
            dir: false,
        }
    }

    #[test]
    fn codex_s_rollouts_are_the_files_its_own_process_opens_for_writing() {
        use guard_common::role;
        let mut r = running();
        let rollout = "/home/u/.codex/sessions/2026/11/28/rollout-2026-11-28T10-00-00-01.jsonl";
        let append = (libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT) as u64;
        let opened = |r: &mut Registry, pid: u32, role: u8, path: &str, flags: u64| {
            let mut e = ev(pid, 7, open(path, 3, 0));
            e.task.role = role;
            if let Detail::Open { flags: f, .. } = &mut e.detail {
                *f = flags;
            }
            r.after(&e);
        };
        // Before the agent is known as Codex: nothing.
        opened(&mut r, 10, role::AGENT, rollout, append);
        assert!(r.sessions().all(|s| s.rollouts.is_empty()));
        assert!(r.name_agent(SessionId(7), &Arc::from("codex")));
        opened(&mut r, 10, role::AGENT, rollout, append);
        opened(&mut r, 10, role::AGENT, rollout, append);
        // Read back, written by a tool, or not a rollout: not the agent's rollout.
        opened(&mut r, 10, role::AGENT, &rollout.replace("-01.", "-02."), 0);
        opened(
            &mut r,
            11,
            role::TOOL,
            &rollout.replace("-01.", "-03."),
            append,
        );
        opened(
            &mut r,
            10,
            role::AGENT,
            "/home/u/.codex/history.jsonl",
            append,
        );
        let s = r.sessions().next().expect("the session");
        assert_eq!(
            s.rollouts.iter().map(|p| &**p).collect::<Vec<_>>(),
            [rollout],
            "once, the agent's own write"
        );
    }

    #[test]
    fn tools_are_judged_inside_or_outside_the_sandbox_against_the_agent() {
        use guard_common::{Confinement, role};
        let host = Confinement {
            net_ns: 1,
            mnt_ns: 2,
            user_ns: 3,
            ..Confinement::default()
        };
        let mut r = Registry::default();
        let exec_as = |pid: u32, role: u8, c: Confinement| {
            let mut e = ev(pid, 7, exec(pid == 10));
            e.task.role = role;
            e.confinement = Some(c);
            e
        };
        // Each event as the pipeline takes it: annotated, judged, applied.
        let mut step = |mut e: Event| -> (Option<bool>, bool) {
            r.before(&e);
            r.annotate(&mut e);
            let escaped = r.escaped_sandbox(&e);
            r.after(&e);
            (e.sandboxed, escaped)
        };
        assert_eq!(step(exec_as(10, role::WRAPPER, host)), (None, false));
        assert_eq!(step(exec_as(11, role::AGENT, host)), (None, false));
        // Before any tool ran inside a sandbox, one outside escaped nothing.
        assert_eq!(step(exec_as(12, role::TOOL, host)), (Some(false), false));
        // bubblewrap's namespaces; a seccomp filter alone.
        let bwrap = Confinement {
            net_ns: 9,
            user_ns: 8,
            mnt_ns: 7,
            seccomp: 2,
            no_new_privs: 1,
            _reserved: 0,
        };
        assert_eq!(step(exec_as(13, role::TOOL, bwrap)), (Some(true), false));
        let filtered = Confinement { seccomp: 2, ..host };
        assert_eq!(step(exec_as(14, role::TOOL, filtered)), (Some(true), false));
        // Now a tool in the agent's own namespaces, unfiltered, escaped.
        assert_eq!(step(exec_as(15, role::TOOL, host)), (Some(false), true));
        // Other roles are not judged; an unreadable namespace (0) is the agent's.
        assert_eq!(step(exec_as(16, role::SANDBOX, host)), (None, false));
        let unread = Confinement { net_ns: 0, ..host };
        assert_eq!(step(exec_as(17, role::TOOL, unread)), (Some(false), true));
        assert!(r.session(SessionId(7)).expect("session").sandboxed_tools);
        // `guard sessions` and `guard top` show it per process; a fork keeps its
        // parent's until it runs a program of its own.
        r.after(&ev(13, 7, Detail::Fork { child_pid: 18 }));
        let sandboxed = |r: &Registry, pid: u32| {
            r.procs()
                .find(|(p, _)| **p == pid)
                .and_then(|(_, p)| p.sandboxed)
        };
        assert_eq!(sandboxed(&r, 13), Some(true));
        assert_eq!(sandboxed(&r, 15), Some(false));
        assert_eq!(sandboxed(&r, 18), Some(true));
        assert_eq!(sandboxed(&r, 11), None);
    }

    #[test]
    fn secrets_read_follow_the_reader_and_its_later_children_only() {
        // 11: a sibling forked before the read.
        let mut r = running();
        let mut read = ev(10, 7, open("/w/.env", 3, 0));
        read.violation = Some(crate::event::Violation {
            rule: "dotenv".into(),
            action: guard_common::protocol::Action::Log,
            outcome: Outcome::Logged,
            error: None,
            alert: false,
            would: None,
            rules: vec!["dotenv".into()],
            secret: true,
            kill_latency_us: None,
            anomaly: None,
        });
        r.after(&read);
        // A child forked after it.
        r.after(&ev(10, 7, Detail::Fork { child_pid: 12 }));
        let connect = |pid| {
            let mut e = ev(
                pid,
                7,
                Detail::Connect {
                    addr: "127.0.0.1".parse().expect("addr"),
                    port: 1,
                    proto: crate::event::Proto::Tcp,
                    ret: 0,
                },
            );
            r.annotate(&mut e);
            e.tainted_by
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(connect(10), ["/w/.env"]);
        assert_eq!(connect(12), ["/w/.env"]);
        assert!(connect(11).is_empty(), "the sibling forked before the read");
        // A killed read taints nothing.
        let mut killed = read.clone();
        killed.task.pid = 11;
        if let Some(v) = killed.violation.as_mut() {
            v.outcome = Outcome::Killed;
        }
        r.after(&killed);
        let mut e = ev(
            11,
            7,
            Detail::Connect {
                addr: "127.0.0.1".parse().expect("addr"),
                port: 1,
                proto: crate::event::Proto::Tcp,
                ret: 0,
            },
        );
        r.annotate(&mut e);
        assert!(e.tainted_by.is_empty(), "{:?}", e.tainted_by);
    }

    #[test]
    fn agent_exec_starts_a_session_once() {
        let mut r = Registry::default();
        let first = ev(10, 7, exec(true));
        let start = r.before(&first).expect("session_start");
        assert!(matches!(
            start.detail,
            Detail::SessionStart {
                root_pid: 10,
                how: How::Exec,
                ..
            }
        ));
        assert!(r.after(&first).is_none());
        assert!(
            r.before(&ev(10, 7, exec(true))).is_none(),
            "second exec is not a new session"
        );
        assert_eq!(r.session(SessionId(7)).map(|s| s.counts.exec), Some(2 - 1));
    }

    #[test]
    fn root_exit_ends_session_and_names_stragglers() {
        let mut r = running();
        r.after(&ev(11, 7, Detail::Fork { child_pid: 12 }));
        r.after(&ev(
            11,
            7,
            Detail::Exit {
                status: 0,
                root: false,
            },
        ));
        let end = r
            .after(&ev(
                10,
                7,
                Detail::Exit {
                    status: 0,
                    root: true,
                },
            ))
            .expect("session_end");
        assert_eq!(
            end.detail,
            Detail::SessionEnd {
                root_pid: 10,
                stragglers: vec![12],
                killed: vec![],
                agent: "codex".into(),
                agent_user: None,
            }
        );
        assert!(r.session(SessionId(7)).and_then(|s| s.ended_ns).is_some());
    }

    #[test]
    fn a_record_after_its_process_exit_is_named_after_the_program() {
        let mut r = running();
        let exit = Detail::Exit {
            status: 0,
            root: false,
        };
        r.after(&ev(11, 7, exit.clone()));
        // The counts of a worker thread that exited together with the one that
        // reported the exit.
        let late = |pid: u32, session: u64| {
            let mut e = ev(pid, session, open("/home/u/.codex", 17, 1));
            e.task.comm = "sqlx-sqlite-wor".into();
            e
        };
        let mut e = late(11, 7);
        r.annotate(&mut e);
        assert_eq!(
            (e.task.comm.as_str(), e.task.thread.as_deref()),
            ("codex", Some("sqlx-sqlite-wor"))
        );
        // Another session's process with the same pid is not named after it.
        let mut other = late(11, 8);
        r.annotate(&mut other);
        assert_eq!(
            (other.task.comm.as_str(), other.task.thread.as_deref()),
            ("sqlx-sqlite-wor", None)
        );
        // Nor is one exited longer ago than the registry remembers.
        for pid in 1000..1000 + KEEP_GONE as u32 {
            r.after(&ev(10, 7, Detail::Fork { child_pid: pid }));
            r.after(&ev(pid, 7, exit.clone()));
        }
        let mut old = late(11, 7);
        r.annotate(&mut old);
        assert_eq!(old.task.thread, None);
    }

    #[test]
    fn child_inherits_parent_exe_until_it_execs() {
        let r = running();
        let child = r
            .procs()
            .find(|(pid, _)| **pid == 11)
            .map(|(_, p)| p.clone())
            .expect("child");
        assert_eq!(child.ppid, 10);
        assert_eq!(child.exe.as_deref(), Some("/usr/bin/codex"));
    }

    #[test]
    fn events_of_unknown_sessions_other_than_exec_still_start_one() {
        let mut r = Registry::default();
        let open = ev(20, 9, Detail::Fork { child_pid: 21 });
        assert!(r.before(&open).is_some());
        assert!(r.before(&open).is_none());
    }
}

impl Registry {
    /// Members of a session, or of the subtree rooted at `pid`, deepest first.
    pub fn members(&self, session: Option<SessionId>, pid: Option<u32>) -> Vec<u32> {
        let roots: Vec<u32> = match (session, pid) {
            // A session's members whose parent is not one: the tops of its trees
            // (the root, and stragglers re-parented out of it).
            (Some(id), _) => self
                .procs
                .iter()
                .filter(|(_, p)| {
                    p.session == id && self.procs.get(&p.ppid).is_none_or(|up| up.session != id)
                })
                .map(|(pid, _)| *pid)
                .collect(),
            (None, Some(root)) => vec![root],
            (None, None) => Vec::new(),
        };
        // Breadth first from the tops, each pid once (a parent loop left by lost
        // exits and reused pids must not spin), then reversed: deepest first.
        let mut seen: std::collections::HashSet<u32> = roots.iter().copied().collect();
        let mut out = roots;
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            let mut children: Vec<u32> = self
                .procs
                .iter()
                .filter(|(pid, p)| p.ppid == parent && !seen.contains(pid))
                .map(|(pid, _)| *pid)
                .collect();
            children.sort_unstable();
            seen.extend(&children);
            out.extend(children);
            i += 1;
        }
        if let Some(id) = session {
            // Members in a parent loop have no top: add them too.
            let mut rest: Vec<u32> = self
                .procs
                .iter()
                .filter(|(pid, p)| p.session == id && !seen.contains(pid))
                .map(|(pid, _)| *pid)
                .collect();
            rest.sort_unstable();
            out.extend(rest);
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tree_tests;
