//! Ring-buffer bytes → typed kernel records. Pure: no I/O, unit-tested.

use std::mem::size_of;

use guard_common::{
    DnsBody, EventKind, ExecBody, ExitBody, FlowBody, ForkBody, Header, IdentityTail, LimitBody,
    NetBody, OpenBody, RouteBody, TamperBody, UnixBody,
};

/// A record as the kernel wrote it, with its payload split out.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub header: Header,
    pub body: Body,
}

/// The kind-specific part of a [`Record`].
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Exec {
        body: ExecBody,
        exe: Vec<u8>,
        argv: Vec<u8>,
        /// The agent thread id (`CODEX_THREAD_ID`) the kernel read from the new
        /// image's environment; empty when it had none.
        thread: Vec<u8>,
        /// A session's first exec: the working directory, as the kernel resolved
        /// it (`flags::CWD`); else empty.
        cwd: Vec<u8>,
    },
    Open {
        body: OpenBody,
        path: Vec<u8>,
        /// With `flags::BY_IDENTITY`: the protected entry the file matched.
        identity: Option<IdentityTail>,
    },
    Connect(NetBody),
    Send(NetBody),
    Fork(ForkBody),
    Exit(ExitBody),
    Limit(LimitBody),
    Tamper {
        body: TamperBody,
        /// The file opened, for opens of guard's files; else empty.
        path: Vec<u8>,
    },
    Flow(FlowBody),
    Dns {
        body: DnsBody,
        /// The first bytes of the DNS message (see `guard_common::DnsBody`).
        payload: Vec<u8>,
    },
    Route {
        body: RouteBody,
        path: Vec<u8>,
    },
    Unix {
        body: UnixBody,
        /// The socket's name (see `guard_common::EventKind::Unix`).
        path: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte fixed part")]
    Short { len: usize, need: usize },
    #[error("record kind {0} is unknown to this build")]
    UnknownKind(u16),
    #[error("record declares {declared} payload bytes but carries {available}")]
    Payload { declared: usize, available: usize },
}

/// The fixed parts of a record: `#[repr(C)]` structs of integers only, so any bit
/// pattern is a valid value. Sealed here, next to the one unsafe read, with the
/// layout the kernel side writes pinned down: a change to guard-common's records
/// that forgets the decoder fails to compile.
trait Wire: Copy {
    /// The size the kernel writes.
    const SIZE: usize;
}

macro_rules! wire {
    ($($ty:ty = $size:expr),* $(,)?) => {$(
        impl Wire for $ty {
            const SIZE: usize = $size;
        }
        const _: () = assert!(size_of::<$ty>() == <$ty as Wire>::SIZE);
        const _: () = assert!(std::mem::align_of::<$ty>() <= 8);
    )*};
}

wire!(
    Header = 72,
    ExecBody = 40,
    OpenBody = 40,
    NetBody = 32,
    ForkBody = 16,
    ExitBody = 16,
    LimitBody = 24,
    TamperBody = 24,
    FlowBody = 80,
    DnsBody = 40,
    RouteBody = 40,
    UnixBody = 24,
    IdentityTail = 16,
);

