//! `guard policy test`: recorded events (audit log lines, the fleet's stored
//! events) judged again against a policy, to say which rules would fire before the
//! policy is rolled out. No I/O: the caller reads the lines.
//!
//! Each line is turned back into the event the judge saw (its process, role, taint
//! and detail), then judged as the daemon judges it with no kernel decision
//! attached: what the policy's own rules say. What the judge does not decide alone
//! is counted and named, never dropped silently: lines that are no event, kinds
//! judged elsewhere (`dns` by the resolver, anomalies by their counters, `tamper`
//! by the kernel), and counted repeats of an open (judged once, with their first).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use guard_common::line::{CallResult, EventDetail, EventLine};
use guard_common::protocol::Action;
use serde::Serialize;

use crate::event::{Detail, Event, Proto, SessionId, Task};
use crate::judge::{Judge, Kernel};
use crate::matcher::{CompileError, Hosts};
use crate::model::Policy;

/// What replaying a log against a policy found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub policy: String,
    pub mode: String,
    /// Lines read, and of them those judged (exec, open, connect, send, unix, route).
    pub lines: usize,
    pub judged: usize,
    pub sessions: usize,
    /// Per rule (the policy's and the log's): what would fire now, what fired then.
    pub rules: Vec<RuleReport>,
    /// Kinds read but not judged here, with their counts (`dns`, `tamper`, …).
    pub not_judged: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    pub rule: String,
    /// The rule's action in the policy tested (`None`: the rule is not in it).
    pub action: Option<Action>,
    /// Events the policy would report under this rule.
    pub would: usize,
    /// Events the log reports under this rule (what the recording's policy did).
    pub before: usize,
    /// The first event that would fire it, in one line.
    pub first: Option<String>,
}

impl RuleReport {
    /// `new`, `gone`, `more`, `fewer`, or `same`.
    pub fn change(&self) -> &'static str {
        match (self.before, self.would) {
            (0, n) if n > 0 => "new",
            (n, 0) if n > 0 => "gone",
            (b, w) if w > b => "more",
            (b, w) if w < b => "fewer",
            _ => "same",
        }
    }
}

/// Replays `lines` against `policy`. The homes `~` stands for are those the
/// recorded paths show (`/home/NAME`, `/root`) and the policy's own; a host the
/// recording named (`host` of a connect) is that address's name.
pub fn replay(policy: Policy, lines: &[EventLine]) -> Result<Report, CompileError> {
    let mut report = Report {
        policy: policy.name.clone(),
        mode: policy.mode.as_str().to_owned(),
        lines: lines.len(),
        ..Report::default()
    };
    let judge = Judge::new(
        policy,
        homes(lines),
        hosts(lines),
        // What the policy says, as where every enforcement tier is in force.
        Kernel {
            lsm: true,
            exec_mapping: true,
        },
    )?;
    let mut rules: BTreeMap<String, RuleReport> = judge
        .policy()
        .rules
        .iter()
        .map(|r| {
            let report = RuleReport {
                rule: r.id.clone(),
                action: Some(r.action),
                ..RuleReport::default()
            };
            (r.id.clone(), report)
        })
        .collect();
    let mut roots: HashMap<&str, u32> = HashMap::new();
    for line in lines {
        let session = line.session.as_deref();
        if let (Some(s), EventDetail::SessionStart { root_pid, .. }) = (session, &line.detail) {
            roots.insert(s, *root_pid);
        }
        if let (Some(s), EventDetail::Exec { root: true, .. }, Some(pid)) =
            (session, &line.detail, line.pid())
        {
            roots.entry(s).or_insert(pid);
        }
        if let Some(v) = &line.violation {
            rules
                .entry(v.rule.clone())
                .or_insert_with(|| RuleReport {
                    rule: v.rule.clone(),
                    ..RuleReport::default()
                })
                .before += 1;
        }
        let Some(ev) = event_of(line) else {
            *report
                .not_judged
                .entry(line.detail.kind().to_owned())
                .or_default() += 1;
            continue;
        };
        report.judged += 1;
        let is_root = session
            .and_then(|s| roots.get(s))
            .is_some_and(|root| line.pid() == Some(*root));
        if let Some(verdict) = judge.judge(&ev, is_root) {
            let r = rules
                .entry(verdict.rule.clone())
                .or_insert_with(|| RuleReport {
                    rule: verdict.rule.clone(),
                    action: Some(verdict.action),
                    ..RuleReport::default()
                });
            r.would += 1;
            r.first.get_or_insert_with(|| one_line(line));
        }
    }
    report.sessions = roots.len();
    report.rules = rules
        .into_values()
        .filter(|r| r.would > 0 || r.before > 0)
        .collect();
    Ok(report)
}

