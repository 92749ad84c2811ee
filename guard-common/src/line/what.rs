//! What an event says happened, in one line for people: `guard top`'s feed,
//! `guard logs`, alerts and reports.

extern crate alloc;

use alloc::{
    borrow::ToOwned as _,
    format,
    string::{String, ToString as _},
    vec::Vec,
};

use super::{DnsDirection, EventDetail, EventLine, human_bytes, values};

impl EventLine {
    /// [`Self::what`], with an exec's program as the kernel resolved it before its
    /// command line (whose `argv[0]` is whatever the caller said):
    /// `/usr/bin/git [git push]`. For the audit trail's readers: `guard logs` and
    /// the fleet's dashboard and alerts.
    pub fn what_resolved(&self) -> String {
        match &self.detail {
            EventDetail::Exec { exe, argv, .. } if !argv.is_empty() => {
                format!("{exe} [{}]", argv.join(" "))
            }
            _ => self.what(),
        }
    }

    /// What the process tried, for the agent told that guard stopped it (`guard
    /// hook`): the call and its object, names only, no result (the stop says what
    /// came of it): `exec git push --force`, `open /home/u/.ssh/id_rsa`,
    /// `connect 169.254.169.254:80`.
    pub fn attempt(&self) -> String {
        let host = || {
            self.host
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        };
        match &self.detail {
            EventDetail::Exec { exe, argv, .. } => {
                let line = argv.join(" ");
                format!("exec {}", if line.is_empty() { exe } else { &line })
            }
            EventDetail::Open { path, .. } => format!("open {path}"),
            EventDetail::Connect { to, .. } | EventDetail::Send { to, .. } => {
                format!("{} {}:{}{}", self.detail.kind(), to.addr, to.port, host())
            }
            EventDetail::Unix { path, .. } => format!("connect to the Unix socket {path}"),
            EventDetail::Route { route, path, .. } => match path {
                Some(p) => format!("{} {p}", route.as_str()),
                None => route.as_str().to_owned(),
            },
            other => other.kind().to_owned(),
        }
    }