fn read<T: Wire>(bytes: &[u8], at: usize) -> Result<T, DecodeError> {
    let need = at + size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: bounds checked above; T is a `Wire` type (integers only, valid for
    // any bit pattern), and read_unaligned tolerates the buffer's alignment.
    Ok(unsafe { bytes.as_ptr().add(at).cast::<T>().read_unaligned() })
}

fn payload<'a, T>(bytes: &'a [u8], header: &Header) -> Result<&'a [u8], DecodeError> {
    let start = size_of::<Header>() + size_of::<T>();
    let declared = header.payload_len as usize;
    let available = bytes.len().saturating_sub(start);
    if declared > available {
        return Err(DecodeError::Payload {
            declared,
            available,
        });
    }
    Ok(&bytes[start..start + declared])
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: Header = read(bytes, 0)?;
    let at = size_of::<Header>();
    let kind = EventKind::from_u16(header.kind).ok_or(DecodeError::UnknownKind(header.kind))?;
    let body = match kind {
        EventKind::Exec => {
            let body: ExecBody = read(bytes, at)?;
            let p = payload::<ExecBody>(bytes, &header)?;
            let exe_len = (body.exe_len as usize).min(p.len());
            let argv_end = (exe_len + body.argv_len as usize).min(p.len());
            let mut thread_end = argv_end;
            let thread = if header.flags & guard_common::flags::THREAD_ID != 0 {
                thread_end = (argv_end + guard_common::THREAD_ID_LEN).min(p.len());
                let t = &p[argv_end..thread_end];
                t[..t.iter().position(|b| *b == 0).unwrap_or(t.len())].to_vec()
            } else {
                Vec::new()
            };
            let cwd = if header.flags & guard_common::flags::CWD != 0 {
                p[thread_end..(thread_end + body.cwd_len as usize).min(p.len())].to_vec()
            } else {
                Vec::new()
            };
            Body::Exec {
                body,
                exe: p[..exe_len].to_vec(),
                argv: p[exe_len..argv_end].to_vec(),
                thread,
                cwd,
            }
        }
        EventKind::Open => {
            let body: OpenBody = read(bytes, at)?;
            let p = payload::<OpenBody>(bytes, &header)?;
            let tail = size_of::<IdentityTail>();
            if header.flags & guard_common::flags::BY_IDENTITY != 0 && p.len() >= tail {
                let (path, t) = p.split_at(p.len() - tail);
                Body::Open {
                    body,
                    path: path.to_vec(),
                    identity: Some(read(t, 0)?),
                }
            } else {
                Body::Open {
                    body,
                    path: p.to_vec(),
                    identity: None,
                }
            }
        }
        EventKind::Connect => Body::Connect(read(bytes, at)?),
        EventKind::Send => Body::Send(read(bytes, at)?),
        EventKind::Fork => Body::Fork(read(bytes, at)?),
        EventKind::Exit => Body::Exit(read(bytes, at)?),
        EventKind::Limit => Body::Limit(read(bytes, at)?),
        EventKind::Tamper => {
            let body: TamperBody = read(bytes, at)?;
            Body::Tamper {
                body,
                path: payload::<TamperBody>(bytes, &header)?.to_vec(),
            }
        }
        EventKind::Flow => Body::Flow(read(bytes, at)?),
        EventKind::Dns => Body::Dns {
            body: read(bytes, at)?,
            payload: payload::<DnsBody>(bytes, &header)?.to_vec(),
        },
        EventKind::Route => Body::Route {
            body: read(bytes, at)?,
            path: payload::<RouteBody>(bytes, &header)?.to_vec(),
        },
        EventKind::Unix => Body::Unix {
            body: read(bytes, at)?,
            path: payload::<UnixBody>(bytes, &header)?.to_vec(),
        },
    };
    Ok(Record { header, body })
}

