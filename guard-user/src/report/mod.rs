//! Session reports: one document per session saying who ran what, where, which files
//! it read and wrote, where it connected and what guard did about it (`guard report`).
//!
//! A [`Ledger`] folds a session's events, as the audit log holds them
//! ([`EventLine`]), into bounded aggregates: the daemon keeps one per session and
//! writes the report when the session ends (`[report] dir`), and `guard report --log`
//! folds the same lines read back from an audit log, so both give the same document.

mod calls;
pub mod html;
mod ledgers;
mod markdown;
mod packages;
pub mod sarif;

use std::collections::HashMap;

use chrono::DateTime;
pub use guard_common::report::{
    Bounded, Command, Destination, FileClass, FileUse, Files, MAX_ITEMS, Report, SecretEgress,
    SecretRead, SentAfter, UnixSocket, Violation,
};
use guard_common::{
    UnixCall,
    line::{Access, Address, EventDetail, EventLine, FlowReason, Known},
};

pub use self::ledgers::{Ledgers, MAX_LIVE, dropped_total, from_log};
pub use self::markdown::render as markdown;

/// Reports of ended sessions the daemon keeps in memory for `guard report`.
pub const KEEP_ENDED: usize = 64;

/// Whether `path` is one of the system's own files (the report's `system` class).
pub fn is_system_path(path: &str) -> bool {
    SYSTEM_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The agent's own thread (conversation) ids a report lists, first seen first.
const AGENT_THREADS_KEPT: usize = 16;

/// Directories whose files are the system's, not the user's.
const SYSTEM_PREFIXES: &[&str] = &[
    "/usr/",
    "/lib/",
    "/lib64/",
    "/lib32/",
    "/bin/",
    "/sbin/",
    "/etc/",
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
    "/var/lib/",
    "/var/cache/",
    "/opt/",
];

/// Folds one session's events into its [`Report`].
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    report: Report,
    /// Index of each path in its list: one map per (written, class), at
    /// `written as usize * 4 + class`.
    files: [HashMap<String, usize>; 8],
    dests: HashMap<(String, u16, String), usize>,
    unix: HashMap<String, usize>,
    /// Open flows' latest totals (out, in) by flow id: a flow's next record
    /// replaces its previous counts; a final one leaves the map.
    flows: crate::event::flows::FlowDeltas<String>,
    first_ts: Option<String>,
    last_ts: Option<String>,
    /// When the session first read a secret (RFC 3339 strings of one format order
    /// as their times).
    first_secret: Option<String>,
    secrets: HashMap<String, usize>,
    sent_after: HashMap<(String, u16, String), usize>,
    /// The agent's own exec (role `agent`) was seen: the session is its, as
    /// the daemon's registry decides (session/mod.rs).
    agent_seen: bool,
    packages: packages::Packages,
    calls: calls::Calls,
    replay: calls::Replay,
}

impl Ledger {
    /// A ledger for `session`.
    pub fn new(session: &str) -> Self {
        Self {
            report: Report {
                session: session.to_owned(),
                ..Report::default()
            },
            ..Self::default()
        }
    }

    /// Whether the session has ended.
    pub fn ended(&self) -> bool {
        self.report.ended.is_some()
    }

