//! An event as it is written and read ([`EventLine`], guard_common::line): built
//! once per event from the typed event, then serialised by serde for the audit log,
//! the subscribers and the export, and read directly by the session reports.

use std::collections::BTreeMap;

use guard_common::line::{
    Address, By, EventDetail, EventLine, Family, Known, LinksLine, SCHEMA, SockType, TamperArg,
    TamperDone, TaskLine, ViolationLine,
};

use super::{Detail, Event, TamperOp, Task, access, json};

impl super::Written for Event {
    /// The event as [`EventLine`]: every field the audit log has.
    fn to_line(&self) -> EventLine {
        let task = (!self.detail.of_daemon()).then(|| task_line(&self.task));
        EventLine {
            schema: SCHEMA,
            ts: json::rfc3339(self.ts_ns),
            session: self.session.map(|s| s.to_string()),
            task,
            detail: detail_line(self),
            host: self.host.clone(),
            host_source: self
                .host
                .as_ref()
                .and(self.host_from)
                .map(|h| h.source().into()),
            tainted: self.is_tainted(),
            tainted_by: self.tainted_by.iter().map(|p| p.to_string()).collect(),
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

    fn to_json(&self) -> String {
        json::to_string(self)
    }
}

/// The listener outside every session, as events carry it.
fn listener_line(ev: &Event) -> Option<guard_common::line::ListenerLine> {
    ev.listener
        .as_ref()
        .map(|l| guard_common::line::ListenerLine {
            pid: l.pid,
            program: l.program.clone(),
            exe: l.exe.clone(),
            uid: l.uid,
            user: l.user.clone(),
            spawner: l.spawner.clone(),
        })
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of event, mapped field by field to the protocol's line"
)]
fn detail_line(ev: &Event) -> EventDetail {
    match &ev.detail {
        Detail::Exec {
            exe,
            exe_truncated,
            argv,
            argv_truncated,
            root,
            by_cgroup: _,
            by_identity,
            fileless: _,
            from_proc,
        } => {
            let via = super::via::target(exe, argv);
            EventDetail::Exec {
                exe: exe.clone(),
                exe_truncated: *exe_truncated,
                argv: argv.clone(),
                argv_truncated: *argv_truncated,
                redacted: ev.redacted,
                root: *root,
                agent: ev.agent.as_deref().map(str::to_owned),
                agent_version: ev.agent_version.as_deref().map(str::to_owned),
                by: by_identity.then_some(By::Identity.into()),
                held: ev.held,
                from_proc: *from_proc,
                digest: ev.digest_text(),
                download: ev
                    .download
                    .as_ref()
                    .map(|d| guard_common::line::DownloadLine {
                        path: d.path.clone(),
                        by_pid: d.by_pid,
                    }),
                confinement: ev.confinement_line(),
                via: via.as_ref().map(|t| t.via.into()),
                target: via.map(|t| t.target),
            }
        }
        Detail::Open {
            path,
            resolved,
            truncated,
            flags,
            call,
            ret,
            repeats,
            dir,
        } => {
            let r = json::Returned::of(*ret, true);
            let hit = ev.identity.as_ref().and_then(|id| {
                let hit = id.matched.as_ref()?;
                Some(id.protected.clone().unwrap_or_else(|| {
                    format!("inode {}:{}", crate::identity::dev_text(hit.dev), hit.ino)
                }))
            });
            EventDetail::Open {
                path: path.clone(),
                path_resolved: *resolved,
                path_truncated: *truncated,
                access: known(access::of(*flags)),
                flags: *flags,
                call: (*call).into(),
                result: r.result,
                fd: r.ok,
                errno: r.errno,
                ret: r.ret,
                by: hit.as_ref().map(|_| By::Identity.into()),
                protected: hit,
                identity_unknown: ev.identity.as_ref().is_some_and(|id| id.unknown),
                repeats: (*repeats > 0).then_some(*repeats),
                directory: *dir,
            }
        }
        Detail::Connect {
            addr,
            port,
            proto,
            ret,
        } => {
            let r = json::Returned::of(*ret, false);
            EventDetail::Connect {
                to: address(*addr, *port, *proto),
                result: r.result,
                errno: r.errno,
                ret: r.ret,
                via_resolver: ev.via_resolver,
                listener: listener_line(ev),
            }
        }
        Detail::Send {
            addr,
            port,
            proto,
            ret,
        } => {
            let r = json::Returned::of(*ret, false);
            EventDetail::Send {
                to: address(*addr, *port, *proto),
                result: r.result,
                errno: r.errno,
                ret: r.ret,
                via_resolver: ev.via_resolver,
            }
        }
        Detail::Flow(f) => EventDetail::Flow {
            to: address(f.addr, f.port, f.proto),
            bytes_out: f.bytes_out,
            bytes_in: f.bytes_in,
            packets_out: f.packets_out,
            packets_in: f.packets_in,
            reason: f.reason.into(),
            flow_id: f.id(),
            started: json::rfc3339(f.start_ns),
            dest_class: ev.dest_class(f.addr).into(),
            accepted: f.accepted,
        },
        Detail::Dns(d) => EventDetail::Dns {
            direction: d.direction.into(),
            server: d.server.to_string(),
            port: d.port,
            proto: d.proto.into(),
            name: d.name.clone(),
            qtype: d.qtype.clone(),
            rcode: d.rcode.clone(),
            answers: (d.direction == super::dns::Direction::Answer).then(|| d.answers.clone()),
            len: d.len,
            cut: d.cut,
            error: d.error.clone(),
            dest_class: ev.dest_class(d.server).into(),
            via_resolver: ev.via_resolver,
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
            reason: (*reason).into(),
            dropped: *dropped,
            dropped_total: *total,
            child_pid: *child_pid,
        },
        Detail::Unix {
            path,
            resolved,
            truncated,
            call,
            sock_type,
            ret,
        } => {
            let r = json::Returned::of(*ret, false);
            EventDetail::Unix {
                path: path.clone(),
                path_resolved: *resolved,
                path_truncated: *truncated,
                call: (*call).into(),
                socket: SockType::from_u16(*sock_type).into(),
                result: r.result,
                errno: r.errno,
                ret: r.ret,
                listener: listener_line(ev),
            }
        }
        Detail::Route {
            route,
            path,
            truncated,
            family,
            sock_type,
            bound,
            ret,
        } => EventDetail::Route {
            route: *route,
            path: path.clone(),
            truncated: path.as_ref().map(|_| *truncated),
            family: (*family != 0).then_some(*family),
            sock_type: (*family != 0).then_some(*sock_type),
            addr: bound.map(|(a, _)| a.to_string()),
            port: bound.map(|(_, p)| p),
            result: json::route_result(*ret, ev.enforced),
            errno: json::errno_of(*ret),
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
            agent,
            agent_user,
        } => EventDetail::SessionEnd {
            root_pid: *root_pid,
            stragglers: stragglers.clone(),
            killed: killed.clone(),
            agent: agent.clone(),
            agent_user: agent_user.clone(),
        },
        Detail::ToolCall {
            phase,
            tool,
            command,
            rollout,
        } => EventDetail::ToolCall {
            phase: *phase,
            tool: tool.clone(),
            command: command.clone(),
            redacted: ev.redacted,
            rollout: *rollout,
        },
        Detail::PolicyLoaded {
            name,
            mode,
            rules,
            kernel_entries,
            identity,
            user_space_rules,
            warnings,
            enforcement,
            fallbacks,
        } => EventDetail::PolicyLoaded {
            policy: name.clone(),
            mode: *mode,
            rules: *rules,
            kernel_entries: *kernel_entries,
            identity_entries: identity.entries,
            identity_missing: identity.missing,
            identity_fail_closed: identity.fail_closed,
            identity_over: identity.over.clone(),
            user_space_rules: user_space_rules.clone(),
            warnings: warnings.clone(),
            enforcement: enforcement.clone(),
            fallbacks: fallbacks.clone(),
        },
        Detail::PolicyRejected { name, errors } => EventDetail::PolicyRejected {
            policy: name.clone(),
            errors: errors.clone(),
        },
        Detail::Lost { by_kind, total } => EventDetail::Lost {
            by_kind: counts(by_kind),
            total: *total,
        },
        Detail::Tamper(t) => EventDetail::Tamper {
            op: t.op.into(),
            syscall: t.syscall.clone(),
            target_pid: t.target,
            arg: tamper_arg(t.op, t.arg),
            path: t.path.clone(),
            access: t.path.as_ref().map(|_| known(access::of(t.arg))),
            done: TamperDone::from_enforced(ev.enforced).into(),
        },
        Detail::Resumed(r) => EventDetail::DaemonResumed {
            previous_pid: r.previous_pid,
            clean_stop: r.clean_stop,
            gap_ms: r.gap_ms,
            lost_by_kind: counts(&r.lost_by_kind),
            lost_total: r.lost_total,
            untracked_children: r.untracked_children,
            sessions: r.sessions.iter().map(ToString::to_string).collect(),
            links: LinksLine {
                updated: r.links_updated,
                replaced: r.links_replaced,
                new: r.links_new,
            },
        },
    }
}

fn task_line(t: &Task) -> TaskLine {
    let meta = t.meta.as_deref();
    let of_meta = |f: fn(&crate::container::runtime::ContainerMeta) -> &Option<String>| {
        meta.and_then(|m| f(m).clone())
    };
    TaskLine {
        pid: t.pid,
        ppid: t.ppid,
        tid: t.tid,
        comm: t.comm.clone(),
        thread: t.thread.clone(),
        role: guard_common::role::name(t.role).to_owned(),
        agent_thread: t.agent_thread.as_deref().map(str::to_owned),
        package: t.package.as_deref().map(str::to_owned),
        tool_call: t.call.as_deref().map(str::to_owned),
        uid: t.uid,
        user: t.user.as_deref().map(str::to_owned),
        cgroup_id: t.cgroup_id,
        container: t.container.as_deref().map(str::to_owned),
        pod: t.pod.as_deref().map(str::to_owned),
        container_name: of_meta(|m| &m.name),
        image: of_meta(|m| &m.image),
        pod_name: of_meta(|m| &m.pod),
        namespace: of_meta(|m| &m.namespace),
    }
}

fn address(addr: std::net::IpAddr, port: u16, proto: super::Proto) -> Address {
    Address {
        addr: addr.to_string(),
        port,
        proto: proto.into(),
        family: if addr.is_ipv4() {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
        .into(),
    }
}

fn known<T>(list: Vec<T>) -> Vec<Known<T>> {
    list.into_iter().map(Known::Is).collect()
}

fn counts(by_kind: &[(String, u64)]) -> BTreeMap<String, u64> {
    by_kind.iter().map(|(k, n)| (k.clone(), *n)).collect()
}

/// The op's argument under the op's own name.
fn tamper_arg(op: TamperOp, arg: u64) -> TamperArg {
    let mut a = TamperArg::default();
    let slot = match op {
        TamperOp::Signal => &mut a.signal,
        TamperOp::Ptrace => &mut a.request,
        TamperOp::PtraceAccess => &mut a.ptrace_mode,
        TamperOp::PidfdGetfd => &mut a.target_fd,
        TamperOp::ProcOpen | TamperOp::PinOpen => &mut a.flags,
        TamperOp::Bpf => &mut a.bpf_cmd,
        TamperOp::SetOwner => &mut a.fcntl_cmd,
        _ => return a,
    };
    *slot = Some(arg);
    a
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use guard_common::{EventKind, line::EventLine};

    use crate::event::{Written as _, decode};

    /// Every kind of record the kernel sends goes through the decoder into the audit
    /// log's JSON, reads back through the protocol's [`EventLine`] as the same event,
    /// and writes out again as the same text: nothing of it is lost or renamed
    /// between the kernel, the log and the clients.
    #[test]
    fn every_kernel_record_kind_round_trips_through_the_log_and_the_protocol() {
        let mut kinds = BTreeSet::new();
        for (name, bytes) in decode::tests::seed_records() {
            let record = decode::decode(&bytes).expect(name);
            kinds.insert(record.header.kind);
            let ev = crate::event::from_record(record, 1_763_700_000_000_000_000);
            let json = ev.to_json();
            let line: EventLine = serde_json::from_str(&json).expect(&json);
            assert_eq!(line, ev.to_line(), "{name}: {json}");
            assert_eq!(line.detail.kind(), ev.detail.kind(), "{name}: {json}");
            assert_eq!(
                serde_json::to_string(&line).expect("serialise"),
                json,
                "{name}"
            );
            assert_eq!(line.pid(), Some(100), "{name}: the record's process");
        }
        for kind in EventKind::ALL {
            assert!(
                kinds.contains(&(kind as u16)),
                "no record of kind {kind:?} in decode's seed records"
            );
        }
    }
}