/// A kernel string as text, in place when it is UTF-8 (as paths nearly always are);
/// bytes that are not become U+FFFD.
pub fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Splits a kernel argv block (NUL-separated, maybe cut mid-argument) into strings.
pub fn split_argv(block: &[u8]) -> Vec<String> {
    let block = block.strip_suffix(b"\0").unwrap_or(block);
    if block.is_empty() {
        return Vec::new();
    }
    block
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// `comm` without its NUL padding.
pub fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn header(kind: EventKind, payload_len: u32) -> Header {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        Header {
            kind: kind as u16,
            flags: 0,
            payload_len,
            ts_ns: 1_000,
            session: 0xabc,
            cgroup_id: 7,
            pid: 100,
            tid: 101,
            ppid: 1,
            uid: 0,
            gid: 0,
            rule: 0,
            role: 0,
            comm,
        }
    }

    pub(crate) fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: test-only view of a plain #[repr(C)] value.
        unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref::<T>(v).cast::<u8>(), size_of::<T>())
        }
        .to_vec()
    }

    pub(crate) fn record<T>(kind: EventKind, body: &T, payload: &[u8]) -> Vec<u8> {
        let mut out = bytes_of(&header(kind, payload.len() as u32));
        out.extend(bytes_of(body));
        out.extend_from_slice(payload);
        out
    }

    /// `rec` with `flags` set in its header.
    fn flagged(mut rec: Vec<u8>, flags: u16) -> Vec<u8> {
        let at = std::mem::offset_of!(Header, flags);
        rec[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
        rec
    }

    #[test]
    fn exec_carries_the_role_and_thread_id_after_argv() {
        let confinement = guard_common::Confinement {
            net_ns: 4_026_532_001,
            mnt_ns: 4_026_532_002,
            user_ns: 4_026_532_003,
            seccomp: 2,
            no_new_privs: 1,
            _reserved: 0,
        };
        let body = ExecBody {
            cwd_len: 0,
            _reserved: 0,
            start_ns: 5,
            exe_len: 7,
            argv_len: 6,
            confinement,
        };
        let mut thread = [0u8; guard_common::THREAD_ID_LEN];
        thread[..8].copy_from_slice(b"019a-uid");
        let mut payload = b"/bin/shsh\0-c\0".to_vec();
        payload.extend_from_slice(&thread);
        let mut h = header(EventKind::Exec, payload.len() as u32);
        h.flags = guard_common::flags::THREAD_ID;
        h.role = u16::from(guard_common::role::TOOL);
        let mut bytes = bytes_of(&h);
        bytes.extend(bytes_of(&body));
        bytes.extend_from_slice(&payload);
        let rec = decode(&bytes).expect("decodes");
        assert_eq!(rec.header.role, u16::from(guard_common::role::TOOL));
        let Body::Exec { body: got, .. } = &rec.body else {
            panic!("not an exec");
        };
        assert_eq!(got.confinement, confinement);
        let Body::Exec {
            exe, argv, thread, ..
        } = rec.body
        else {
            panic!("not an exec");
        };
        assert_eq!(exe, b"/bin/sh");
        assert_eq!(split_argv(&argv), ["sh", "-c"]);
        assert_eq!(thread, b"019a-uid");
        // Without the flag, bytes after argv are not a thread id.
        let mut h = header(EventKind::Exec, payload.len() as u32);
        h.flags = 0;
        let mut bytes = bytes_of(&h);
        bytes.extend(bytes_of(&body));
        bytes.extend_from_slice(&payload);
        let Body::Exec { thread, .. } = decode(&bytes).expect("decodes").body else {
            panic!("not an exec");
        };
        assert!(thread.is_empty());
    }

    #[test]
    fn exec_splits_exe_and_argv() {
        let body = ExecBody {
            cwd_len: 0,
            _reserved: 0,
            start_ns: 5,
            exe_len: 7,
            argv_len: 11,
            confinement: guard_common::Confinement::default(),
        };
        let rec = record(EventKind::Exec, &body, b"/bin/shsh\0-c\0true\0");
        let Record { header, body } = decode(&rec).expect("decodes");
        assert_eq!(header.pid, 100);
        let Body::Exec { exe, argv, .. } = body else {
            panic!("not exec")
        };
        assert_eq!(exe, b"/bin/sh");
        assert_eq!(split_argv(&argv), ["sh", "-c", "true"]);
    }

    #[test]
    fn open_carries_path() {
        let body = OpenBody {
            flags: 0o1101,
            ret: 3,
            call: 1,
            mode: 0o644,
            repeats: 0,
            file_type: 0,
            _reserved: [0; 3],
        };
        let rec = record(EventKind::Open, &body, b"/tmp/x");
        let Body::Open { body: b, path, .. } = decode(&rec).expect("decodes").body else {
            panic!()
        };
        assert_eq!(path, b"/tmp/x");
        assert_eq!(b.ret, 3);
    }

    #[test]
    fn flow_records_decode_with_their_totals() {
        let body = FlowBody {
            addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            bytes_out: 1 << 20,
            bytes_in: 4096,
            family: guard_common::AF_INET,
            port: 443,
            sock_type: 1,
            reason: guard_common::flow::CLOSE,
            ..FlowBody::default()
        };
        let rec = record(EventKind::Flow, &body, b"");
        let Record { header, body: got } = decode(&rec).expect("decodes");
        assert_eq!(header.kind, EventKind::Flow as u16);
        assert_eq!(got, Body::Flow(body));
        assert!(decode(&rec[..rec.len() - 1]).is_err(), "a cut flow record");
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert!(matches!(
            decode(&[0u8; 10]),
            Err(DecodeError::Short { len: 10, .. })
        ));
        let mut rec = record(
            EventKind::Fork,
            &ForkBody {
                child_pid: 1,
                _reserved: 0,
                child_start_ns: 0,
            },
            b"",
        );
        rec[0] = 99;
        assert_eq!(decode(&rec), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn payload_longer_than_record_is_an_error() {
        let mut rec = record(
            EventKind::Open,
            &OpenBody {
                flags: 0,
                ret: 0,
                call: 0,
                mode: 0,
                repeats: 0,
                file_type: 0,
                _reserved: [0; 3],
            },
            b"/a",
        );
        rec[4] = 200; // payload_len
        assert!(matches!(
            decode(&rec),
            Err(DecodeError::Payload {
                declared: 200,
                available: 2
            })
        ));
    }

    #[test]
    fn tamper_carries_op_target_and_path() {
        let body = TamperBody {
            op: guard_common::tamper::SIGNAL,
            syscall: 62,
            target: 777,
            _reserved: 0,
            arg: 9,
        };
        let rec = record(EventKind::Tamper, &body, b"");
        let Body::Tamper { body: b, path } = decode(&rec).expect("decodes").body else {
            panic!("not tamper")
        };
        assert_eq!((b.op, b.syscall, b.target, b.arg), (1, 62, 777, 9));
        assert!(path.is_empty());
        let rec = record(EventKind::Tamper, &body, b"/proc/777/mem");
        let Body::Tamper { path, .. } = decode(&rec).expect("decodes").body else {
            panic!("not tamper")
        };
        assert_eq!(path, b"/proc/777/mem");
        // Cut short: an error, never a panic.
        assert!(matches!(decode(&rec[..80]), Err(DecodeError::Short { .. })));
    }

    #[test]
    fn argv_cut_mid_argument_keeps_the_prefix() {
        assert_eq!(split_argv(b"git\0push\0--for"), ["git", "push", "--for"]);
        assert!(split_argv(b"").is_empty());
    }

    /// Real records, one of each kind, built from the wire structs: the seeds of the
    /// `decode` fuzz target.
    /// A record of every kind the kernel sends (and two of some).
    #[expect(
        clippy::too_many_lines,
        reason = "one literal record per kind the kernel sends, built from the wire structs"
    )]
    pub(crate) fn seed_records() -> Vec<(&'static str, Vec<u8>)> {
        let mut exec_argv = b"/usr/bin/git".to_vec();
        exec_argv.extend_from_slice(b"git\0push\0--force\0origin\0");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        vec![
            (
                "exec",
                record(
                    EventKind::Exec,
                    &ExecBody {
                        cwd_len: 0,
                        _reserved: 0,
                        start_ns: 123_456_789,
                        exe_len: 12,
                        argv_len: 25,
                        confinement: guard_common::Confinement::default(),
                    },
                    &exec_argv,
                ),
            ),
            (
                "open",
                record(
                    EventKind::Open,
                    &OpenBody {
                        flags: 0o100_000,
                        ret: 3,
                        call: 1,
                        mode: 0,
                        repeats: 0,
                        file_type: 0,
                        _reserved: [0; 3],
                    },
                    b"/root/.ssh/id_ed25519",
                ),
            ),
            (
                "open-failed",
                record(
                    EventKind::Open,
                    &OpenBody {
                        flags: 0o1101,
                        ret: -13,
                        call: 3,
                        mode: 0o644,
                        repeats: 0,
                        file_type: 0,
                        _reserved: [0; 3],
                    },
                    b"/work/repo/.git/hooks/pre-commit",
                ),
            ),
            (
                "open-repeats",
                flagged(
                    record(
                        EventKind::Open,
                        &OpenBody {
                            flags: 0o100_000,
                            ret: 5,
                            call: 1,
                            mode: 0,
                            repeats: 4095,
                            file_type: 0,
                            _reserved: [0; 3],
                        },
                        b"/work/repo/Cargo.toml",
                    ),
                    guard_common::flags::REPEATS,
                ),
            ),
            (
                "connect4",
                record(
                    EventKind::Connect,
                    &NetBody {
                        addr: [169, 254, 169, 254, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        ret: -1,
                        family: guard_common::AF_INET,
                        port: 80,
                        sock_type: 1,
                        protocol: 6,
                    },
                    b"",
                ),
            ),
            (
                "send6",
                record(
                    EventKind::Send,
                    &NetBody {
                        addr: v6,
                        ret: 0,
                        family: guard_common::AF_INET6,
                        port: 53,
                        sock_type: 2,
                        protocol: 17,
                    },
                    b"",
                ),
            ),
            (
                "fork",
                record(
                    EventKind::Fork,
                    &ForkBody {
                        child_pid: 4242,
                        _reserved: 0,
                        child_start_ns: 987_654_321,
                    },
                    b"",
                ),
            ),
            (
                "limit",
                record(
                    EventKind::Limit,
                    &LimitBody {
                        dropped: 4096,
                        total: 10_000,
                        reason: guard_common::limit::RATE,
                        child_pid: 0,
                    },
                    b"",
                ),
            ),
            (
                "tamper-open",
                record(
                    EventKind::Tamper,
                    &TamperBody {
                        op: guard_common::tamper::PROC_OPEN,
                        syscall: 257,
                        target: 4242,
                        _reserved: 0,
                        arg: 0,
                    },
                    b"/proc/4242/environ",
                ),
            ),
            (
                "exit",
                record(
                    EventKind::Exit,
                    &ExitBody {
                        status: 9,
                        _reserved: 0,
                        start_ns: 123_456_789,
                    },
                    b"",
                ),
            ),
            (
                "unix",
                record(
                    EventKind::Unix,
                    &UnixBody {
                        ret: -1,
                        call: guard_common::UnixCall::Connect as u32,
                        sock_type: 1,
                        _reserved: 0,
                        peer_pid: 0,
                        peer_uid: u32::MAX,
                    },
                    b"/var/run/docker.sock",
                ),
            ),
            (
                "route-raw-socket",
                record(
                    EventKind::Route,
                    &RouteBody {
                        ret: -1,
                        route: guard_common::route::RAW_SOCKET,
                        family: guard_common::AF_INET,
                        sock_type: 3,
                        ..RouteBody::default()
                    },
                    b"",
                ),
            ),
            (
                "route-listen",
                record(
                    EventKind::Route,
                    &RouteBody {
                        ret: -1,
                        route: guard_common::route::LISTEN,
                        family: guard_common::AF_INET,
                        sock_type: 1,
                        addr: [0; 16],
                        port: 8000,
                        _reserved: [0; 3],
                    },
                    b"",
                ),
            ),
            (
                "route-exec-mapping",
                record(
                    EventKind::Route,
                    &RouteBody {
                        ret: 0,
                        route: guard_common::route::EXEC_MAPPING,
                        family: 0,
                        sock_type: 0,
                        ..RouteBody::default()
                    },
                    b"/tmp/prog",
                ),
            ),
            (
                "flow",
                record(
                    EventKind::Flow,
                    &FlowBody {
                        addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        bytes_out: 1 << 20,
                        bytes_in: 4096,
                        packets_out: 20,
                        packets_in: 9,
                        start_ns: 500,
                        cookie: 3,
                        family: guard_common::AF_INET,
                        port: 443,
                        sock_type: 1,
                        reason: guard_common::flow::CLOSE,
                        ..FlowBody::default()
                    },
                    b"",
                ),
            ),
            {
                let answer = crate::event::dns::test_support::response(
                    "upload.guard-test.example.",
                    &[std::net::Ipv4Addr::new(10, 9, 8, 7)],
                );
                (
                    "dns-answer",
                    record(
                        EventKind::Dns,
                        &DnsBody {
                            addr: [127, 0, 0, 53, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                            cookie: 3,
                            len: answer.len() as u32,
                            family: guard_common::AF_INET,
                            port: 53,
                            sock_type: 2,
                            direction: guard_common::dns::IN,
                            flags: 0,
                        },
                        &answer,
                    ),
                )
            },
        ]
    }

    /// The checked-in seeds (fuzz/seeds/decode/) are the records above, so a change
    /// of the wire format cannot leave the fuzzer starting from stale records.
    /// `GUARD_WRITE_SEEDS=1 cargo test -p guard --lib fuzz_seeds` rewrites them.
    #[test]
    fn fuzz_seeds_are_current_records() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/decode");
        let write = std::env::var_os("GUARD_WRITE_SEEDS").is_some();
        for (name, bytes) in seed_records() {
            assert!(decode(&bytes).is_ok(), "seed {name} decodes");
            let path = dir.join(format!("{name}.bin"));
            if write {
                std::fs::create_dir_all(&dir).expect("seed dir");
                std::fs::write(&path, &bytes).expect("write seed");
            }
            let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (GUARD_WRITE_SEEDS=1 writes it)", path.display())
            });
            assert_eq!(
                on_disk,
                bytes,
                "{} is stale: rerun with GUARD_WRITE_SEEDS=1",
                path.display()
            );
        }
    }
}