/// `2026-…Z session 0000… pid 42 cat: open /home/u/.ssh/id_rsa (read) ok`: the
/// kind, and what the event says happened as `guard events` says it.
fn one_line(line: &EventLine) -> String {
    format!(
        "{} session {} pid {} {}: {} {}",
        line.ts,
        line.session.as_deref().unwrap_or("-"),
        line.pid().unwrap_or(0),
        line.comm().unwrap_or("?"),
        line.detail.kind(),
        line.what(),
    )
}

/// The event the judge saw, from its line: the kinds the judge decides alone.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per event kind the judge decides alone, mapping the line back to its event"
)]
pub fn event_of(line: &EventLine) -> Option<Event> {
    let t = line.task.as_ref()?;
    let task = Task {
        pid: t.pid,
        tid: t.tid,
        ppid: t.ppid,
        uid: t.uid,
        comm: t.comm.clone(),
        thread: t.thread.clone(),
        role: guard_common::role::parse(&t.role).unwrap_or(guard_common::role::UNKNOWN),
        agent_thread: t.agent_thread.as_deref().map(Into::into),
        package: t.package.as_deref().map(Into::into),
        call: t.tool_call.as_deref().map(Into::into),
        cgroup_id: t.cgroup_id,
        ..Task::default()
    };
    let errno_ret = |result: &CallResult, errno: Option<i32>, ret: Option<i64>| {
        ret.unwrap_or_else(|| match (result, errno) {
            (CallResult::Ok, _) => 0,
            (CallResult::Errno(name), None) if name.is_empty() => 0,
            (_, Some(e)) => -i64::from(e),
            _ => -1,
        })
    };
    let (detail, digest, via_resolver) = match &line.detail {
        EventDetail::Exec {
            exe,
            exe_truncated,
            argv,
            argv_truncated,
            root,
            digest,
            from_proc,
            ..
        } => (
            Detail::Exec {
                exe: exe.clone(),
                exe_truncated: *exe_truncated,
                argv: argv.clone(),
                argv_truncated: *argv_truncated,
                root: *root,
                by_cgroup: false,
                by_identity: false,
                fileless: false,
                from_proc: *from_proc,
            },
            digest.clone(),
            false,
        ),
        EventDetail::Open {
            path,
            path_resolved,
            path_truncated,
            flags,
            call,
            result,
            fd,
            errno,
            ret,
            repeats,
            directory,
            ..
        } => (
            Detail::Open {
                path: path.clone(),
                resolved: *path_resolved,
                truncated: *path_truncated,
                flags: *flags,
                call: *call.get()?,
                ret: ret
                    .or(*fd)
                    .unwrap_or_else(|| errno_ret(result, *errno, None)),
                repeats: repeats.unwrap_or(0),
                dir: *directory,
            },
            None,
            false,
        ),
        EventDetail::Connect {
            to,
            result,
            errno,
            ret,
            via_resolver,
            ..
        }
        | EventDetail::Send {
            to,
            result,
            errno,
            ret,
            via_resolver,
        } => {
            let addr: IpAddr = to.addr.parse().ok()?;
            let proto = to.proto.get().copied().unwrap_or(Proto::Other(0));
            let ret = errno_ret(result, *errno, *ret);
            let detail = if matches!(line.detail, EventDetail::Connect { .. }) {
                Detail::Connect {
                    addr,
                    port: to.port,
                    proto,
                    ret,
                }
            } else {
                Detail::Send {
                    addr,
                    port: to.port,
                    proto,
                    ret,
                }
            };
            (detail, None, *via_resolver)
        }
        EventDetail::Unix {
            path,
            path_resolved,
            path_truncated,
            call,
            socket,
            result,
            errno,
            ret,
            ..
        } => (
            Detail::Unix {
                path: path.clone(),
                resolved: *path_resolved,
                truncated: *path_truncated,
                call: *call.get()?,
                sock_type: socket.get().map_or(0, |s| s.number()),
                ret: errno_ret(result, *errno, *ret),
            },
            None,
            false,
        ),
        EventDetail::Route {
            route,
            path,
            truncated,
            family,
            sock_type,
            addr,
            port,
            result,
            errno,
        } => (
            Detail::Route {
                route: *route,
                path: path.clone(),
                truncated: truncated.unwrap_or(false),
                family: family.unwrap_or(0),
                sock_type: sock_type.unwrap_or(0),
                bound: addr.as_deref().and_then(|a| a.parse().ok()).zip(*port),
                ret: errno_ret(result, *errno, None),
            },
            None,
            false,
        ),
        _ => return None,
    };
    let session = line
        .session
        .as_deref()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .map(SessionId);
    // (The judge does not read the time.)
    let mut ev = Event::derived(0, session, task, detail);
    ev.tainted = line.tainted;
    ev.tainted_by = line.tainted_by.iter().map(|s| s.as_str().into()).collect();
    ev.digest = digest.map(Into::into);
    ev.via_resolver = via_resolver;
    ev.host.clone_from(&line.host);
    Some(ev)
}

