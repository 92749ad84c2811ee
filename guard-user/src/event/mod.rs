//! Typed events: what the kernel reported (decoded from the ring buffer), plus the
//! events user space derives (session start/end, lost counts). Every consumer
//! (audit log, `guard top`, policy) reads these.

pub mod decode;
pub mod enrich;
pub mod flows;
pub mod from_proc;
mod json;
mod line;
pub mod names;

/// docs/events.md held to the lines' types.
#[cfg(test)]
mod docs_tests;

pub use guard_policy::event::*;

pub use self::json::rfc3339;

use std::{net::IpAddr, sync::Arc};

use guard_common::{AF_INET6, OpenCall, PACKAGE_MARK, THREAD_ID_LEN, flags};

pub use self::decode::Record;
use self::decode::{Body, comm, split_argv, text};

fn net_addr(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::from(*raw)
    } else {
        IpAddr::from([raw[0], raw[1], raw[2], raw[3]])
    }
}

/// A package's name from an exec record's thread id bytes (after the mark): the
/// kernel copies up to `THREAD_ID_LEN - 2` bytes, so a name that fills them may
/// have been cut and says so with a final `…`.
fn script_package(name: &[u8]) -> String {
    let mut out = String::from_utf8_lossy(name).into_owned();
    if name.len() >= THREAD_ID_LEN - 2 {
        out.push('…');
    }
    out
}

