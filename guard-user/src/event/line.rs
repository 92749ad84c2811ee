//! An event as clients read it ([`EventLine`]), built straight from the typed event
//! for the kinds the daemon's own readers use (session reports), without writing
//! and reading back JSON. A test holds it to what the JSON reads back as.

use guard_common::protocol::{EventDetail, EventLine, ViolationLine};

use super::{Detail, Event, access, json};

impl Event {
    /// The event as [`EventLine`]: every common field, the detail of `exec`, `open`,
    /// `connect`, `send`, `flow`, `fork`, `exit`, `tamper`, `session_start` and `session_end` (other
    /// kinds read as [`EventDetail::Other`]), and the violation.
    pub fn to_line(&self) -> EventLine {
        let t = &self.task;
        let detail = match &self.detail {
            Detail::Exec {
                exe, argv, root, ..
            } => EventDetail::Exec {
                exe: exe.clone(),
                argv: argv.clone(),
                redacted: self.redacted,
                root: *root,
                agent: self.agent.as_deref().map(str::to_owned),
                agent_version: self.agent_version.as_deref().map(str::to_owned),
                confinement: self.confinement_line(),
                held: self.held,
                digest: self.digest_text(),
            },
            Detail::Open {
                path, flags, ret, ..
            } => EventDetail::Open {
                path: path.clone(),
                access: access::of(*flags).into_iter().map(str::to_owned).collect(),
                result: json::result_name(*ret),
            },
            Detail::Connect {
                addr,
                port,
                proto,
                ret,
            } => EventDetail::Connect {
                addr: addr.to_string(),
                port: *port,
                proto: proto.as_str().to_owned(),
                result: json::result_name(*ret),
            },
            Detail::Send {
                addr,
                port,
                proto,
                ret,
            } => EventDetail::Send {
                addr: addr.to_string(),
                port: *port,
                proto: proto.as_str().to_owned(),
                result: json::result_name(*ret),
            },
            Detail::Flow(f) => EventDetail::Flow {
                addr: f.addr.to_string(),
                port: f.port,
                proto: f.proto.as_str().to_owned(),
                bytes_out: f.bytes_out,
                bytes_in: f.bytes_in,
                flow_id: f.id(),
                reason: f.reason.as_str().to_owned(),
                dest_class: self.dest_class(f.addr).to_owned(),
            },
            Detail::Dns(d) => EventDetail::Dns {
                direction: d.direction.as_str().to_owned(),
                server: d.server.to_string(),
                port: d.port,
                proto: d.proto.as_str().to_owned(),
                name: d.name.clone(),
                qtype: d.qtype.clone(),
                rcode: d.rcode.clone(),
                answers: d.answers.clone(),
            },
            Detail::Fork { child_pid } => EventDetail::Fork {
                child_pid: *child_pid,
            },
            Detail::Limit {
                reason,
                dropped,
                total,
                child_pid,
            } => EventDetail::Limit {
                reason: reason.as_str().to_owned(),
                dropped: *dropped,
                dropped_total: *total,
                child_pid: *child_pid,
            },
            Detail::Unix {
                path, call, ret, ..
            } => EventDetail::Unix {
                path: path.clone(),
                call: call.name().to_owned(),
                result: json::result_name(*ret),
            },
            Detail::Route {
                route, path, ret, ..
            } => EventDetail::Route {
                route: *route,
                path: path.clone(),
                result: json::route_result(*ret, self.enforced),
            },
            Detail::Exit { status, root } => {
                let (code, signal) = json::exit_parts(*status);
                EventDetail::Exit {
                    exit_code: code,
                    signal,
                    root: *root,
                }
            }
            Detail::SessionStart {
                agent,
                root_pid,
                how,
                cwd,
                repository,
            } => EventDetail::SessionStart {
                agent: agent.clone(),
                root_pid: *root_pid,
                how: *how,
                cwd: cwd.clone(),
                repository: repository.clone(),
            },
            Detail::SessionEnd {
                root_pid,
                stragglers,
                killed,
            } => EventDetail::SessionEnd {
                root_pid: *root_pid,
                stragglers: stragglers.clone(),
                killed: killed.clone(),
            },
            Detail::Tamper(t) => EventDetail::Tamper {
                op: t.op.as_str().to_owned(),
                syscall: t.syscall.clone(),
                target_pid: t.target,
                signal: (t.op == super::TamperOp::Signal).then_some(t.arg),
                path: t.path.clone(),
                done: super::tamper_done(self.enforced).to_owned(),
            },
            _ => EventDetail::Other,
        };
        EventLine {
            ts: json::rfc3339(self.ts_ns),
            session: self.session.map(|s| s.to_string()),
            pid: Some(t.pid),
            ppid: Some(t.ppid),
            comm: Some(t.comm.clone()),
            thread: t.thread.clone(),
            role: Some(guard_common::role::name(t.role).to_owned()),
            agent_thread: t.agent_thread.as_deref().map(str::to_owned),
            user: t.user.as_deref().map(str::to_owned),
            container: t.container.as_deref().map(str::to_owned),
            host: self.host.clone(),
            host_source: self.host_from.map(|h| h.as_str().to_owned()),
            tainted_by: self.tainted_by.iter().map(|p| p.to_string()).collect(),
            detail,
            violation: self.violation.as_ref().map(|v| ViolationLine {
                rule: v.rule.clone(),
                action: v.action,
                outcome: v.outcome,
                outcome_error: v.error.clone(),
                alert: v.alert,
                would: v.would,
                rules: v.rules.clone(),
                secret: v.secret,
                kill_latency_us: v.kill_latency_us,
                anomaly: v.anomaly.clone(),
            }),
        }
    }
}
