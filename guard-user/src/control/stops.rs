//! What guard stopped, for the agents' hooks to tell the agent why (`guard hook`):
//! each kill or refusal of a process that works for an agent thread (Codex's
//! `CODEX_THREAD_ID`), else for a declared call (Gemini CLI's tools carry no
//! thread), kept a while, and handed out once per thread or call: a hook that runs
//! after each tool call gets what was stopped since the last one.

use std::collections::{HashMap, VecDeque};

use guard_common::protocol::{Outcome, Stop};

use crate::event::{Event, Written as _};

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

/// Where the stops of a session's agent process are kept: it serves the session's
/// threads (Codex puts the thread id in its tools' environment only).
fn session_key(session: &str) -> String {
    format!("session:{session}")
}

/// Where the stops of a process that works for a declared call but no thread are
/// kept: its call's end hands them out.
pub fn call_key(call: &str) -> String {
    format!("call:{call}")
}

impl Stops {
    /// Notes `ev` when guard stopped it (killed or denied) and it works for an
    /// agent thread, for a declared call (kept under [`call_key`]), or is the
    /// agent's own process (whose threads are its session's: kept under
    /// [`session_key`]); `uid` is its session's, `description` its rule's.
    pub fn note(&mut self, ev: &Event, uid: u32, description: Option<&str>) {
        let Some(v) = &ev.violation else {
            return;
        };
        let thread = match (&ev.task.agent_thread, &ev.task.call, ev.session) {
            (Some(thread), _, _) => thread.to_string(),
            (None, Some(call), _) => call_key(call),
            (None, None, Some(session)) if ev.task.role == guard_common::role::AGENT => {
                session_key(&session.to_string())
            }
            _ => return,
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
            thread,
            uid,
            self.next,
            Stop {
                ts: crate::event::rfc3339(ev.ts_ns),
                pid: ev.task.pid,
                comm: ev.task.comm.clone(),
                what: ev.to_line().attempt(),
                rule: v.rule.clone(),
                description: description.map(str::to_owned),
                action: v.action,
                outcome: v.outcome,
            },
        ));
    }

    /// What was stopped for `thread` since it was last asked, when the asker (`uid`,
    /// 0 for root) may know: the thread's sessions are its own. `sessions`: those
    /// the thread ran in, whose agent's own process's stops are the thread's too.
    pub fn take(&mut self, thread: &str, sessions: &[String], uid: u32) -> Vec<Stop> {
        let after = self.told.get(thread).copied().unwrap_or(0);
        let keys: Vec<String> = sessions.iter().map(|s| session_key(s)).collect();
        let out: Vec<(u64, Stop)> = self
            .kept
            .iter()
            .filter(|(t, owner, seq, _)| {
                (t == thread || keys.contains(t)) && *seq > after && (uid == 0 || *owner == uid)
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Detail, SessionId, Task, Violation};

    fn stopped(pid: u32, role: u8, thread: Option<&str>) -> Event {
        let mut ev = Event::derived(
            1_000,
            Some(SessionId(0xab)),
            Task {
                pid,
                role,
                agent_thread: thread.map(std::sync::Arc::from),
                ..Task::default()
            },
            Detail::Open {
                path: "/home/a/.ssh/id_rsa".into(),
                resolved: true,
                truncated: false,
                flags: 0,
                call: guard_common::OpenCall::Openat,
                ret: -13,
                repeats: 0,
                dir: false,
            },
        );
        ev.violation = Some(Violation {
            rule: "secrets-read-by-agent".into(),
            action: guard_common::protocol::Action::Deny,
            outcome: Outcome::Denied,
            error: None,
            alert: true,
            would: None,
            rules: vec!["secrets-read-by-agent".into()],
            secret: true,
            kill_latency_us: None,
            anomaly: None,
        });
        ev
    }

    #[test]
    fn the_agent_s_own_stops_reach_the_threads_of_its_session() {
        let mut stops = Stops::default();
        stops.note(&stopped(10, guard_common::role::AGENT, None), 1000, None);
        stops.note(
            &stopped(11, guard_common::role::TOOL, Some("t1")),
            1000,
            None,
        );
        // A helper without a thread is nobody's to tell.
        stops.note(&stopped(12, guard_common::role::HELPER, None), 1000, None);
        let session = SessionId(0xab).to_string();
        // Another user's hook learns nothing.
        assert!(
            stops
                .take("t1", std::slice::from_ref(&session), 1001)
                .is_empty()
        );
        let got: Vec<u32> = stops
            .take("t1", std::slice::from_ref(&session), 1000)
            .iter()
            .map(|s| s.pid)
            .collect();
        assert_eq!(got, [10, 11]);
        assert!(
            stops.take("t1", &[session], 1000).is_empty(),
            "handed out once"
        );
    }

    /// Gemini CLI's tools carry no thread: their stops wait for their call's end.
    #[test]
    fn a_tool_without_a_thread_is_told_at_its_call_s_end() {
        let mut stops = Stops::default();
        let mut tool = stopped(13, guard_common::role::TOOL, None);
        tool.task.call = Some(std::sync::Arc::from("gemini-00ff"));
        stops.note(&tool, 1000, None);
        assert!(stops.take(&call_key("gemini-0001"), &[], 1000).is_empty());
        let got: Vec<u32> = stops
            .take(&call_key("gemini-00ff"), &[], 1000)
            .iter()
            .map(|s| s.pid)
            .collect();
        assert_eq!(got, [13]);
        // A thread's tool stays the thread's, whatever its call.
        let mut codex = stopped(14, guard_common::role::TOOL, Some("t1"));
        codex.task.call = Some(std::sync::Arc::from("call_0"));
        stops.note(&codex, 1000, None);
        assert!(stops.take(&call_key("call_0"), &[], 1000).is_empty());
        assert_eq!(stops.take("t1", &[], 1000).len(), 1);
    }
}
