//! Unix domain sockets, a way out the network hooks do not see (issue 14 item 4,
//! docs/routes.md): a local proxy, the Docker socket, an agent's socket. A session's
//! connect or datagram to a socket file that a file rule on writes covers is refused
//! (BPF-LSM: EPERM, nothing reaches the listener) or killed before its connect
//! returns (tracepoint tier: the connection was made, nothing is sent on it; a
//! datagram is reported, not stopped). Every connect and addressed send of a
//! session is a `unix` event naming the socket file the kernel reached, and the
//! session report lists the sockets.

use std::fs;
use std::io::{ErrorKind, Read as _};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;

use guard_tests::{
    Enforcing, Event, Finished, PY_SENDMMSG_TYPES, fake_agent_exe, python3, scaled, unique_name,
};

const EPERM: i64 = libc::EPERM as i64;
const SIGKILL: i64 = libc::SIGKILL as i64;
const PAYLOAD: &str = "unix-payload-3e9a";

const RULES: &str = r#"
[[rule]]
id = "no-proxy"
kind = "file"
access = ["write"]
paths = ["{dir}/proxy.sock", "{dir}/proxy.dgram"]
action = "deny"
"#;

/// Sends the payload over a Unix socket: `client.py ADDRESS CALL PAYLOAD`, CALL one of
/// `stream` (connect, then send), `sendto`, `sendmsg`, `sendmmsg` (a datagram to the
/// address; `@name` for an abstract one); reports `errno=` (0 when it went out).
/// (After [`PY_SENDMMSG_TYPES`].)
const CLIENT: &str = r#"
import os, select, socket, struct, sys
call, payload = sys.argv[2], sys.argv[3].encode()
kind = socket.SOCK_STREAM if call == "stream" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_UNIX, kind)
addr = sys.argv[1]
if addr.startswith("@"):
    addr = "\0" + addr[1:]

def sendmmsg():
    sun = struct.pack("H", socket.AF_UNIX) + addr.encode() + b"\0"
    name = ctypes.create_string_buffer(sun, len(sun))
    data = ctypes.create_string_buffer(payload, len(payload))
    iov = iovec(ctypes.cast(data, ctypes.c_void_p), len(payload))
    hdr = msghdr(ctypes.cast(name, ctypes.c_void_p), len(sun), ctypes.pointer(iov), 1, None, 0, 0)
    msgs = (mmsghdr * 1)(mmsghdr(hdr, 0))
    if libc.sendmmsg(s.fileno(), msgs, 1, 0) < 0:
        raise OSError(ctypes.get_errno(), "sendmmsg")

try:
    if call == "sendto":
        s.sendto(payload, addr)
    elif call == "sendmsg":
        s.sendmsg([payload], [], 0, addr)
    elif call == "sendmmsg":
        sendmmsg()
    else:
        s.connect(addr)
        s.sendall(payload)
except OSError as e:
    os.write(1, f"errno={e.errno}\n".encode())
    sys.exit(0)
# One write (a report and its newline), since a kill may follow at any time.
os.write(1, b"errno=0\n")
if call != "stream":
    # Where a datagram to a protected socket is reported rather than refused,
    # guard kills its sender after it left: wait for that (bounded), so that the
    # kill is what ends this process.
    select.select([], [], [], 60)
    os.write(1, b"survived=1\n")
"#;

fn start() -> Enforcing {
    Enforcing::start(fake_agent_exe!(), "guard-e2e-unix", RULES, |dir| {
        fs::write(
            dir.join("client.py"),
            format!("{PY_SENDMMSG_TYPES}{CLIENT}"),
        )
        .expect("write the client");
    })
}

/// Runs the client as the agent's child: `sh -c "cd {dir} && exec PYTHON client.py …"`.
fn client(s: &mut Enforcing, addr: &str, call: &str) -> (Finished, Vec<Event>) {
    let python = python3();
    s.sh(&format!(
        "cd {{dir}} && exec {python} client.py '{addr}' {call} {PAYLOAD}"
    ))
}

