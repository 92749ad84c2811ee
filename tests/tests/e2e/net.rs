//! TCP and UDP connects, and UDP datagrams sent to an explicit destination, over IPv4 and
//! IPv6, with where they went and whether they got there.

use std::collections::BTreeSet;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, SystemTime};

use guard_tests::{
    Daemon, Event, FakeAgent, accept_and_read, assert_same_identity, check_schema, dump,
    fake_agent_exe, session_ended, session_of,
};

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one agent run, then a table of six expected events (one field a line under rustfmt) checked in turn"
)]
fn connects_and_sends_are_reported() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start(&[agent.name()]);

    let tcp4 = TcpListener::bind("127.0.0.1:0").expect("bind TCP 127.0.0.1");
    let tcp6 = TcpListener::bind("[::1]:0").expect("bind TCP [::1] (is IPv6 loopback up?)");
    let udp4 = UdpSocket::bind("127.0.0.1:0").expect("bind UDP 127.0.0.1");
    let udp6 = UdpSocket::bind("[::1]:0").expect("bind UDP [::1]");
    let port = |addr: io::Result<std::net::SocketAddr>| addr.expect("local_addr").port();
    let (port4, port6) = (port(tcp4.local_addr()), port(tcp6.local_addr()));
    let (uport4, uport6) = (port(udp4.local_addr()), port(udp6.local_addr()));
    // A port nobody listens on: bound, then released.
    let closed4 = port(TcpListener::bind("127.0.0.1:0").expect("bind").local_addr());

    let ports = [port4, port6, uport4, uport6, closed4].map(|p| p.to_string());
    let mut args = vec!["net"];
    args.extend(ports.iter().map(String::as_str));
    let run = agent.run(&args);
    let root = run.pid;

    // The traffic really arrived, so the events below describe something that happened.
    assert_eq!(accept_and_read(&tcp4), "tcp4", "TCP over IPv4");
    assert_eq!(accept_and_read(&tcp6), "tcp6", "TCP over IPv6");
    assert_eq!(
        datagrams(&udp4, 2),
        set(&["udp4-connected", "udp4-sendto"]),
        "UDP over IPv4"
    );
    assert_eq!(datagrams(&udp6, 1), set(&["udp6-sendto"]), "UDP over IPv6");

    let events = daemon.wait_for("the end of the agent's session", session_ended(root));
    check_schema(&events, since);
    let session = session_of(&events, root);

    let refused_errno = run.report("refused_errno");
    assert_eq!(
        refused_errno,
        i64::from(libc::ECONNREFUSED),
        "connect to a closed port"
    );
    let expected = [
        (
            "TCP connect over IPv4",
            "connect",
            "127.0.0.1",
            port4,
            "tcp",
            "ipv4",
            "ok",
        ),
        (
            "TCP connect over IPv6",
            "connect",
            "::1",
            port6,
            "tcp",
            "ipv6",
            "ok",
        ),
        (
            "refused TCP connect",
            "connect",
            "127.0.0.1",
            closed4,
            "tcp",
            "ipv4",
            "ECONNREFUSED",
        ),
        (
            "UDP connect",
            "connect",
            "127.0.0.1",
            uport4,
            "udp",
            "ipv4",
            "ok",
        ),
        (
            "UDP sendto over IPv4",
            "send",
            "127.0.0.1",
            uport4,
            "udp",
            "ipv4",
            "ok",
        ),
        (
            "UDP sendto over IPv6",
            "send",
            "::1",
            uport6,
            "udp",
            "ipv6",
            "ok",
        ),
    ];
    let mut problems = Vec::new();
    for (what, kind, addr, port, proto, family, result) in expected {
        let matching: Vec<&Event> = events
            .iter()
            .filter(|e| {
                e.is(kind, root)
                    && e.str("addr") == Some(addr)
                    && e.int("port") == Some(i64::from(port))
            })
            .collect();
        let [event] = matching.as_slice() else {
            problems.push(format!(
                "{what}: expected one {kind} event to {addr} port {port}, found {}: {matching:?}",
                matching.len()
            ));
            continue;
        };
        let mut check = |field: &str, ok: bool| {
            if !ok {
                problems.push(format!("{what}: {field}: {event}"));
            }
        };
        check("proto", event.str("proto") == Some(proto));
        check("family", event.str("family") == Some(family));
        check("result", event.str("result") == Some(result));
        if result != "ok" {
            check("errno", event.int("errno") == Some(refused_errno));
        }
        check("session", event.session() == Some(session.as_str()));
        check("comm", event.str("comm") == Some(agent.name()));
    }
    assert!(
        problems.is_empty(),
        "network events that do not match what the agent did:\n  {}\n{}",
        problems.join("\n  "),
        dump(&events)
    );

    // Every event of the root agrees on who it is.
    assert_same_identity(&events, root);

    let events = daemon.stop_ok();
    check_schema(&events, since);
}

/// The payloads of the next `count` datagrams on `socket`.
fn datagrams(socket: &UdpSocket, count: usize) -> BTreeSet<String> {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set_read_timeout");
    let mut buf = [0u8; 256];
    (0..count)
        .map(|_| {
            let (n, _) = socket
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("datagram on {:?}: {e}", socket.local_addr()));
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}
