//! Declared versus done: the tool calls the agent declared through guard's hook
//! (`tool_call` events), what each call's processes did (`tool_call` on their
//! events, as the daemon tied them: session/calls.rs), and the processes no call
//! accounts for.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use guard_common::{
    line::{Access, EventDetail, EventLine},
    protocol::CallPhase,
    report::{Bounded, CALL_LIST_MAX, Call, Command, MAX_ITEMS, Report, Undeclared},
};

pub(super) use guard_common::report::why::{INSTALL_SCRIPT, OUTLIVED, OUTSIDE};

/// What a session's events say about its declared calls.
#[derive(Clone, Debug, Default)]
pub(super) struct Calls {
    /// Each call's entry in the report's list.
    index: HashMap<String, usize>,
    ended: HashSet<String>,
    /// Processes that declared calls: the agent's hooks, not its work.
    hooks: HashSet<u32>,
    /// Each undeclared process (and its descendants): its entry in the list.
    undeclared: HashMap<u32, usize>,
}

impl Calls {
    /// Folds one event of the session into `r`'s calls and undeclared processes.
    pub(super) fn add(&mut self, r: &mut Report, ev: &EventLine) {
        let Some(task) = ev.task.as_ref() else {
            return;
        };
        let pid = task.pid;
        match &ev.detail {
            EventDetail::ToolCall {
                phase,
                tool,
                command,
                rollout,
                ..
            } => {
                r.declared_by = Some(if *rollout { "rollout" } else { "hook" }.to_owned());
                self.hooks.insert(pid);
                if let Some(id) = &task.tool_call {
                    self.declared(r, id, *phase, tool, command.as_deref(), &ev.ts);
                }
                return;
            }
            EventDetail::Fork { child_pid } => {
                // Forking after its call ended is working on: the parent is undeclared,
                // and its child part of it.
                let call = task.tool_call.as_deref();
                if call.is_some_and(|c| self.ended.contains(c)) {
                    self.undeclared(r, pid, task.ppid, OUTLIVED, call, ev);
                }
                if let Some(&at) = self.undeclared.get(&pid) {
                    self.undeclared.insert(*child_pid, at);
                }
                return;
            }
            _ => {}
        }
        let call = task.tool_call.as_deref();
        let ended = call.is_some_and(|c| self.ended.contains(c));
        let exec = matches!(ev.detail, EventDetail::Exec { .. });
        let why = match call {
            Some(_) if ended && work(ev).is_some() => Some(OUTLIVED),
            Some(_) if exec && task.package.is_some() => Some(INSTALL_SCRIPT),
            None if exec && task.role == "tool" => Some(OUTSIDE),
            _ => None,
        };
        if let Some(why) = why {
            self.undeclared(r, pid, task.ppid, why, call, ev);
        }
        if let Some(at) = call.filter(|_| !ended).and_then(|c| self.index.get(c)) {
            let workspace = r.workspace.clone();
            if let Some(c) = r.calls.items.get_mut(*at) {
                did(c, ev, workspace.as_deref());
            }
        }
    }

    /// A call's start or end, as its hook declared it.
    fn declared(
        &mut self,
        r: &mut Report,
        id: &str,
        phase: CallPhase,
        tool: &str,
        command: Option<&str>,
        ts: &str,
    ) {
        if phase == CallPhase::End {
            self.ended.insert(id.to_owned());
        }
        let at = match self.index.get(id) {
            Some(&at) => at,
            None if r.calls.items.len() >= MAX_ITEMS => {
                r.calls.omitted += 1;
                return;
            }
            None => {
                // An end whose start went unheard starts it too.
                r.calls.items.push(Call {
                    id: id.to_owned(),
                    tool: tool.to_owned(),
                    command: command.map(str::to_owned),
                    started: ts.to_owned(),
                    ..Call::default()
                });
                self.index.insert(id.to_owned(), r.calls.items.len() - 1);
                r.calls.items.len() - 1
            }
        };
        if phase == CallPhase::End
            && let Some(c) = r.calls.items.get_mut(at)
        {
            c.ended = Some(ts.to_owned());
        }
    }