/// What reached a listener: the connections waiting in its backlog and the bytes
/// each sent before it closed (the session has ended: every peer is gone).
fn received(listener: &UnixListener) -> (usize, String) {
    listener.set_nonblocking(true).expect("nonblocking");
    let (mut n, mut bytes) = (0, String::new());
    loop {
        match listener.accept() {
            Ok((mut conn, _)) => {
                n += 1;
                conn.set_nonblocking(false).expect("blocking");
                conn.set_read_timeout(Some(scaled(Duration::from_secs(5))))
                    .expect("timeout");
                conn.read_to_string(&mut bytes).expect("read what was sent");
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (n, bytes),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// The one `unix` event of the run's session naming `path` (other Unix sockets a
/// session's programs use, such as a name service's, are not the test's).
fn unix_event<'e>(events: &'e [Event], run: &Finished, path: &str) -> &'e Event {
    let session = Enforcing::of_run(events, run);
    let evs: Vec<&Event> = session
        .iter()
        .copied()
        .filter(|e| e.kind() == "unix" && e.str("path") == Some(path))
        .collect();
    match evs.as_slice() {
        [e] => e,
        _ => {
            // Everything but the opens: what ran, what it connected to, how it ended.
            let shown: Vec<String> = session
                .iter()
                .filter(|e| e.kind() != "open")
                .map(|e| format!("  {e}"))
                .collect();
            let elsewhere: Vec<String> = events
                .iter()
                .filter(|e| e.kind() == "unix" || e.kind() == "limit" || e.kind() == "lost")
                .map(|e| format!("  {e}"))
                .collect();
            panic!(
                "{} unix events naming {path} in the session of {} ({} events), \
                 its events but opens:\n{}\nunix, limit and lost events of every session:\n{}",
                evs.len(),
                run.pid,
                session.len(),
                shown.join("\n"),
                elsewhere.join("\n"),
            )
        }
    }
}

/// A connect to a protected socket: nothing the client meant to send reached the
/// listener; the event names the socket file, the rule and what guard did.
#[test]
fn a_connect_to_a_protected_socket_sends_nothing() {
    let mut s = start();
    let listener = UnixListener::bind(s.dir.join("proxy.sock")).expect("listen");
    let proxy = s.path("proxy.sock");
    let (run, events) = client(&mut s, &proxy, "stream");
    let (connections, bytes) = received(&listener);
    assert!(!bytes.contains(PAYLOAD), "the payload reached the proxy");
    let lsm = s.denies("unix_socket_deny");
    run.assert_refused("errno", lsm);
    if lsm {
        assert_eq!(connections, 0, "BPF-LSM refused the connect: no connection");
    }
    let e = unix_event(&events, &run, &proxy);
    assert_eq!(e.str("call"), Some("connect"), "{e}");
    assert_eq!(e.str("socket"), Some("stream"), "{e}");
    assert_eq!(e.str("rule"), Some("no-proxy"), "{e}");
    assert_eq!(
        e.str("outcome"),
        Some(s.outcome_of("unix_socket_deny")),
        "{e}"
    );
    s.finish();
}

/// A datagram to a protected socket, by each call that names an address: refused
/// where BPF-LSM runs; elsewhere it goes out (the guarantee says so) and is
/// reported with the call and the rule.
#[test]
fn a_datagram_to_a_protected_socket_is_refused_or_reported() {
    let mut s = start();
    let sink = UnixDatagram::bind(s.dir.join("proxy.dgram")).expect("bind");
    sink.set_nonblocking(true).expect("nonblocking");
    let proxy = s.path("proxy.dgram");
    for call in ["sendto", "sendmsg", "sendmmsg"] {
        let (run, events) = client(&mut s, &proxy, call);
        let mut buf = [0u8; 256];
        let got = sink.recv(&mut buf);
        let e = unix_event(&events, &run, &proxy);
        assert_eq!(e.str("call"), Some(call), "{e}");
        assert_eq!(e.str("socket"), Some("dgram"), "{e}");
        assert_eq!(e.str("rule"), Some("no-proxy"), "{e}");
        if s.denies("unix_socket_deny") {
            assert_eq!(run.report("errno"), EPERM, "{call}: {run:?}");
            assert!(
                got.as_ref()
                    .is_err_and(|e| e.kind() == ErrorKind::WouldBlock),
                "{call}: a datagram arrived: {got:?}"
            );
            assert_eq!(e.str("outcome"), Some("denied"), "{e}");
            assert_eq!(e.str("result"), Some("EPERM"), "{e}");
        } else {
            // The tracepoint tier: the datagram left (reported, not stopped) and
            // its sender was killed from user space after.
            assert_eq!(e.str("result"), Some("ok"), "{e}");
            let n = got.unwrap_or_else(|e| panic!("{call}: no datagram: {e}"));
            assert_eq!(&buf[..n], PAYLOAD.as_bytes(), "{call}");
            assert_eq!(run.report("errno"), 0, "{call}: {run:?}");
            assert_eq!(e.str("outcome"), Some("killed"), "{e}");
            assert_eq!(run.report("child_signal"), SIGKILL, "{call}: {run:?}");
            assert!(
                !run.reports.contains_key("survived"),
                "{call}: the sender outlived its kill: {run:?}"
            );
        }
    }
    s.finish();
}

/// Sockets no rule covers: a relative name is reported as the socket file the
/// kernel reached, an abstract name as `@name`; both reached their listener, and
/// the session report lists them.
#[test]
fn connects_name_the_socket_file_the_kernel_reached() {
    let mut s = start();
    let file = UnixListener::bind(s.dir.join("ok.sock")).expect("listen");
    let abstract_name = unique_name("gunix");
    let addr = SocketAddr::from_abstract_name(abstract_name.as_bytes()).expect("abstract name");
    let abstract_listener = UnixListener::bind_addr(&addr).expect("listen (abstract)");
    let at = format!("@{abstract_name}");
    for (addr, listener, path, resolved) in [
        ("ok.sock", &file, s.path("ok.sock"), true),
        (at.as_str(), &abstract_listener, at.clone(), false),
    ] {
        let (run, events) = client(&mut s, addr, "stream");
        assert_eq!(run.report("errno"), 0, "{run:?}");
        let (connections, bytes) = received(listener);
        assert_eq!((connections, bytes.as_str()), (1, PAYLOAD), "{addr}");
        let e = unix_event(&events, &run, &path);
        assert_eq!(e.bool("path_resolved"), Some(resolved), "{e}");
        assert_eq!(e.str("result"), Some("ok"), "{e}");
        assert_eq!(e.str("rule"), None, "{e}");
        let session = e.session().expect("a session").to_owned();
        let report = s.daemon.report(&session);
        let socket = report["unix_sockets"]["items"]
            .as_array()
            .and_then(|items| items.iter().find(|i| i["path"] == path.as_str()))
            .unwrap_or_else(|| panic!("{path} not in the report: {report:#}"));
        assert_eq!(socket["connects"], 1, "{report:#}");
    }
    s.finish();
}