/// Builds an event from a kernel record; `ts_offset_ns` converts the boot clock
/// to wall-clock time.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of kernel record: the wire format read in one place"
)]
pub fn from_record(rec: Record, ts_offset_ns: i128) -> Event {
    let h = rec.header;
    let task = Task {
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        comm: comm(&h.comm),
        thread: None,
        role: u8::try_from(h.role).unwrap_or(0),
        agent_thread: match &rec.body {
            Body::Exec { thread, .. } if !thread.is_empty() && thread[0] != PACKAGE_MARK => {
                Some(Arc::from(String::from_utf8_lossy(thread).as_ref()))
            }
            _ => None,
        },
        package: match &rec.body {
            Body::Exec { thread, .. } if thread.first() == Some(&PACKAGE_MARK) => {
                Some(Arc::from(script_package(&thread[1..]).as_ref()))
            }
            _ => None,
        },
        // The session registry names the call (session/calls.rs).
        call: None,
        cgroup_id: h.cgroup_id,
        user: None,
        container: None,
        pod: None,
        meta: None,
    };
    let flag = |f: u16| h.flags & f != 0;
    let via_resolver = match &rec.body {
        Body::Dns { body, .. } => body.flags & guard_common::dns::VIA_RESOLVER != 0,
        _ => flag(flags::REDIRECTED),
    };
    let cwd = match &rec.body {
        Body::Exec { cwd, .. } if !cwd.is_empty() => {
            Some(String::from_utf8_lossy(cwd).into_owned())
        }
        _ => None,
    };
    let listener = match &rec.body {
        Body::Unix { body, .. } if body.peer_pid != 0 => Some(Box::new(Listener {
            pid: body.peer_pid,
            uid: (body.peer_uid != u32::MAX).then_some(body.peer_uid),
            ..Listener::default()
        })),
        _ => None,
    };
    let identity = match &rec.body {
        Body::Open { identity, .. } if identity.is_some() || flag(flags::IDENTITY_UNKNOWN) => {
            Some(Identity {
                matched: identity.map(|t| IdentityMatch {
                    dev: t.dev,
                    ino: t.ino,
                    up: t.up,
                }),
                protected: None,
                unknown: flag(flags::IDENTITY_UNKNOWN),
            })
        }
        _ => None,
    };
    let confinement = match &rec.body {
        Body::Exec { body, .. } => Some(body.confinement),
        _ => None,
    };
    let held = confinement.is_some() && flag(flags::HELD);
    let detail = match rec.body {
        Body::Exec { exe, argv, .. } => Detail::Exec {
            exe: text(exe),
            exe_truncated: flag(flags::PATH_TRUNCATED),
            argv: split_argv(&argv),
            argv_truncated: flag(flags::ARGV_TRUNCATED),
            root: flag(flags::ROOT_PROCESS),
            by_cgroup: flag(flags::SESSION_START) && flag(flags::BY_CGROUP),
            by_identity: flag(flags::BY_IDENTITY),
            fileless: flag(flags::FILELESS),
            from_proc: false,
        },
        Body::Open { body, path, .. } => {
            let resolved = !flag(flags::PATH_UNRESOLVED);
            let path = text(path);
            Detail::Open {
                path: if resolved {
                    path
                } else {
                    normalize_lexically(&path)
                },
                resolved,
                truncated: flag(flags::PATH_TRUNCATED),
                flags: body.flags,
                call: OpenCall::from_u32(body.call).unwrap_or(OpenCall::Openat),
                ret: body.ret,
                dir: body.file_type == guard_common::file_type::DIR,
                repeats: if flag(flags::REPEATS) {
                    body.repeats
                } else {
                    0
                },
            }
        }
        Body::Connect(n) => Detail::Connect {
            addr: net_addr(n.family, &n.addr),
            port: n.port,
            proto: Proto::from_socket(n.sock_type, n.protocol),
            ret: n.ret,
        },
        Body::Send(n) => Detail::Send {
            addr: net_addr(n.family, &n.addr),
            port: n.port,
            proto: Proto::from_socket(n.sock_type, n.protocol),
            ret: n.ret,
        },
        Body::Fork(f) => Detail::Fork {
            child_pid: f.child_pid,
        },
        Body::Exit(e) => Detail::Exit {
            status: e.status,
            root: flag(flags::ROOT_PROCESS),
        },
        Body::Limit(l) => {
            let reason = LimitReason::from_u32(l.reason);
            Detail::Limit {
                reason,
                dropped: l.dropped,
                total: l.total,
                child_pid: (reason == LimitReason::TrackFull).then_some(l.child_pid),
            }
        }
        Body::Tamper { body, path } => Detail::Tamper(Box::new(Tamper {
            op: TamperOp::from_u32(body.op),
            syscall: (body.syscall >= 0).then(|| syscall_name(body.syscall)),
            target: (body.target != 0).then_some(body.target as i32),
            arg: body.arg,
            path: (!path.is_empty()).then(|| text(path)),
        })),
        Body::Flow(f) => Detail::Flow(Flow {
            addr: net_addr(f.family, &f.addr),
            port: f.port,
            proto: Proto::from_socket(f.sock_type, f.protocol),
            bytes_out: f.bytes_out,
            bytes_in: f.bytes_in,
            packets_out: f.packets_out,
            packets_in: f.packets_in,
            reason: FlowReason::from_u32(f.reason),
            cookie: f.cookie,
            start_boot_ns: f.start_ns,
            start_ns: i128::from(f.start_ns) + ts_offset_ns,
            new_out: 0,
            new_in: 0,
            accepted: f.flags & guard_common::flow::ACCEPTED != 0,
        }),
        Body::Dns { body, payload } => {
            let proto = Proto::from_socket(body.sock_type, 0);
            let parsed = dns::parse(&payload, proto == Proto::Tcp);
            Detail::Dns(Box::new(dns::Dns {
                server: net_addr(body.family, &body.addr),
                port: body.port,
                proto,
                direction: if body.direction == guard_common::dns::IN {
                    dns::Direction::Answer
                } else {
                    dns::Direction::Query
                },
                id: parsed.id,
                name: parsed.name,
                qtype: parsed.qtype,
                rcode: parsed.rcode,
                answers: parsed.answers,
                len: body.len,
                cut: (body.len as usize) > payload.len(),
                error: parsed.error,
                cookie: body.cookie,
            }))
        }
        Body::Route { body, path } => Detail::Route {
            route: Route::from_u32(body.route),
            path: (!path.is_empty()).then(|| text(path)),
            truncated: flag(flags::PATH_TRUNCATED),
            family: body.family,
            sock_type: body.sock_type,
            bound: (body.route == guard_common::route::LISTEN)
                .then(|| (net_addr(body.family, &body.addr), body.port)),
            ret: body.ret,
        },
        Body::Unix { body, path } => Detail::Unix {
            path: text(path),
            resolved: !flag(flags::PATH_UNRESOLVED),
            truncated: flag(flags::PATH_TRUNCATED),
            call: guard_common::UnixCall::from_u32(body.call)
                .unwrap_or(guard_common::UnixCall::Send),
            sock_type: body.sock_type,
            ret: body.ret,
        },
    };
    Event {
        ts_ns: i128::from(h.ts_ns) + ts_offset_ns,
        session: Some(SessionId(h.session)),
        task,
        detail,
        enforced: h.rule,
        host: None,
        host_from: None,
        tainted: flag(flags::TAINTED),
        tainted_by: Vec::new(),
        identity,
        violation: None,
        redacted: false,
        agent: None,
        agent_version: None,
        confinement,
        sandboxed: None,
        held,
        download: None,
        digest: None,
        via_resolver,
        cwd,
        listener,
    }
}

/// An event as it is written: the line every consumer reads, and its JSON.
pub trait Written {
    /// The event as [`guard_common::line::EventLine`]: every field the audit log has.
    fn to_line(&self) -> guard_common::line::EventLine;
    /// Serialises the event as one JSON line (no trailing newline).
    fn to_json(&self) -> String;
}

/// The name of an errno value (`ENOENT`), or `E<n>` when unknown.
pub fn errno_name(errno: i32) -> String {
    match nix::errno::Errno::from_raw(errno) {
        nix::errno::Errno::UnknownErrno => format!("E{errno}"),
        known => format!("{known:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(libc::EINPROGRESS), "EINPROGRESS");
        assert_eq!(errno_name(4095), "E4095");
    }
}
