//! What an event says happened, in one line for people: `guard top`'s feed,
//! `guard logs`, alerts and reports.

extern crate alloc;

use alloc::{
    borrow::ToOwned as _,
    format,
    string::{String, ToString as _},
    vec::Vec,
};

use super::{EventDetail, EventLine, human_bytes};

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
            } => format!("{path} ({}) again {n} times", access.join(",")),
            EventDetail::Open {
                path,
                access,
                result,
                ..
            } => format!("{path} ({}) {result}", access.join(",")),
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
                let reason = if reason.is_empty() {
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
                if direction == "answer" {
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
