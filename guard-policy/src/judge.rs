//! The judge: which rules an event broke, and what is left to do about it (a
//! [`Verdict`]): the policy's rules, the session limits' `on_loss`, anomaly rules'
//! hits, and guard's own `self_protection`. Observe mode is decided here, once. It
//! decides and never acts: the `action` module carries verdicts out (the only place
//! a verdict becomes a violation and a kill), so the judge is tested on recorded
//! events without touching a process.

use guard_common::{protocol::Outcome, rules::enforced};

use super::{
    matcher::{CompileError, Compiled, Hosts},
    model::{Action, Kind, Mode, OnLoss, Policy, Target},
    tables::{self, Tables},
};
use crate::event::{DestClass, Detail, Event, via};

/// The rule tamper attempts are reported under: guard's own, always on (not a
/// policy rule).
pub const SELF_PROTECTION: &str = "self_protection";
/// The rule lost records are reported under (`[limits] on_loss`).
pub const LIMITS: &str = "limits";
/// The rule a tool breaks by running outside the sandbox its session's other
/// tools ran in (`[sessions] unsandboxed_tools`).
pub const UNSANDBOXED: &str = "sessions.unsandboxed_tools";
/// The rule an exec breaks by running a file its session downloaded
/// (`[sessions] run_downloaded`).
pub const RUN_DOWNLOADED: &str = "sessions.run_downloaded";
/// The rule a process breaks by working on after the tool call it was started for
/// ended (`[sessions] undeclared`).
pub const UNDECLARED: &str = "sessions.undeclared";

/// What an action did, for messages.
fn past(action: Action) -> &'static str {
    match action {
        Action::Log => "logged",
        Action::Alert => "alerted",
        Action::Kill => "killed",
        Action::Deny => "denied",
    }
}

/// What the kernel can do here, as far as the judge's decisions depend on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kernel {
    /// The BPF-LSM deny hooks are attached: `deny` refuses files and execs.
    pub lsm: bool,
    /// The executable-mapping route is attached: a program an exec rule forbids
    /// is killed by the kernel when the dynamic loader maps it.
    pub exec_mapping: bool,
}

/// What the judge found: the rule reported, and what remains to be done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The rule reported as the outcome (the one the kernel enforced, else the
    /// first that matched).
    pub rule: String,
    pub action: Action,
    /// Flag the event for attention (every action but `log`).
    pub alert: bool,
    /// Observe mode: the action enforce mode would have taken.
    pub would: Option<Action>,
    /// Every rule the event broke.
    pub rules: Vec<String>,
    /// One of them protects a secret (`secret = true`).
    pub secret: bool,
    pub step: Step,
    /// Anomaly rules: what crossed which threshold.
    pub anomaly: Option<String>,
}

/// What is left to do about a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the kernel acted, or the rule only reports. The outcome to write.
    Done(Outcome),
    /// Nothing can be done, for this reason (the kernel could not send SIGKILL).
    Failed(String),
    /// Kill the event's process from user space: the kernel could not decide.
    KillProcess,
    /// Kill every process of the event's session, and `also` (a child the kernel
    /// could not track, which joins the session only after this event).
    KillSession { also: Option<u32> },
}

pub struct Judge {
    compiled: Compiled,
    kernel: Kernel,
    homes: Vec<String>,
    hosts: Hosts,
    /// What the kernel enforces, compiled from the policy and the resolved hosts.
    tables: Tables,
    /// `[redact]`: what is taken out of command lines once the verdict is made.
    redactor: crate::event::redact::Redactor,
    /// The repositories whose ignore files are binding (`[files]`), the one a
    /// session last started in last.
    ignored: Vec<crate::ignore::Ignored>,
    /// How many of the compiled policy's rules are its own: `[files]`' rules come
    /// after them.
    own_rules: usize,
}

/// Repositories whose ignore files bind at once (the one no session started in
/// for longest is let go first).
pub const IGNORED_REPOS: usize = 64;

impl Judge {
    pub fn new(
        policy: Policy,
        homes: Vec<String>,
        hosts: Hosts,
        kernel: Kernel,
    ) -> Result<Self, CompileError> {
        let own_rules = policy.rules.len();
        // `~` is every home of this host's users and those the policy names.
        let mut homes = homes;
        for home in &policy.homes {
            if !homes.contains(home) {
                homes.push(home.clone());
            }
        }
        let compiled = Compiled::new(policy, &homes)?;
        let tables = tables::compile(&compiled.policy, &homes, &hosts, kernel.lsm);
        let redact = &compiled.policy.redact;
        let redactor = crate::event::redact::Redactor::new(redact.enabled, &redact.patterns);
        Ok(Self {
            compiled,
            kernel,
            homes,
            hosts,
            tables,
            redactor,
            ignored: Vec::new(),
            own_rules,
        })
    }

    /// The repositories whose ignore files bind.
    pub fn ignored(&self) -> &[crate::ignore::Ignored] {
        &self.ignored
    }

