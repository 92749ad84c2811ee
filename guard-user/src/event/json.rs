//! The JSON form of an event (schema in docs/events.md). Written by hand over
//! serde's map serializer so the field order is stable and nothing is allocated
//! per field.

use chrono::{DateTime, SecondsFormat};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::{Detail, Event, SCHEMA, access, errno_name};

pub fn to_string(ev: &Event) -> String {
    // Serialising maps of plain values into a String cannot fail.
    serde_json::to_string(ev).unwrap_or_default()
}

pub fn rfc3339(ts_ns: i128) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000) as i64;
    let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
    DateTime::from_timestamp(secs, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

/// The `result` of a system call's return value: `ok`, the errno's name, or
/// `invalid` for a value no system call returns.
pub fn result_name(ret: i64) -> String {
    if ret >= 0 {
        "ok".to_owned()
    } else if let Some(errno) = errno_of(ret) {
        errno_name(errno)
    } else {
        "invalid".to_owned()
    }
}

/// The `result` of a route record: the errno's name when the call was refused,
/// `killed` when the process was killed before the call returned.
pub fn route_result(ret: i64, enforced: u16) -> String {
    if ret < 0 {
        result_name(ret)
    } else if enforced & guard_common::rules::enforced::KILLED != 0 {
        "killed".to_owned()
    } else {
        "ok".to_owned()
    }
}

/// A socket type's name: `stream`, `dgram`, `seqpacket`, or `unknown`.
pub fn sock_type_name(sock_type: u16) -> &'static str {
    match sock_type {
        1 => "stream",
        2 => "dgram",
        5 => "seqpacket",
        _ => "unknown",
    }
}

/// An exit status as (`exit_code`, `signal`): one of them.
pub fn exit_parts(status: u32) -> (Option<u32>, Option<u32>) {
    let (code, signal) = (status >> 8 & 0xff, status & 0x7f);
    if signal == 0 {
        (Some(code), None)
    } else {
        (None, Some(signal))
    }
}

fn result<M: SerializeMap>(m: &mut M, ret: i64, ok_key: Option<&str>) -> Result<(), M::Error> {
    m.serialize_entry("result", &result_name(ret))?;
    if ret >= 0 {
        if let Some(key) = ok_key {
            m.serialize_entry(key, &ret)?;
        }
    } else if let Some(errno) = errno_of(ret) {
        m.serialize_entry("errno", &errno)?;
    } else {
        // Not a value a system call returns: keep the raw value.
        m.serialize_entry("ret", &ret)?;
    }
    Ok(())
}