    /// Notes what `pid` did, undeclared: its own entry, its parent's (a process
    /// of an undeclared one is part of it), or a new one.
    fn undeclared(
        &mut self,
        r: &mut Report,
        pid: u32,
        ppid: u32,
        why: &str,
        call: Option<&str>,
        ev: &EventLine,
    ) {
        let at = match self
            .undeclared
            .get(&pid)
            .or_else(|| self.undeclared.get(&ppid))
        {
            Some(&at) if r.undeclared.items.get(at).is_some_and(|u| u.why == why) => at,
            _ => {
                let list: &mut Bounded<Undeclared> = &mut r.undeclared;
                if list.items.len() >= MAX_ITEMS {
                    list.omitted += 1;
                    return;
                }
                // What it runs: the exec that makes it undeclared (a script, a tool
                // outside every call), or, for one that outlived its call, what it ran
                // before (its latest earlier exec), the exec then being what it did.
                let latest = || {
                    r.commands
                        .items
                        .iter()
                        .rev()
                        .find(|c| c.pid == pid && c.ts != ev.ts)
                        .map(|c| c.argv.join(" "))
                };
                let outlived = why == OUTLIVED;
                let command = match &ev.detail {
                    EventDetail::Exec { .. } if !outlived => ev.what(),
                    _ => latest().unwrap_or_else(|| ev.comm().unwrap_or_default().to_owned()),
                };
                list.items.push(Undeclared {
                    ts: ev.ts.clone(),
                    pid,
                    command,
                    why: why.to_owned(),
                    call: call.map(str::to_owned),
                    did: Vec::new(),
                });
                self.undeclared.insert(pid, list.items.len() - 1);
                if !outlived {
                    return;
                }
                list.items.len() - 1
            }
        };
        self.undeclared.insert(pid, at);
        if let (Some(what), Some(u)) = (work(ev), r.undeclared.items.get_mut(at)) {
            super::push_once(&mut u.did, &what);
        }
    }

    /// The report's calls and undeclared processes completed: the hooks' own
    /// processes are neither a call's work nor undeclared, and without a declared
    /// call (an agent run without guard's hook) nothing is undeclared.
    pub(super) fn finish(&self, r: &mut Report) {
        if r.calls.items.is_empty() && r.calls.omitted == 0 {
            r.undeclared = Bounded::default();
            return;
        }
        r.undeclared.items.retain(|u| !self.hooks.contains(&u.pid));
        for c in &mut r.calls.items {
            let before = c.processes.len();
            c.processes.retain(|p| !self.hooks.contains(&p.pid));
            c.execs -= (before - c.processes.len()) as u64;
        }
    }
}

/// Records kept per session for tying its processes to the calls its agent's
/// rollout names, at the session's end.
const REPLAY_MAX: usize = 16_384;
/// Rollout calls kept per session (a start and an end each).
const ROLLOUT_MAX: usize = 8_192;
/// How much earlier than its rollout line a call's process may exec the call's
/// command: Codex writes the line from another task while it starts the call's
/// processes, and to the millisecond.
const ROLLOUT_EARLY_NS: i64 = 1_000_000_000;

/// A session's records kept until its end, for the calls that only its agent's
/// rollout file names: the daemon reads it and writes them just before the session's
/// end (daemon/pipeline/), when no hook declared any.
#[derive(Clone, Debug, Default)]
pub(super) struct Replay {
    /// The rollout's calls (`tool_call` records with `rollout`).
    declared: Vec<EventLine>,
    /// What the session's processes did that a call's list says, first first.
    kept: Vec<EventLine>,
    /// Records past [`REPLAY_MAX`], not kept.
    missed: u64,
    /// The agent that writes a rollout (Codex) ran in the session: kept from its
    /// exec on.
    rollout_agent: bool,
    /// A hook declared calls, or the session ended: nothing more is kept.
    off: bool,
}

