//! The tool calls an agent declares through its hook (`guard hook`, the hook
//! socket), and which of them a process of its session works for.
//!
//! The hook runs before a call's processes (`PreToolUse`) and after them
//! (`PostToolUse`), and the daemon reads the kernel's records up to the moment it
//! hears from it: a process the agent's own process starts while a call is open
//! works for that call, and its descendants with it. With several calls open at
//! once (an agent's parallel calls), the one whose declared command the process's
//! exec carries; else the latest.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

/// Ended calls remembered per session (a process of one of them that works on is
/// known to have outlived it).
const KEEP_ENDED: usize = 1_024;
/// Calls open at once: an agent runs a few in parallel; more are not remembered.
const KEEP_OPEN: usize = 64;

#[derive(Clone, Debug)]
struct Open {
    id: Arc<str>,
    command: Option<String>,
}

/// A session's declared calls.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    /// Open calls, first opened first.
    open: Vec<Open>,
    /// Ended calls, and the order they are forgotten in (oldest first): asked at
    /// every exec, connect and send of a call's process.
    ended: HashSet<Arc<str>>,
    ended_order: VecDeque<Arc<str>>,
    /// The agent declared a call: its hook runs.
    declared: bool,
    /// The hooks' own processes, latest last: neither a call's work nor undeclared.
    hooks: VecDeque<u32>,
}

/// Hook processes remembered per session (each lives for one call's start or end).
const KEEP_HOOKS: usize = 64;

impl Calls {
    /// Whether the agent declared any call (its hook runs).
    pub fn declared(&self) -> bool {
        self.declared
    }

    /// Process `pid` is a hook of the agent's (it declared a call).
    pub fn hook(&mut self, pid: u32) {
        if !self.hooks.contains(&pid) {
            if self.hooks.len() == KEEP_HOOKS {
                self.hooks.pop_front();
            }
            self.hooks.push_back(pid);
        }
    }

    /// Call `id` starts; it declares `command`. The id the session's events
    /// carry (one `Arc` for all of them).
    pub fn start(&mut self, id: &str, command: Option<&str>) -> Arc<str> {
        self.declared = true;
        if let Some(open) = self.open.iter().find(|o| &*o.id == id) {
            return Arc::clone(&open.id);
        }
        if self.open.len() == KEEP_OPEN {
            // A call whose end never came (its hook did not run): the oldest.
            let gone = self.open.remove(0);
            self.remember_ended(gone.id);
        }
        let id: Arc<str> = Arc::from(id);
        self.open.push(Open {
            id: Arc::clone(&id),
            command: command.map(str::to_owned),
        });
        id
    }

    /// Call `id` ended (a call whose start went unheard ends all the same).
    pub fn end(&mut self, id: &str) -> Arc<str> {
        self.declared = true;
        let id = match self.open.iter().position(|o| &*o.id == id) {
            Some(at) => self.open.remove(at).id,
            None => Arc::from(id),
        };
        if !self.has_ended(&id) {
            self.remember_ended(Arc::clone(&id));
        }
        id
    }

    fn remember_ended(&mut self, id: Arc<str>) {
        if self.ended_order.len() == KEEP_ENDED
            && let Some(old) = self.ended_order.pop_front()
        {
            self.ended.remove(&old);
        }
        self.ended.insert(Arc::clone(&id));
        self.ended_order.push_back(id);
    }

    /// Whether call `id` ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.ended.contains(id)
    }

    /// Why no declared call accounts for a live process that works for `call`
    /// with `role` (`ProcessInfo::undeclared`): its call ended, or it is a tool the
    /// agent started outside every call. `None` while the agent declares nothing.
    pub fn undeclared(&self, pid: u32, call: Option<&str>, role: u8) -> Option<String> {
        if !self.declared || self.hooks.contains(&pid) {
            return None;
        }
        match call {
            Some(call) if self.has_ended(call) => Some("outlived_call".to_owned()),
            None if role == guard_common::role::TOOL => Some("outside_calls".to_owned()),
            _ => None,
        }
    }

    /// The call a process the agent's own process starts now works for: the only
    /// open one, else the latest opened (its exec may say better: [`Self::of_exec`]).
    pub fn for_new(&self) -> Option<Arc<str>> {
        self.open.last().map(|o| Arc::clone(&o.id))
    }

    /// With several calls open, the one whose declared command `argv` carries (a
    /// shell's `-c` script, or the command's words): the agent's child's exec.
    /// `None` with one call open or none, or when no command matches.
    pub fn of_exec(&self, argv: &[String]) -> Option<Arc<str>> {
        if self.open.len() < 2 {
            return None;
        }
        let line = argv.join(" ");
        self.open
            .iter()
            .rev()
            .find(|o| {
                o.command
                    .as_deref()
                    .is_some_and(|c| !c.is_empty() && line.contains(c))
            })
            .map(|o| Arc::clone(&o.id))
    }
}

#[cfg(test)]
mod tests {
    use super::Calls;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn a_new_process_works_for_the_open_call_and_an_exec_picks_among_parallel_ones() {
        let mut calls = Calls::default();
        assert!(!calls.declared());
        assert_eq!(calls.for_new(), None, "no call open");
        calls.start("call_0", Some("npm install ./pkg"));
        assert!(calls.declared());
        assert_eq!(calls.for_new().as_deref(), Some("call_0"));
        // One call open: the exec says nothing more.
        assert_eq!(calls.of_exec(&argv(&["/bin/bash", "-lc", "ls"])), None);
        calls.start("call_1", Some("git status"));
        assert_eq!(calls.for_new().as_deref(), Some("call_1"), "the latest");
        assert_eq!(
            calls
                .of_exec(&argv(&["/bin/bash", "-lc", "npm install ./pkg"]))
                .as_deref(),
            Some("call_0"),
            "the command the exec carries"
        );
        assert_eq!(calls.of_exec(&argv(&["/bin/bash", "-lc", "make"])), None);
        calls.end("call_0");
        assert!(calls.has_ended("call_0"));
        assert!(!calls.has_ended("call_1"));
        assert_eq!(calls.for_new().as_deref(), Some("call_1"));
        calls.end("call_1");
        assert_eq!(calls.for_new(), None, "every call ended");
        // An end whose start went unheard is an end all the same.
        calls.end("call_9");
        assert!(calls.has_ended("call_9"));
    }

    #[test]
    fn calls_whose_end_never_comes_are_bounded() {
        let mut calls = Calls::default();
        for n in 0..super::KEEP_OPEN + 1 {
            calls.start(&format!("call_{n}"), None);
        }
        assert!(calls.has_ended("call_0"), "the oldest open call gave way");
        assert_eq!(
            calls.for_new().as_deref(),
            Some(format!("call_{}", super::KEEP_OPEN).as_str())
        );
    }
}
