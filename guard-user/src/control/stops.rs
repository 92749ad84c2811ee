//! What guard stopped, for the agents' hooks to tell the agent why (`guard hook`):
//! each kill or refusal of a process that works for an agent thread (Codex's
//! `CODEX_THREAD_ID`), kept a while, and handed out once per thread: a hook that
//! runs after each tool call gets what was stopped since the last one.

use std::collections::{HashMap, VecDeque};

use guard_common::protocol::{Outcome, Stop};

use crate::event::{Detail, Event};

/// Stops kept (across every thread): the oldest go first.
const KEPT: usize = 4096;

#[derive(Debug, Default)]
pub struct Stops {
    /// (thread, the session's uid, sequence number, the stop).
    kept: VecDeque<(String, u32, u64, Stop)>,
    next: u64,
    /// Per thread, the sequence number handed out last.
    told: HashMap<String, u64>,
}

/// What an event was about, for the agent (a file's name, never its content).
fn what(ev: &Event) -> String {
    match &ev.detail {
        Detail::Exec { exe, argv, .. } => {
            let line = argv.join(" ");
            format!("exec {}", if line.is_empty() { exe } else { &line })
        }
        Detail::Open { path, .. } => format!("open {path}"),
        Detail::Connect { addr, port, .. } | Detail::Send { addr, port, .. } => {
            let host = ev
                .host
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            format!(
                "{} {addr}:{port}{host}",
                if matches!(ev.detail, Detail::Connect { .. }) {
                    "connect"
                } else {
                    "send"
                }
            )
        }
        Detail::Unix { path, .. } => format!("connect to the Unix socket {path}"),
        Detail::Route { route, path, .. } => match path {
            Some(p) => format!("{} {p}", route.as_str()),
            None => route.as_str().to_owned(),
        },
        other => other.kind().to_owned(),
    }
}

impl Stops {
    /// Notes `ev` when guard stopped it (killed or denied) and it works for an
    /// agent thread; `uid` is its session's, `description` its rule's.
    pub fn note(&mut self, ev: &Event, uid: u32, description: Option<&str>) {
        let (Some(v), Some(thread)) = (&ev.violation, &ev.task.agent_thread) else {
            return;
        };
        if !matches!(
            v.outcome,
            Outcome::Killed | Outcome::Denied | Outcome::Deferred
        ) {
            return;
        }
        if self.kept.len() == KEPT {
            self.kept.pop_front();
        }
        self.next += 1;
        self.kept.push_back((
            thread.to_string(),
            uid,
            self.next,
            Stop {
                ts: crate::event::rfc3339(ev.ts_ns),
                pid: ev.task.pid,
                comm: ev.task.comm.clone(),
                what: what(ev),
                rule: v.rule.clone(),
                description: description.map(str::to_owned),
                action: v.action,
                outcome: v.outcome,
            },
        ));
    }

    /// What was stopped for `thread` since it was last asked, when the asker (`uid`,
    /// 0 for root) may know: the thread's sessions are its own.
    pub fn take(&mut self, thread: &str, uid: u32) -> Vec<Stop> {
        let after = self.told.get(thread).copied().unwrap_or(0);
        let out: Vec<(u64, Stop)> = self
            .kept
            .iter()
            .filter(|(t, owner, seq, _)| t == thread && *seq > after && (uid == 0 || *owner == uid))
            .map(|(_, _, seq, s)| (*seq, s.clone()))
            .collect();
        if let Some((last, _)) = out.last() {
            self.told.insert(thread.to_owned(), *last);
            if self.told.len() > KEPT {
                self.told.clear();
            }
        }
        out.into_iter().map(|(_, s)| s).collect()
    }
}