impl Replay {
    /// Whether `ev` is a call the rollout names: taken aside, it is folded at the
    /// session's end with what the processes did.
    pub(super) fn declared(&mut self, ev: &EventLine) -> bool {
        if !matches!(ev.detail, EventDetail::ToolCall { rollout: true, .. }) {
            return false;
        }
        if self.declared.len() < ROLLOUT_MAX {
            self.declared.push(ev.clone());
        }
        true
    }

    /// Keeps what `ev` says of a process's work (forks, execs, connects, sends,
    /// writes, what guard stopped) until a hook declares a call or the session ends.
    pub(super) fn keep(&mut self, ev: &EventLine) {
        if self.off {
            return;
        }
        if matches!(
            ev.detail,
            EventDetail::ToolCall { .. } | EventDetail::SessionEnd { .. }
        ) {
            self.off = true;
            self.kept = Vec::new();
            return;
        }
        let Some(task) = &ev.task else {
            return;
        };
        if !self.rollout_agent {
            self.rollout_agent = matches!(&ev.detail, EventDetail::Exec { agent: Some(a), .. }
                if a == crate::agents::calls::ROLLOUT_AGENT);
            return;
        }
        let work = match &ev.detail {
            EventDetail::Fork { .. } => true,
            _ if task.role == "agent" => false,
            EventDetail::Exec { .. } | EventDetail::Connect { .. } | EventDetail::Send { .. } => {
                true
            }
            EventDetail::Open { access, .. } => {
                ev.violation.is_some() || access.iter().any(|a| *a != Access::Read)
            }
            _ => ev.violation.is_some(),
        };
        if !work {
        } else if self.kept.len() < REPLAY_MAX {
            self.kept.push(ev.clone());
        } else {
            self.missed += 1;
        }
    }
}

impl Calls {
    /// Folds the calls a rollout names, with the records kept, into `r`: each
    /// process the agent started is tied to the call open when it started, as the
    /// daemon ties them live for a hook's calls (session/calls.rs), and its
    /// descendants with it; but one whose exec runs a call's command is that
    /// call's, even when its line was written up to [`ROLLOUT_EARLY_NS`] after
    /// the exec. Nothing happens when the rollout named no call.
    pub(super) fn replay(&mut self, r: &mut Report, replay: &mut Replay) {
        if replay.declared.is_empty() {
            return;
        }
        // Live, the processes were folded with no call declared: made again.
        *self = Self::default();
        r.undeclared = Bounded::default();
        r.untied = replay.missed;
        let at = |ev: &EventLine| {
            chrono::DateTime::parse_from_rfc3339(&ev.ts)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(i64::MAX)
        };
        // Each call's command and times, for an exec to find its own.
        struct Declared {
            id: Arc<str>,
            command: String,
            start: i64,
            end: i64,
        }
        let mut commands: Vec<Declared> = Vec::new();
        for ev in &replay.declared {
            let (
                EventDetail::ToolCall {
                    phase,
                    tool,
                    command,
                    ..
                },
                Some(id),
            ) = (
                &ev.detail,
                ev.task.as_ref().and_then(|t| t.tool_call.as_deref()),
            )
            else {
                continue;
            };
            match phase {
                CallPhase::Start => {
                    // Listed first: a process may exec its call's command before the
                    // call's line.
                    self.declared(r, id, CallPhase::Start, tool, command.as_deref(), &ev.ts);
                    commands.push(Declared {
                        id: Arc::from(id),
                        command: command.clone().unwrap_or_default(),
                        start: at(ev),
                        end: i64::MAX,
                    });
                }
                CallPhase::End => {
                    if let Some(c) = commands.iter_mut().rev().find(|c| &*c.id == id) {
                        c.end = at(ev);
                    }
                }
            }
        }
        let mut all: Vec<(i64, EventLine)> = std::mem::take(&mut replay.declared)
            .into_iter()
            .chain(std::mem::take(&mut replay.kept))
            .map(|ev| (at(&ev), ev))
            .collect();
        // Stable: at one time, a call's start comes before what its processes did.
        all.sort_by_key(|(at, _)| *at);
        let mut open = crate::session::calls::Calls::default();
        let mut works_for: HashMap<u32, Arc<str>> = HashMap::new();
        let mut agents: HashSet<u32> = HashSet::new();
        for (t, mut ev) in all {
            let Some(task) = ev.task.as_mut() else {
                continue;
            };
            match &ev.detail {
                EventDetail::ToolCall { phase, command, .. } => {
                    let id = task.tool_call.as_deref().unwrap_or_default();
                    match phase {
                        CallPhase::Start => open.start(id, command.as_deref()),
                        CallPhase::End => open.end(id),
                    };
                }
                EventDetail::Fork { child_pid } => {
                    let call = if task.role == "agent" {
                        agents.insert(task.pid);
                        open.for_new()
                    } else {
                        works_for.get(&task.pid).cloned()
                    };
                    match call {
                        Some(call) => works_for.insert(*child_pid, call),
                        None => works_for.remove(child_pid),
                    };
                }
                EventDetail::Exec { argv, .. } if agents.contains(&task.ppid) => {
                    let line = argv.join(" ");
                    let own = commands
                        .iter()
                        .filter(|c| {
                            !c.command.is_empty()
                                && (c.start.saturating_sub(ROLLOUT_EARLY_NS)..=c.end).contains(&t)
                                && line.contains(c.command.as_str())
                        })
                        .min_by_key(|c| c.start.abs_diff(t));
                    if let Some(c) = own {
                        works_for.insert(task.pid, Arc::clone(&c.id));
                    }
                }
                _ => {}
            }
            if task.role != "agent" {
                task.tool_call = works_for.get(&task.pid).map(|c| c.to_string());
            }
            self.add(r, &ev);
        }
    }
}