    /// Adds one event of the session.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per kind of event, each adding what it did to the session's report"
    )]
    pub fn add(&mut self, ev: &EventLine) {
        // The calls its agent's rollout names come, with the times they ran, just
        // before its end: folded then, with what the processes did.
        if self.replay.declared(ev) {
            return;
        }
        if matches!(ev.detail, EventDetail::SessionEnd { .. }) {
            self.calls.replay(&mut self.report, &mut self.replay);
        }
        if !ev.ts.is_empty() {
            self.first_ts.get_or_insert_with(|| ev.ts.clone());
            // Reuses the last one's buffer: this runs for every event.
            match &mut self.last_ts {
                Some(ts) => ts.clone_from(&ev.ts),
                None => self.last_ts = Some(ev.ts.clone()),
            }
        }
        let task = ev.task.as_ref();
        let pid = ev.pid().unwrap_or(0);
        let comm = ev.comm().unwrap_or_default();
        // What the event did, in a violation's words: only a violation needs it.
        let violated = ev.violation.is_some();
        let r = &mut self.report;
        if r.user.is_none() {
            r.user = task.and_then(|t| t.user.clone());
        }
        if r.container.is_none() {
            r.container = task.and_then(|t| t.container.clone());
        }
        if let Some(thread) = task.and_then(|t| t.agent_thread.as_ref())
            && r.agent_threads.len() < AGENT_THREADS_KEPT
            && !r.agent_threads.contains(thread)
        {
            r.agent_threads.push(thread.clone());
        }
        let what = match &ev.detail {
            EventDetail::SessionStart {
                agent,
                root_pid,
                how,
                cwd,
                repository,
            } => {
                r.agent = Some(agent.clone());
                r.root_pid = Some(*root_pid);
                r.how = Some(how.as_str().to_owned());
                r.workspace.clone_from(cwd);
                r.repository.clone_from(repository);
                r.started = Some(ev.ts.clone());
                None
            }
            EventDetail::SessionEnd {
                killed,
                agent,
                agent_user,
                ..
            } => {
                r.ended = Some(ev.ts.clone());
                r.stragglers_killed.clone_from(killed);
                // The daemon's last word on whose session it was (absent in logs of
                // older daemons).
                if !agent.is_empty() {
                    r.agent = Some(agent.clone());
                }
                if agent_user.is_some() {
                    r.user.clone_from(agent_user);
                }
                None
            }
            EventDetail::Exec {
                exe,
                argv,
                agent,
                agent_version,
                confinement,
                ..
            } => {
                // The session is its agent's: a wrapper above it (`guard run` as root,
                // `setpriv --reuid`) named it and ran as another user. Until the
                // agent's own exec, the root's latest program (`guard run`) and user
                // stand for it; the agent's exec names it (its profile's id when
                // recognised), as the registry does.
                let first_agent = task.is_some_and(|t| t.role == "agent") && !self.agent_seen;
                if first_agent || (!self.agent_seen && Some(pid) == r.root_pid) {
                    if let Some(user) = task.and_then(|t| t.user.as_ref()) {
                        r.user = Some(user.clone());
                    }
                    if (first_agent || r.how.as_deref() == Some("run")) && !comm.is_empty() {
                        r.agent = Some(comm.to_owned());
                    }
                }
                self.agent_seen |= first_agent;
                if let Some(agent) = agent {
                    r.agent = Some(agent.clone());
                }
                if r.agent_version.is_none() {
                    r.agent_version.clone_from(agent_version);
                }
                r.commands.push(Command {
                    ts: ev.ts.clone(),
                    pid,
                    exe: exe.clone(),
                    argv: argv.clone(),
                    verdict: verdict(ev),
                    sandboxed: confinement.as_ref().and_then(|c| c.sandboxed),
                });
                violated.then(|| format!("exec {exe}"))
            }
            EventDetail::Open {
                path,
                access,
                result,
                repeats,
                ..
            } => {
                let written = access.iter().any(|a| *a != Access::Read);
                // A count of repeated opens stands for that many opens.
                let opens = repeats.unwrap_or(1).max(1);
                self.file(path, written, !result.is_ok(), opens, comm, ev);
                if result.is_ok() && access.iter().any(|a| *a == Access::Read) {
                    self.secret_read(path, pid, comm, ev);
                }
                violated.then(|| format!("open {path}"))
            }
            EventDetail::Connect { to, result, .. } | EventDetail::Send { to, result, .. } => {
                let Address {
                    addr, port, proto, ..
                } = to;
                let proto = proto.as_str();
                let send = matches!(ev.detail, EventDetail::Send { .. });
                self.destination(addr, *port, proto, send, !result.is_ok(), ev);
                if let Some(s) = self.sent_entry(addr, *port, proto, ev) {
                    s.attempts += 1;
                    s.failed += u64::from(!result.is_ok());
                }
                violated.then(|| {
                    format!(
                        "{} {}",
                        ev.detail.kind(),
                        endpoint(addr, *port, ev.host.as_deref())
                    )
                })
            }
            EventDetail::Unix {
                path, call, result, ..
            } => {
                let entry = slot(&mut self.unix, &mut r.unix_sockets, path.as_str(), || {
                    UnixSocket {
                        path: path.clone(),
                        by: comm.to_owned(),
                        ..UnixSocket::default()
                    }
                });
                if let Some(u) = entry {
                    if *call == UnixCall::Connect {
                        u.connects += 1;
                    } else {
                        u.sends += 1;
                    }
                    u.failed += u64::from(!result.is_ok());
                    note_verdict(&mut u.verdicts, ev);
                }
                violated.then(|| format!("unix {call} {path}"))
            }
            EventDetail::Flow {
                to: Address {
                    addr, port, proto, ..
                },
                bytes_out,
                bytes_in,
                flow_id,
                reason,
                ..
            } => {
                self.flow(
                    addr,
                    *port,
                    proto.as_str(),
                    (*bytes_out, *bytes_in),
                    flow_id,
                    reason,
                    ev,
                );
                violated.then(|| format!("flow {}", endpoint(addr, *port, ev.host.as_deref())))
            }
            EventDetail::Dns {
                direction, name, ..
            } => violated.then(|| format!("dns {direction} {}", name.as_deref().unwrap_or("?"))),
            EventDetail::Fork { .. } => {
                r.forks += 1;
                None
            }
            EventDetail::Tamper {
                op,
                syscall,
                target_pid,
                path,
                ..
            } => {
                let mut what = format!("tamper {op}");
                if let Some(syscall) = syscall {
                    what.push_str(&format!(" ({syscall})"));
                }
                if let Some(path) = path {
                    what.push_str(&format!(" {path}"));
                } else if let Some(pid) = target_pid {
                    what.push_str(&format!(" → pid {pid}"));
                }
                Some(what)
            }
            EventDetail::Route { route, path, .. } => Some(match path {
                Some(path) => format!("route {} {path}", route.as_str()),
                None => format!("route {}", route.as_str()),
            }),
            // Other kinds (and kinds this build does not know): only a violation of
            // theirs is reported.
            _ => violated.then(|| ev.detail.kind().to_owned()),
        };
        self.packages.add(&mut self.report, ev);
        self.calls.add(&mut self.report, ev);
        self.replay.keep(ev);
        if let (Some(v), Some(mut what)) = (&ev.violation, what) {
            if let Some(anomaly) = &v.anomaly {
                what = format!("{what}: {anomaly}");
            }
            // The file it was about, where there is one.
            let path = match &ev.detail {
                EventDetail::Open { path, .. } => Some(path.clone()),
                EventDetail::Route { path, .. } | EventDetail::Tamper { path, .. } => path.clone(),
                _ => None,
            };
            self.report.violations.push(Violation {
                ts: ev.ts.clone(),
                pid,
                comm: comm.to_owned(),
                what,
                path,
                rule: v.rule.clone(),
                action: v.action.as_str().to_owned(),
                outcome: v.outcome.as_str().to_owned(),
                alert: v.alert,
            });
        }
    }

    /// Records of the session the kernel dropped, from its `limit` events (their
    /// kind is not in the protocol's list: the daemon passes the total on).
    pub fn dropped(&mut self, total: u64) {
        self.report.dropped = self.report.dropped.max(total);
    }

    fn class(&self, path: &str, ev: &EventLine) -> FileClass {
        // A secret is one by the rule it broke, wherever it is.
        if ev.violation.as_ref().is_some_and(|v| v.secret) {
            return FileClass::Secret;
        }
        if let Some(ws) = self.report.workspace.as_deref()
            && ws != "/"
            && path
                .strip_prefix(ws)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            return FileClass::Workspace;
        }
        if is_system_path(path) {
            return FileClass::System;
        }
        FileClass::Outside
    }

    fn file(
        &mut self,
        path: &str,
        written: bool,
        failed: bool,
        opens: u64,
        comm: &str,
        ev: &EventLine,
    ) {
        let class = self.class(path, ev);
        let files = if written {
            &mut self.report.written
        } else {
            &mut self.report.read
        };
        let list = match class {
            FileClass::Secret => &mut files.secrets,
            FileClass::Workspace => &mut files.workspace,
            FileClass::System => &mut files.system,
            FileClass::Outside => &mut files.outside,
        };
        let index = &mut self.files[usize::from(written) * 4 + class as usize];
        let Some(entry) = slot(index, list, path, || FileUse {
            path: path.to_owned(),
            by: comm.to_owned(),
            ..FileUse::default()
        }) else {
            return;
        };
        entry.opens += opens;
        entry.failed += u64::from(failed) * opens;
        note_verdict(&mut entry.verdicts, ev);
    }

    fn destination(
        &mut self,
        addr: &str,
        port: u16,
        proto: &str,
        send: bool,
        failed: bool,
        ev: &EventLine,
    ) {
        let Some(d) = self.dest_entry(addr, port, proto, ev) else {
            return;
        };
        if send {
            d.sends += 1;
        } else {
            d.connects += 1;
        }
        d.failed += u64::from(failed);
        note_verdict(&mut d.verdicts, ev);
    }

    /// The destination's entry (found or added, within the bound), its host name
    /// filled in from the first event that has one.
    fn dest_entry(
        &mut self,
        addr: &str,
        port: u16,
        proto: &str,
        ev: &EventLine,
    ) -> Option<&mut Destination> {
        let key = (addr.to_owned(), port, proto.to_owned());
        let d = slot(&mut self.dests, &mut self.report.destinations, &key, || {
            Destination {
                addr: addr.to_owned(),
                port,
                proto: proto.to_owned(),
                ..Destination::default()
            }
        })?;
        if d.host.is_none() {
            d.host.clone_from(&ev.host);
        }
        Some(d)
    }

    /// Adds a flow's totals as of this record: what it moved since its previous
    /// record goes to its destination and to the session's totals.
    #[expect(
        clippy::too_many_arguments,
        reason = "a flow record's fields, as the pipeline hands them over"
    )]
    fn flow(
        &mut self,
        addr: &str,
        port: u16,
        proto: &str,
        (out, inb): (u64, u64),
        flow_id: &str,
        reason: &Known<FlowReason>,
        ev: &EventLine,
    ) {
        let new = !self.flows.is_open(flow_id);
        let (d_out, d_in) = self.flows.add_totals(
            flow_id.to_owned(),
            (out, inb),
            *reason != FlowReason::Periodic,
        );
        self.report.bytes_out += d_out;
        self.report.bytes_in += d_in;
        let Some(d) = self.dest_entry(addr, port, proto, ev) else {
            return;
        };
        d.bytes_out += d_out;
        d.bytes_in += d_in;
        d.flows += u64::from(new);
        if let Some(s) = self.sent_entry(addr, port, proto, ev) {
            s.bytes_out += d_out;
        }
    }

    /// Notes a secret read that nothing stopped.
    fn secret_read(&mut self, path: &str, pid: u32, comm: &str, ev: &EventLine) {
        if !ev
            .violation
            .as_ref()
            .is_some_and(|v| v.secret && v.outcome.let_through())
        {
            return;
        }
        if self.first_secret.is_none() {
            self.first_secret = Some(ev.ts.clone());
        }
        let _ = slot(
            &mut self.secrets,
            &mut self.report.secret_egress.secrets,
            path,
            || SecretRead {
                ts: ev.ts.clone(),
                pid,
                comm: comm.to_owned(),
                path: path.to_owned(),
            },
        );
    }

    /// The destination's entry among those contacted after the first secret read,
    /// when `ev` comes after it.
    fn sent_entry(
        &mut self,
        addr: &str,
        port: u16,
        proto: &str,
        ev: &EventLine,
    ) -> Option<&mut SentAfter> {
        let first = self.first_secret.as_deref()?;
        if ev.ts.as_str() < first {
            return None;
        }
        let key = (addr.to_owned(), port, proto.to_owned());
        let s = slot(
            &mut self.sent_after,
            &mut self.report.secret_egress.sent_after,
            &key,
            || SentAfter {
                addr: addr.to_owned(),
                port,
                proto: proto.to_owned(),
                ..SentAfter::default()
            },
        )?;
        if s.host.is_none() {
            s.host.clone_from(&ev.host);
        }
        s.tainted |= !ev.tainted_by.is_empty();
        Some(s)
    }

    /// The report as of now: for a running session, up to its latest event.
    pub fn report(&self) -> Report {
        let mut r = self.report.clone();
        let from = r.started.as_deref().or(self.first_ts.as_deref());
        let to = r.ended.as_deref().or(self.last_ts.as_deref());
        r.duration_ms = from.zip(to).and_then(|(a, b)| {
            let a = DateTime::parse_from_rfc3339(a).ok()?;
            let b = DateTime::parse_from_rfc3339(b).ok()?;
            u64::try_from((b - a).num_milliseconds()).ok()
        });
        r.destinations
            .items
            .sort_by(|a, b| (&a.host, &a.addr, a.port).cmp(&(&b.host, &b.addr, b.port)));
        r.secret_egress
            .sent_after
            .items
            .sort_by(|a, b| (&a.host, &a.addr, a.port).cmp(&(&b.host, &b.addr, b.port)));
        for files in [&mut r.read, &mut r.written] {
            for list in [
                &mut files.secrets,
                &mut files.workspace,
                &mut files.outside,
                &mut files.system,
            ] {
                list.items.sort_by(|a, b| a.path.cmp(&b.path));
            }
        }
        self.packages.finish(&mut r);
        self.calls.finish(&mut r);
        r
    }

    /// Reads the versions of the session's packages that their manifests' paths
    /// did not give (npm's), from the manifests: once the session has ended, and
    /// once per package.
    pub fn read_package_versions(&mut self) {
        packages::Packages::read_versions(&mut self.report);
    }
}

