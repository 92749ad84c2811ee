//! The one place guard acts on processes. The judge (`policy::judge`) decides;
//! this module carries verdicts out (user-space kills through pidfds), kills a
//! session's stragglers when the policy says so, and kills on request (`guard kill`,
//! `guard top`), reporting what actually happened.

pub(crate) mod pidfd;

pub use self::pidfd::{Killed, kill};

use guard_common::protocol::{KillError, KillReport, Latency, Outcome};

use crate::{
    event::{Detail, Event, Violation},
    policy::judge::{Step, Verdict},
};

/// User-space kill latencies kept for `status` (the newest half survives a trim).
const LATENCIES_KEPT: usize = 10_000;

#[derive(Default)]
pub struct Actor {
    /// User-space kill latencies (µs), oldest first.
    latencies: Vec<u64>,
}

impl Actor {
    /// Carries `verdict` out on `ev`'s process (or its session: `members` lists
    /// them, deepest first) and says what happened: the one place a verdict
    /// becomes a violation. `now_ns` is the wall clock, for the kill latency.
    pub fn carry_out(
        &mut self,
        ev: &Event,
        verdict: Verdict,
        members: impl FnOnce() -> Vec<u32>,
        now_ns: impl Fn() -> i128,
    ) -> Violation {
        let mut v = Violation {
            rule: verdict.rule,
            action: verdict.action,
            outcome: Outcome::Logged,
            error: None,
            alert: verdict.alert,
            would: verdict.would,
            rules: verdict.rules,
            secret: verdict.secret,
            kill_latency_us: None,
            anomaly: verdict.anomaly,
        };
        match verdict.step {
            Step::Done(outcome) => v.outcome = outcome,
            Step::Failed(why) => {
                v.outcome = Outcome::Failed;
                v.error = Some(why);
            }
            Step::KillSession { also } => {
                let mut targets = members();
                // A child the kernel could not track joins the registry only after
                // this event: named here.
                if let Some(child) = also {
                    targets.insert(0, child);
                }
                let report = self.kill_all(&targets);
                tracing::warn!(session = ?ev.session, rule = %v.rule, killed = ?report.killed, "session killed");
                (v.outcome, v.error) = report.outcome();
            }
            Step::KillProcess => match kill(ev.task.pid) {
                Ok(Killed::Yes) => {
                    let latency = ((now_ns() - ev.ts_ns).max(0) / 1000) as u64;
                    // Counted once the process's exit shows the kill ended it
                    // (`settle`).
                    v.kill_latency_us = Some(latency);
                    v.outcome = Outcome::Killed;
                }
                Ok(Killed::AlreadyGone) => v.outcome = Outcome::Gone,
                Err(e) => {
                    v.outcome = Outcome::Failed;
                    v.error = Some(e.to_string());
                }
            },
        }
        v
    }

    /// Whether `v` is a user-space kill of one process that the kernel took: a
    /// SIGKILL that reaches a process already on its way out (between the check in
    /// `kill` and the signal) changes nothing, and only the process's exit tells
    /// which happened. Such a violation waits for `settle`.
    pub fn awaits_exit(v: &Violation) -> bool {
        v.outcome == Outcome::Killed && v.kill_latency_us.is_some()
    }

    /// Settles a kill that `awaits_exit` by how its process ended: `status` as
    /// wait(2) gives it, or `None` when no exit came in time (the signal was taken
    /// by a live process: the kill stands). A process that ended any other way had
    /// gone before the kill could matter.
    pub fn settle(&mut self, v: &mut Violation, status: Option<u32>) {
        let by_sigkill = status.is_none_or(|s| s & 0x7f == libc::SIGKILL as u32);
        if by_sigkill {
            if let Some(latency) = v.kill_latency_us {
                self.record_latency(latency);
            }
        } else {
            v.outcome = Outcome::Gone;
            v.kill_latency_us = None;
        }
    }

    /// Kills the stragglers a `session_end` names (CI: nothing of a session
    /// outlives its agent) and records which ones died in `killed`.
    pub fn kill_stragglers(&mut self, end: &mut Event) {
        if let Detail::SessionEnd {
            stragglers, killed, ..
        } = &mut end.detail
        {
            killed.extend(
                stragglers
                    .iter()
                    .copied()
                    .filter(|pid| matches!(kill(*pid), Ok(Killed::Yes))),
            );
        }
    }

    /// Kills `targets` (a session's members, or a subtree), as a session kill and
    /// the control socket ask. Frozen first: a member that saw another die before its
    /// own SIGKILL could react (a shell whose child was killed exits on its own, a
    /// supervisor forks a new one): seen on a loaded host, the agent outlived its
    /// session's kill. The tops (whose parent is no target: the agent, stragglers
    /// re-parented out) are not stopped, since their parent outside the session would
    /// see the stop (a shell's job control prints it): they are killed first, then
    /// the rest, which cannot have moved meanwhile.
    pub fn kill_all(&mut self, targets: &[u32]) -> KillReport {
        let members: std::collections::HashSet<u32> = targets.iter().copied().collect();
        let (tops, inner): (Vec<u32>, Vec<u32>) = targets
            .iter()
            .partition(|&&pid| pidfd::parent(pid).is_none_or(|up| !members.contains(&up)));
        for &pid in &inner {
            // A member it could not stop is still killed below.
            let _ = pidfd::stop(pid);
        }
        let mut report = KillReport::default();
        for &pid in tops.iter().chain(&inner) {
            match kill(pid) {
                Ok(Killed::Yes) => report.killed.push(pid),
                Ok(Killed::AlreadyGone) => report.gone.push(pid),
                Err(e) => report.errors.push(KillError {
                    pid,
                    error: e.to_string(),
                }),
            }
        }
        report
    }