/// What `ev` did that is working on, as an undeclared process's `did` says it: an
/// exec (its command), a connect or send (its destination), a write; `None` for the
/// rest (reads, exits, forks).
fn work(ev: &EventLine) -> Option<String> {
    Some(match &ev.detail {
        EventDetail::Exec { .. } => ev.what(),
        EventDetail::Connect { to, .. } | EventDetail::Send { to, .. } => format!(
            "{} {}",
            ev.detail.kind(),
            super::endpoint(&to.addr, to.port, ev.host.as_deref())
        ),
        EventDetail::Open { path, access, .. } if access.iter().any(|a| *a != Access::Read) => {
            format!("write {path}")
        }
        _ => return None,
    })
}

/// Adds what one event of a call's process did to the call.
fn did(c: &mut Call, ev: &EventLine, workspace: Option<&str>) {
    let pid = ev.pid().unwrap_or(0);
    match &ev.detail {
        EventDetail::Exec { exe, argv, .. } => {
            c.execs += 1;
            if c.processes.len() < CALL_LIST_MAX {
                c.processes.push(Command {
                    ts: ev.ts.clone(),
                    pid,
                    exe: exe.clone(),
                    argv: argv.clone(),
                    verdict: super::verdict(ev),
                    sandboxed: None,
                });
            }
        }
        EventDetail::Connect { to, .. } | EventDetail::Send { to, .. } => {
            let at = super::endpoint(&to.addr, to.port, ev.host.as_deref());
            super::push_once(&mut c.destinations, &at);
        }
        EventDetail::Open { path, access, .. } => {
            // Tried or done: a refused read of a secret is still the call's.
            if ev.violation.as_ref().is_some_and(|v| v.secret) {
                super::push_once(&mut c.secrets, path);
            }
            if access.iter().any(|a| *a != Access::Read) && outside(path, workspace) {
                super::push_once(&mut c.written_outside, path);
            }
        }
        _ => {}
    }
    if let Some(v) = super::verdict(ev) {
        super::push_once(&mut c.verdicts, &v);
    }
}

/// Whether a written `path` is outside the workspace, the temporary directory and
/// the system's files: what a command line rarely says it writes.
fn outside(path: &str, workspace: Option<&str>) -> bool {
    let under = |dir: &str| {
        path.strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    !(workspace.is_some_and(|w| w != "/" && under(w))
        || under("/tmp")
        || under("/var/tmp")
        || super::is_system_path(path))
}

#[cfg(test)]
mod tests;
