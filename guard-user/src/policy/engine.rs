//! The judge: labels each event with the rules it broke and carries out what the
//! kernel could not — user-space kills through pidfds — reporting what actually
//! happened.

use guard_common::rules::enforced;

use super::{
    kernel::{self, KernelRules},
    matcher::{CompileError, Compiled, Hosts},
    model::{Action, Mode, Policy},
};
use crate::{
    action,
    event::{Detail, Event, Violation},
};

pub struct Engine {
    compiled: Compiled,
    /// The BPF-LSM deny hooks are attached: `deny` refuses files and execs.
    lsm: bool,
    homes: Vec<String>,
    hosts: Hosts,
    /// What the kernel enforces, compiled from the policy and the resolved hosts.
    kernel: KernelRules,
    /// User-space kill latencies (µs), for `status`.
    pub kill_latencies: Vec<u64>,
}

impl Engine {
    pub fn new(
        policy: Policy,
        homes: Vec<String>,
        hosts: Hosts,
        lsm: bool,
    ) -> Result<Self, CompileError> {
        let compiled = Compiled::new(policy, &homes)?;
        let kernel = kernel::compile(&compiled.policy, &homes, &hosts, lsm);
        Ok(Self {
            compiled,
            lsm,
            homes,
            hosts,
            kernel,
            kill_latencies: Vec::new(),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.compiled.policy
    }

    /// The entries the kernel enforces (for `Kernel::install`).
    pub fn kernel_rules(&self) -> &KernelRules {
        &self.kernel
    }

    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Records what `name` resolved to; true when that changed the kernel's rules
    /// (then they need installing again).
    pub fn set_host(&mut self, name: String, mut addrs: Vec<std::net::IpAddr>) -> bool {
        addrs.sort();
        if self.hosts.by_name.get(&name) == Some(&addrs) {
            return false;
        }
        self.hosts.by_name.insert(name, addrs);
        self.kernel = kernel::compile(&self.compiled.policy, &self.homes, &self.hosts, self.lsm);
        true
    }

    /// Names in network rules, to resolve.
    pub fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .compiled
            .policy
            .rules
            .iter()
            .filter_map(|r| match &r.kind {
                super::model::Kind::Network { allow, deny } => Some(allow.iter().chain(deny)),
                _ => None,
            })
            .flatten()
            .filter_map(|d| match &d.host {
                super::model::Host::Name(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Judges `ev` (the kernel's enforcement in `kernel_rule`) and acts where the
    /// kernel did not. `now_ns` is the wall clock, for the kill latency.
    pub fn judge(
        &mut self,
        ev: &mut Event,
        is_root: bool,
        kernel_rule: u16,
        now_ns: impl Fn() -> i128,
    ) {
        if let Detail::Connect { addr, .. } | Detail::Send { addr, .. } = &ev.detail {
            ev.host = self
                .hosts
                .name_of(super::matcher::canonical(*addr))
                .map(str::to_owned);
        }
        let hits = self
            .compiled
            .hits(&ev.detail, &ev.task.comm, is_root, &self.hosts);
        let by_kernel = (kernel_rule & enforced::RULE_MASK)
            .checked_sub(1)
            .map(usize::from);
        let killed = kernel_rule & enforced::KILLED != 0;
        let denied = kernel_rule & enforced::DENIED != 0;
        if hits.is_empty() && by_kernel.is_none() {
            return;
        }
        let rules = &self.compiled.policy.rules;
        let primary = match by_kernel.filter(|i| *i < rules.len()) {
            Some(i) if killed || denied => i,
            _ => match hits.first() {
                Some(h) => h.rule,
                None => return,
            },
        };
        let rule = &rules[primary];
        let mut v = Violation {
            rule: rule.id.clone(),
            action: rule.action.as_str(),
            outcome: String::new(),
            alert: rule.action != Action::Log,
            would: None,
            rules: hits.iter().map(|h| rules[h.rule].id.clone()).collect(),
            kill_latency_us: None,
        };
        if self.compiled.mode() == Mode::Observe {
            v.outcome = "logged".into();
            v.would = Some(rule.action.as_str());
        } else if killed {
            v.outcome = "killed".into();
        } else if denied {
            v.outcome = "denied".into();
        } else {
            v.outcome = match rule.action {
                Action::Log => "logged".into(),
                Action::Alert => "alerted".into(),
                Action::Kill | Action::Deny => self.act(ev, &mut v, now_ns),
            };
        }
        ev.violation = Some(v);
    }

    fn act(&mut self, ev: &Event, v: &mut Violation, now_ns: impl Fn() -> i128) -> String {
        match &ev.detail {
            // Refused by the BPF-LSM file_open hook.
            Detail::Open { ret, .. }
                if *ret == -i64::from(libc::EPERM) && self.lsm && v.action == "deny" =>
            {
                "denied".into()
            }
            // Nothing was opened: there is nothing to stop.
            Detail::Open { ret, .. } if *ret < 0 => "logged".into(),
            Detail::Connect { .. } | Detail::Send { .. } => {
                // The kernel refuses what it knows; a destination it did not know
                // (a name not yet resolved) went through.
                "not_denied".into()
            }
            Detail::Exec { .. } | Detail::Open { .. } => match action::kill(ev.task.pid) {
                Ok(true) => {
                    let latency = ((now_ns() - ev.ts_ns).max(0) / 1000) as u64;
                    v.kill_latency_us = Some(latency);
                    self.kill_latencies.push(latency);
                    if self.kill_latencies.len() > 10_000 {
                        self.kill_latencies.drain(..5_000);
                    }
                    "killed".into()
                }
                Ok(false) => "gone".into(),
                Err(e) => format!("failed: {e}"),
            },
            _ => "logged".into(),
        }
    }

    /// Ids of rules whose kill or deny the kernel applies only in part (the rest
    /// happens from user space, after the fact).
    pub fn user_space_rules(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .kernel
            .partial
            .iter()
            .map(|i| self.compiled.policy.rules[*i].id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// p50 and p99 of user-space kill latencies, in µs.
    pub fn kill_latency(&self) -> Option<(u64, u64)> {
        if self.kill_latencies.is_empty() {
            return None;
        }
        let mut v = self.kill_latencies.clone();
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }
}
