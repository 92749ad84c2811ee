//! A policy put in force, by a reload or the fleet's assignment, and what follows
//! from each: the judge's identity index, repositories' ignore files, the export,
//! the audit log's format, the MCP servers' list.

use guard_common::protocol::Enforcement;

use guard_policy::signed::Envelope;

use super::{Daemon, adopt};
use crate::{
    event::Detail,
    policy::{self, diag, judge::Judge},
};

impl Daemon {
    pub(super) fn policy_loaded(&mut self, warnings: &[diag::Diagnostic]) -> anyhow::Result<()> {
        let judge = self.pipe.judge();
        let rules = judge.tables().maps();
        let policy = judge.policy();
        self.out.report_dir.clone_from(&policy.report.dir);
        let detail = Detail::PolicyLoaded {
            name: policy.name.clone(),
            mode: policy.mode,
            rules: policy.own_rules(),
            kernel_entries: rules.paths.len() + rules.nets.len() + rules.taint_nets.len(),
            identity: self.pipe.identity().summary(),
            user_space_rules: judge.user_space_rules(),
            warnings: diag::render(&policy.name, warnings),
            enforcement: self.enforcement(),
            fallbacks: judge.fallbacks(),
        };
        self.out.write_daemon_event(self.pipe.offset(), detail)?;
        Ok(())
    }

    /// The protected files changed on disk (inotify): resolve them again and bring
    /// the kernel's identity entries up to date. A failure keeps the entries in
    /// force and is logged; the next change tries again.
    pub(super) fn refresh_identity(&mut self) {
        self.pipe.identity_mut().resolve();
        match self.probes.refresh_identity(self.pipe.identity()) {
            Ok(()) => self.pipe.identity_mut().log_entries(),
            Err(e) => tracing::warn!("identity: cannot update the kernel's entries: {e}"),
        }
        let over = self.pipe.identity().summary().over;
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
    pub(super) fn enforcement(&self) -> Vec<Enforcement> {
        self.probes.enforcement.rows()
    }

    /// Reads the ignore files of the repositories sessions started in since the last
    /// call (at their `HEAD`) and makes them binding (`[files]`); installs the
    /// kernel's rules again when that changed them.
    pub(super) fn apply_ignores(&mut self) -> anyhow::Result<()> {
        let roots = self.pipe.take_repositories();
        if roots.is_empty() {
            return Ok(());
        }
        let files = self.pipe.judge().policy().files.clone();
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
            if self.pipe.bind_ignored(ignored) {
                tracing::info!(repository = %root.display(), files = %names, patterns = n, "ignore files made binding");
                changed = true;
            }
        }
        if changed {
            self.pipe.index_targets();
            self.probes
                .install(self.pipe.judge().tables().maps(), self.pipe.identity())?;
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
        self.out.write_daemon_event(self.pipe.offset(), detail)?;
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
        let old = self.pipe.judge().policy();
        let new_cgroups = if policy.containers != old.containers || policy.cgroups != old.cgroups {
            match adopt::watch_cgroups(&policy, &self.runtime_root) {
                Ok(w) => Some(w),
                Err(e) => return self.rejected(&name, why, format!("{e:#}")),
            }
        } else {
            None
        };
        let hosts = self.pipe.judge().hosts().clone();
        let judge = match Judge::new(policy, self.homes.clone(), hosts, self.probes.kernel()) {
            Ok(j) => j,
            Err(e) => return self.rejected(&name, why, format!("{e:#}")),
        };
        let old_targets = self.pipe.judge().tables().identity.clone();
        self.pipe
            .identity_mut()
            .set_targets(judge.tables().identity.clone());
        if let Err(e) = self
            .probes
            .install(judge.tables().maps(), self.pipe.identity())
        {
            self.pipe.identity_mut().set_targets(old_targets);
            return self.rejected(
                &name,
                why,
                format!("cannot install it in the kernel: {e:#}"),
            );
        }
        self.pipe.identity_mut().log_entries();
        self.programs.names = agents;
        self.programs.mcp = self.mcp.names();
        self.programs.known = crate::agents::profile::Known::new(&judge.policy().profiles);
        self.probes.set_agents(&self.programs)?;
        if new_cgroups.is_some() {
            self.new_cgroups = new_cgroups;
        }
        let names_changed = judge.host_names() != self.pipe.judge().host_names();
        let export_changed = judge.policy().export != self.pipe.judge().policy().export;
        self.pipe.put_in_force(judge, self.programs.known.clone());
        if let Err(e) = self
            .dns
            .configure(self.pipe.judge().policy(), self.pipe.judge().dns())
        {
            tracing::warn!("guard's resolver: {}", crate::ebpf::short_chain(&e));
        }
        self.set_audit_format();
        if export_changed {
            self.start_export();
        } else if let Some(export) = &self.out.export {
            export.set_host(self.export_host());
        }
        if names_changed {
            self.resolver.restart(self.pipe.judge().host_names());
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
        let policy = self.pipe.judge().policy();
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
        let names = first_seen.then(|| self.pipe.package_names());
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
        let policy = self.pipe.judge().policy();
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
        let mut config = self.pipe.judge().policy().export.clone();
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
        let ocsf = self.pipe.judge().policy().audit.format == policy::model::Schema::Ocsf;
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
}
