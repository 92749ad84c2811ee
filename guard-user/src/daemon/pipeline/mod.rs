//! One record's way through user space, in one direction: decode → event →
//! enrichment → session (start, membership, end) → the judge's verdict → action →
//! outputs (audit log, subscribers, metrics).

mod stale;
mod steer;

use std::sync::Arc;

use aya::maps::{MapData, RingBuf};
use guard_common::{
    line::EventLine,
    protocol::{CallPhase, Outcome},
};

use crate::{
    action::Actor,
    audit::{self, Sink},
    control::fanout::Subscribers,
    event::{Detail, Event, Task, Written as _, decode, enrich::Enricher},
    host::clock,
    metrics::Metrics,
    policy::judge::Judge,
    report::{self, Ledgers},
    session::Registry,
};

/// Where events go: the audit log, the control socket's subscribers, the metrics.
pub(super) struct Outputs {
    pub sink: Sink,
    pub subscribers: Subscribers,
    pub metrics: Arc<Metrics>,
    /// Events written since start, and at the last beat (for the rate).
    pub total: u64,
    at_beat: u64,
    pub rate: f64,
    /// Each session's report as it goes (`guard report`).
    pub ledgers: Ledgers,
    /// Where finished reports are written (`[report] dir`), as the policy says.
    pub report_dir: Option<std::path::PathBuf>,
    /// The export to the organisation's pipeline, when one is configured.
    pub export: Option<crate::export::Exporter>,
    /// What guard stopped, for the agents' hooks (`guard hook`).
    pub stops: crate::control::stops::Stops,
    /// How often a running session's summary leaves (`[export] summary_interval`),
    /// and when each one's last did.
    pub summary_every: std::time::Duration,
    summary_at: std::collections::HashMap<String, std::time::Instant>,
    /// The line being written, kept from one event to the next.
    line_buf: Vec<u8>,
}

impl Outputs {
    pub(super) fn new(sink: Sink, metrics: Arc<Metrics>) -> Self {
        Self {
            sink,
            subscribers: Subscribers::default(),
            metrics,
            total: 0,
            at_beat: 0,
            rate: 0.0,
            ledgers: Ledgers::default(),
            report_dir: None,
            export: None,
            stops: Default::default(),
            summary_every: std::time::Duration::from_secs(60),
            summary_at: Default::default(),
            line_buf: Vec::new(),
        }
    }

    /// Writes one event to the audit log, offers it to every subscriber and adds it
    /// to its session's report.
    pub(super) fn write(&mut self, ev: &Event) -> Result<(), audit::Error> {
        self.total += 1;
        self.metrics.event(ev.detail.kind());
        if let Detail::SessionStart { agent, .. } = &ev.detail {
            self.metrics.session_started(agent);
        }
        if let Detail::Flow(f) = &ev.detail {
            let class = ev.dest_class(f.addr);
            self.metrics
                .flow(class.as_str(), f.new_out, f.new_in, f.is_final());
        }
        if let Some(v) = &ev.violation {
            self.metrics
                .violation(&v.rule, v.action.as_str(), v.outcome.as_str());
        }
        // The event's one description: the reports read it, serde writes it.
        let line = ev.to_line();
        if let Some(session) = &line.session {
            self.report(session, ev, &line);
        }
        if self.subscribers.is_empty() && self.export.is_none() {
            // The common case: serialise straight into the sink's buffer.
            return self.sink.write_event(&line);
        }
        self.line_buf.clear();
        // Serialising plain data into a Vec cannot fail; serde_json writes UTF-8.
        let _ = serde_json::to_writer(&mut self.line_buf, &line);
        let json: Arc<str> = Arc::from(std::str::from_utf8(&self.line_buf).unwrap_or_default());
        // The export first: a line in the audit log has been offered to it.
        if let Some(export) = &self.export {
            export.offer_event(ev.detail.kind(), &json);
        }
        if !self.subscribers.is_empty() {
            self.subscribers
                .offer(&json, line.session.as_deref(), ev.detail.kind());
        }
        self.sink.write_line(&json)
    }

    /// Offers `session`'s summary to the export (`ended`: its last).
    fn summarise(&mut self, session: &str, report: report::Report, ended: bool) {
        let Some(export) = &mut self.export else {
            return;
        };
        let summary = report.summary(export.summary_items());
        match serde_json::to_value(&summary) {
            Ok(json) => export.offer_summary(session, json, ended),
            Err(e) => tracing::warn!(session, "cannot export the session's summary: {e}"),
        }
        if ended {
            self.summary_at.remove(session);
        } else {
            self.summary_at
                .insert(session.to_owned(), std::time::Instant::now());
        }
    }