    fn record_latency(&mut self, us: u64) {
        self.latencies.push(us);
        if self.latencies.len() > LATENCIES_KEPT {
            self.latencies.drain(..LATENCIES_KEPT / 2);
        }
    }

    /// p50 and p99 of user-space kill latencies.
    pub fn kill_latency(&self) -> Option<Latency> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v = self.latencies.clone();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            p50: at(0.5),
            p99: at(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use guard_common::protocol::Action;

    use super::*;
    use crate::event::{SessionId, Task};

    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep")
    }

    fn open_by(pid: u32) -> Event {
        Event::derived(
            0,
            Some(SessionId(1)),
            Task {
                pid,
                ..Task::default()
            },
            Detail::Fork { child_pid: 0 },
        )
    }

    fn verdict(step: Step) -> Verdict {
        Verdict {
            rule: "r".into(),
            action: Action::Kill,
            alert: true,
            would: None,
            rules: vec!["r".into()],
            secret: false,
            step,
            anomaly: None,
        }
    }

    #[test]
    fn a_session_verdict_kills_every_member_and_the_untracked_child() {
        let (mut a, mut b) = (sleeper(), sleeper());
        let mut actor = Actor::default();
        let v = actor.carry_out(
            &open_by(a.id()),
            verdict(Step::KillSession { also: Some(b.id()) }),
            || vec![a.id()],
            || 0,
        );
        assert_eq!(v.outcome, Outcome::Killed);
        assert_eq!(a.wait().expect("wait").signal(), Some(libc::SIGKILL));
        assert_eq!(b.wait().expect("wait").signal(), Some(libc::SIGKILL));
    }

    /// The child of `pid`, once it has one.
    fn child_of(pid: u32) -> u32 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            if let Some(child) = children.split_whitespace().next() {
                return child.parse().expect("a pid");
            }
            assert!(std::time::Instant::now() < deadline, "{pid} forked nothing");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_session_kill_ends_the_top_by_sigkill_though_its_child_dies_first() {
        // A shell that would exit 0 the moment its child dies: however the kills
        // are ordered, it must not get to (its child is stopped first, it dies first).
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30; exit 0"])
            .spawn()
            .expect("spawn sh");
        let sleep = child_of(shell.id());
        let mut actor = Actor::default();
        let report = actor.kill_all(&[sleep, shell.id()]);
        assert_eq!(
            report.killed,
            vec![shell.id(), sleep],
            "tops first: {report:?}"
        );
        assert_eq!(shell.wait().expect("wait").signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn a_kill_verdict_kills_and_measures() {
        let mut child = sleeper();
        let mut actor = Actor::default();
        let mut v = actor.carry_out(
            &open_by(child.id()),
            verdict(Step::KillProcess),
            Vec::new,
            || 5_000,
        );
        assert_eq!(v.outcome, Outcome::Killed);
        assert!(Actor::awaits_exit(&v));
        assert_eq!(v.kill_latency_us, Some(5));
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(actor.kill_latency(), None, "counted once settled");
        actor.settle(&mut v, Some(status.into_raw() as u32));
        assert_eq!(v.outcome, Outcome::Killed);
        assert_eq!(actor.kill_latency(), Some(Latency { p50: 5, p99: 5 }));
    }

    #[test]
    fn a_kill_that_came_too_late_is_gone_once_settled() {
        let mut child = sleeper();
        let mut actor = Actor::default();
        let mut v = actor.carry_out(
            &open_by(child.id()),
            verdict(Step::KillProcess),
            Vec::new,
            || 5_000,
        );
        child.wait().expect("wait");
        // The exit said it ended by itself (exit status 0).
        actor.settle(&mut v, Some(0));
        assert_eq!(
            (v.outcome, v.kill_latency_us, actor.kill_latency()),
            (Outcome::Gone, None, None)
        );
    }

    #[test]
    fn a_done_verdict_touches_nothing() {
        let mut child = sleeper();
        let mut actor = Actor::default();
        let v = actor.carry_out(
            &open_by(child.id()),
            verdict(Step::Done(Outcome::Denied)),
            Vec::new,
            || 0,
        );
        assert_eq!(v.outcome, Outcome::Denied);
        assert!(child.try_wait().expect("try_wait").is_none(), "still runs");
        kill(child.id()).expect("clean up");
        child.wait().expect("wait");
    }

    #[test]
    fn kill_requests_report_killed_and_gone() {
        let mut child = sleeper();
        let mut gone = std::process::Command::new("true").spawn().expect("true");
        let gone_pid = gone.id();
        gone.wait().expect("reap");
        let report = Actor::default().kill_all(&[child.id(), gone_pid]);
        assert_eq!(report.killed, vec![child.id()]);
        assert_eq!(report.gone, vec![gone_pid]);
        assert!(report.errors.is_empty());
        child.wait().expect("wait");
    }
}
