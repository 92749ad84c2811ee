//! The JSON form of an event (schema in docs/events.md): the event's
//! [`EventLine`](guard_common::line::EventLine), serialised by serde, and the
//! names and numbers the line is built from.

use chrono::{DateTime, SecondsFormat};
use guard_common::line::CallResult;

use super::{Event, Written as _, errno_name};

pub(super) fn to_string(ev: &Event) -> String {
    // Serialising maps of plain values into a String cannot fail.
    serde_json::to_string(&ev.to_line()).unwrap_or_default()
}

pub fn rfc3339(ts_ns: i128) -> String {
    thread_local! {
        /// The last second formatted (`YYYY-MM-DDTHH:MM:SS`): the events of a
        /// second share it, and only their nanoseconds are formatted.
        static SECOND: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((0, String::new())) };
    }
    let secs = ts_ns.div_euclid(1_000_000_000) as i64;
    let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != secs || prefix.is_empty() {
            let Some(t) = DateTime::from_timestamp(secs, 0) else {
                return String::new();
            };
            *prefix = t.to_rfc3339_opts(SecondsFormat::Secs, true);
            prefix.pop(); // its `Z`
            *second = secs;
        }
        format!("{prefix}.{nanos:09}Z")
    })
}

/// The `result` of a system call's return value: `ok`, the errno's name, or
/// `invalid` for a value no system call returns.
pub(super) fn result_of(ret: i64) -> CallResult {
    if ret >= 0 {
        CallResult::Ok
    } else if let Some(errno) = errno_of(ret) {
        CallResult::Errno(errno_name(errno))
    } else {
        CallResult::Invalid
    }
}

/// The `result` of a route record: the errno's name when the call was refused,
/// `killed` when the process was killed before the call returned.
pub(super) fn route_result(ret: i64, enforced: u16) -> CallResult {
    if ret < 0 {
        result_of(ret)
    } else if enforced & guard_common::rules::enforced::KILLED != 0 {
        CallResult::Killed
    } else {
        CallResult::Ok
    }
}

/// An exit status as (`exit_code`, `signal`): one of them.
pub(super) fn exit_parts(status: u32) -> (Option<u32>, Option<u32>) {
    let (code, signal) = (status >> 8 & 0xff, status & 0x7f);
    if signal == 0 {
        (Some(code), None)
    } else {
        (None, Some(signal))
    }
}

/// A system call's return value as a line says it: `result`, and the value
/// (`fd` of an open), the `errno`, or the raw `ret` no system call returns.
pub(super) struct Returned {
    pub result: CallResult,
    pub ok: Option<i64>,
    pub errno: Option<i32>,
    pub ret: Option<i64>,
}

impl Returned {
    /// `keep_ok`: the value of a success is worth saying (an open's fd).
    pub(super) fn of(ret: i64, keep_ok: bool) -> Self {
        let errno = errno_of(ret);
        Self {
            result: result_of(ret),
            ok: (keep_ok && ret >= 0).then_some(ret),
            errno,
            ret: (ret < 0 && errno.is_none()).then_some(ret),
        }
    }
}

