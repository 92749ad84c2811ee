//! What the loop does besides draining events: control commands, policy reloads,
//! lost-record reports, metrics, resolved names.

use std::{collections::BTreeMap, net::IpAddr};

use guard_common::{
    Tracked, flags,
    protocol::{Enforcement, KillReport, Registered, SessionInfo, Status},
};

use guard_policy::signed::Envelope;

use super::{Daemon, adopt};
use crate::{
    control::{Command, status::self_usage},
    event::{Detail, Event, How, SessionId, Task},
    host::clock,
    policy::{self, diag, judge::Judge},
    session::{self, scan::task_from_proc},
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
                        self.pipe.registry.set_hidden(id, targets.read_deny.clone());
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
                match self.pipe.registry.declare(pid, uid, now, call) {
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
                    .registry
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
            .registry
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
        let judge = &self.pipe.judge;
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
        session::view::sessions(&self.pipe.registry)
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
        let targets = self.pipe.registry.members(session, pid);
        if targets.is_empty() {
            return Err("no such session or process".into());
        }
        let report = self.pipe.actor.kill_all(&targets);
        tracing::info!(killed = ?report.killed, "killed on request");
        Ok(report)
    }

    /// From one read of the kernel's counters: lost records by kind (with the
    /// decoder's), and the opens judged by identity.
    fn counts(&self) -> Option<(BTreeMap<String, u64>, guard_common::protocol::IdentityOpens)> {
        let counters = self.probes.counters().ok()?;
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
        m.insert("undecodable".into(), self.pipe.undecodable);
        m
    }

    fn status(&self) -> Status {
        let (cpu_seconds, rss_bytes) = self_usage();
        let (programs, attachments) = self.probes.attached_in_kernel();
        let policy = self.pipe.judge.policy();
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
            user_space_rules: self.pipe.judge.user_space_rules(),
            kill_latency_us: self.pipe.actor.kill_latency(),
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
        let policy = self.pipe.judge.policy();
        policy.packages.first_seen?;
        let held = self
            .pipe
            .package_names
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
        self.pipe.enricher.enrich_task(&mut task);
        let start = self
            .pipe
            .registry
            .start(id, How::Run, self.pipe.now(), &task, None);
        self.pipe.note_repository(&start);
        self.out.write(&start)?;
        Ok(id)
    }

    pub(super) fn policy_loaded(&mut self, warnings: &[diag::Diagnostic]) -> anyhow::Result<()> {
        let judge = &self.pipe.judge;
        let rules = judge.tables().maps();
        let policy = judge.policy();
        self.out.report_dir.clone_from(&policy.report.dir);
        let detail = Detail::PolicyLoaded {
            name: policy.name.clone(),
            mode: policy.mode,
            rules: policy.own_rules(),
            kernel_entries: rules.paths.len() + rules.nets.len() + rules.taint_nets.len(),
            identity: self.pipe.identity.summary(),
            user_space_rules: judge.user_space_rules(),
            warnings: diag::render(&policy.name, warnings),
            enforcement: self.enforcement(),
            fallbacks: judge.fallbacks(),
        };
        self.out.write_daemon_event(self.pipe.offset, detail)?;
        Ok(())
    }

    /// The protected files changed on disk (inotify): resolve them again and bring
    /// the kernel's identity entries up to date. A failure keeps the entries in
    /// force and is logged; the next change tries again.
    pub(super) fn refresh_identity(&mut self) {
        self.pipe.identity.resolve();
        match self.probes.refresh_identity(&self.pipe.identity) {
            Ok(()) => self.pipe.identity.log_entries(),
            Err(e) => tracing::warn!("identity: cannot update the kernel's entries: {e}"),
        }
        let over = self.pipe.identity.summary().over;
        if !over.is_empty() {
            tracing::warn!(
                count = over.len(),
                first = %over[0],
                "identity: more protected entries than the kernel holds; these match by path only"
            );
        }
    }

    /// How each kind of enforcement runs on this host: the tiers probed at load
    /// (`ebpf::tiers::Enforcement`), one row per operation.
    fn enforcement(&self) -> Vec<Enforcement> {
        self.probes.enforcement.rows()
    }

    /// Reads the ignore files of the repositories sessions started in since the last
    /// call (at their `HEAD`) and makes them binding (`[files]`); installs the
    /// kernel's rules again when that changed them.
    pub(super) fn apply_ignores(&mut self) -> anyhow::Result<()> {
        if self.pipe.repositories.is_empty() {
            return Ok(());
        }
        let roots = std::mem::take(&mut self.pipe.repositories);
        let files = self.pipe.judge.policy().files.clone();
        if files.action.is_none() {
            return Ok(());
        }
        let mut changed = false;
        for root in roots {
            let ignored =
                crate::ignore::read(&root, &files.ignore_files, &files.ignore).or_else(|e| {
                    tracing::debug!("{e:#}: only [files] ignore applies there");
                    crate::ignore::read(&root, &[], &files.ignore)
                });
            let Ok(ignored) = ignored else {
                continue;
            };
            for note in &ignored.notes {
                tracing::warn!(repository = %root.display(), "ignore files: {note}");
            }
            if ignored.patterns.is_empty() && ignored.files.is_empty() {
                continue;
            }
            let (n, names) = (ignored.patterns.len(), ignored.files.join(", "));
            if self.pipe.judge.set_ignored(ignored) {
                tracing::info!(repository = %root.display(), files = %names, patterns = n, "ignore files made binding");
                changed = true;
            }
        }
        if changed {
            self.pipe
                .identity
                .set_targets(self.pipe.judge.tables().identity.clone());
            self.probes
                .install(self.pipe.judge.tables().maps(), &self.pipe.identity)?;
        }
        Ok(())
    }

    pub(super) fn resolved(&mut self, name: String, addrs: Vec<IpAddr>) -> anyhow::Result<()> {
        tracing::info!(%name, ?addrs, "resolved");
        if self.pipe.judge.set_host(name, addrs) {
            self.probes
                .install(self.pipe.judge.tables().maps(), &self.pipe.identity)?;
        }
        Ok(())
    }

    /// A policy refused: the running one stays; the refusal is logged and written
    /// as a `policy_rejected` event (which the export takes to the fleet).
    fn rejected(&mut self, name: &str, why: &str, errors: String) -> anyhow::Result<bool> {
        self.out.metrics.policy_reload(false);
        tracing::warn!("policy {name} rejected ({why}); the running policy stays:\n{errors}");
        let detail = Detail::PolicyRejected {
            name: name.to_owned(),
            errors,
        };
        self.out.write_daemon_event(self.pipe.offset, detail)?;
        Ok(false)
    }

    /// Loads the host's own policy again, and with it the fleet's assignment in
    /// force when the file still names that fleet (`[fleet]`); a policy with errors
    /// is refused and the running one stays in force (in the kernel too: its rules
    /// are only replaced whole).
    pub(super) fn reload(&mut self, why: &str) -> anyhow::Result<()> {
        self.watch.loaded();
        let source = self.watch.source().clone();
        let (local, warnings) = match policy::load(&source) {
            Ok(p) => p,
            Err(e) => return self.rejected(&source.name(), why, e.to_string()).map(drop),
        };
        let (kept, (policy, warnings)) =
            crate::fleet::choose((local, warnings), self.fleet.in_force.clone());
        if self.apply(policy, &warnings, why)? && kept.is_none() {
            self.fleet.in_force = None;
            crate::fleet::forget(&self.state_dir);
        }
        Ok(())
    }

    /// An assignment the fleet served: applied like a reload when the key pinned in
    /// the host's own `[fleet]` signed it for this host's group, it is not older
    /// than the one in force, and its text checks; else refused, and the policy in
    /// force stays.
    pub(super) fn fleet_policy(&mut self, envelope: Envelope) -> anyhow::Result<()> {
        if self.fleet.in_force.as_ref() == Some(&envelope) {
            // The assignment kept from the last run, served again: in force already.
            return Ok(());
        }
        let why = format!(
            "fleet assignment {} of group {} in {} mode",
            envelope.serial, envelope.group, envelope.mode
        );
        let source = self.watch.source().clone();
        let local = match policy::load(&source) {
            Ok((p, _)) => p,
            Err(e) => {
                let errors = format!("the host's own policy cannot be read: {e}");
                return self.rejected(&envelope.name(), &why, errors).map(drop);
            }
        };
        let current = self.fleet.in_force.as_ref().map(|e| e.serial);
        let (policy, warnings) = match crate::fleet::served(&local, &envelope, current) {
            Ok(p) => p,
            Err(e) => {
                return self
                    .rejected(&envelope.name(), &why, e.to_string())
                    .map(drop);
            }
        };
        if self.apply(policy, &warnings, &why)? {
            if let Err(e) = crate::fleet::keep(&self.state_dir, &envelope) {
                tracing::warn!(error = %e, "the fleet's policy is in force but not kept for the next start");
            }
            self.fleet.in_force = Some(envelope);
        }
        Ok(())
    }

    /// Puts `policy` in force: the judge, the kernel's tables, the agents, the
    /// resolver, the export. Whether it was (else it was refused, and the running
    /// policy stays).
    fn apply(
        &mut self,
        policy: guard_policy::model::Policy,
        warnings: &[diag::Diagnostic],
        why: &str,
    ) -> anyhow::Result<bool> {
        let name = policy.name.clone();
        let agents = if self.agents_override.is_empty() {
            policy.agents.clone()
        } else {
            self.agents_override.clone()
        };
        let old = self.pipe.judge.policy();
        let new_cgroups = if policy.containers != old.containers || policy.cgroups != old.cgroups {
            match adopt::watch_cgroups(&policy, &self.runtime_root) {
                Ok(w) => Some(w),
                Err(e) => return self.rejected(&name, why, format!("{e:#}")),
            }
        } else {
            None
        };
        let hosts = self.pipe.judge.hosts().clone();
        let judge = match Judge::new(policy, self.homes.clone(), hosts, self.probes.kernel()) {
            Ok(j) => j,
            Err(e) => return self.rejected(&name, why, format!("{e:#}")),
        };
        // The repositories whose ignore files bind stay so: read again under the new
        // `[files]` settings.
        if judge.policy().files.action.is_some() {
            self.pipe
                .repositories
                .extend(self.pipe.judge.ignored().iter().map(|i| i.root.clone()));
        }
        let old_targets = self.pipe.judge.tables().identity.clone();
        self.pipe
            .identity
            .set_targets(judge.tables().identity.clone());
        if let Err(e) = self
            .probes
            .install(judge.tables().maps(), &self.pipe.identity)
        {
            self.pipe.identity.set_targets(old_targets);
            return self.rejected(
                &name,
                why,
                format!("cannot install it in the kernel: {e:#}"),
            );
        }
        self.pipe.identity.log_entries();
        self.programs.names = agents;
        self.programs.mcp = self.mcp.names();
        self.programs.known = crate::agents::profile::Known::new(&judge.policy().profiles);
        self.probes.set_agents(&self.programs)?;
        self.pipe.known.clone_from(&self.programs.known);
        if new_cgroups.is_some() {
            self.new_cgroups = new_cgroups;
        }
        let names_changed = judge.host_names() != self.pipe.judge.host_names();
        let export_changed = judge.policy().export != self.pipe.judge.policy().export;
        self.pipe.judge = judge;
        if let Err(e) = self
            .dns
            .configure(self.pipe.judge.policy(), self.pipe.judge.dns())
        {
            tracing::warn!("guard's resolver: {}", crate::ebpf::short_chain(&e));
        }
        if let Some(s) = &mut self.pipe.spawners {
            s.configure(self.pipe.judge.policy());
        }
        self.set_audit_format();
        if export_changed {
            self.start_export();
        } else if let Some(export) = &self.out.export {
            export.set_host(self.export_host());
        }
        self.pipe
            .anomalies
            .set_rules(self.pipe.judge.policy().anomalies.clone());
        if names_changed {
            self.resolver.restart(self.pipe.judge.host_names());
        }
        self.sync_puller();
        tracing::info!("policy {name} loaded ({why})");
        self.out.metrics.policy_reload(true);
        self.policy_loaded(warnings)?;
        Ok(true)
    }

    /// Starts, restarts or stops the fleet's policy pull as the policy in force
    /// says (`[fleet]`, with `[export]`'s credential).
    pub(super) fn sync_puller(&mut self) {
        let policy = self.pipe.judge.policy();
        let first_seen = policy.packages.first_seen.is_some();
        let Some(fleet) = policy.fleet.clone() else {
            self.fleet.puller = None;
            if first_seen {
                tracing::warn!(
                    "[packages] first_seen is set but this host's own policy names no [fleet]: \
                     no package is judged new to the organisation"
                );
            }
            return;
        };
        let mut export = policy.export.clone();
        if let Some(file) = &self.export_token_file {
            export.token_file = Some(file.clone());
        }
        if self
            .fleet
            .puller
            .as_ref()
            .is_some_and(|p| p.config == (fleet.clone(), export.clone(), first_seen))
        {
            return;
        }
        let names = first_seen.then(|| std::sync::Arc::clone(&self.pipe.package_names));
        self.fleet.puller = match crate::fleet::start(&fleet, &export, names, self.fleet.tx.clone())
        {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "cannot ask the fleet for this host's policy"
                );
                None
            }
        };
    }

    /// The host as the export describes it, under the policy in force.
    fn export_host(&self) -> crate::export::record::Host {
        let policy = self.pipe.judge.policy();
        let tiers = self
            .enforcement()
            .into_iter()
            .map(|e| (e.action, e.tier))
            .collect();
        let mut resource = policy.export.resource.clone();
        if let Some(fleet) = &policy.fleet {
            resource.push((
                guard_common::otlp::attr::FLEET_GROUP.to_owned(),
                crate::fleet::group(fleet),
            ));
            if !fleet.labels.0.is_empty() {
                resource.push((
                    guard_common::otlp::attr::FLEET_LABELS.to_owned(),
                    fleet.labels.to_string(),
                ));
            }
        }
        crate::export::host::facts(&policy.name, policy.mode.as_str(), tiers, &resource)
    }

    /// Starts the export the policy (or `--export-endpoint`) asks for, replacing a
    /// running one whose configuration changed. A configuration that cannot work (an
    /// unreadable CA or key) is an error in the log and in `guard status`; the daemon
    /// enforces all the same.
    pub(super) fn start_export(&mut self) {
        let mut config = self.pipe.judge.policy().export.clone();
        if let Some(file) = &self.export_token_file {
            config.token_file = Some(file.clone());
        }
        let endpoint = self.export_endpoint.clone();
        if endpoint.is_none() && config.endpoint.is_none() {
            if let Some(old) = self.out.export.take() {
                old.stop();
            }
            return;
        }
        if let Some(old) = self.out.export.take() {
            old.stop();
        }
        let spool = config
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("spool"));
        self.out.summary_every = config.summary_interval;
        match crate::export::Exporter::start(
            &config,
            endpoint.as_deref(),
            self.export_host(),
            &spool,
        ) {
            Ok(export) => self.out.export = Some(export),
            Err(e) => {
                tracing::error!("the export cannot start (events stay in the audit log): {e:#}")
            }
        }
    }

    /// Writes the audit log in the format the policy asks for (`[audit] format`).
    pub(super) fn set_audit_format(&mut self) {
        let ocsf = self.pipe.judge.policy().audit.format == crate::policy::model::Schema::Ocsf;
        if ocsf != self.out.sink.is_ocsf() {
            self.out
                .sink
                .set_ocsf(ocsf.then(crate::audit::OcsfHost::this));
        }
    }

    /// Re-reads the agents' configurations when one changed: a new MCP server's
    /// command gets its role from the kernel at its next exec.
    pub(super) fn refresh_mcp(&mut self) -> anyhow::Result<()> {
        if !self.mcp.changed() {
            return Ok(());
        }
        let mcp = self.mcp.names();
        if mcp != self.programs.mcp {
            tracing::info!(programs = ?mcp, "MCP servers in the agents' configurations");
            self.programs.mcp = mcp;
            self.probes.set_agents(&self.programs)?;
        }
        Ok(())
    }

    pub(super) fn update_metrics(&mut self) {
        let running = self
            .pipe
            .registry
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
        let Ok(counters) = self.probes.counters() else {
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
        self.probes.mark_reported(&counters);
        Ok(())
    }
}
