//! What the loop does besides draining events and changing the policy: control
//! commands, lost-record reports, metrics, resolved names.

use std::{collections::BTreeMap, net::IpAddr};

use guard_common::{
    Tracked, flags,
    protocol::{KillReport, Registered, SessionInfo, Status},
};

use super::Daemon;
use crate::{
    control::{Command, status::self_usage},
    event::{Detail, Event, How, SessionId, Task, from_proc::task as task_from_proc},
    host::clock,
    session,
};

impl Daemon {
    pub(super) fn command(&mut self, cmd: Command) -> anyhow::Result<()> {
        match cmd {
            Command::Register {
                pid,
                uid,
                argv,
                confine,
                home,
                reply,
            } => {
                let text = |v: Vec<std::path::PathBuf>| -> Vec<String> {
                    v.iter().map(|p| p.display().to_string()).collect()
                };
                let answer = self
                    .register(pid, uid, &argv)
                    .and_then(|id| {
                        // Its repository's ignore files bind before it runs, and so
                        // before its confinement is worked out.
                        self.apply_ignores()?;
                        Ok(id)
                    })
                    .map(|id| {
                        let targets = if confine {
                            self.confinement_of(uid, pid, home.as_deref())
                        } else {
                            crate::confine::targets::Targets::default()
                        };
                        self.pipe
                            .sessions_mut()
                            .set_hidden(id, targets.read_deny.clone());
                        Registered {
                            session: id.to_string(),
                            read_deny: text(targets.read_deny),
                            write_deny: text(targets.write_deny),
                            notes: targets.notes,
                        }
                    })
                    .map_err(|e| format!("{e:#}"));
                let _ = reply.send(answer);
                self.out.sink.flush()?;
            }
            Command::Stops { thread, uid, reply } => {
                let _ = reply.send(Ok(self.stops_of(&thread, uid)));
            }
            Command::ToolCall {
                pid,
                uid,
                call,
                reply,
            } => {
                let thread = call.thread.clone();
                let id = call.id.clone();
                let ends = call.phase == guard_common::protocol::CallPhase::End;
                let now = self.pipe.now();
                match self.pipe.sessions_mut().declare(pid, uid, now, call) {
                    Ok(ev) => {
                        self.pipe.process(ev, &mut self.out)?;
                        self.out.sink.flush()?;
                        // At its end, what guard stopped of the call's thread, and
                        // of its processes that carry no thread (Gemini CLI's).
                        let mut stops = match thread.filter(|_| ends) {
                            Some(thread) => self.stops_of(&thread, uid),
                            None => Vec::new(),
                        };
                        if ends {
                            let key = crate::control::stops::call_key(&id);
                            stops.extend(self.out.stops.take(&key, &[], uid));
                        }
                        let _ = reply.send(Ok(stops));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Confined {
                pid,
                session,
                landlock,
                mount_ns,
                reply,
            } => {
                let answer = self
                    .pipe
                    .sessions_mut()
                    .confined(pid, &session, (landlock, mount_ns))
                    .map(|()| session);
                let _ = reply.send(answer);
            }
            Command::Subscribe { filter, events } => self.out.subscribers.add(filter, events),
            Command::Sessions { reply } => {
                let _ = reply.send(Ok(self.sessions()));
            }
            Command::Status { reply } => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::Report { session, reply } => {
                let _ = reply.send(self.out.ledgers.get(&session));
            }
            Command::Kill {
                session,
                pid,
                uid,
                reply,
            } => {
                let _ = reply.send(self.kill(session.as_deref(), pid, uid));
            }
        }
        Ok(())
    }

    /// What guard stopped for agent thread `thread` since a hook last asked, of
    /// `uid`'s processes (root: anyone's).
    fn stops_of(&mut self, thread: &str, uid: u32) -> Vec<guard_common::protocol::Stop> {
        let sessions: Vec<String> = self
            .pipe
            .sessions()
            .sessions()
            .filter(|s| s.agent_threads.iter().any(|t| **t == *thread))
            .map(|s| s.id.to_string())
            .collect();
        self.out.stops.take(thread, &sessions, uid)
    }

    /// What `guard run` hides from, and makes read-only for, a session of `uid`
    /// whose root is `pid`: the concrete files and directories the policy names (in
    /// that user's home, in the home the client names when root asks or it is the
    /// caller's own, or outside every home), and what its patterns match in the
    /// workspace (the repository `pid`'s working directory belongs to, or that
    /// directory), where the policy stops every process of the session.
    fn confinement_of(
        &self,
        uid: u32,
        pid: u32,
        named: Option<&str>,
    ) -> crate::confine::targets::Targets {
        use crate::confine::targets::Targets;
        use guard_common::rules::inode_kind;
        use uzers::os::unix::UserExt as _;
        let judge = self.pipe.judge();
        let stops = |path: &str, write: bool| judge.stops_everyone(path, write);
        let home = uzers::get_user_by_uid(uid).map(|u| u.home_dir().to_path_buf());
        // Root's `guard run` drops to a user after (setpriv, su): that user's home.
        let named = named
            .map(std::path::PathBuf::from)
            .filter(|n| uid == 0 || home.as_ref() == Some(n));
        let mut targets = Targets::default();
        let named = judge
            .tables()
            .identity
            .iter()
            .filter(|t| matches!(t.kind, inode_kind::FILE | inode_kind::TREE))
            .filter(|t| {
                [&home, &named]
                    .into_iter()
                    .flatten()
                    .any(|h| t.path.starts_with(h))
                    || !self
                        .homes
                        .iter()
                        .any(|h| t.path.starts_with(h) && h.as_str() != "/")
            });
        for t in named {
            targets.add_named(&t.path, t.kind == inode_kind::TREE, &stops);
        }
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
            let root = crate::confine::targets::workspace(&cwd);
            let started = std::time::Instant::now();
            targets.walk(&root, &stops);
            tracing::debug!(
                workspace = %root.display(),
                ms = started.elapsed().as_millis(),
                "walked the workspace for what guard run confines"
            );
        }
        targets.settle();
        targets
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        session::view::sessions(self.pipe.sessions())
    }

    fn kill(
        &mut self,
        session: Option<&str>,
        pid: Option<u32>,
        uid: u32,
    ) -> Result<KillReport, String> {
        if uid != 0 {
            return Err("only root may kill through guard".into());
        }
        let session = match session.map(|s| u64::from_str_radix(s, 16)) {
            Some(Ok(id)) => Some(SessionId(id)),
            Some(Err(_)) => return Err("bad session id".into()),
            None => None,
        };
        let targets = self.pipe.sessions().members(session, pid);
        if targets.is_empty() {
            return Err("no such session or process".into());
        }
        let report = self.pipe.kill(&targets);
        tracing::info!(killed = ?report.killed, "killed on request");
        Ok(report)
    }

    /// From one read of the kernel's counters: lost records by kind (with the
    /// decoder's), and the opens judged by identity.
    fn counts(&self) -> Option<(BTreeMap<String, u64>, guard_common::protocol::IdentityOpens)> {
        let counters = self.probes.daemon.counters().ok()?;
        let opens = guard_common::protocol::IdentityOpens {
            matched: counters[guard_common::counter::IDENTITY_HITS as usize],
            unknown: counters[guard_common::counter::IDENTITY_UNKNOWN as usize],
        };
        Some((self.lost_of(&counters), opens))
    }

    fn lost_of(
        &self,
        counters: &[u64; guard_common::counter::LEN as usize],
    ) -> BTreeMap<String, u64> {
        let (by_kind, track_full) = crate::ebpf::lost_of(counters);
        let mut m: BTreeMap<String, u64> = by_kind
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        m.insert("untracked_children".into(), track_full);
        m.insert("undecodable".into(), self.pipe.undecodable());
        m
    }

    fn status(&self) -> Status {
        let (cpu_seconds, rss_bytes) = self_usage();
        let (programs, attachments) = self.probes.attached_in_kernel();
        let policy = self.pipe.judge().policy();
        let (lost, identity) = self.counts().unzip();
        Status {
            events_total: self.out.total,
            events_per_second: self.out.rate,
            lost,
            cpu_seconds,
            rss_bytes,
            programs,
            attachments,
            attachments_expected: self.probes.attached.len(),
            ebpf_build: self.probes.build.name().to_owned(),
            subscribers: self.out.subscribers.len(),
            policy: policy.name.clone(),
            mode: policy.mode,
            user_space_rules: self.pipe.judge().user_space_rules(),
            kill_latency_us: self.pipe.kill_latency(),
            enforcement: self.enforcement(),
            identity,
            export: self
                .out
                .export
                .as_ref()
                .map(crate::export::Exporter::status),
            verified_insns: self.probes.verified_insns(),
            over_verifier_limits: self.probes.over_limits.clone(),
            package_names: self.package_names(),
        }
    }

    /// The organisation's package names, when the policy judges `first_seen`.
    fn package_names(&self) -> Option<guard_common::protocol::PackageNames> {
        let policy = self.pipe.judge().policy();
        policy.packages.first_seen?;
        let names = self.pipe.package_names();
        let held = names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(guard_common::protocol::PackageNames {
            names: held.len(),
            ready: held.is_ready(),
            unavailable: policy
                .fleet
                .is_none()
                .then(|| "this host's own policy names no [fleet]".to_owned()),
        })
    }

    /// Whether every program the daemon attached is still attached, as the kernel
    /// sees it (for `/healthz` and the attached-programs gauge).
    pub(super) fn check_attached(&self) {
        let (_, links) = self.probes.attached_in_kernel();
        self.out
            .metrics
            .set_attached(self.probes.attached.len(), links);
    }

    /// `guard run`: the client process becomes a session root before it execs.
    fn register(&mut self, pid: u32, uid: u32, argv: &[String]) -> anyhow::Result<SessionId> {
        let id = SessionId(clock::boot_ns());
        self.probes.track(
            pid,
            Tracked {
                session: id.0,
                start_ns: 0,
                root_pid: pid,
                // Until it execs, `guard run` itself: above the agent.
                flags: u32::from(flags::ROOT_PROCESS)
                    | u32::from(guard_common::role::WRAPPER) << guard_common::role::SHIFT,
            },
        )?;
        let agent = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_else(|| "guard-run".to_owned());
        let mut task = task_from_proc(pid).unwrap_or_default();
        task.pid = pid;
        task.tid = pid;
        task.uid = uid;
        task.comm = agent;
        task.role = guard_common::role::WRAPPER;
        self.pipe.enrich_task(&mut task);
        let now = self.pipe.now();
        let start = self
            .pipe
            .sessions_mut()
            .start(id, How::Run, now, &task, None);
        self.pipe.note_repository(&start);
        self.out.write(&start)?;
        Ok(id)
    }

    pub(super) fn resolved(&mut self, name: String, addrs: Vec<IpAddr>) -> anyhow::Result<()> {
        tracing::info!(%name, ?addrs, "resolved");
        if self.pipe.learn_host(name, addrs) {
            self.probes
                .install(self.pipe.judge().tables().maps(), self.pipe.identity())?;
        }
        Ok(())
    }

    pub(super) fn update_metrics(&mut self) {
        let running = self
            .pipe
            .sessions()
            .sessions()
            .filter(|s| s.ended_ns.is_none())
            .count();
        let metrics = &self.out.metrics;
        metrics.set_active_sessions(running as u64);
        metrics.set_resolver(self.dns.counts(), self.dns.running());
        metrics.set_export(
            self.out
                .export
                .as_ref()
                .map(crate::export::Exporter::status),
        );
        if let Some((lost, opens)) = self.counts() {
            for (kind, n) in lost {
                metrics.set_lost(&kind, n);
            }
            metrics.set_identity_opens(opens.matched, opens.unknown);
        }
        // Programs that never ran, as all do while the kernel's statistics are off,
        // stay absent rather than claim zero cost.
        for (program, run_time_ns, run_count) in self.probes.program_stats() {
            if run_count > 0 {
                metrics.set_program_stats(&program, run_time_ns, run_count);
            }
        }
        self.check_attached();
    }

    /// Reports records lost since the last report as a `lost` event.
    pub(super) fn report_lost(&mut self) -> anyhow::Result<()> {
        let Ok(counters) = self.probes.daemon.counters() else {
            return Ok(());
        };
        let lost = self.lost_of(&counters);
        let total: u64 = lost.values().sum();
        if total == self.lost_seen {
            return Ok(());
        }
        let by_kind: Vec<(String, u64)> = lost.into_iter().filter(|(_, n)| *n > 0).collect();
        tracing::warn!(?by_kind, "events lost");
        let ev = Event::derived(
            self.pipe.now(),
            None,
            Task::default(),
            Detail::Lost { by_kind, total },
        );
        self.out.write(&ev)?;
        self.out.sink.flush()?;
        self.lost_seen = total;
        // What was reported is no news to the daemon after this one.
        self.probes.daemon.mark_reported(&counters);
        Ok(())
    }
}