    /// The export's periodic summaries of running sessions, and its heartbeat
    /// when there was nothing to send (on the daemon's beat).
    pub(super) fn summaries_due(&mut self) {
        let Some(export) = &self.export else {
            return;
        };
        let every = self.summary_every;
        export.heartbeat_due(every);
        for session in self.ledgers.running() {
            let due = self
                .summary_at
                .get(&session)
                .is_none_or(|at| at.elapsed() >= every);
            if due && let Some(report) = self.ledgers.report_of(&session) {
                self.summarise(&session, report, false);
            }
        }
    }

    /// Adds an event to its session's report (as the audit log's line reads back,
    /// so a report from the log says the same); writes the report out when the
    /// session ends.
    fn report(&mut self, session: &str, ev: &Event, line: &EventLine) {
        let done = self.ledgers.add(session, line);
        if let Detail::Limit { total, .. } = ev.detail {
            self.ledgers.dropped(session, total);
        }
        let Some(done) = done else {
            return;
        };
        self.summarise(session, done.clone(), true);
        if let Some(dir) = &self.report_dir {
            match report::write_files(dir, &done) {
                Ok(path) => {
                    tracing::info!(session, path = %path.display(), "session report written")
                }
                Err(e) => {
                    tracing::warn!(session, dir = %dir.display(), "cannot write the session report: {e:#}")
                }
            }
        }
    }

    /// Writes an event about the daemon itself (no session, no process) at once.
    pub(super) fn write_daemon_event(
        &mut self,
        offset: i128,
        detail: Detail,
    ) -> Result<(), audit::Error> {
        let ev = Event::derived(
            i128::from(clock::boot_ns()) + offset,
            None,
            Task::default(),
            detail,
        );
        self.write(&ev)?;
        self.sink.flush()
    }

    /// The one-second beat: the event rate.
    pub(super) fn beat(&mut self) {
        self.rate = (self.total - self.at_beat) as f64;
        self.at_beat = self.total;
    }
}

/// Records one turn of the daemon's loop takes from the ring buffer: ~15 ms of the
/// daemon's work at ~1.8 µs a record, after which a client, a signal or a timer
/// that is due gets its turn ([`Pipeline::drain`]).
pub(super) const DRAIN_PASS: usize = 8_192;

/// Records taken when everything the kernel reported so far is wanted (a hook asks
/// what was stopped; the daemon stops): more than the default ring buffer holds
/// (8 MiB, records of 96 bytes and more), yet bounded under a load that never
/// lets it empty.
pub(super) const DRAIN_WHOLE: usize = 1 << 17;

/// What the path from record to verdict needs.
pub(super) struct Pipeline {
    registry: Registry,
    /// Open flows' totals: what each flow record adds, written into it once.
    flows: crate::event::flows::FlowDeltas,
    enricher: Enricher,
    judge: Judge,
    actor: Actor,
    /// Add to a boot-clock time for wall-clock time.
    offset: i128,
    /// Records the decoder did not understand.
    undecodable: u64,
    /// Anomaly rules and each session's counts against them.
    anomalies: crate::anomaly::Detector,
    /// The names each session's DNS answers gave addresses.
    names: crate::event::names::Names,
    /// Sessions that ended, with when (wall ns): their names and counts are
    /// forgotten a while later (their last flow records come after the end).
    ended: std::collections::VecDeque<(crate::event::SessionId, i128)>,
    /// The protected files and directories by identity (names the kernel's matches).
    identity: crate::identity::Identity,
    /// Violations waiting for their process's exit (see `Held`).
    held: Vec<Held>,
    /// Agents' versions by program (read from their packages).
    versions: crate::agents::version::Versions,
    /// The agents' profiles in force (the policy's and the built-in ones).
    known: crate::agents::profile::Known,
    /// Digests of the programs of execs the kernel held (`crate::digest`).
    digests: crate::digest::Digests,
    /// Those held processes, let go once judged.
    holds: crate::digest::Holds,
    /// Work trees of the repositories sessions started in since the daemon last
    /// read their ignore files (`Daemon::apply_ignores`).
    repositories: Vec<std::path::PathBuf>,
    /// What guard's resolver needs to know of what went by (`take_dns_work`).
    dns_work: Vec<DnsWork>,
    /// The host's known spawners (`crate::delegation`): listeners of sessions'
    /// connects are named, and the kernel's copy kept.
    spawners: Option<crate::delegation::Spawners>,
    /// The organisation's package names (`[packages] first_seen`), pulled from the
    /// fleet (`crate::fleet`).
    package_names: crate::fleet::Names,
}

/// What the pipeline saw that guard's resolver needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum DnsWork {
    /// A process of `session` runs in network namespace `netns` (0: unknown, read
    /// it from the process): it needs a resolver there.
    Seen {
        netns: u32,
        pid: u32,
        session: Option<crate::event::SessionId>,
    },
    /// The session ended.
    Ended(crate::event::SessionId),
}