/// The errno of a failed system call's return value; `None` outside the kernel's
/// error range (`-MAX_ERRNO..=-1`), which only a damaged record carries.
fn errno_of(ret: i64) -> Option<i32> {
    const MAX_ERRNO: i64 = 4095;
    (-MAX_ERRNO..=-1)
        .contains(&ret)
        .then(|| i32::try_from(-ret).ok())
        .flatten()
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", &SCHEMA)?;
        m.serialize_entry("ts", &rfc3339(self.ts_ns))?;
        m.serialize_entry("kind", self.detail.kind())?;
        if let Some(session) = self.session {
            m.serialize_entry("session", &session.to_string())?;
        }
        // Events about the daemon itself (policy, lost counts) have no process.
        let has_task = !matches!(
            self.detail,
            Detail::Lost { .. }
                | Detail::PolicyLoaded { .. }
                | Detail::PolicyRejected { .. }
                | Detail::Resumed(_)
        );
        if has_task {
            let t = &self.task;
            m.serialize_entry("pid", &t.pid)?;
            m.serialize_entry("ppid", &t.ppid)?;
            m.serialize_entry("tid", &t.tid)?;
            m.serialize_entry("comm", &t.comm)?;
            if let Some(thread) = &t.thread {
                m.serialize_entry("thread", thread)?;
            }
            m.serialize_entry("role", guard_common::role::name(t.role))?;
            if let Some(agent_thread) = &t.agent_thread {
                m.serialize_entry("agent_thread", agent_thread.as_ref())?;
            }
            m.serialize_entry("uid", &t.uid)?;
            m.serialize_entry("user", &t.user.as_deref())?;
            m.serialize_entry("cgroup_id", &t.cgroup_id)?;
            m.serialize_entry("container", &t.container.as_deref())?;
            if let Some(pod) = &t.pod {
                m.serialize_entry("pod", pod.as_ref())?;
            }
            if let Some(meta) = &t.meta {
                for (key, value) in [
                    ("container_name", &meta.name),
                    ("image", &meta.image),
                    ("pod_name", &meta.pod),
                    ("namespace", &meta.namespace),
                ] {
                    if let Some(value) = value {
                        m.serialize_entry(key, value)?;
                    }
                }
            }
        }
        match &self.detail {
            Detail::Exec {
                exe,
                exe_truncated,
                argv,
                argv_truncated,
                root,
                by_cgroup: _,
                by_identity,
                fileless: _,
            } => {
                m.serialize_entry("exe", exe)?;
                m.serialize_entry("exe_truncated", exe_truncated)?;
                m.serialize_entry("argv", argv)?;
                m.serialize_entry("argv_truncated", argv_truncated)?;
                if self.redacted {
                    m.serialize_entry("redacted", &true)?;
                }
                m.serialize_entry("root", root)?;
                if let Some(agent) = &self.agent {
                    m.serialize_entry("agent", agent.as_ref())?;
                }
                if let Some(version) = &self.agent_version {
                    m.serialize_entry("agent_version", version.as_ref())?;
                }
                if *by_identity {
                    m.serialize_entry("by", "identity")?;
                }
                if self.held {
                    m.serialize_entry("held", &true)?;
                }
                if let Some(d) = self.digest_text() {
                    m.serialize_entry("digest", &d)?;
                }
                if let Some(c) = self.confinement_line() {
                    m.serialize_entry("confinement", &c)?;
                }
                if let Some(t) = super::via::target(exe, argv) {
                    m.serialize_entry("via", t.via.as_str())?;
                    m.serialize_entry("target", &t.target)?;
                }
            }
            Detail::Open {
                path,
                resolved,
                truncated,
                flags,
                call,
                ret,
            } => {
                m.serialize_entry("path", path)?;
                m.serialize_entry("path_resolved", resolved)?;
                m.serialize_entry("path_truncated", truncated)?;
                m.serialize_entry("access", &access::of(*flags))?;
                m.serialize_entry("flags", flags)?;
                m.serialize_entry("call", call.name())?;
                result(&mut m, *ret, Some("fd"))?;
                if let Some(id) = &self.identity {
                    if let Some(hit) = &id.matched {
                        m.serialize_entry("by", "identity")?;
                        m.serialize_entry(
                            "protected",
                            &id.protected.clone().unwrap_or_else(|| {
                                format!("inode {}:{}", crate::identity::dev_text(hit.dev), hit.ino)
                            }),
                        )?;
                    }
                    if id.unknown {
                        m.serialize_entry("identity_unknown", &true)?;
                    }
                }
            }
            Detail::Connect {
                addr,
                port,
                proto,
                ret,
            }
            | Detail::Send {
                addr,
                port,
                proto,
                ret,
            } => {
                m.serialize_entry("addr", &addr.to_string())?;
                m.serialize_entry("port", port)?;
                m.serialize_entry("proto", proto.as_str())?;
                m.serialize_entry("family", if addr.is_ipv4() { "ipv4" } else { "ipv6" })?;
                result(&mut m, *ret, None)?;
            }
            Detail::Flow(f) => {
                m.serialize_entry("addr", &f.addr.to_string())?;
                m.serialize_entry("port", &f.port)?;
                m.serialize_entry("proto", f.proto.as_str())?;
                m.serialize_entry("family", if f.addr.is_ipv4() { "ipv4" } else { "ipv6" })?;
                m.serialize_entry("bytes_out", &f.bytes_out)?;
                m.serialize_entry("bytes_in", &f.bytes_in)?;
                m.serialize_entry("packets_out", &f.packets_out)?;
                m.serialize_entry("packets_in", &f.packets_in)?;
                m.serialize_entry("reason", f.reason.as_str())?;
                m.serialize_entry("flow_id", &f.id())?;
                m.serialize_entry("started", &rfc3339(f.start_ns))?;
                m.serialize_entry("dest_class", self.dest_class(f.addr))?;
            }
            Detail::Dns(d) => {
                m.serialize_entry("direction", d.direction.as_str())?;
                m.serialize_entry("server", &d.server.to_string())?;
                m.serialize_entry("port", &d.port)?;
                m.serialize_entry("proto", d.proto.as_str())?;
                if let Some(name) = &d.name {
                    m.serialize_entry("name", name)?;
                }
                if let Some(qtype) = &d.qtype {
                    m.serialize_entry("qtype", qtype)?;
                }
                if let Some(rcode) = &d.rcode {
                    m.serialize_entry("rcode", rcode)?;
                }
                if d.direction == super::dns::Direction::Answer {
                    m.serialize_entry("answers", &d.answers)?;
                }
                m.serialize_entry("len", &d.len)?;
                if d.cut {
                    m.serialize_entry("cut", &true)?;
                }
                if let Some(e) = &d.error {
                    m.serialize_entry("error", e)?;
                }
                m.serialize_entry("dest_class", self.dest_class(d.server))?;
            }
            Detail::Fork { child_pid } => m.serialize_entry("child_pid", child_pid)?,
            Detail::Route {
                route,
                path,
                truncated,
                family,
                sock_type,
                ret,
            } => {
                m.serialize_entry("route", route.as_str())?;
                if let Some(path) = path {
                    m.serialize_entry("path", path)?;
                    m.serialize_entry("truncated", truncated)?;
                }
                if *family != 0 {
                    m.serialize_entry("family", family)?;
                    m.serialize_entry("sock_type", sock_type)?;
                }
                m.serialize_entry("result", &route_result(*ret, self.enforced))?;
                if let Some(errno) = errno_of(*ret) {
                    m.serialize_entry("errno", &errno)?;
                }
            }
            Detail::Unix {
                path,
                resolved,
                truncated,
                call,
                sock_type,
                ret,
            } => {
                m.serialize_entry("path", path)?;
                m.serialize_entry("path_resolved", resolved)?;
                m.serialize_entry("path_truncated", truncated)?;
                m.serialize_entry("call", call.name())?;
                m.serialize_entry("socket", sock_type_name(*sock_type))?;
                result(&mut m, *ret, None)?;
            }
            Detail::Exit { status, root } => {
                match exit_parts(*status) {
                    (Some(code), _) => m.serialize_entry("exit_code", &code)?,
                    (_, signal) => m.serialize_entry("signal", &signal)?,
                }
                m.serialize_entry("root", root)?;
            }
            Detail::SessionStart {
                agent,
                root_pid,
                how,
                cwd,
                repository,
            } => {
                m.serialize_entry("agent", agent)?;
                m.serialize_entry("root_pid", root_pid)?;
                m.serialize_entry("how", how.as_str())?;
                m.serialize_entry("cwd", cwd)?;
                if let Some(repository) = repository {
                    m.serialize_entry("repository", repository)?;
                }
            }
            Detail::SessionEnd {
                root_pid,
                stragglers,
                killed,
            } => {
                m.serialize_entry("root_pid", root_pid)?;
                m.serialize_entry("stragglers", stragglers)?;
                m.serialize_entry("killed", killed)?;
            }
            Detail::PolicyLoaded {
                name,
                mode,
                rules,
                kernel_entries,
                identity,
                user_space_rules,
                warnings,
                enforcement,
            } => {
                m.serialize_entry("policy", name)?;
                m.serialize_entry("mode", mode.as_str())?;
                m.serialize_entry("rules", rules)?;
                m.serialize_entry("kernel_entries", kernel_entries)?;
                m.serialize_entry("identity_entries", &identity.entries)?;
                m.serialize_entry("identity_missing", &identity.missing)?;
                m.serialize_entry("identity_fail_closed", &identity.fail_closed)?;
                if !identity.over.is_empty() {
                    m.serialize_entry("identity_over", &identity.over)?;
                }
                m.serialize_entry("user_space_rules", user_space_rules)?;
                m.serialize_entry("warnings", warnings)?;
                m.serialize_entry("enforcement", enforcement)?;
            }
            Detail::PolicyRejected { name, errors } => {
                m.serialize_entry("policy", name)?;
                m.serialize_entry("errors", errors)?;
            }
            Detail::Lost { by_kind, total } => {
                m.serialize_entry(
                    "by_kind",
                    &by_kind
                        .iter()
                        .map(|(k, n)| (k.as_str(), n))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )?;
                m.serialize_entry("total", total)?;
            }
            Detail::Limit {
                reason,
                dropped,
                total,
                child_pid,
            } => {
                m.serialize_entry("reason", reason.as_str())?;
                m.serialize_entry("dropped", dropped)?;
                m.serialize_entry("dropped_total", total)?;
                if let Some(child) = child_pid {
                    m.serialize_entry("child_pid", child)?;
                }
            }
            Detail::Tamper(t) => {
                m.serialize_entry("op", t.op.as_str())?;
                if let Some(syscall) = &t.syscall {
                    m.serialize_entry("syscall", syscall)?;
                }
                if let Some(target) = t.target {
                    m.serialize_entry("target_pid", &target)?;
                }
                if let Some(key) = t.op.arg_key() {
                    m.serialize_entry(key, &t.arg)?;
                }
                if let Some(path) = &t.path {
                    m.serialize_entry("path", path)?;
                    m.serialize_entry("access", &access::of(t.arg))?;
                }
                m.serialize_entry("done", super::tamper_done(self.enforced))?;
            }
            Detail::Resumed(r) => {
                m.serialize_entry("previous_pid", &r.previous_pid)?;
                m.serialize_entry("clean_stop", &r.clean_stop)?;
                m.serialize_entry("gap_ms", &r.gap_ms)?;
                m.serialize_entry(
                    "lost_by_kind",
                    &r.lost_by_kind
                        .iter()
                        .map(|(k, n)| (k.as_str(), n))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )?;
                m.serialize_entry("lost_total", &r.lost_total)?;
                m.serialize_entry("untracked_children", &r.untracked_children)?;
                m.serialize_entry(
                    "sessions",
                    &r.sessions
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                )?;
                m.serialize_entry(
                    "links",
                    &serde_json::json!({
                        "updated": r.links_updated,
                        "replaced": r.links_replaced,
                        "new": r.links_new,
                    }),
                )?;
            }
        }
        if let Some(host) = &self.host {
            m.serialize_entry("host", host)?;
            if let Some(from) = self.host_from {
                m.serialize_entry("host_source", from.as_str())?;
            }
        }
        if self.is_tainted() {
            m.serialize_entry("tainted", &true)?;
        }
        if !self.tainted_by.is_empty() {
            let by: Vec<&str> = self.tainted_by.iter().map(|p| &**p).collect();
            m.serialize_entry("tainted_by", &by)?;
        }
        if let Some(v) = &self.violation {
            m.serialize_entry("rule", &v.rule)?;
            m.serialize_entry("action", v.action.as_str())?;
            m.serialize_entry("outcome", v.outcome.as_str())?;
            if let Some(error) = &v.error {
                m.serialize_entry("outcome_error", error)?;
            }
            m.serialize_entry("alert", &v.alert)?;
            if let Some(would) = v.would {
                m.serialize_entry("would", would.as_str())?;
            }
            m.serialize_entry("rules", &v.rules)?;
            if v.secret {
                m.serialize_entry("secret", &true)?;
            }
            if let Some(us) = v.kill_latency_us {
                m.serialize_entry("kill_latency_us", &us)?;
            }
            if let Some(a) = &v.anomaly {
                m.serialize_entry("anomaly", a)?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use guard_common::OpenCall;

    use crate::event::{Proto, SessionId, Task};

    fn ev(detail: Detail) -> Event {
        Event {
            ts_ns: 1_763_700_000_123_456_789,
            session: Some(SessionId(0x1f)),
            task: Task {
                pid: 42,
                tid: 42,
                ppid: 1,
                comm: "sh".into(),
                user: Some("root".into()),
                ..Task::default()
            },
            detail,
            enforced: 0,
            host: None,
            host_from: None,
            tainted: false,
            tainted_by: Vec::new(),
            identity: None,
            violation: None,
            redacted: false,
            agent: None,
            agent_version: None,
            confinement: None,
            sandboxed: None,
            held: false,
            digest: None,
        }
    }

    #[test]
    fn open_failure_json() {
        let e = ev(Detail::Open {
            path: "/work/.env".into(),
            resolved: false,
            truncated: false,
            flags: 0,
            call: OpenCall::Openat,
            ret: -2,
        });
        assert_eq!(
            e.to_json(),
            r#"{"schema":2,"ts":"2025-11-21T04:40:00.123456789Z","kind":"open","session":"000000000000001f","pid":42,"ppid":1,"tid":42,"comm":"sh","role":"unknown","uid":0,"user":"root","cgroup_id":0,"container":null,"path":"/work/.env","path_resolved":false,"path_truncated":false,"access":["read"],"flags":0,"call":"openat","result":"ENOENT","errno":2}"#
        );
    }

    /// Found by the `decode` fuzz target (fuzz/regressions/decode/): a damaged
    /// record's return value of `i64::MIN` overflowed the errno negation.
    #[test]
    fn return_value_outside_errno_range_is_reported_invalid() {
        for ret in [i64::MIN, -4096, -(1 << 40)] {
            let e = ev(Detail::Open {
                path: "/x".into(),
                resolved: true,
                truncated: false,
                flags: 0,
                call: OpenCall::Openat,
                ret,
            });
            let j = e.to_json();
            assert!(
                j.ends_with(&format!(r#""result":"invalid","ret":{ret}}}"#)),
                "{j}"
            );
        }
        assert_eq!(errno_of(-4095), Some(4095));
        assert_eq!(errno_of(-1), Some(1));
        assert_eq!(errno_of(0), None);
    }

    #[test]
    fn route_and_runner_json() {
        let mut e = ev(Detail::Route {
            route: guard_common::protocol::Route::IoUring,
            path: None,
            truncated: false,
            family: 0,
            sock_type: 0,
            ret: 0,
        });
        e.enforced = guard_common::rules::enforced::KILLED | 3;
        let j = e.to_json();
        assert!(
            j.ends_with(r#""route":"io_uring","result":"killed"}"#),
            "{j}"
        );
        let j = ev(Detail::Exec {
            exe: "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
            exe_truncated: false,
            argv: vec!["/lib64/ld-linux-x86-64.so.2".into(), "./prog".into()],
            argv_truncated: false,
            root: false,
            by_cgroup: false,
            by_identity: false,
            fileless: false,
        })
        .to_json();
        assert!(j.ends_with(r#""via":"loader","target":"./prog"}"#), "{j}");
        let j = ev(Detail::Route {
            route: guard_common::protocol::Route::FilelessExec,
            path: Some("memfd:payload".into()),
            truncated: false,
            family: 0,
            sock_type: 0,
            ret: 0,
        })
        .to_json();
        assert!(
            j.ends_with(
                r#""route":"fileless_exec","path":"memfd:payload","truncated":false,"result":"ok"}"#
            ),
            "{j}"
        );
    }

    #[test]
    fn connect_and_exit_json() {
        let addr: IpAddr = "::1".parse().expect("addr");
        let j = ev(Detail::Connect {
            addr,
            port: 443,
            proto: Proto::Tcp,
            ret: -115,
        })
        .to_json();
        assert!(j.contains(r#""addr":"::1","port":443,"proto":"tcp","family":"ipv6","result":"EINPROGRESS","errno":115"#), "{j}");
        let j = ev(Detail::Exit {
            status: 3 << 8,
            root: true,
        })
        .to_json();
        assert!(j.ends_with(r#""exit_code":3,"root":true}"#), "{j}");
        let j = ev(Detail::Exit {
            status: 9,
            root: false,
        })
        .to_json();
        assert!(j.ends_with(r#""signal":9,"root":false}"#), "{j}");
    }

    #[test]
    fn tamper_json_names_the_attempt_and_what_was_done() {
        use crate::event::{Tamper, TamperOp};
        use guard_common::rules::enforced;

        let mut e = ev(Detail::Tamper(Box::new(Tamper {
            op: TamperOp::Signal,
            syscall: Some("kill".into()),
            target: Some(4242),
            arg: 9,
            path: None,
        })));
        e.enforced = enforced::KILLED;
        let j = e.to_json();
        assert!(j.contains(r#""kind":"tamper""#), "{j}");
        assert!(
            j.ends_with(
                r#""op":"signal","syscall":"kill","target_pid":4242,"signal":9,"done":"killed"}"#
            ),
            "{j}"
        );
        let mut e = ev(Detail::Tamper(Box::new(Tamper {
            op: TamperOp::ProcOpen,
            syscall: None,
            target: Some(4242),
            arg: 0,
            path: Some("/proc/4242/environ".into()),
        })));
        e.enforced = enforced::DENIED;
        let j = e.to_json();
        assert!(
            j.ends_with(
                r#""op":"proc_open","target_pid":4242,"flags":0,"path":"/proc/4242/environ","access":["read"],"done":"denied"}"#
            ),
            "{j}"
        );
        let mut e = ev(Detail::Tamper(Box::new(Tamper {
            op: TamperOp::Bpf,
            syscall: Some("bpf".into()),
            target: None,
            arg: 11,
            path: None,
        })));
        e.enforced = 0;
        let j = e.to_json();
        assert!(
            j.ends_with(r#""op":"bpf","syscall":"bpf","bpf_cmd":11,"done":"kill_failed"}"#),
            "{j}"
        );
    }

    fn flow_detail() -> crate::event::Flow {
        crate::event::Flow {
            addr: "::1".parse().expect("addr"),
            port: 8443,
            proto: Proto::Tcp,
            bytes_out: 1_050_960,
            bytes_in: 1_051_464,
            packets_out: 32,
            packets_in: 40,
            reason: crate::event::FlowReason::Close,
            cookie: 0x3,
            start_boot_ns: 0x1d6e212ac39,
            start_ns: 1_763_700_000_000_000_000,
            new_out: 1_050_960,
            new_in: 1_051_464,
        }
    }

    #[test]
    fn flow_json() {
        let mut e = ev(Detail::Flow(flow_detail()));
        e.host = Some("api.openai.com".into());
        let j = e.to_json();
        assert!(
            j.ends_with(
                r#""addr":"::1","port":8443,"proto":"tcp","family":"ipv6","bytes_out":1050960,"bytes_in":1051464,"packets_out":32,"packets_in":40,"reason":"close","flow_id":"3-1d6e212ac39","started":"2025-11-21T04:40:00.000000000Z","dest_class":"local","host":"api.openai.com"}"#
            ),
            "{j}"
        );
    }

    /// Every kind the daemon writes reads back through the protocol's `EventLine`,
    /// which clients use: the two cannot drift.
    #[test]
    fn every_kind_reads_back_as_a_protocol_line() {
        use guard_common::protocol::{
            Action, Enforcement, EventDetail, EventLine, How, Mode, Outcome,
        };

        use crate::event::Violation;

        let v4: IpAddr = "10.1.2.3".parse().expect("addr");
        let cases = vec![
            Detail::Exec {
                exe: "/usr/bin/git".into(),
                exe_truncated: false,
                argv: vec!["git".into(), "push".into()],
                argv_truncated: false,
                root: false,
                by_cgroup: false,
                by_identity: false,
                fileless: false,
            },
            Detail::Open {
                path: "/etc/hosts".into(),
                resolved: true,
                truncated: false,
                flags: 0,
                call: OpenCall::Openat2,
                ret: 3,
            },
            Detail::Connect {
                addr: v4,
                port: 443,
                proto: Proto::Tcp,
                ret: -1,
            },
            Detail::Send {
                addr: v4,
                port: 53,
                proto: Proto::Udp,
                ret: 12,
            },
            Detail::Fork { child_pid: 9 },
            Detail::Flow(flow_detail()),
            Detail::Limit {
                reason: crate::event::LimitReason::TrackFull,
                dropped: 3,
                total: 7,
                child_pid: Some(12),
            },
            Detail::Limit {
                reason: crate::event::LimitReason::Rate,
                dropped: 100,
                total: 100,
                child_pid: None,
            },
            Detail::Unix {
                path: "/run/docker.sock".into(),
                resolved: true,
                truncated: false,
                call: guard_common::UnixCall::Connect,
                sock_type: 1,
                ret: -1,
            },
            Detail::Dns(Box::new(crate::event::dns::Dns {
                server: "127.0.0.53".parse().expect("addr"),
                port: 53,
                proto: Proto::Udp,
                direction: crate::event::dns::Direction::Answer,
                id: Some(7),
                name: Some("api.openai.com".into()),
                qtype: Some("A".into()),
                rcode: Some("NoError".into()),
                answers: vec![guard_common::protocol::DnsAnswer {
                    name: "api.openai.com".into(),
                    rtype: "A".into(),
                    data: "162.159.140.245".into(),
                    ttl: 60,
                }],
                len: 64,
                cut: false,
                error: None,
                cookie: 0x3,
            })),
            Detail::Route {
                route: guard_common::protocol::Route::ExecMapping,
                path: Some("/tmp/prog".into()),
                truncated: false,
                family: 0,
                sock_type: 0,
                ret: 0,
            },
            Detail::Route {
                route: guard_common::protocol::Route::PacketSocket,
                path: None,
                truncated: false,
                family: 17,
                sock_type: 3,
                ret: -1,
            },
            Detail::Exit {
                status: 9,
                root: true,
            },
            Detail::SessionStart {
                agent: "codex".into(),
                root_pid: 42,
                how: How::Run,
                cwd: Some("/src".into()),
                repository: Some(guard_common::report::Repository {
                    url: Some("https://example.com/org/src.git".into()),
                    branch: Some("main".into()),
                    commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                    root: Some("/src".into()),
                    note: None,
                }),
            },
            Detail::SessionEnd {
                root_pid: 42,
                stragglers: vec![43],
                killed: vec![43],
            },
            Detail::Lost {
                by_kind: vec![("open".into(), 2)],
                total: 2,
            },
            Detail::PolicyLoaded {
                name: "ci".into(),
                mode: Mode::Observe,
                rules: 3,
                kernel_entries: 9,
                identity: Default::default(),
                user_space_rules: vec![],
                warnings: String::new(),
                enforcement: vec![Enforcement {
                    action: "network_deny".into(),
                    tier: "cgroup_sock_addr".into(),
                    guarantee: "EPERM".into(),
                    fallback_reason: None,
                }],
            },
            Detail::PolicyRejected {
                name: "/etc/guard.toml".into(),
                errors: "x:1:1: error[G001]: …".into(),
            },
            Detail::Tamper(Box::new(crate::event::Tamper {
                op: crate::event::TamperOp::ProcOpen,
                syscall: Some("openat".into()),
                target: Some(4242),
                arg: 0,
                path: Some("/proc/4242/environ".into()),
            })),
            Detail::Resumed(Box::new(crate::event::Resumed {
                previous_pid: 7,
                clean_stop: false,
                gap_ms: 1175,
                lost_by_kind: vec![("open".into(), 3)],
                lost_total: 3,
                untracked_children: 0,
                sessions: vec![crate::event::SessionId(0x1f)],
                links_updated: 4,
                links_replaced: 15,
                links_new: 0,
            })),
        ];
        for detail in cases {
            let kind = detail.kind();
            // Only what a process did can break a rule (and `policy_loaded` has a
            // `rules` count of its own).
            let judged = matches!(
                kind,
                "exec" | "open" | "connect" | "send" | "tamper" | "route"
            );
            let mut e = ev(detail);
            if matches!(e.detail, Detail::Exec { .. }) {
                e.confinement = Some(guard_common::Confinement {
                    net_ns: 4_026_531_840,
                    seccomp: 2,
                    ..Default::default()
                });
                e.sandboxed = Some(true);
            }
            e.violation = judged.then(|| Violation {
                rule: "r".into(),
                action: Action::Kill,
                outcome: Outcome::Failed,
                error: Some("EPERM".into()),
                alert: true,
                would: None,
                rules: vec!["r".into()],
                secret: true,
                kill_latency_us: None,
                anomaly: None,
            });
            let json = e.to_json();
            let line: EventLine = serde_json::from_str(&json).expect(&json);
            // Built without JSON, the line says the same (for the kinds it builds).
            let direct = e.to_line();
            if direct.detail == EventDetail::Other {
                assert_eq!(
                    (direct.ts.as_str(), &direct.violation),
                    (line.ts.as_str(), &line.violation),
                    "{json}"
                );
            } else {
                assert_eq!(direct, line, "{json}");
            }
            assert_eq!(line.detail.kind(), kind, "{json}");
            assert_ne!(line.detail, EventDetail::Other, "{json}");
            if judged {
                let v = line.violation.expect("violation read back");
                assert!(v.secret, "{json}");
                assert_eq!(
                    (v.outcome, v.outcome_error.as_deref()),
                    (Outcome::Failed, Some("EPERM"))
                );
            } else {
                assert_eq!(line.violation, None, "{json}");
            }
        }
        let exit: EventLine = serde_json::from_str(
            &ev(Detail::Exit {
                status: 9,
                root: true,
            })
            .to_json(),
        )
        .expect("exit");
        assert_eq!(
            exit.detail,
            EventDetail::Exit {
                exit_code: None,
                signal: Some(9),
                root: true
            }
        );
        assert_eq!(exit.pid, Some(42));
    }

    #[test]
    fn daemon_resumed_json() {
        let mut e = ev(Detail::Resumed(Box::new(crate::event::Resumed {
            previous_pid: 7,
            clean_stop: true,
            gap_ms: 12,
            lost_by_kind: vec![("open".into(), 3), ("exec".into(), 1)],
            lost_total: 4,
            untracked_children: 2,
            sessions: vec![crate::event::SessionId(0x1f)],
            links_updated: 4,
            links_replaced: 15,
            links_new: 0,
        })));
        e.session = None;
        let j = e.to_json();
        assert!(
            j.contains(r#""kind":"daemon_resumed","previous_pid":7,"clean_stop":true,"gap_ms":12,"lost_by_kind":{"exec":1,"open":3},"lost_total":4,"untracked_children":2,"sessions":["000000000000001f"],"links":{"new":0,"replaced":15,"updated":4}"#),
            "{j}"
        );
        assert!(
            !j.contains(r#""pid""#),
            "a daemon event has no process: {j}"
        );
    }
}