/// `~` in the recording: each `/home/NAME` and `/root` its paths show.
fn homes(lines: &[EventLine]) -> Vec<String> {
    let mut homes: Vec<String> = lines
        .iter()
        .filter_map(|l| match &l.detail {
            EventDetail::Open { path, .. } | EventDetail::Unix { path, .. } => Some(path),
            _ => None,
        })
        .filter_map(|p| {
            if p == "/root" || p.starts_with("/root/") {
                return Some("/root".to_owned());
            }
            let rest = p.strip_prefix("/home/")?;
            let name = rest.split('/').next().filter(|n| !n.is_empty())?;
            Some(format!("/home/{name}"))
        })
        .collect();
    homes.sort();
    homes.dedup();
    homes
}

/// The names the recording gave addresses (`host` of connects and sends), for the
/// rules that name hosts.
fn hosts(lines: &[EventLine]) -> Hosts {
    let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for l in lines {
        if let (Some(name), EventDetail::Connect { to, .. } | EventDetail::Send { to, .. }) =
            (&l.host, &l.detail)
            && let Ok(addr) = to.addr.parse()
        {
            let addrs = by_name.entry(name.clone()).or_default();
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Hosts {
        by_name,
        resolvers: Vec::new(),
    }
}

/// The report for people: a table of the rules that fire, then the first event of
/// each.
pub fn table(r: &Report) -> String {
    let mut out = format!(
        "policy {} ({}): {} line(s), {} judged, {} session(s)\n\n",
        r.policy, r.mode, r.lines, r.judged, r.sessions
    );
    let width = r
        .rules
        .iter()
        .map(|x| x.rule.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!(
        "{:width$}  {:7}  {:>6}  {:>6}  change\n",
        "rule", "action", "would", "before"
    ));
    for x in &r.rules {
        out.push_str(&format!(
            "{:width$}  {:7}  {:>6}  {:>6}  {}\n",
            x.rule,
            x.action.map_or("-", Action::as_str),
            x.would,
            x.before,
            x.change()
        ));
    }
    if r.rules.is_empty() {
        out.push_str("(no rule fires, and none fired in the log)\n");
    }
    let firsts: Vec<&RuleReport> = r.rules.iter().filter(|x| x.first.is_some()).collect();
    if !firsts.is_empty() {
        out.push_str("\nfirst event of each:\n");
        for x in firsts {
            out.push_str(&format!(
                "  {}: {}\n",
                x.rule,
                x.first.as_deref().unwrap_or_default()
            ));
        }
    }
    if !r.not_judged.is_empty() {
        let kinds: Vec<String> = r
            .not_judged
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        out.push_str(&format!(
            "\nnot judged here (judged elsewhere, or no event of a process): {}\n",
            kinds.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{builtin, parse};

    /// A recorded session (tests/fixtures/replay/session.jsonl): git, `cat` of an SSH
    /// key and of `.env`, curl to the cloud metadata address, a rule of the old
    /// policy, a kind of a later guard.
    fn session() -> Vec<EventLine> {
        include_str!("../tests/fixtures/replay/session.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).expect("an event line"))
            .collect()
    }

    fn policy(text: &str) -> Policy {
        parse::parse("test", text).expect("valid").0
    }

    fn row<'r>(r: &'r Report, rule: &str) -> &'r RuleReport {
        r.rules
            .iter()
            .find(|x| x.rule == rule)
            .unwrap_or_else(|| panic!("no row for {rule}: {r:#?}"))
    }

    #[test]
    fn the_workstation_policy_on_a_recorded_session_says_what_fires_and_what_changed() {
        let r = replay(
            policy(builtin::get("workstation").expect("built-in")),
            &session(),
        )
        .expect("compiles");
        assert_eq!((r.lines, r.judged, r.sessions), (15, 10, 1), "{r:#?}");
        let key = row(&r, "credentials-read");
        assert_eq!((key.would, key.before, key.change()), (1, 1, "same"));
        assert_eq!(key.action, Some(Action::Kill));
        assert!(
            key.first
                .as_deref()
                .is_some_and(|f| f.ends_with("pid 102 cat: open /home/dev/.ssh/id_rsa (read) ok")),
            "{key:?}"
        );
        let env = row(&r, "dotenv-read");
        assert_eq!((env.would, env.before, env.change()), (1, 0, "new"));
        let imds = row(&r, "cloud-metadata");
        assert_eq!((imds.would, imds.before), (1, 1));
        let old = row(&r, "notes-read");
        assert_eq!(
            (old.would, old.before, old.change(), old.action),
            (0, 1, "gone", None)
        );
        // git's own reads, the agent's exec: nothing.
        assert_eq!(r.rules.len(), 4, "{r:#?}");
        assert_eq!(
            r.not_judged,
            BTreeMap::from([
                ("exit".to_owned(), 1),
                ("fork".to_owned(), 1),
                ("other".to_owned(), 1),
                ("session_end".to_owned(), 1),
                ("session_start".to_owned(), 1),
            ])
        );
        let text = table(&r);
        assert!(text.contains("dotenv-read"), "{text}");
        assert!(text.contains("not judged here"), "{text}");
    }

    #[test]
    fn a_narrower_policy_shows_what_it_would_no_longer_stop() {
        let narrow = policy(
            "mode = \"observe\"\n[[rule]]\nid = \"curl-anywhere\"\n\
             kind = \"exec\"\nexe = [\"curl\"]\naction = \"alert\"\n",
        );
        let r = replay(narrow, &session()).expect("compiles");
        assert_eq!(r.mode, "observe");
        let curl = row(&r, "curl-anywhere");
        assert_eq!((curl.would, curl.before, curl.change()), (1, 0, "new"));
        for gone in ["credentials-read", "cloud-metadata", "notes-read"] {
            assert_eq!(row(&r, gone).change(), "gone", "{gone}");
        }
    }
}