/// A violation whose user-space kill was sent, held until its process's exit says
/// whether the kill is what ended it (`Actor::settle`).
pub(super) struct Held {
    ev: Event,
    /// The rule's description, for the agents' hooks.
    description: Option<String>,
    /// Wall ns after which it is written as killed without its exit.
    until: i128,
}

/// How long a held kill waits for its process's exit: a SIGKILL that a live process
/// took ends it within milliseconds; the exit record comes on the next drain.
const HOLD_NS: i128 = 2_000_000_000;

/// Writes an event and tells the agents' hooks what it stopped; a violation is logged here, once its outcome is settled (a
/// held kill's by its process's exit), so the log line and the audit log agree.
fn emit(out: &mut Outputs, ev: &Event, description: Option<&str>) -> Result<(), audit::Error> {
    if let Some(v) = &ev.violation {
        if let Detail::Tamper(t) = &ev.detail {
            tracing::warn!(pid = ev.task.pid, comm = %ev.task.comm, op = t.op.as_str(), target = ?t.target, outcome = v.outcome.as_str(), "tamper attempt against guard");
        } else {
            tracing::info!(pid = ev.task.pid, session = ?ev.session, rule = %v.rule, outcome = v.outcome.as_str(), anomaly = ?v.anomaly, "policy violation");
        }
        if v.outcome == Outcome::Failed {
            tracing::warn!(pid = ev.task.pid, error = ?v.error, "a kill failed");
        }
    }
    out.stops.note(ev, ev.task.uid, description);
    out.write(ev)
}

/// How long a session's names and anomaly counts outlive its end.
const KEEP_ENDED_NS: i128 = 300 * 1_000_000_000;

