//! What the daemon asks of the pipeline besides records: the policy in force and
//! its replacement, the protected files' index, the sessions the control socket
//! starts, declares, adopts and kills. The pipeline's state stays its own; the
//! daemon reads it and changes it through these.

use std::{net::IpAddr, path::PathBuf};

use guard_common::protocol::{KillReport, Latency};

use super::Pipeline;
use crate::{
    action::Actor,
    agents::profile::Known,
    delegation::Spawners,
    digest::Holds,
    event::{Task, enrich::Enricher},
    host::clock,
    identity::Identity,
    policy::judge::Judge,
    session::Registry,
};

impl Pipeline {
    /// A pipeline for `judge`'s policy, before any record: the agents' profiles
    /// (`known`), the protected files' index, the kernel's holds and the host's
    /// spawners (when the policy watches delegation).
    pub(in crate::daemon) fn new(
        judge: Judge,
        enricher: Enricher,
        known: Known,
        identity: Identity,
        holds: Holds,
        spawners: Option<Spawners>,
    ) -> Self {
        Self {
            registry: Registry::default(),
            flows: Default::default(),
            enricher,
            anomalies: crate::anomaly::Detector::new(judge.policy().anomalies.clone()),
            names: Default::default(),
            ended: Default::default(),
            judge,
            actor: Actor::default(),
            held: Vec::new(),
            versions: Default::default(),
            known,
            offset: clock::boot_to_wall_offset(),
            undecodable: 0,
            identity,
            digests: Default::default(),
            holds,
            repositories: Vec::new(),
            dns_work: Vec::new(),
            spawners,
            package_names: Default::default(),
        }
    }

    /// The judge in force: its policy, the kernel's tables it compiled, the names
    /// it resolves.
    pub(in crate::daemon) fn judge(&self) -> &Judge {
        &self.judge
    }

    /// Puts `judge` in force (a policy loaded): the agents' profiles (`known`), the
    /// anomaly rules and the spawners' settings follow it, and the repositories
    /// whose ignore files bound are read again under its `[files]`.
    pub(in crate::daemon) fn put_in_force(&mut self, judge: Judge, known: Known) {
        if judge.policy().files.action.is_some() {
            self.repositories
                .extend(self.judge.ignored().iter().map(|i| i.root.clone()));
        }
        self.judge = judge;
        self.known = known;
        if let Some(s) = &mut self.spawners {
            s.configure(self.judge.policy());
        }
        self.anomalies
            .set_rules(self.judge.policy().anomalies.clone());
    }

    /// A name the policy allows resolved to `addrs`: whether the judge's tables
    /// changed (the kernel's copy then needs installing).
    pub(in crate::daemon) fn learn_host(&mut self, name: String, addrs: Vec<IpAddr>) -> bool {
        self.judge.set_host(name, addrs)
    }

    /// Makes a repository's ignore files binding: whether the judge's tables
    /// changed (then [`Self::index_targets`], and the kernel's copy).
    pub(in crate::daemon) fn bind_ignored(&mut self, ignored: crate::ignore::Ignored) -> bool {
        self.judge.set_ignored(ignored)
    }

    /// Points the protected files' index at what the judge's tables protect by
    /// identity.
    pub(in crate::daemon) fn index_targets(&mut self) {
        self.identity
            .set_targets(self.judge.tables().identity.clone());
    }

    /// The work trees sessions started in since the last call, whose ignore
    /// files are to be read.
    pub(in crate::daemon) fn take_repositories(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.repositories)
    }

    /// The protected files and directories by identity.
    pub(in crate::daemon) fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The protected files' index, to resolve again or point at other targets.
    pub(in crate::daemon) fn identity_mut(&mut self) -> &mut Identity {
        &mut self.identity
    }

    /// Add to a boot-clock time for wall-clock time.
    pub(in crate::daemon) fn offset(&self) -> i128 {
        self.offset
    }

    /// The sessions, as the records and the control socket made them.
    pub(in crate::daemon) fn sessions(&self) -> &Registry {
        &self.registry
    }

    /// The sessions, for what the control socket starts, declares and confines.
    pub(in crate::daemon) fn sessions_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Names `task`'s user and container as a record's task is named.
    pub(in crate::daemon) fn enrich_task(&mut self, task: &mut Task) {
        self.enricher.enrich_task(task);
    }

    /// The sessions and the enricher together, for adopting running processes.
    pub(in crate::daemon) fn adopting(&mut self) -> (&mut Registry, &mut Enricher) {
        (&mut self.registry, &mut self.enricher)
    }

    /// Kills `targets` (`guard kill`, `guard top`) and says what happened.
    pub(in crate::daemon) fn kill(&mut self, targets: &[u32]) -> KillReport {
        self.actor.kill_all(targets)
    }

    /// p50 and p99 of the user-space kills' latencies.
    pub(in crate::daemon) fn kill_latency(&self) -> Option<Latency> {
        self.actor.kill_latency()
    }

    /// Records the decoder did not understand, since start.
    pub(in crate::daemon) fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// Looks for the host's known spawners again (on the beat); `is_tracked`
    /// says whether a process is in a session.
    pub(in crate::daemon) fn scan_spawners(&mut self, is_tracked: impl Fn(u32) -> bool) {
        if let Some(s) = &mut self.spawners {
            s.scan(&self.judge.policy().delegation, is_tracked);
        }
    }

    /// The organisation's package names, shared with the fleet's pull.
    pub(in crate::daemon) fn package_names(&self) -> crate::fleet::Names {
        std::sync::Arc::clone(&self.package_names)
    }
}