/// The errno of a failed system call's return value; `None` outside the kernel's
/// error range (`-MAX_ERRNO..=-1`), which only a damaged record carries.
pub(super) fn errno_of(ret: i64) -> Option<i32> {
    const MAX_ERRNO: i64 = 4095;
    (-MAX_ERRNO..=-1)
        .contains(&ret)
        .then(|| i32::try_from(-ret).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use guard_common::OpenCall;

    use crate::event::{Detail, Proto, SessionId, Task, test_support};

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds_in_utc() {
        let chrono = |ts: i128| {
            DateTime::from_timestamp(
                ts.div_euclid(1_000_000_000) as i64,
                ts.rem_euclid(1_000_000_000) as u32,
            )
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        };
        // The same second twice (its formatting reused), the next, one far off,
        // before the epoch, and the last nanosecond of a day.
        for ts in [
            1_763_700_000_123_456_789,
            1_763_700_000_000_000_007,
            1_763_700_001_999_999_999,
            4_102_444_800_000_000_000,
            -1_500_000_000,
            1_763_769_599_999_999_999,
        ] {
            assert_eq!(Some(rfc3339(ts)), chrono(ts), "{ts}");
        }
        assert_eq!(
            rfc3339(1_763_700_000_000_000_007),
            "2025-11-21T04:40:00.000000007Z"
        );
    }

    fn ev(detail: Detail) -> Event {
        let task = Task {
            user: Some("root".into()),
            ..test_support::task(42, 1, "sh")
        };
        Event::derived(
            1_763_700_000_123_456_789,
            Some(SessionId(0x1f)),
            task,
            detail,
        )
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
            repeats: 0,
            dir: false,
        });
        assert_eq!(
            e.to_json(),
            r#"{"schema":2,"ts":"2025-11-21T04:40:00.123456789Z","session":"000000000000001f","pid":42,"ppid":1,"tid":42,"comm":"sh","role":"unknown","uid":0,"user":"root","cgroup_id":0,"container":null,"kind":"open","path":"/work/.env","path_resolved":false,"path_truncated":false,"access":["read"],"flags":0,"call":"openat","result":"ENOENT","errno":2}"#
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
                repeats: 0,
                dir: false,
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
            bound: None,
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
            from_proc: false,
        })
        .to_json();
        assert!(j.ends_with(r#""via":"loader","target":"./prog"}"#), "{j}");
        let j = ev(Detail::Route {
            route: guard_common::protocol::Route::FilelessExec,
            path: Some("memfd:payload".into()),
            truncated: false,
            family: 0,
            sock_type: 0,
            bound: None,
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
            accepted: false,
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
    /// which clients use, and writes out again as the same text.
    #[test]
    #[expect(
        clippy::too_many_lines,
        reason = "one case per event kind, checked in one loop: the point is that no kind is missed"
    )]
    fn every_kind_round_trips_through_the_protocol_line() {
        use guard_common::{
            line::{EventDetail, EventLine},
            protocol::{Action, Enforcement, How, Mode, Outcome},
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
                from_proc: false,
            },
            Detail::Open {
                path: "/etc/hosts".into(),
                resolved: true,
                truncated: false,
                flags: 0,
                call: OpenCall::Openat2,
                ret: 3,
                repeats: 0,
                dir: false,
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
                answers: vec![guard_common::line::DnsAnswer {
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
                bound: None,
                ret: 0,
            },
            Detail::Route {
                route: guard_common::protocol::Route::PacketSocket,
                path: None,
                truncated: false,
                family: 17,
                sock_type: 3,
                bound: None,
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
                agent: "codex".into(),
                agent_user: Some("alice".into()),
            },
            Detail::ToolCall {
                phase: guard_common::protocol::CallPhase::Start,
                tool: "Bash".into(),
                command: Some("npm install ./pkg".into()),
                rollout: false,
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
                fallbacks: vec![guard_common::protocol::Fallback {
                    rule: "secrets-read-by-agent".into(),
                    acts_as: Action::Alert,
                    guarantee: "alerted".into(),
                    user_space: vec![],
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
                sessions: vec![SessionId(0x1f)],
                links_updated: 4,
                links_replaced: 15,
                links_new: 0,
            })),
        ];
        let mut seen = std::collections::BTreeSet::new();
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
            // Read back and written again, the line is the same text: the protocol's
            // type has every field, in the log's order.
            assert_eq!(
                serde_json::to_string(&line).expect("serialise"),
                json,
                "a field of {kind} is lost or moved by EventLine"
            );
            assert_eq!(line, e.to_line(), "{json}");
            assert_eq!(line.detail.kind(), kind, "{json}");
            assert_eq!(line.task.is_none(), e.detail.of_daemon(), "{json}");
            assert_eq!(
                EventDetail::DAEMON_KINDS.contains(&kind),
                e.detail.of_daemon(),
                "{kind}: the daemon's own kinds are the ones without a process"
            );
            seen.insert(kind);
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
        // Every kind the daemon writes, and no other (the export's filter and the
        // docs list the same kinds).
        assert_eq!(
            seen,
            EventDetail::KINDS.iter().copied().collect(),
            "the cases above are not every kind of EventDetail::KINDS"
        );
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
        assert_eq!(exit.pid(), Some(42));
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
            sessions: vec![SessionId(0x1f)],
            links_updated: 4,
            links_replaced: 15,
            links_new: 0,
        })));
        e.session = None;
        let j = e.to_json();
        assert!(
            j.contains(r#""kind":"daemon_resumed","previous_pid":7,"clean_stop":true,"gap_ms":12,"lost_by_kind":{"exec":1,"open":3},"lost_total":4,"untracked_children":2,"sessions":["000000000000001f"],"links":{"updated":4,"replaced":15,"new":0}"#),
            "{j}"
        );
        assert!(
            !j.contains(r#""pid""#),
            "a daemon event has no process: {j}"
        );
    }
}