/// Writes `<dir>/<session>.json`, `<dir>/<session>.sarif` (its violations, SARIF
/// 2.1.0), `<dir>/<session>.html` (the page) and `<dir>/<session>.md` (each whole:
/// written aside, then renamed),
/// creating `dir` (mode 0750) when absent; returns the Markdown file's path.
pub fn write_files(dir: &std::path::Path, r: &Report) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(r)?;
    let sarif = serde_json::to_string_pretty(&sarif::render(r))?;
    let page = html::render(r);
    let md = markdown(r);
    let mut written = dir.join(&r.session);
    for (ext, text) in [
        ("json", json.as_str()),
        ("sarif", sarif.as_str()),
        ("html", page.as_str()),
        ("md", md.as_str()),
    ] {
        let path = dir.join(format!("{}.{ext}", r.session));
        let aside = dir.join(format!(".{}.{ext}.tmp", r.session));
        std::fs::write(&aside, text)
            .with_context(|| format!("cannot write {}", aside.display()))?;
        std::fs::rename(&aside, &path)
            .with_context(|| format!("cannot rename {} to {}", aside.display(), path.display()))?;
        written = path;
    }
    Ok(written)
}

/// The entry of `key` in `list`, added with `make` when new; `None` (and counted)
/// when the list is full. The key is copied only when it is new.
fn slot<'l, K, Q, T>(
    index: &mut HashMap<K, usize>,
    list: &'l mut Bounded<T>,
    key: &Q,
    make: impl FnOnce() -> T,
) -> Option<&'l mut T>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
{
    let at = match index.get(key) {
        Some(&at) => at,
        None if list.items.len() >= MAX_ITEMS => {
            list.omitted += 1;
            return None;
        }
        None => {
            list.items.push(make());
            index.insert(key.to_owned(), list.items.len() - 1);
            list.items.len() - 1
        }
    };
    list.items.get_mut(at)
}

/// `rule: outcome` of an event's violation.
fn verdict(ev: &EventLine) -> Option<String> {
    ev.violation
        .as_ref()
        .map(|v| format!("{}: {}", v.rule, v.outcome.as_str()))
}

/// Entries of a script's or a call's lists kept (destinations, secrets, verdicts).
const ENTRY_LIST_MAX: usize = guard_common::report::CALL_LIST_MAX;

/// Adds `item` to one of an entry's lists, once, up to [`ENTRY_LIST_MAX`].
fn push_once(list: &mut Vec<String>, item: &str) {
    if list.len() < ENTRY_LIST_MAX && !list.iter().any(|i| i == item) {
        list.push(item.to_owned());
    }
}

/// Adds the event's verdict to `verdicts`, once.
fn note_verdict(verdicts: &mut Vec<String>, ev: &EventLine) {
    if let Some(v) = verdict(ev)
        && !verdicts.contains(&v)
    {
        verdicts.push(v);
    }
}

/// `addr:port`, with the name when the policy knows it.
fn endpoint(addr: &str, port: u16, host: Option<&str>) -> String {
    let at = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    match host {
        Some(h) => format!("{h} ({at})"),
        None => at,
    }
}

#[cfg(test)]
mod tests;