impl Pipeline {
    /// `[packages] first_seen`'s verdict on `ev`, against the organisation's names:
    /// a package new to them is added, so it is the organisation's first once. The
    /// names are locked only for a manifest's write.
    fn first_seen(&self, ev: &Event) -> Option<guard_policy::judge::Verdict> {
        let names = || {
            self.package_names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        match self.judge.first_seen(ev, |e, n| names().knows(e, n))? {
            Ok((verdict, package)) => {
                names().insert(package.ecosystem, &package.name);
                Some(verdict)
            }
            Err(package) => {
                tracing::warn!(
                    ecosystem = package.ecosystem,
                    name = package.name,
                    "a session installed a package that is not judged new to the \
                     organisation or not: the fleet's package names have not arrived"
                );
                None
            }
        }
    }

    /// Notes the repository a `session_start` names, for its ignore files.
    pub(super) fn note_repository(&mut self, start: &Event) {
        if let Detail::SessionStart {
            repository: Some(repo),
            ..
        } = &start.detail
            && let Some(root) = &repo.root
        {
            let root = std::path::PathBuf::from(root);
            if !self.repositories.contains(&root) {
                self.repositories.push(root);
            }
        }
    }

    /// What guard's resolver is to learn, since the last call.
    pub(super) fn take_dns_work(&mut self) -> Vec<DnsWork> {
        std::mem::take(&mut self.dns_work)
    }

    /// Wall-clock ns now.
    pub(super) fn now(&self) -> i128 {
        i128::from(clock::boot_ns()) + self.offset
    }

    /// Takes up to `max` records of the ring buffer through the pipeline (one
    /// [`DRAIN_PASS`] in the daemon's loop); returns whether it stopped with
    /// records left. Under a load the daemon cannot keep up with the ring buffer
    /// never empties: a drain that waited for it to would keep everything else on
    /// the daemon's thread (clients' requests, signals, the beat) waiting as long as
    /// the load lasts.
    pub(super) fn drain(
        &mut self,
        ring: &mut RingBuf<MapData>,
        out: &mut Outputs,
        max: usize,
    ) -> Result<bool, audit::Error> {
        let mut left = true;
        for _ in 0..max {
            let Some(item) = ring.next() else {
                left = false;
                break;
            };
            match decode::decode(&item) {
                Ok(record) => {
                    let mut ev = crate::event::from_record(record, self.offset);
                    self.enricher.enrich(&mut ev);
                    self.process(ev, out)?;
                }
                Err(e) => {
                    self.undecodable += 1;
                    tracing::warn!(
                        "undecodable kernel record ({} so far): {e}",
                        self.undecodable
                    );
                }
            }
        }
        out.sink.flush()?;
        Ok(left)
    }

    /// One event: session bookkeeping around the judge's verdict and its action.
    #[expect(
        clippy::too_many_lines,
        reason = "one event's steps in order: annotate, judge, act, write, end its session"
    )]
    pub(super) fn process(&mut self, mut ev: Event, out: &mut Outputs) -> Result<(), audit::Error> {
        if let Detail::Flow(f) = &mut ev.detail {
            (f.new_out, f.new_in) = self.flows.add(f);
        }
        if let Some(start) = self.registry.before(&ev) {
            self.note_repository(&start);
            out.write(&start)?;
        }
        self.registry.annotate(&mut ev);
        if let Detail::Exec { exe, argv, .. } = &ev.detail
            && ev.task.role == guard_common::role::AGENT
        {
            ev.agent = self.known.recognise(exe, argv).cloned();
            ev.agent_version = self.versions.of(exe, argv);
            if let (Some(agent), Some(session)) = (&ev.agent, ev.session)
                && self.registry.name_agent(session, agent)
            {
                out.metrics.agent_session(agent);
            }
        }
        let mut log_dns = true;
        if let (Detail::Dns(d), Some(session)) = (&ev.detail, ev.session) {
            log_dns = match d.direction {
                crate::event::dns::Direction::Answer => self.names.learn(session, d, ev.ts_ns),
                // Queries are counted against the anomaly rules; logged only when
                // they break one (their answers repeat the question).
                crate::event::dns::Direction::Query => false,
            };
            out.metrics.dns(d.direction.as_str());
        }
        self.name_destination(&mut ev);
        if let Some(id) = &mut ev.identity
            && let Some(hit) = id.matched
        {
            id.protected = self
                .identity
                .name_of(hit.dev, hit.ino)
                .map(|p| p.display().to_string());
        }
        // An exec record flagged held was held for a digest (process.rs).
        let for_digest = ev.held;
        // Held for a download (`[sessions] run_downloaded`): the kernel's route_exec
        // held it before the exec's record, and says why in `HELD_FOR`; an exec built
        // from /proc (its record lost) may have been held for either reason a download
        // hold has (the file, or an interpreter's script) when the kernel did not say.
        if let Detail::Exec {
            exe,
            argv,
            from_proc,
            ..
        } = &ev.detail
            && self.judge.policy().sessions.run_downloaded.is_some()
            && let Some(why) = self.holds.download_hold(ev.task.pid).or_else(|| {
                from_proc.then_some(
                    guard_common::held_for::DOWNLOAD | guard_common::held_for::INTERPRETER,
                )
            })
        {
            ev.held = true;
            ev.download = self.holds.download(ev.task.pid, exe, argv, why);
        }
        if for_digest {
            match self.digests.of_process(ev.task.pid) {
                Ok(d) => ev.digest = Some(d),
                // Judged by name alone; the event says held with no digest.
                Err(e) => tracing::warn!(
                    "cannot hash the program of process {}, held at exec: {e}",
                    ev.task.pid
                ),
            }
        }
        self.note_netns(&ev);
        if let Some(spawners) = &mut self.spawners {
            let registry = &self.registry;
            spawners.annotate(&mut ev, &self.judge.policy().delegation, |pid| {
                registry.has_proc(pid)
            });
        }
        let is_root = self.registry.is_root(&ev);
        let escaped = self.registry.escaped_sandbox(&ev);
        let outlived = self.registry.outlived_call(&ev);
        let mut description = None;
        // The judge decides (rules, limits, self-protection, then anomalies, which
        // count every event the rules let by); the actor carries the verdict out.
        // A download about to run comes first: the process waits, stopped.
        let verdict = self
            .judge
            .downloaded(&ev)
            .or_else(|| {
                if self.registry.is_confined(ev.session) {
                    // Only a refusal by ENOENT asks where the file was hidden.
                    let hidden = match &ev.detail {
                        Detail::Open { path, ret, .. } if *ret == -i64::from(libc::ENOENT) => {
                            self.registry.hidden_below(ev.session, path)
                        }
                        _ => false,
                    };
                    self.judge.judge_confined(&ev, is_root, hidden)
                } else {
                    self.judge.judge(&ev, is_root)
                }
            })
            .or_else(|| self.anomalies.check(&ev).map(|hit| self.judge.anomaly(hit)))
            .or_else(|| escaped.then(|| self.judge.unsandboxed()).flatten())
            .or_else(|| outlived.then(|| self.judge.undeclared()).flatten())
            .or_else(|| self.judge.delegation(&ev))
            .or_else(|| self.judge.package(&ev))
            .or_else(|| self.first_seen(&ev));
        self.judge.redact(&mut ev);
        if let Some(verdict) = verdict {
            let offset = self.offset;
            let registry = &self.registry;
            let v = self.actor.carry_out(
                &ev,
                verdict,
                || registry.members(ev.session, None),
                || i128::from(clock::boot_ns()) + offset,
            );
            description = self
                .judge
                .policy()
                .rules
                .iter()
                .find(|r| r.id == v.rule)
                .and_then(|r| r.description.clone());
            ev.violation = Some(v);
        }
        if ev.held {
            // After any kill: a killed process never runs an instruction of it.
            self.holds.release(ev.task.pid);
        }
        if matches!(ev.detail, Detail::Dns(_)) && !log_dns && ev.violation.is_none() {
            return Ok(());
        }
        if let Detail::Exit { status, .. } = ev.detail {
            // The process that exited: its pid in its session (a pid reused
            // within the hold by another session's process settles nothing).
            let (pid, session) = (ev.task.pid, ev.session);
            self.release(
                out,
                |h| h.ev.task.pid == pid && h.ev.session == session,
                Some(status),
            )?;
        }
        let end = self.registry.after(&ev);
        let ts_ns = ev.ts_ns;
        if ev.violation.as_ref().is_some_and(Actor::awaits_exit) {
            self.held.push(Held {
                until: self.now() + HOLD_NS,
                ev,
                description,
            });
        } else {
            emit(out, &ev, description.as_deref())?;
        }
        if let Some(mut end) = end {
            if let Some(id) = end.session {
                self.dns_work.push(DnsWork::Ended(id));
            }
            if self.judge.policy().kill_stragglers {
                self.actor.kill_stragglers(&mut end);
            }
            if let Some(id) = end.session {
                // The session's report closes with its end: nothing of it waits.
                self.release(out, |h| h.ev.session == Some(id), None)?;
                self.ended.push_back((id, end.ts_ns));
                for mut call in self.rollout_calls(id) {
                    self.judge.redact(&mut call);
                    out.write(&call)?;
                }
            }
            out.write(&end)?;
        }
        while let Some((id, at)) = self.ended.front().copied() {
            if ts_ns - at < KEEP_ENDED_NS {
                break;
            }
            self.ended.pop_front();
            self.names.forget(id);
            self.anomalies.forget(id);
        }
        Ok(())
    }

    /// The calls of ended session `id` as its agent's rollout file lists them, when
    /// no hook declared any (Codex run without guard's hooks): a start and an end
    /// (`tool_call`, `rollout`) per call, at the times the rollout gives, by the
    /// agent's process, for the report to tie each process to its call
    /// (report/calls/).
    fn rollout_calls(&self, id: crate::event::SessionId) -> Vec<Event> {
        let Some(s) = self.registry.session(id) else {
            return Vec::new();
        };
        if s.calls.declared() {
            return Vec::new();
        }
        let mut calls: Vec<crate::agents::calls::RolloutCall> = Vec::new();
        for path in &s.rollouts {
            // A resumed thread's earlier calls are other sessions'.
            match crate::agents::calls::rollout(std::path::Path::new(&**path), s.started_ns) {
                Ok(read) => calls.extend(read),
                Err(e) => tracing::warn!(session = %id, "the agent's calls are not known: {e}"),
            }
        }
        calls.sort_by_key(|c| c.started_ns);
        let task = Task {
            pid: s.agent_pid.unwrap_or(s.root_pid),
            tid: s.agent_pid.unwrap_or(s.root_pid),
            uid: s.uid,
            user: s.user.clone(),
            comm: s.agent.clone(),
            role: guard_common::role::AGENT,
            ..Task::default()
        };
        let mut events = Vec::with_capacity(calls.len() * 2);
        for c in calls {
            let call: Arc<str> = Arc::from(c.id.as_str());
            let ends = c.ended_ns.map(|at| (at, CallPhase::End));
            for (at, phase) in std::iter::once((c.started_ns, CallPhase::Start)).chain(ends) {
                let task = Task {
                    call: Some(Arc::clone(&call)),
                    ..task.clone()
                };
                events.push(Event::derived(
                    at,
                    Some(id),
                    task,
                    Detail::ToolCall {
                        phase,
                        tool: c.tool.clone(),
                        command: c.command.clone(),
                        rollout: true,
                    },
                ));
            }
        }
        events
    }

    /// The network namespace of a session process, for guard's resolver: at each
    /// exec (the kernel read it), and at a DNS call the kernel refused because no
    /// resolver runs where the process is (it may have moved since its exec).
    fn note_netns(&mut self, ev: &Event) {
        let netns = match (&ev.detail, &ev.confinement) {
            (Detail::Exec { .. }, Some(c)) => c.net_ns,
            (Detail::Connect { port: 53, .. } | Detail::Send { port: 53, .. }, _)
                if ev.enforced & guard_common::rules::enforced::DENIED != 0 && !ev.via_resolver =>
            {
                0
            }
            _ => return,
        };
        self.dns_work.push(DnsWork::Seen {
            netns,
            pid: ev.task.pid,
            session: ev.session,
        });
    }

    /// Writes the held violations that `which` picks, each settled by `status` (its
    /// process's exit status; `None`: no exit came in time).
    fn release(
        &mut self,
        out: &mut Outputs,
        which: impl Fn(&Held) -> bool,
        status: Option<u32>,
    ) -> Result<(), audit::Error> {
        if self.held.is_empty() {
            return Ok(());
        }
        let due: Vec<Held> = self.held.extract_if(.., |h| which(h)).collect();
        for mut h in due {
            if let Some(v) = &mut h.ev.violation {
                self.actor.settle(v, status);
            }
            emit(out, &h.ev, h.description.as_deref())?;
        }
        Ok(())
    }

    /// Writes the held violations whose process has not exited within `HOLD_NS`
    /// (on the daemon's beat), or all of them (`all`, when the daemon stops).
    pub(super) fn release_overdue(
        &mut self,
        out: &mut Outputs,
        all: bool,
    ) -> Result<(), audit::Error> {
        let now = self.now();
        self.release(out, |h| all || h.until <= now, None)
    }

    /// Names a connect's, send's or flow's destination: by the session's own DNS
    /// answers (at the connect, or the flow's start), else by the policy's
    /// resolution of its names.
    fn name_destination(&self, ev: &mut Event) {
        let (addr, at) = match &ev.detail {
            Detail::Connect { addr, .. } | Detail::Send { addr, .. } => (*addr, ev.ts_ns),
            Detail::Flow(f) => (f.addr, f.start_ns),
            _ => return,
        };
        ev.host = self
            .judge
            .hosts()
            .name_of(addr.to_canonical())
            .map(str::to_owned);
        let by_policy = ev.host.is_some();
        if by_policy {
            ev.host_from = Some(crate::event::HostFrom::Policy);
        }
        if let Some(session) = ev.session
            && let Some(name) = self.names.name_of(session, addr, at)
        {
            ev.host = Some(name.to_owned());
            ev.host_from = Some(crate::event::HostFrom::Dns {
                allowlisted: by_policy,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pipeline without a kernel: events as the decoder makes them go in, the
    //! audit log comes out.

    use std::os::unix::process::ExitStatusExt as _;

    use guard_common::{
        line::{EventDetail, EventLine},
        protocol::Outcome,
    };

    use super::*;
    use crate::{
        event::{
            SessionId,
            test_support::{exec, task},
        },
        policy::{builtin, matcher::Hosts, parse},
    };

    fn pipeline() -> Pipeline {
        pipeline_with(builtin::get("ci").expect("built-in"))
    }

    fn pipeline_with(policy: &str) -> Pipeline {
        let (policy, _) = parse::parse("test", policy).expect("valid");
        let hosts = Hosts {
            by_name: Default::default(),
            resolvers: vec![],
        };
        Pipeline {
            offset: 0,
            ..Pipeline::new(
                Judge::new(
                    policy,
                    vec!["/home/alice".into()],
                    hosts,
                    crate::policy::judge::Kernel::default(),
                )
                .expect("compiles"),
                Enricher::new(std::path::Path::new("/")),
                Default::default(),
                crate::identity::Identity::new().expect("inotify"),
                Default::default(),
                None,
            )
        }
    }

    /// Outputs whose audit log is `events.jsonl` in a directory of its own (kept
    /// as long as the first value).
    fn outputs() -> (tempfile::TempDir, std::path::PathBuf, Outputs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("events.jsonl");
        let out = Outputs::new(Sink::open(&log).expect("sink"), Arc::new(Metrics::new()));
        (dir, log, out)
    }

    /// The audit log's lines, each parsed.
    fn lines(log: &std::path::Path) -> Vec<EventLine> {
        std::fs::read_to_string(log)
            .expect("log")
            .lines()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect()
    }

    /// A real process, standing in for an offender or a straggler.
    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn")
    }

    fn event(pid: u32, detail: Detail) -> Event {
        Event::derived(1, Some(SessionId(5)), task(pid, 1, "agent"), detail)
    }

    /// The CI policy's `on_loss = "kill"`: a `limit` event kills the session,
    /// including a child the kernel could not track (named only by the event).
    #[test]
    fn a_loss_kills_the_session_and_its_untracked_child_under_ci() {
        let (_dir, log, mut out) = outputs();
        let mut p = pipeline();
        let mut tracked = sleeper();
        let mut untracked = sleeper();
        p.process(
            event(100, exec("/usr/bin/agent", &["agent"], true)),
            &mut out,
        )
        .expect("write");
        p.process(
            event(
                100,
                Detail::Fork {
                    child_pid: tracked.id(),
                },
            ),
            &mut out,
        )
        .expect("write");
        p.process(
            event(
                100,
                Detail::Limit {
                    reason: crate::event::LimitReason::TrackFull,
                    dropped: 0,
                    total: 0,
                    child_pid: Some(untracked.id()),
                },
            ),
            &mut out,
        )
        .expect("write");
        out.sink.flush().expect("flush");
        assert_eq!(tracked.wait().expect("wait").signal(), Some(libc::SIGKILL));
        assert_eq!(
            untracked.wait().expect("wait").signal(),
            Some(libc::SIGKILL)
        );
        let text = std::fs::read_to_string(&log).expect("read log");
        let limit = text
            .lines()
            .find(|l| l.contains("\"kind\":\"limit\""))
            .expect("a limit event");
        let line: serde_json::Value = serde_json::from_str(limit).expect("json");
        assert_eq!(line["reason"], "track_full", "{limit}");
        assert_eq!(line["child_pid"], untracked.id(), "{limit}");
        assert_eq!(line["action"], "kill", "{limit}");
        assert_eq!(line["outcome"], "killed", "{limit}");
    }

    /// A tamper record is written as a violation of `self_protection` saying what
    /// the kernel did, and lands in the session's report.
    #[test]
    fn a_tamper_attempt_is_a_self_protection_violation() {
        let (_dir, log, mut out) = outputs();
        let mut p = pipeline();
        p.process(
            event(100, exec("/usr/bin/agent", &["agent"], true)),
            &mut out,
        )
        .expect("write");
        let mut ev = event(
            100,
            Detail::Tamper(Box::new(crate::event::Tamper {
                op: crate::event::TamperOp::Signal,
                syscall: Some("kill".into()),
                target: Some(4242),
                arg: 9,
                path: None,
            })),
        );
        ev.enforced = guard_common::rules::enforced::KILLED;
        p.process(ev, &mut out).expect("write");
        out.sink.flush().expect("flush");
        let text = std::fs::read_to_string(&log).expect("read log");
        let line = text
            .lines()
            .find(|l| l.contains("\"kind\":\"tamper\""))
            .expect("a tamper event");
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(v["op"], "signal", "{line}");
        assert_eq!(v["target_pid"], 4242, "{line}");
        assert_eq!(v["rule"], "self_protection", "{line}");
        assert_eq!(v["action"], "kill", "{line}");
        assert_eq!(v["outcome"], "killed", "{line}");
        assert_eq!(v["alert"], true, "{line}");
        let report = out
            .ledgers
            .get(&SessionId(5).to_string())
            .expect("the session's report");
        let violation = report
            .violations
            .items
            .iter()
            .find(|v| v.rule == "self_protection")
            .expect("reported as a violation");
        assert_eq!(violation.what, "tamper signal (kill) → pid 4242");
        assert_eq!(violation.outcome, "killed");
    }

    #[test]
    fn a_session_from_start_to_end_with_a_user_space_kill() {
        let (_dir, log, mut out) = outputs();
        let mut p = pipeline();
        // A real process stands in for the offender and for a straggler.
        let mut offender = sleeper();
        let mut straggler = sleeper();
        let (bad, left) = (offender.id(), straggler.id());
        p.process(
            event(100, exec("/usr/bin/agent", &["agent"], true)),
            &mut out,
        )
        .expect("write");
        p.process(event(100, Detail::Fork { child_pid: left }), &mut out)
            .expect("write");
        p.process(event(100, Detail::Fork { child_pid: bad }), &mut out)
            .expect("write");
        // A force push: decided in user space, killed through a pidfd.
        p.process(
            event(bad, exec("/usr/bin/git", &["git", "push", "-f"], false)),
            &mut out,
        )
        .expect("write");
        assert_eq!(offender.wait().expect("wait").signal(), Some(libc::SIGKILL));
        p.process(
            event(
                bad,
                Detail::Exit {
                    status: 9,
                    root: false,
                },
            ),
            &mut out,
        )
        .expect("write");
        // The root exits: the CI policy kills what is left of the session.
        p.process(
            event(
                100,
                Detail::Exit {
                    status: 0,
                    root: true,
                },
            ),
            &mut out,
        )
        .expect("write");
        assert_eq!(
            straggler.wait().expect("wait").signal(),
            Some(libc::SIGKILL)
        );
        out.sink.flush().expect("flush");

        let lines: Vec<EventLine> = lines(&log);
        let kinds: Vec<&str> = lines.iter().map(|l| l.detail.kind()).collect();
        assert_eq!(
            kinds,
            [
                "session_start",
                "exec",
                "fork",
                "fork",
                "exec",
                "exit",
                "exit",
                "session_end"
            ]
        );
        let push = &lines[4];
        let v = push.violation.as_ref().expect("a violation");
        assert_eq!(
            (v.rule.as_str(), v.outcome),
            ("git-force-push", Outcome::Killed)
        );
        assert!(v.kill_latency_us.is_some());
        assert_eq!(
            lines[7].detail,
            EventDetail::SessionEnd {
                root_pid: 100,
                stragglers: vec![left],
                killed: vec![left],
                agent: "agent".into(),
                agent_user: None,
            }
        );
        assert_eq!(out.total, 8);
    }

    /// A kill that reached a process already leaving changes nothing: the violation
    /// waits for its process's exit, which says whether the kill ended it; one whose
    /// exit never comes is written on the beat as killed.
    #[test]
    fn a_user_space_kill_is_settled_by_how_the_process_ended() {
        let (_dir, log, mut out) = outputs();
        let mut p = pipeline();
        let mut early = sleeper();
        let mut late = sleeper();
        let (early_pid, late_pid) = (early.id(), late.id());
        let push = |pid| event(pid, exec("/usr/bin/git", &["git", "push", "-f"], false));
        p.process(
            event(100, exec("/usr/bin/agent", &["agent"], true)),
            &mut out,
        )
        .expect("write");
        p.process(push(early_pid), &mut out).expect("write");
        assert_eq!(out.total, 2, "the violation waits for the exit");
        // Its exit says it ended by itself (status 0), not by the SIGKILL.
        let exit = Detail::Exit {
            status: 0,
            root: false,
        };
        p.process(event(early_pid, exit), &mut out).expect("write");
        p.process(push(late_pid), &mut out).expect("write");
        p.release_overdue(&mut out, true).expect("write");
        out.sink.flush().expect("flush");
        for child in [&mut early, &mut late] {
            assert_eq!(child.wait().expect("wait").signal(), Some(libc::SIGKILL));
        }

        let lines: Vec<EventLine> = lines(&log);
        let settled: Vec<(Option<u32>, &str, Outcome, bool)> = lines
            .iter()
            .filter_map(|l| {
                let v = l.violation.as_ref()?;
                Some((
                    l.pid(),
                    l.detail.kind(),
                    v.outcome,
                    v.kill_latency_us.is_some(),
                ))
            })
            .collect();
        assert_eq!(
            settled,
            [
                (Some(early_pid), "exec", Outcome::Gone, false),
                (Some(late_pid), "exec", Outcome::Killed, true)
            ]
        );
        let kinds: Vec<&str> = lines.iter().map(|l| l.detail.kind()).collect();
        assert_eq!(kinds, ["session_start", "exec", "exec", "exit", "exec"]);
        assert!(
            p.actor.kill_latency().is_some(),
            "the kill that counted is measured"
        );
    }

    /// A held exec whose record never came is judged from `/proc` as the record
    /// would have been: a program a rule names by digest is killed, and the audit
    /// log has its exec, flagged `from_proc`, with the violation.
    #[test]
    fn a_stale_hold_is_judged_from_proc_and_its_kill_logged() {
        let sleep = std::fs::canonicalize("/usr/bin/sleep").expect("sleep");
        let (hex, size) = crate::digest::of_file(&sleep).expect("hash");
        let mut p = pipeline_with(&format!(
            "mode = \"enforce\"\n\n[[rule]]\nid = \"banned\"\nkind = \"exec\"\n\
             digest = [\"sha256:{hex}:{size}\"]\naction = \"kill\"\n"
        ));
        let (_dir, log, mut out) = outputs();
        let mut held = crate::event::from_proc::spawned(&sleep, &["30"]);
        let tracked = guard_common::Tracked {
            session: 9,
            start_ns: 0,
            root_pid: std::process::id(),
            flags: u32::from(guard_common::role::TOOL) << guard_common::role::SHIFT,
        };
        p.decide_stale(held.id(), 1, Some(tracked), &mut out)
            .expect("write");
        assert_eq!(held.wait().expect("wait").signal(), Some(libc::SIGKILL));
        p.release_overdue(&mut out, true).expect("write");
        out.sink.flush().expect("flush");
        let lines: Vec<EventLine> = lines(&log);
        let exec = lines
            .iter()
            .find(|l| l.detail.kind() == "exec")
            .expect("the held exec's event");
        let EventDetail::Exec {
            from_proc,
            held: was_held,
            digest,
            argv,
            ..
        } = &exec.detail
        else {
            unreachable!()
        };
        assert!(*from_proc && *was_held, "{exec:?}");
        assert_eq!(digest.as_deref(), Some(format!("sha256:{hex}").as_str()));
        assert_eq!(argv, &[sleep.display().to_string(), "30".to_owned()]);
        assert_eq!(exec.pid(), Some(held.id()));
        let v = exec.violation.as_ref().expect("a violation");
        assert_eq!((v.rule.as_str(), v.outcome), ("banned", Outcome::Killed));
        assert_eq!(
            exec.session.as_deref(),
            Some(SessionId(9).to_string().as_str())
        );
    }
}
