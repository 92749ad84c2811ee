//! Declared versus done: the tool calls the agent declared through guard's hook
//! (`tool_call` events), what each call's processes did (`tool_call` on their
//! events, as the daemon tied them: session/calls.rs), and the processes no call
//! accounts for.

use std::collections::{HashMap, HashSet};

use guard_common::{
    protocol::{CallPhase, EventDetail, EventLine},
    report::{Bounded, CALL_LIST_MAX, Call, Command, MAX_ITEMS, Report, Undeclared},
};

pub use guard_common::report::why::{INSTALL_SCRIPT, OUTLIVED, OUTSIDE};

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
                ..
            } => {
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
        EventDetail::Open { path, access, .. } if access.iter().any(|a| a != "read") => {
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
            if access.iter().any(|a| a != "read") && outside(path, workspace) {
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