    /// Makes a repository's ignore set binding, or brings it up to date (its `HEAD`
    /// moved); true when that changed the rules (the kernel's need installing again).
    pub fn set_ignored(&mut self, ignored: crate::ignore::Ignored) -> bool {
        let same = match self.ignored.iter().position(|i| i.root == ignored.root) {
            Some(at) => {
                let old = self.ignored.remove(at);
                old == ignored
            }
            None => false,
        };
        self.ignored.push(ignored);
        if self.ignored.len() > IGNORED_REPOS {
            self.ignored.remove(0);
        }
        if same {
            return false;
        }
        let mut policy = self.compiled.policy.clone();
        policy.rules.truncate(self.own_rules);
        // Rules of their own for each repository: one repository's exception the
        // kernel cannot express leaves only its own patterns to user space.
        for i in &self.ignored {
            let (paths, except) = crate::ignore::globs(&i.root, &i.patterns);
            let root = crate::ignore::escape(&i.root.display().to_string());
            let files = i
                .files
                .iter()
                .map(|f| {
                    format!(
                        "{}/{}",
                        root.trim_end_matches('/'),
                        crate::ignore::escape(f)
                    )
                })
                .collect();
            let extra = policy.files.rules(paths, except, files);
            policy.rules.extend(extra);
        }
        match Compiled::new(policy, &self.homes) {
            Ok(compiled) => {
                self.compiled = compiled;
                self.tables = tables::compile(
                    &self.compiled.policy,
                    &self.homes,
                    &self.hosts,
                    self.kernel.lsm,
                );
                true
            }
            Err(e) => {
                tracing::warn!("ignore files: cannot compile their patterns, left out: {e:#}");
                false
            }
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.compiled.policy
    }

    /// Which names sessions may resolve (what guard's resolver answers).
    pub fn dns(&self) -> std::sync::Arc<super::dns::DnsPolicy> {
        std::sync::Arc::clone(&self.compiled.dns)
    }

    /// Takes what looks like a credential out of `ev`'s command line, once the
    /// verdict is made (a rule may be about the secret's presence) and before the
    /// event is written anywhere; the event then says it was redacted.
    pub fn redact(&self, ev: &mut Event) {
        let redacted = match &mut ev.detail {
            Detail::Exec { argv, .. } => self.redactor.argv(argv),
            // A declared command is a shell's command line: redacted as `sh -c` of it
            // would be, then as text (a tool's JSON input).
            Detail::ToolCall {
                command: Some(command),
                ..
            } => {
                let mut argv = ["sh".to_owned(), "-c".to_owned(), std::mem::take(command)];
                let mut redacted = self.redactor.argv(&mut argv);
                let [_, _, mut text] = argv;
                if let Some(cut) = self.redactor.text(&text) {
                    text = cut;
                    redacted = true;
                }
                *command = text;
                redacted
            }
            // A name long enough to carry data (what DNS tunnelling sends) keeps
            // only its domain in anything written: the rest is what would leak.
            Detail::Dns(d) => match d.name.as_deref().and_then(crate::event::dns::cut_name) {
                Some(cut) => {
                    d.name = Some(cut);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if redacted {
            ev.redacted = true;
        }
    }

    /// The entries the kernel enforces (`maps()` for `Probes::install`).
    pub fn tables(&self) -> &Tables {
        &self.tables
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
        self.tables = tables::compile(
            &self.compiled.policy,
            &self.homes,
            &self.hosts,
            self.kernel.lsm,
        );
        true
    }

    /// Names in network rules, to resolve.
    pub fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .compiled
            .policy
            .rules
            .iter()
            .flat_map(|r| match &r.kind {
                Kind::Network { allow, deny } => allow.iter().chain(deny).collect(),
                Kind::TaintEgress { allow } => allow.iter().collect(),
                _ => Vec::new(),
            })
            .filter_map(|d| match &d.host {
                super::model::Host::Name(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// What `ev` broke and what is left to do about it. `is_root`: the event's
    /// process is its session's root. The kernel's own decision comes with the event
    /// (`Event::enforced`). Decides only: carrying a verdict out is `action`'s.
    pub fn judge(&self, ev: &Event, is_root: bool) -> Option<Verdict> {
        match &ev.detail {
            Detail::Tamper(_) => return Some(self.tamper(ev.enforced)),
            Detail::Limit { child_pid, .. } => return self.loss(*child_pid),
            // A count of opens like one judged already (the kernel counts only opens
            // that no kernel rule stopped and that were reported): not judged again.
            Detail::Open { repeats, .. } if *repeats > 0 => return None,
            _ => {}
        }
        let mut hits = self.compiled.hits(
            &ev.detail,
            &ev.task.comm,
            (is_root, ev.task.role, ev.is_tainted()),
            &self.hosts,
            ev.digest.as_deref(),
        );
        // Matched by identity: the file is judged as the protected path it stands
        // for too (its own path may be a hard link's, a bind mount's).
        if let (Some(id), Detail::Open { path, .. }) = (&ev.identity, &ev.detail)
            && let (Some(hit), Some(protected)) = (id.matched, &id.protected)
        {
            {
                let mut detail = ev.detail.clone();
                if let Detail::Open { path: p, .. } = &mut detail {
                    *p = crate::identity::canonical(std::path::Path::new(protected), path, hit.up);
                }
                let who = (is_root, ev.task.role, ev.is_tainted());
                for h in self
                    .compiled
                    .hits(&detail, &ev.task.comm, who, &self.hosts, None)
                {
                    if !hits.iter().any(|x| x.rule == h.rule) {
                        hits.push(h);
                    }
                }
            }
        }
        // A connect or send the kernel pointed at guard's resolver reached the
        // resolver, not `addr`: what it asks is judged by name (`dns` events, the
        // `[dns]` rule), and the resolver forwards only where the network rules allow.
        if ev.via_resolver && matches!(ev.detail, Detail::Connect { .. } | Detail::Send { .. }) {
            let rules = &self.compiled.policy.rules;
            hits.retain(|h| {
                !matches!(
                    rules[h.rule].kind,
                    Kind::Network { .. } | Kind::TaintEgress { .. }
                )
            });
        }
        let enforced = ev.enforced;
        let by_kernel = (enforced & enforced::RULE_MASK)
            .checked_sub(1)
            .map(usize::from);
        let killed = enforced & enforced::KILLED != 0;
        let denied = enforced & enforced::DENIED != 0;
        if hits.is_empty() && by_kernel.is_none() {
            return None;
        }
        let rules = &self.compiled.policy.rules;
        // What the kernel did not refuse, user space cannot refuse either: a `deny`
        // with a `fallback` acts as that here, and is weighed as that.
        hits.sort_by_key(|h| std::cmp::Reverse(rules[h.rule].acting(false)));
        let primary = match by_kernel.filter(|i| *i < rules.len()) {
            // An entry the kernel holds for two rules of different roles names the
            // first (`tables::merge_role_scoped`): the rule of this process's role
            // is the one it broke.
            Some(i)
                if (killed || denied) && !hits.is_empty() && !hits.iter().any(|h| h.rule == i) =>
            {
                hits.iter()
                    .find(|h| matches!(rules[h.rule].action, Action::Kill | Action::Deny))
                    .map_or(i, |h| h.rule)
            }
            Some(i) if killed || denied => i,
            _ => hits.first()?.rule,
        };
        let rule = &rules[primary];
        let step = if killed {
            Step::Done(Outcome::Killed)
        } else if denied {
            Step::Done(Outcome::Denied)
        } else {
            match rule.acting(false) {
                Action::Log => Step::Done(Outcome::Logged),
                Action::Alert => Step::Done(Outcome::Alerted),
                Action::Kill | Action::Deny => self.stop(ev, rule.action, primary),
            }
        };
        let action = if killed || denied {
            rule.action
        } else {
            rule.acting(false)
        };
        let mut verdict = self.settle(rule.id.clone(), action, step);
        verdict.rules = hits.iter().map(|h| rules[h.rule].id.clone()).collect();
        verdict.secret = rule.secret || hits.iter().any(|h| rules[h.rule].secret);
        Some(verdict)
    }

    /// [`Judge::judge`] of an event of a session that `guard run` confined (Landlock,
    /// its mount namespace): an open refused with EACCES (Landlock, a hidden path) or
    /// EROFS (a path mounted read-only) that a `kill` or `deny` rule covers was
    /// refused by the confinement the policy derived: denied, the process lives. A
    /// `deny` with a `fallback` is reported as the `deny` it was there. `hidden`: the
    /// path is below a directory the mount namespace hides, where a root process
    /// finds nothing (ENOENT) rather than EACCES.
    pub fn judge_confined(&self, ev: &Event, is_root: bool, hidden: bool) -> Option<Verdict> {
        let mut verdict = self.judge(ev, is_root)?;
        let refused = |errno: i32| {
            [libc::EACCES, libc::EROFS].contains(&errno) || (hidden && errno == libc::ENOENT)
        };
        if let Detail::Open { ret, .. } = &ev.detail
            && refused(i32::try_from(-*ret).unwrap_or(0))
            && matches!(verdict.step, Step::Done(Outcome::Logged | Outcome::Alerted))
            && verdict.would.is_none()
            && let Some(rule) = self.policy().rules.iter().find(|r| r.id == verdict.rule)
            && matches!(rule.action, Action::Kill | Action::Deny)
        {
            verdict.action = rule.action;
            verdict.alert = true;
            verdict.step = Step::Done(Outcome::Denied);
        }
        Some(verdict)
    }

    /// Whether the policy stops every process of a session, whatever its role, from
    /// opening `path` for reading (`write`: for writing): a `kill` or `deny` rule
    /// (a `deny` with a `fallback` counts: a confinement refuses without killing)
    /// covers it for each role, for the session's root and the rest. What `guard
    /// run` may hide or make read-only for the whole session (`confine::targets`).
    pub fn stops_everyone(&self, path: &str, write: bool) -> bool {
        if self.compiled.mode() == Mode::Observe {
            return false;
        }
        let detail = Detail::Open {
            path: path.to_owned(),
            resolved: true,
            truncated: false,
            flags: if write {
                libc::O_WRONLY as u64
            } else {
                libc::O_RDONLY as u64
            },
            call: guard_common::OpenCall::Openat,
            ret: 0,
            repeats: 0,
            dir: false,
        };
        let rules = &self.compiled.policy.rules;
        let stops = |is_root: bool, role: u8| {
            self.compiled
                .hits(&detail, "", (is_root, role, false), &self.hosts, None)
                .iter()
                .any(|h| matches!(rules[h.rule].action, Action::Kill | Action::Deny))
        };
        // Role 0 (unknown) is in every role set: nothing matches it, nothing
        // matches any role (most paths end here).
        stops(false, 0)
            && (1..=guard_common::role::MAX).all(|role| stops(false, role) && stops(true, role))
    }

    /// The verdict of `rule`'s `action` with `step` left to do, in the policy's
    /// mode: observe mode (decided here and nowhere else) writes what enforce mode
    /// would have done and stops nothing the kernel did not stop already.
    fn settle(&self, rule: String, action: Action, step: Step) -> Verdict {
        let observe = self.compiled.mode() == Mode::Observe;
        let step = match step {
            Step::KillProcess | Step::KillSession { .. } if observe => Step::Done(Outcome::Logged),
            // The kernel's own verdict was made before user space saw the event; in
            // observe mode nothing was to be refused or left to the kernel.
            Step::Done(
                Outcome::Killed | Outcome::Denied | Outcome::NotDenied | Outcome::Deferred,
            ) if observe => Step::Done(Outcome::Logged),
            step => step,
        };
        Verdict {
            rules: vec![rule.clone()],
            rule,
            action,
            alert: action != Action::Log,
            would: observe.then_some(action),
            secret: false,
            step,
            anomaly: None,
        }
    }

    /// A tamper attempt: what the kernel did about it, from the record's bits. The
    /// kernel acts in every mode: self-protection is not a policy rule.
    fn tamper(&self, bits: u16) -> Verdict {
        let (action, step) = if bits & enforced::DENIED != 0 {
            (Action::Deny, Step::Done(Outcome::Denied))
        } else if bits & enforced::KILLED != 0 {
            (Action::Kill, Step::Done(Outcome::Killed))
        } else {
            (
                Action::Kill,
                Step::Failed("the kernel could not send SIGKILL".to_owned()),
            )
        };
        Verdict {
            rule: SELF_PROTECTION.to_owned(),
            action,
            alert: true,
            would: None,
            rules: vec![SELF_PROTECTION.to_owned()],
            secret: false,
            step,
            anomaly: None,
        }
    }

    /// What a `limit` event (records of the session the kernel dropped) means
    /// under `[limits] on_loss`: nothing more, an alert, or the end of the session
    /// (the kernel already killed each process whose record it dropped; this kills
    /// the rest of the session, and the child it could not track).
    fn loss(&self, untracked_child: Option<u32>) -> Option<Verdict> {
        let (action, step) = match self.compiled.policy.limits.on_loss {
            OnLoss::Log => return None,
            OnLoss::Alert => (Action::Alert, Step::Done(Outcome::Alerted)),
            OnLoss::Kill => (
                Action::Kill,
                Step::KillSession {
                    also: untracked_child,
                },
            ),
        };
        Some(self.settle(LIMITS.to_owned(), action, step))
    }

    /// A tool that ran outside the sandbox its session's other tools ran in, as
    /// `[sessions] unsandboxed_tools` says (`None`: allowed, only reported). `kill`
    /// kills the tool's process (after its exec: there is nothing to refuse).
    pub fn unsandboxed(&self) -> Option<Verdict> {
        let action = self.compiled.policy.sessions.unsandboxed_tools?;
        Some(self.on_the_process(UNSANDBOXED, action))
    }

    /// The verdict of a `[sessions]` setting judged in user space once its process
    /// did what it judges: logged, alerted, or the process killed (`deny` too:
    /// nothing is left to refuse).
    fn on_the_process(&self, rule: &str, action: Action) -> Verdict {
        let step = match action {
            Action::Log => Step::Done(Outcome::Logged),
            Action::Alert => Step::Done(Outcome::Alerted),
            Action::Kill | Action::Deny => Step::KillProcess,
        };
        self.settle(rule.to_owned(), action, step)
    }

    /// A process that works on (an exec, a connect) after the tool call its agent
    /// declared for it ended, as `[sessions] undeclared` says (`None`: only
    /// reported). `kill` kills it; the exec or connect has happened.
    pub fn undeclared(&self) -> Option<Verdict> {
        let action = self.compiled.policy.sessions.undeclared?;
        Some(self.on_the_process(UNDECLARED, action))
    }

    /// An exec the kernel held that runs a download of its session (`ev.download`:
    /// the file itself, or the script an interpreter was given), as `[sessions]
    /// run_downloaded` says. The process is stopped before its first instruction:
    /// `kill` (and `deny`, which has nothing left to refuse) kills it there.
    pub fn downloaded(&self, ev: &Event) -> Option<Verdict> {
        ev.download.as_ref()?;
        let action = self.compiled.policy.sessions.run_downloaded?;
        Some(self.on_the_process(RUN_DOWNLOADED, action))
    }

    /// A connect of a session process to a known spawner outside every session
    /// (`ev.listener`, its kind filled in by `crate::delegation`), as `[delegation]
    /// action` says. A refusal the kernel made is `judge`'s (the event's enforced
    /// bits); here `deny` and `kill` kill the process from user space: the connect
    /// went through (a spawner the kernel did not know yet).
    pub fn delegation(&self, ev: &Event) -> Option<Verdict> {
        ev.listener.as_ref()?.spawner.as_ref()?;
        let action = self.compiled.policy.delegation.action?;
        let step = match (action, &ev.detail) {
            (Action::Log, _) => Step::Done(Outcome::Logged),
            (Action::Alert, _) => Step::Done(Outcome::Alerted),
            // It did not connect: nothing reached the spawner.
            (_, Detail::Unix { ret, .. } | Detail::Connect { ret, .. }) if *ret < 0 => {
                Step::Done(Outcome::Logged)
            }
            (Action::Deny | Action::Kill, _) => Step::KillProcess,
        };
        Some(self.settle(super::model::Delegation::RULE.to_owned(), action, step))
    }

    /// A package a session installed whose name is a near miss of a well-known
    /// package's, as `[packages] near_miss` says: seen when its manifest is written
    /// (an open for writing of a path [`crate::packages::manifest`] recognises, by a
    /// session's process). `kill` kills the process writing it (the installer),
    /// from user space: the install stops, what it wrote stays.
    pub fn package(&self, ev: &Event) -> Option<Verdict> {
        self.near_miss(ev).or_else(|| self.script_network(ev))
    }

    /// A package's script (`ev.task.package`: an install script, a project's npm
    /// script) that reached the network beyond the package registries, as
    /// `[packages] script_network` says: a connect or send that went through to a
    /// destination of any class but `registry` and `local` (DNS, which guard's
    /// resolver answers, aside). `kill` kills the script's process, from user space:
    /// the connection was made.
    fn script_network(&self, ev: &Event) -> Option<Verdict> {
        let action = self.compiled.policy.packages.script_network?;
        let package = ev.task.package.as_deref()?;
        let (Detail::Connect {
            addr, port, ret, ..
        }
        | Detail::Send {
            addr, port, ret, ..
        }) = &ev.detail
        else {
            return None;
        };
        let class = ev.dest_class(*addr);
        if *ret < 0 || *port == 53 || matches!(class, DestClass::Registry | DestClass::Local) {
            return None;
        }
        let mut verdict = self.on_the_process(crate::model::Packages::SCRIPT_NETWORK, action);
        let to = match &ev.host {
            Some(host) => format!("{host} ({addr} port {port})"),
            None => format!("{addr} port {port}"),
        };
        verdict.anomaly = Some(format!(
            "the script of package {package} reached {to}, not a package registry ({class})"
        ));
        Some(verdict)
    }

    /// A near miss's manifest written (`package`).
    fn near_miss(&self, ev: &Event) -> Option<Verdict> {
        let action = self.compiled.policy.packages.near_miss?;
        let m = written_manifest(ev)?;
        let known = crate::packages::near_miss(m.ecosystem, &m.name)?;
        let mut verdict = self.on_the_process(crate::model::Packages::NEAR_MISS, action);
        verdict.anomaly = Some(format!(
            "{} package {} is one edit from the well-known {known}",
            m.ecosystem, m.name
        ));
        Some(verdict)
    }

    /// A package a session installed whose name the organisation had never seen, as
    /// `[packages] first_seen` says: judged, like a near miss, when its manifest is
    /// written, against the organisation's names (the fleet's, pulled by the
    /// daemon), which `knows` is asked only then (as
    /// [`crate::packages::Inventory::knows`] answers). Returns the package's ecosystem
    /// and name with the verdict: the caller adds them to the names, so that a name
    /// is the organisation's first once. Until the fleet's list has arrived nothing
    /// is judged (`Err` with the package, for the caller to say so).
    pub fn first_seen(
        &self,
        ev: &Event,
        knows: impl FnOnce(&str, &str) -> Option<bool>,
    ) -> Option<Result<(Verdict, Named), Named>> {
        let action = self.compiled.policy.packages.first_seen?;
        let m = written_manifest(ev)?;
        match knows(m.ecosystem, &m.name) {
            Some(true) => None,
            None => Some(Err(Named {
                ecosystem: m.ecosystem,
                name: m.name,
            })),
            Some(false) => {
                let mut verdict = self.on_the_process(crate::model::Packages::FIRST_SEEN, action);
                verdict.anomaly = Some(format!(
                    "{} package {} is new to the organisation: the fleet's inventory has no \
                     package of that name",
                    m.ecosystem, m.name
                ));
                Some(Ok((
                    verdict,
                    Named {
                        ecosystem: m.ecosystem,
                        name: m.name,
                    },
                )))
            }
        }
    }

    /// An anomaly rule's hit as a verdict: the session or the process it names is
    /// killed when its action says `kill` (or `deny`, which has nothing to refuse
    /// after the fact).
    pub fn anomaly(&self, hit: crate::anomaly::Hit) -> Verdict {
        let step = match hit.action {
            Action::Log => Step::Done(Outcome::Logged),
            Action::Alert => Step::Done(Outcome::Alerted),
            Action::Kill | Action::Deny => match hit.target {
                Target::Session => Step::KillSession { also: None },
                Target::Process => Step::KillProcess,
            },
        };
        let mut verdict = self.settle(hit.rule, hit.action, step);
        verdict.anomaly = Some(hit.what);
        verdict
    }

    /// How to stop what a kill or deny rule (`rule`, the policy's index) matched,
    /// when the kernel did not.
    fn stop(&self, ev: &Event, action: Action, rule: usize) -> Step {
        let lsm = self.kernel.lsm;
        match &ev.detail {
            // A program the rule forbids, run through the dynamic loader: the kernel
            // kills the loader when it maps the program (a `route` event says so),
            // where that hook runs and the kernel holds the whole rule. User space
            // does not race it.
            Detail::Exec { exe, argv, .. }
                if self.kernel.exec_mapping
                    && !self.tables.partial.contains(&rule)
                    && via::target(exe, argv).is_some_and(|t| t.via == via::Via::Loader) =>
            {
                Step::Done(Outcome::Deferred)
            }
            // Refused by the BPF-LSM file_open hook.
            Detail::Open { ret, .. }
                if *ret == -i64::from(libc::EPERM) && lsm && action == Action::Deny =>
            {
                Step::Done(Outcome::Denied)
            }
            // Nothing was opened: there is nothing to stop.
            Detail::Open { ret, .. } if *ret < 0 => Step::Done(Outcome::Logged),
            // Refused by the BPF-LSM Unix socket hooks.
            Detail::Unix { ret, .. }
                if *ret == -i64::from(libc::EPERM) && lsm && action == Action::Deny =>
            {
                Step::Done(Outcome::Denied)
            }
            // Nothing reached the socket.
            Detail::Unix { ret, .. } if *ret < 0 => Step::Done(Outcome::Logged),
            Detail::Unix { .. } => Step::KillProcess,
            // A query guard's resolver refused (the same decision, `policy::dns`):
            // it never left the host. `kill` kills the asker as well. A query that
            // did not go through the resolver went where it was sent.
            Detail::Dns(_) if action == Action::Kill => Step::KillProcess,
            Detail::Dns(_) if ev.via_resolver => Step::Done(Outcome::Denied),
            Detail::Dns(_) => Step::Done(Outcome::NotDenied),
            // The kernel refuses what it knows; a destination it did not know (a
            // name not yet resolved) went through.
            Detail::Connect { .. } | Detail::Send { .. } => Step::Done(Outcome::NotDenied),
            Detail::Exec { .. } | Detail::Open { .. } | Detail::Route { .. } => Step::KillProcess,
            _ => Step::Done(Outcome::Logged),
        }
    }

    /// How each `deny` rule with a `fallback` acts here (`policy_loaded`).
    pub fn fallbacks(&self) -> Vec<guard_common::protocol::Fallback> {
        let lsm = self.kernel.lsm;
        self.compiled
            .policy
            .rules
            .iter()
            .filter(|r| r.action == Action::Deny)
            .filter_map(|r| {
                let fallback = r.fallback?;
                let user_space = tables::user_space_patterns(&r.kind);
                let guarantee = if lsm {
                    format!(
                        "refused with EPERM by BPF-LSM, the process lives{}",
                        if user_space.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; what only user space matches: {} after the fact",
                                past(fallback)
                            )
                        }
                    )
                } else {
                    format!(
                        "{} (no BPF-LSM here); in a session `guard run` confines, refused where \
                         its mount namespace or Landlock covers the path, the process lives",
                        past(fallback)
                    )
                };
                Some(guard_common::protocol::Fallback {
                    rule: r.id.clone(),
                    acts_as: r.acting(lsm),
                    guarantee,
                    user_space,
                })
            })
            .collect()
    }

    /// Ids of rules whose kill or deny the kernel applies only in part (the rest
    /// happens from user space, after the fact).
    pub fn user_space_rules(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tables
            .partial
            .iter()
            .map(|i| self.compiled.policy.rules[*i].id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// A package by its ecosystem and name (`Judge::first_seen`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub ecosystem: &'static str,
    pub name: String,
}

/// The package whose manifest a session's process opened for writing (and got).
fn written_manifest(ev: &Event) -> Option<crate::packages::Manifest> {
    ev.session?;
    let Detail::Open {
        path, flags, ret, ..
    } = &ev.detail
    else {
        return None;
    };
    if *ret < 0 || !crate::event::access::changes(*flags) {
        return None;
    }
    crate::packages::manifest(path)
}

#[cfg(test)]
mod tests {
    //! The judge on events as the kernel reports them (the decoder's output), under
    //! the built-in workstation policy for a user whose home is /home/alice. No
    //! process is touched: the judge only decides.

    use std::{net::IpAddr, sync::Arc};

    use guard_common::{OpenCall, protocol::Outcome, role, rules::enforced};

    use super::*;
    use crate::{
        builtin,
        event::{Proto, SessionId, Task},
        parse,
    };

    const HOME: &str = "/home/alice";

    fn judge_for(text: &str, lsm: bool) -> Judge {
        let (policy, _) = parse::parse("test", text).expect("a valid policy");
        let hosts = Hosts {
            by_name: Default::default(),
            resolvers: vec!["10.0.0.53".parse().expect("addr")],
        };
        Judge::new(
            policy,
            vec![HOME.to_owned()],
            hosts,
            Kernel {
                lsm,
                exec_mapping: true,
            },
        )
        .expect("compiles")
    }

    fn workstation() -> Judge {
        judge_for(builtin::get("workstation").expect("built-in"), false)
    }

    fn event(comm: &str, detail: Detail, enforced: u16) -> Event {
        let task = crate::event::test_support::task(4242, 4200, comm);
        let mut ev = Event::derived(1_000, Some(SessionId(7)), task, detail);
        ev.enforced = enforced;
        ev
    }

    fn open(path: &str, flags: u64, ret: i64) -> Detail {
        Detail::Open {
            path: path.into(),
            resolved: true,
            truncated: false,
            flags,
            call: OpenCall::Openat,
            ret,
            repeats: 0,
            dir: false,
        }
    }

    fn exec(exe: &str, argv: &[&str]) -> Detail {
        crate::event::test_support::exec(exe, argv, false)
    }

    fn connect(addr: &str, port: u16, ret: i64) -> Detail {
        Detail::Connect {
            addr: addr.parse::<IpAddr>().expect("addr"),
            port,
            proto: Proto::Tcp,
            ret,
        }
    }

    /// The `enforced` bits the kernel sets when it acted on rule `id`.
    fn by_kernel(j: &Judge, id: &str, bit: u16) -> u16 {
        let index = j
            .policy()
            .rules
            .iter()
            .position(|r| r.id == id)
            .expect("rule");
        (index as u16 + 1) | bit
    }

    #[test]
    fn a_kernel_kill_is_reported_not_repeated() {
        let j = workstation();
        let bits = by_kernel(&j, "credentials-read", enforced::KILLED);
        let ev = event("cat", open("/home/alice/.ssh/id_rsa", 0, 3), bits);
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(v.rule, "credentials-read");
        assert_eq!(v.action, Action::Kill);
        assert_eq!(v.step, Step::Done(Outcome::Killed));
        assert!(v.alert);
        assert!(
            v.rules.contains(&"private-keys-read".to_owned()),
            "every rule broken is named: {:?}",
            v.rules
        );
    }

    #[test]
    fn a_held_exec_is_judged_by_its_digest_whatever_its_name() {
        let hex = "ab".repeat(32);
        let policy = format!(
            "[[rule]]\nid = \"banned\"\nkind = \"exec\"\ndigest = [\"sha256:{hex}:100\"]\n\
             action = \"deny\"\n"
        );
        for lsm in [false, true] {
            let j = judge_for(&policy, lsm);
            let mut ev = event("copy", exec("/tmp/copy", &["/tmp/copy"]), 0);
            assert_eq!(j.judge(&ev, false), None, "no digest, no match");
            ev.held = true;
            ev.digest = Some(hex.as_str().into());
            let v = j.judge(&ev, false).expect("a violation");
            assert_eq!(v.rule, "banned");
            // Held after the exec returned: deny acts as kill on every tier.
            assert_eq!(v.step, Step::KillProcess, "lsm: {lsm}");
            ev.digest = Some("cd".repeat(32).into());
            assert_eq!(j.judge(&ev, false), None, "another program");
        }
        let observe = judge_for(&format!("mode = \"observe\"\n{policy}"), false);
        let mut ev = event("copy", exec("/tmp/copy", &["/tmp/copy"]), 0);
        ev.held = true;
        ev.digest = Some(hex.as_str().into());
        let v = observe.judge(&ev, false).expect("a violation");
        assert_eq!(
            (v.step, v.would),
            (Step::Done(Outcome::Logged), Some(Action::Deny)),
            "observe mode stops nothing"
        );
    }

    #[test]
    fn tainted_egress_off_the_allowlist_breaks_the_taint_rule() {
        let policy = "[taint]\negress = \"deny\"\nallow = [\"127.0.0.1:8443\"]\n";
        let j = judge_for(policy, false);
        let off = connect("127.0.0.1", 9000, -i64::from(libc::EPERM));
        // Untainted: no rule of the policy covers it.
        assert_eq!(j.judge(&event("curl", off.clone(), 0), false), None);
        // Tainted by the kernel's mark and refused by the kernel: reported, not redone.
        let mut ev = event("curl", off, by_kernel(&j, "taint.egress", enforced::DENIED));
        ev.tainted = true;
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(v.rule, "taint.egress");
        assert_eq!(v.step, Step::Done(Outcome::Denied));
        // Tainted in user space only (a secret glob the kernel cannot match): the
        // kernel let it through, and the event says so.
        let mut ev = event("curl", connect("127.0.0.1", 9000, 0), 0);
        ev.tainted_by = vec![Arc::from("/srv/app/prod.secret")];
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(v.step, Step::Done(Outcome::NotDenied));
        // On the allowlist: nothing.
        let mut ev = event("curl", connect("127.0.0.1", 8443, 0), 0);
        ev.tainted = true;
        assert_eq!(j.judge(&ev, false), None);
        // `alert`: every tainted connect off the list is an alert.
        let j = judge_for("[taint]\negress = \"alert\"\n", false);
        let mut ev = event("curl", connect("10.1.2.3", 443, 0), 0);
        ev.tainted = true;
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(
            (v.action, v.step),
            (Action::Alert, Step::Done(Outcome::Alerted))
        );
    }

    #[test]
    fn what_the_kernel_could_not_decide_is_killed_from_user_space() {
        let j = workstation();
        // A force push: argv rules are decided in user space.
        let ev = event(
            "git",
            exec(
                "/usr/bin/git",
                &["git", "push", "--force", "origin", "main"],
            ),
            0,
        );
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(v.rule, "git-force-push");
        assert_eq!(v.step, Step::KillProcess);
        // A plain push is no violation.
        let ev = event("git", exec("/usr/bin/git", &["git", "push"]), 0);
        assert_eq!(j.judge(&ev, false), None);
    }

    #[test]
    fn a_failed_open_has_nothing_to_stop() {
        let j = workstation();
        let ev = event("cat", open("/home/alice/.aws/credentials", 0, -2), 0);
        let v = j.judge(&ev, false).expect("still a violation");
        assert_eq!(v.step, Step::Done(Outcome::Logged));
    }

    #[test]
    fn roles_keep_the_agent_on_its_own_token() {
        let j = workstation();
        let mut read = event("codex", open("/home/alice/.codex/auth.json", 0, 3), 0);
        for (role, root) in [
            (role::AGENT, true),
            (role::AGENT, false),
            (role::SANDBOX, false),
        ] {
            read.task.role = role;
            assert_eq!(
                j.judge(&read, root),
                None,
                "the agent (root or not: npm starts it as a child) and its sandbox may read it"
            );
        }
        for role in [role::TOOL, role::HELPER, role::WRAPPER, role::UNKNOWN] {
            read.task.role = role;
            let v = j
                .judge(&read, false)
                .expect("its tools, helpers and wrappers may not");
            assert_eq!(v.rule, "codex-auth-read", "{}", role::name(role));
            assert_eq!(v.step, Step::KillProcess, "{}", role::name(role));
        }
    }

    #[test]
    fn the_agents_own_helper_reading_netrc_is_logged_a_tool_is_killed() {
        let j = workstation();
        let mut read = event("git-remote-http", open("/home/alice/.netrc", 0, 3), 0);
        read.task.role = role::HELPER;
        let v = j.judge(&read, false).expect("logged");
        assert_eq!(v.rule, "netrc-read-by-helper");
        assert_eq!(v.step, Step::Done(Outcome::Logged));
        for r in [role::TOOL, role::AGENT, role::WRAPPER] {
            read.task.role = r;
            let v = j.judge(&read, false).expect("killed");
            assert_eq!(v.rule, "netrc-read", "{}", role::name(r));
            assert_eq!(v.step, Step::KillProcess, "{}", role::name(r));
        }
        // Other credentials stay off limits to helpers too.
        let mut key = event("git", open("/home/alice/.ssh/id_rsa", 0, 3), 0);
        key.task.role = role::HELPER;
        assert_eq!(
            j.judge(&key, false).expect("killed").rule,
            "credentials-read"
        );
    }

    #[test]
    fn observe_mode_logs_what_enforce_would_do() {
        let text = builtin::get("workstation")
            .expect("built-in")
            .replace("mode = \"enforce\"", "mode = \"observe\"");
        let j = judge_for(&text, false);
        assert_eq!(j.policy().mode, Mode::Observe);
        let ev = event("sudo", exec("/usr/bin/sudo", &["sudo", "id"]), 0);
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(v.step, Step::Done(Outcome::Logged));
        assert_eq!(v.would, Some(Action::Kill));
        // A connect off the allowlist went through, as observe mode wants: logged,
        // never "not denied".
        let ev = event("curl", connect("203.0.113.9", 443, 0), 0);
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(
            (v.rule.as_str(), v.step, v.would),
            (
                "egress-allowlist",
                Step::Done(Outcome::Logged),
                Some(Action::Deny)
            )
        );
    }

    #[test]
    fn network_denials_come_from_the_kernel() {
        let j = workstation();
        let bits = by_kernel(&j, "cloud-metadata", enforced::DENIED);
        let ev = event("curl", connect("169.254.169.254", 80, -1), bits);
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(
            (v.rule.as_str(), v.step),
            ("cloud-metadata", Step::Done(Outcome::Denied))
        );
        // Off the allowlist but not refused by the kernel (e.g. a name it had not
        // resolved yet): reported as not denied, never as denied.
        let ev = event("curl", connect("203.0.113.9", 443, 0), 0);
        let v = j.judge(&ev, false).expect("a violation");
        assert_eq!(
            (v.rule.as_str(), v.step),
            ("egress-allowlist", Step::Done(Outcome::NotDenied))
        );
        let ev = event("curl", connect("127.0.0.1", 8080, 0), 0);
        assert_eq!(j.judge(&ev, false), None, "loopback is allowed");
    }

    #[test]
    fn a_query_the_kernel_pointed_at_guard_s_resolver_is_no_egress() {
        let j = workstation();
        // The server the process asked is off the allowlist; the kernel sent the
        // query to guard's resolver, which judges the name (a `dns` event).
        let mut ev = event("codex", connect("203.0.113.53", 53, 0), 0);
        assert_eq!(
            j.judge(&ev, false).map(|v| v.rule),
            Some("egress-allowlist".to_owned()),
            "not redirected: egress"
        );
        ev.via_resolver = true;
        assert_eq!(j.judge(&ev, false), None);
    }

    #[test]
    fn a_denied_open_is_denied_only_where_bpf_lsm_runs() {
        let text = r#"
mode = "enforce"
[[rule]]
id = "hooks"
kind = "file"
access = ["write"]
paths = ["/srv/repo/.git/hooks/**"]
action = "deny"
"#;
        let eperm = -i64::from(libc::EPERM);
        let ev = event("sh", open("/srv/repo/.git/hooks/pre-commit", 0o1, eperm), 0);
        let lsm = judge_for(text, true).judge(&ev, false).expect("violation");
        assert_eq!(lsm.step, Step::Done(Outcome::Denied));
        let written = event("sh", open("/srv/repo/.git/hooks/pre-commit", 0o1, 3), 0);
        let fallback = judge_for(text, false)
            .judge(&written, false)
            .expect("violation");
        assert_eq!(fallback.step, Step::KillProcess, "deny acts as kill");
    }

    #[test]
    fn ordinary_work_is_no_violation() {
        let j = workstation();
        for ev in [
            event("cargo", open("/home/alice/src/guard/Cargo.toml", 0, 3), 0),
            event("cargo", exec("/usr/bin/cargo", &["cargo", "test"]), 0),
            event("cat", open("/home/alice/src/app/.env.example", 0, 3), 0),
            event("rm", exec("/usr/bin/rm", &["rm", "-rf", "target"]), 0),
        ] {
            assert_eq!(j.judge(&ev, false), None, "{:?}", ev.detail);
        }
    }

    #[test]
    fn destinations_are_named_by_the_policy_s_resolution() {
        let mut j = workstation();
        j.set_host(
            "api.openai.com".into(),
            vec!["162.159.140.245".parse().expect("addr")],
        );
        let ev = event("codex", connect("162.159.140.245", 443, 0), 0);
        assert_eq!(
            j.hosts().name_of("162.159.140.245".parse().expect("addr")),
            Some("api.openai.com")
        );
        assert_eq!(j.judge(&ev, true), None);
    }

    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one section per verdict the judge makes itself, reusing the judges built first"
    )]
    fn limits_tamper_and_anomalies_are_judged_here_and_observe_mode_once() {
        let enforce = judge_for("mode = \"enforce\"\n[limits]\non_loss = \"kill\"\n", false);
        let limit = event(
            "x",
            Detail::Limit {
                reason: crate::event::LimitReason::TrackFull,
                dropped: 1,
                total: 1,
                child_pid: Some(99),
            },
            0,
        );
        let v = enforce.judge(&limit, false).expect("a loss is a violation");
        assert_eq!(v.rule, LIMITS);
        assert_eq!(v.step, Step::KillSession { also: Some(99) });
        let observe = judge_for("mode = \"observe\"\n[limits]\non_loss = \"kill\"\n", false);
        let v = observe.judge(&limit, false).expect("a loss is a violation");
        assert_eq!(v.step, Step::Done(Outcome::Logged));
        assert_eq!(v.would, Some(Action::Kill));

        let hit = crate::anomaly::Hit {
            rule: "big-upload".into(),
            action: Action::Kill,
            target: Target::Process,
            what: "10 MB in 60 s".into(),
        };
        let v = enforce.anomaly(hit.clone());
        assert_eq!(v.step, Step::KillProcess);
        assert_eq!(v.anomaly.as_deref(), Some("10 MB in 60 s"));
        let v = observe.anomaly(hit);
        assert_eq!(
            (v.step, v.would),
            (Step::Done(Outcome::Logged), Some(Action::Kill))
        );

        // A declared call's command is redacted as a shell's script would be.
        let mut call = Event::derived(
            0,
            None,
            Task::default(),
            Detail::ToolCall {
                phase: guard_common::protocol::CallPhase::Start,
                tool: "Bash".into(),
                command: Some("mysql -pS3cret -e 'select 1'".into()),
                rollout: true,
            },
        );
        enforce.redact(&mut call);
        assert!(call.redacted);
        assert!(
            matches!(&call.detail, Detail::ToolCall { command: Some(c), .. }
                if c == "mysql -p[REDACTED] -e 'select 1'"),
            "{:?}",
            call.detail
        );

        // A package's script reaching beyond the registries (`[packages]
        // script_network`): connects that went through, DNS and loopback aside.
        let scripts = judge_for(
            "mode = \"enforce\"\n[packages]\nscript_network = \"kill\"\n",
            false,
        );
        let script = |detail: Detail, host: Option<&str>| {
            let mut ev = event("node", detail, 0);
            ev.task.package = Some("evil-pkg".into());
            ev.host = host.map(str::to_owned);
            ev
        };
        let v = scripts
            .package(&script(
                connect("203.0.113.9", 443, 0),
                Some("evil.example"),
            ))
            .expect("a verdict");
        assert_eq!(
            (v.rule.as_str(), v.step),
            (crate::model::Packages::SCRIPT_NETWORK, Step::KillProcess)
        );
        assert_eq!(
            v.anomaly.as_deref(),
            Some(
                "the script of package evil-pkg reached evil.example (203.0.113.9 port 443), \
                 not a package registry (allowlisted)"
            )
        );
        for (detail, host, why) in [
            (
                connect("104.16.0.1", 443, 0),
                Some("registry.npmjs.org"),
                "a registry",
            ),
            (connect("127.0.0.1", 9, 0), None, "loopback"),
            (connect("10.0.0.53", 53, 0), None, "DNS"),
            (connect("203.0.113.9", 443, -1), None, "refused"),
        ] {
            assert_eq!(scripts.package(&script(detail, host)), None, "{why}");
        }
        let mut not_a_script = script(connect("203.0.113.9", 443, 0), None);
        not_a_script.task.package = None;
        assert_eq!(scripts.package(&not_a_script), None, "not a script");
        assert_eq!(
            enforce.package(&script(connect("203.0.113.9", 443, 0), None)),
            None,
            "off unless [packages] says"
        );

        // A process that outlived its call: nothing unless `[sessions]` says.
        assert_eq!(enforce.undeclared(), None);
        let v = judge_for(
            "mode = \"enforce\"\n[sessions]\nundeclared = \"kill\"\n",
            false,
        )
        .undeclared()
        .expect("a verdict");
        assert_eq!((v.rule.as_str(), v.step), (UNDECLARED, Step::KillProcess));

        // A tool outside its session's sandbox: nothing unless `[sessions]` says.
        assert_eq!(enforce.unsandboxed(), None);
        let kill = "[sessions]\nunsandboxed_tools = \"kill\"\n";
        let v = judge_for(&format!("mode = \"enforce\"\n{kill}"), false)
            .unsandboxed()
            .expect("a verdict");
        assert_eq!((v.rule.as_str(), v.step), (UNSANDBOXED, Step::KillProcess));
        let v = judge_for(&format!("mode = \"observe\"\n{kill}"), false)
            .unsandboxed()
            .expect("a verdict");
        assert_eq!(
            (v.step, v.would),
            (Step::Done(Outcome::Logged), Some(Action::Kill))
        );
        let v = judge_for(
            "mode = \"enforce\"\n[sessions]\nunsandboxed_tools = \"alert\"\n",
            false,
        )
        .unsandboxed()
        .expect("a verdict");
        assert_eq!((v.step, v.alert), (Step::Done(Outcome::Alerted), true));

        // Self-protection: what the kernel did, in every mode.
        let tamper = |bits| {
            event(
                "x",
                Detail::Tamper(Box::new(crate::event::Tamper {
                    op: crate::event::TamperOp::Signal,
                    syscall: None,
                    target: Some(1),
                    arg: 9,
                    path: None,
                })),
                bits,
            )
        };
        let v = observe
            .judge(&tamper(enforced::KILLED), false)
            .expect("tamper");
        assert_eq!(
            (v.rule.as_str(), v.step),
            (SELF_PROTECTION, Step::Done(Outcome::Killed))
        );
        let v = enforce.judge(&tamper(0), false).expect("tamper");
        assert!(matches!(v.step, Step::Failed(_)), "{v:?}");
    }

    #[test]
    fn a_loader_run_of_a_forbidden_program_is_left_to_the_kernel_s_mapping_kill() {
        let text = "mode = \"enforce\"\n[[rule]]\nid = \"no-touch\"\nkind = \"exec\"\nexe = [\"denied-touch\"]\naction = \"kill\"\n";
        let ev = event(
            "ld-linux-x86-64",
            exec(
                "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                &["/lib64/ld-linux-x86-64.so.2", "/tmp/x/denied-touch"],
            ),
            0,
        );
        let v = judge_for(text, false).judge(&ev, false).expect("by target");
        assert_eq!(v.step, Step::Done(Outcome::Deferred));
        // Without the mapping hook, user space kills the loader itself.
        let (policy, _) = parse::parse("test", text).expect("valid");
        let without = Judge::new(
            policy,
            vec![HOME.to_owned()],
            Hosts::default(),
            Kernel::default(),
        )
        .expect("compiles");
        assert_eq!(
            without.judge(&ev, false).expect("by target").step,
            Step::KillProcess
        );
    }

    #[test]
    fn the_agent_s_own_read_of_a_secret_is_denied_where_the_kernel_can_refuse_else_alerted() {
        let text = builtin::get("workstation").expect("built-in");
        let mut read = event("claude", open("/home/alice/.ssh/id_rsa", 0, 3), 0);
        read.task.role = role::AGENT;
        // No BPF-LSM: the read happened; an alert, which taints (a secret).
        let v = judge_for(text, false)
            .judge(&read, false)
            .expect("a violation");
        assert_eq!(v.rule, "secrets-read-by-agent");
        assert_eq!(
            (v.action, &v.step),
            (Action::Alert, &Step::Done(Outcome::Alerted))
        );
        assert!(v.secret && v.alert);
        // BPF-LSM refused it (EPERM): denied, the agent lives.
        let rule = judge_for(text, true)
            .policy()
            .rules
            .iter()
            .position(|r| r.id == "secrets-read-by-agent")
            .expect("the rule") as u16;
        let mut refused = event("claude", open("/home/alice/.ssh/id_rsa", 0, -1), 0);
        refused.task.role = role::AGENT;
        refused.enforced = ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED;
        let v = judge_for(text, true)
            .judge(&refused, false)
            .expect("a violation");
        assert_eq!(
            (v.action, &v.step),
            (Action::Deny, &Step::Done(Outcome::Denied))
        );
        // `guard run`'s confinement refused it (EACCES): denied too, as the deny it is.
        let mut hidden = event(
            "claude",
            open("/home/alice/.ssh/id_rsa", 0, -i64::from(libc::EACCES)),
            0,
        );
        hidden.task.role = role::AGENT;
        let v = judge_for(text, false)
            .judge_confined(&hidden, false, false)
            .expect("a violation");
        assert_eq!(
            (v.action, &v.step),
            (Action::Deny, &Step::Done(Outcome::Denied))
        );
        // Below a hidden directory a root process finds nothing (ENOENT): denied
        // there, and only there.
        let mut empty = event(
            "claude",
            open("/home/alice/.ssh/id_rsa", 0, -i64::from(libc::ENOENT)),
            0,
        );
        empty.task.role = role::AGENT;
        let j = judge_for(text, false);
        let v = j.judge_confined(&empty, false, true).expect("a violation");
        assert_eq!(v.step, Step::Done(Outcome::Denied));
        let v = j.judge_confined(&empty, false, false).expect("a violation");
        assert_ne!(v.step, Step::Done(Outcome::Denied));
        // Outside a confined session the same refusal is only what it is.
        let v = judge_for(text, false)
            .judge(&hidden, false)
            .expect("a violation");
        assert_eq!(v.step, Step::Done(Outcome::Alerted));
        // A tool is killed as before, on every kernel.
        let mut tool = event("cat", open("/home/alice/.ssh/id_rsa", 0, 3), 0);
        tool.task.role = role::TOOL;
        let v = judge_for(text, false)
            .judge(&tool, false)
            .expect("a violation");
        assert_eq!(
            (v.rule.as_str(), &v.step),
            ("credentials-read", &Step::KillProcess)
        );
    }

    #[test]
    fn a_fallback_rule_says_how_it_acts_here() {
        let text = "[[rule]]\nid = \"keys\"\nkind = \"file\"\naccess = [\"read\"]\n\
                    paths = [\"*.key\", \"src/*.pem\"]\naction = \"deny\"\nfallback = \"alert\"\n\
                    [[rule]]\nid = \"plain\"\nkind = \"file\"\npaths = [\"x\"]\naction = \"deny\"\n";
        let without = judge_for(text, false).fallbacks();
        assert_eq!(without.len(), 1, "{without:?}");
        assert_eq!(
            (without[0].rule.as_str(), without[0].acts_as),
            ("keys", Action::Alert)
        );
        assert!(
            without[0]
                .guarantee
                .starts_with("alerted (no BPF-LSM here)"),
            "{without:?}"
        );
        assert_eq!(without[0].user_space, ["\"src/*.pem\""]);
        let with = judge_for(text, true).fallbacks();
        assert_eq!(with[0].acts_as, Action::Deny);
        assert!(
            with[0].guarantee.contains("alerted after the fact"),
            "{with:?}"
        );
        // Without BPF-LSM the kernel has no kill entry for it; with it, a refusal.
        let judge = judge_for(text, false);
        let keys = judge
            .policy()
            .rules
            .iter()
            .position(|r| r.id == "keys")
            .expect("keys");
        assert!(
            judge
                .tables()
                .paths
                .iter()
                .all(|(_, _, v)| usize::from(v.rule) != keys)
        );
        let judge = judge_for(text, true);
        assert!(
            judge
                .tables()
                .paths
                .iter()
                .any(|(_, _, v)| usize::from(v.rule) == keys
                    && v.flags & guard_common::rules::rule_flags::DENY != 0)
        );
    }

    #[test]
    fn guard_run_confines_what_every_process_is_stopped_from() {
        let judge = workstation();
        // Tools are killed, the agent refused: hidden from the whole session.
        assert!(judge.stops_everyone("/home/alice/.ssh/id_rsa", false));
        assert!(judge.stops_everyone("/home/alice/src/app/.env", false));
        assert!(!judge.stops_everyone("/home/alice/src/app/.env.example", false));
        // The agent reads its own token, Codex's helpers ~/.netrc: not hidden.
        assert!(!judge.stops_everyone("/home/alice/.codex/auth.json", false));
        assert!(!judge.stops_everyone("/home/alice/.netrc", false));
        // A repository's hooks are denied to everyone; its workflows only alerted.
        assert!(judge.stops_everyone(
            // Any name in the directory: `guard run` probes it with one of its own.
            "/home/alice/src/app/.git/hooks/guard-probe-of-the-directory",
            true
        ));
        assert!(!judge.stops_everyone("/home/alice/src/app/.github/workflows/ci.yml", true));
        assert!(!judge.stops_everyone("/home/alice/src/app/README.md", false));
    }

    #[test]
    fn a_repository_s_committed_ignore_files_become_rules_for_its_files() {
        let mut judge = workstation();
        let ignored = crate::ignore::Ignored {
            root: "/home/alice/src/app".into(),
            files: vec![".codexignore".into()],
            patterns: ["/private/", "*.dump", "!/keep.dump"]
                .map(str::to_owned)
                .to_vec(),
            notes: Vec::new(),
        };
        assert!(judge.set_ignored(ignored.clone()), "new rules");
        assert!(!judge.set_ignored(ignored), "the same set changes nothing");
        // Another repository's exception the kernel cannot express leaves only its own
        // patterns to user space.
        assert!(judge.set_ignored(crate::ignore::Ignored {
            root: "/home/alice/src/other".into(),
            files: vec![".aiignore".into()],
            patterns: ["/secrets/", "!*.pub"].map(str::to_owned).to_vec(),
            notes: Vec::new(),
        }));
        let read = |path: &str, role: u8| {
            let mut ev = event("cat", open(path, 0, 3), 0);
            ev.task.role = role;
            judge.judge(&ev, false)
        };
        // A tool: killed (deny acts as kill without BPF-LSM); the agent: alerted.
        let v = read("/home/alice/src/app/private/notes.txt", role::TOOL).expect("ignored");
        assert_eq!(
            (v.rule.as_str(), &v.step),
            ("files.ignore", &Step::KillProcess)
        );
        assert!(v.secret);
        let v = read("/home/alice/src/app/sub/db.dump", role::AGENT).expect("ignored");
        assert_eq!(
            (v.rule.as_str(), v.action, &v.step),
            (
                "files.ignore-by-agent",
                Action::Alert,
                &Step::Done(Outcome::Alerted)
            )
        );
        // An exception, another repository, the repository's other files: not ignored.
        assert!(read("/home/alice/src/app/keep.dump", role::TOOL).is_none());
        assert!(read("/home/alice/src/other/db.dump", role::TOOL).is_none());
        assert!(read("/home/alice/src/other/secrets/id.pub", role::TOOL).is_none());
        assert!(read("/home/alice/src/other/secrets/id", role::TOOL).is_some());
        assert!(read("/home/alice/src/app/README.md", role::TOOL).is_none());
        // A write to the ignore file: an alert where nothing refuses it.
        let mut write = event(
            "sh",
            open("/home/alice/src/app/.codexignore", 0o1 | 0o1000, 3),
            0,
        );
        write.task.role = role::TOOL;
        let v = judge.judge(&write, false).expect("flagged");
        assert_eq!(
            (v.rule.as_str(), v.action),
            ("files.ignore-files", Action::Alert)
        );
        // The first repository's anchored pattern is a kernel shape; the second's rule
        // is user space's, whole.
        let rules: Vec<usize> = judge
            .policy()
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id == "files.ignore")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(rules.len(), 2);
        let in_kernel = |rule: usize| {
            judge.tables().paths.iter().any(|(_, _, v)| {
                usize::from(v.rule) == rule && v.flags & guard_common::rules::rule_flags::KILL != 0
            })
        };
        assert!(in_kernel(rules[0]));
        assert!(!in_kernel(rules[1]));
        // guard run hides them from the whole session.
        assert!(judge.stops_everyone("/home/alice/src/app/db.dump", false));
        // The policy's own rules keep their places: the kernel's entries name them.
        assert_eq!(judge.policy().rules[0].id, "credentials-read");
    }

    /// `[packages] first_seen`: a manifest written for a name the organisation's
    /// names lack is a verdict on the installer; a known name, a read, a failed
    /// open, or names not yet arrived are none (the last said to the caller).
    #[test]
    fn a_package_new_to_the_organisation_is_judged_against_its_names() {
        use crate::packages::Inventory;
        let judge = judge_for(
            "mode = \"enforce\"\n[packages]\nfirst_seen = \"kill\"\n",
            false,
        );
        let write = |path: &str, flags: u64, ret: i64| event("npm", open(path, flags, ret), 0);
        let manifest = "/w/node_modules/left-padd/package.json";
        let wheel = "/w/venv/lib/python3.13/site-packages/Typing_Ext-1.0.dist-info/METADATA";
        let created = (libc::O_WRONLY | libc::O_CREAT) as u64;
        let mut names = Inventory::default();
        names.insert("npm", "express");
        names.insert("pypi", "typing-ext");
        // Before the fleet's list arrives: nothing judged, the package named.
        assert_eq!(
            judge.first_seen(&write(manifest, created, 3), |e, n| names.knows(e, n)),
            Some(Err(Named {
                ecosystem: "npm",
                name: "left-padd".to_owned()
            }))
        );
        names.set_ready();
        let Some(Ok((v, package))) =
            judge.first_seen(&write(manifest, created, 3), |e, n| names.knows(e, n))
        else {
            panic!("a verdict");
        };
        assert_eq!(
            (package.ecosystem, package.name.as_str()),
            ("npm", "left-padd")
        );
        assert_eq!(
            (v.rule.as_str(), v.step),
            (crate::model::Packages::FIRST_SEEN, Step::KillProcess)
        );
        assert_eq!(
            v.anomaly.as_deref(),
            Some(
                "npm package left-padd is new to the organisation: the fleet's inventory has \
                 no package of that name"
            )
        );
        // Known (PyPI's names compared normalised), read, failed: none.
        assert_eq!(
            judge.first_seen(&write(wheel, created, 3), |e, n| names.knows(e, n)),
            None
        );
        assert_eq!(
            // The names are asked only about a manifest's write.
            judge.first_seen(&write(manifest, libc::O_RDONLY as u64, 3), |_, _| {
                panic!("asked about a read")
            }),
            None
        );
        assert_eq!(
            judge.first_seen(&write(manifest, created, -13), |e, n| names.knows(e, n)),
            None
        );
        names.insert("npm", "left-padd");
        assert_eq!(
            judge.first_seen(&write(manifest, created, 3), |e, n| names.knows(e, n)),
            None
        );
        // Off unless [packages] says.
        assert_eq!(
            workstation().first_seen(
                &write("/w/node_modules/zzz-new/package.json", created, 3),
                |e, n| names.knows(e, n)
            ),
            None
        );
    }
}