    /// What an event says happened, for people (without who and when).
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per event kind: every kind's one-line wording for people, in one place"
    )]
    pub fn what(&self) -> String {
        let ev = self;
        match &ev.detail {
            EventDetail::Exec { exe, argv, .. } => {
                if argv.is_empty() {
                    exe.clone()
                } else {
                    argv.join(" ")
                }
            }
            EventDetail::Open {
                path,
                access,
                repeats: Some(n),
                ..
            } => format!("{path} ({}) again {n} times", values::join(access, ",")),
            EventDetail::Open {
                path,
                access,
                result,
                ..
            } => format!("{path} ({}) {result}", values::join(access, ",")),
            EventDetail::Connect { to, result, .. } | EventDetail::Send { to, result, .. } => {
                let host = ev
                    .host
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!("{} {}:{}{host} {result}", to.proto, to.addr, to.port)
            }
            EventDetail::Flow {
                to,
                bytes_out,
                bytes_in,
                reason,
                ..
            } => {
                let host = ev
                    .host
                    .as_deref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                let reason = if reason.as_str().is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                format!(
                    "{} {}:{}{host} out {} in {}{reason}",
                    to.proto,
                    to.addr,
                    to.port,
                    human_bytes(*bytes_out),
                    human_bytes(*bytes_in)
                )
            }
            EventDetail::Dns {
                direction,
                server,
                name,
                qtype,
                rcode,
                answers,
                ..
            } => {
                let q = format!(
                    "{} {}",
                    qtype.as_deref().unwrap_or("?"),
                    name.as_deref().unwrap_or("?")
                );
                if *direction == DnsDirection::Answer {
                    let data: Vec<&str> =
                        answers.iter().flatten().map(|a| a.data.as_str()).collect();
                    format!(
                        "dns {q} → {} ({}) from {server}",
                        if data.is_empty() {
                            "-".to_owned()
                        } else {
                            data.join(" ")
                        },
                        rcode.as_deref().unwrap_or("?")
                    )
                } else {
                    format!("dns query {q} to {server}")
                }
            }
            EventDetail::Fork { child_pid } => format!("child {child_pid}"),
            EventDetail::Unix {
                path, call, result, ..
            } => format!("{call} unix {path} {result}"),
            EventDetail::Route {
                route,
                path,
                result,
                ..
            } => match path {
                Some(path) => format!("{} {path} {result}", route.as_str()),
                None => format!("{} {result}", route.as_str()),
            },
            EventDetail::Exit {
                exit_code, signal, ..
            } => match signal {
                Some(sig) => format!("killed by signal {sig}"),
                None => format!("code {}", exit_code.unwrap_or(0)),
            },
            EventDetail::SessionStart {
                agent, how, cwd, ..
            } => format!(
                "{agent} started ({}) in {}",
                how.as_str(),
                cwd.as_deref().unwrap_or("?")
            ),
            EventDetail::SessionEnd {
                stragglers, killed, ..
            } => {
                let mut what = "ended".to_owned();
                for (label, list) in [("stragglers", stragglers), ("killed", killed)] {
                    if !list.is_empty() {
                        let pids: Vec<String> = list.iter().map(u32::to_string).collect();
                        what.push_str(&format!("; {label} {}", pids.join(" ")));
                    }
                }
                what
            }
            EventDetail::PolicyLoaded {
                policy,
                mode,
                rules,
                warnings,
                ..
            } => format!(
                "policy {policy} loaded ({}, {rules} rules, {} warnings)",
                mode.as_str(),
                warnings.lines().filter(|l| l.contains("warning")).count()
            ),
            EventDetail::PolicyRejected { policy, errors } => {
                format!(
                    "policy {policy} rejected: {}",
                    errors.lines().next().unwrap_or("")
                )
            }
            EventDetail::Tamper {
                op,
                syscall,
                target_pid,
                path,
                done,
                ..
            } => {
                let call = syscall
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                let on = match (path, target_pid) {
                    (Some(path), _) => format!(" {path}"),
                    (None, Some(pid)) => format!(" of guard pid {pid}"),
                    (None, None) => String::new(),
                };
                format!("TAMPER {op}{call}{on}: {done}")
            }
            EventDetail::ToolCall {
                phase,
                tool,
                command,
                ..
            } => {
                let what = command.as_deref().unwrap_or(tool);
                format!("{tool} call {}: {what}", phase.as_str())
            }
            EventDetail::Lost { by_kind, total } => {
                let parts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
                format!("LOST {total}: {}", parts.join(", "))
            }
            EventDetail::DaemonResumed {
                previous_pid,
                clean_stop,
                gap_ms,
                lost_total,
                sessions,
                ..
            } => format!(
                "took over from guard {previous_pid} ({}) after {gap_ms} ms: {lost_total} records \
                 lost meanwhile, {} sessions adopted",
                if *clean_stop { "stopped" } else { "died" },
                sessions.len()
            ),
            EventDetail::Limit {
                reason,
                dropped,
                dropped_total,
                child_pid,
            } => match child_pid {
                Some(child) => format!(
                    "child {child} could not be tracked ({reason}); {dropped} records dropped \
                     ({dropped_total} in all)"
                ),
                None => format!(
                    "{dropped} records dropped over the session's limits ({reason}; \
                     {dropped_total} in all)"
                ),
            },
            EventDetail::Missed { count } => {
                format!("this client missed {count} events (it read too slowly)")
            }
            EventDetail::Other => "(an event kind this guard does not know)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::line::{Address, CallResult, Proto, TaskLine};

    fn line(detail: EventDetail, host: Option<&str>) -> EventLine {
        EventLine {
            task: Some(TaskLine::default()),
            detail,
            host: host.map(str::to_owned),
            ..EventLine::default()
        }
    }

    /// The agent reads what was tried, without the call's result (an open the kernel
    /// let through before the kill says `ok`, which is not what the agent should
    /// read); the audit trail reads it with the result.
    #[test]
    fn an_attempt_names_the_call_and_its_object_without_the_result() {
        let exec = line(
            EventDetail::Exec {
                exe: "/usr/bin/git".into(),
                exe_truncated: false,
                argv: vec!["git".into(), "push".into(), "--force".into()],
                argv_truncated: false,
                redacted: false,
                root: false,
                agent: None,
                agent_version: None,
                by: None,
                held: false,
                from_proc: false,
                digest: None,
                download: None,
                confinement: None,
                via: None,
                target: None,
            },
            None,
        );
        assert_eq!(exec.attempt(), "exec git push --force");
        assert_eq!(exec.what_resolved(), "/usr/bin/git [git push --force]");
        let connect = line(
            EventDetail::Connect {
                to: Address {
                    addr: "169.254.169.254".into(),
                    port: 80,
                    proto: Proto::Tcp.into(),
                    ..Address::default()
                },
                result: CallResult::Ok,
                errno: None,
                ret: None,
                via_resolver: false,
                listener: None,
            },
            Some("metadata.internal"),
        );
        assert_eq!(
            connect.attempt(),
            "connect 169.254.169.254:80 (metadata.internal)"
        );
        assert_eq!(
            connect.what(),
            "tcp 169.254.169.254:80 (metadata.internal) ok"
        );
        let unix = line(
            EventDetail::Unix {
                path: "/run/docker.sock".into(),
                path_resolved: true,
                path_truncated: false,
                call: crate::UnixCall::Connect.into(),
                socket: crate::line::SockType::Stream.into(),
                result: CallResult::Errno("EPERM".into()),
                errno: Some(1),
                ret: None,
                listener: None,
            },
            None,
        );
        assert_eq!(
            unix.attempt(),
            "connect to the Unix socket /run/docker.sock"
        );
        assert_eq!(unix.what(), "connect unix /run/docker.sock EPERM");
    }
}
