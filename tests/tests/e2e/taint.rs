//! Taint, end to end: an agent reads a file a `secret = true` log rule covers; the
//! kernel taints it at the open, and its child (forked after the read) is refused
//! (EPERM, nothing arrives) at a loopback listener off the `[taint]` allowlist, while
//! the same child reaches the allowlisted listener and the agent's untainted sibling
//! (forked before the read) reaches the refused one. The events name the secret
//! (`tainted_by`) and the session report states "read X, then sent N bytes to Y".

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use guard_tests::{Enforcing, Event, check_schema, dump, fake_agent_exe, find, scaled, session_of};

/// Accepts what is already queued on `listener` (connections complete in the
/// kernel's backlog without an accept): the payload of each.
fn queued(listener: &TcpListener) -> Vec<String> {
    listener.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    while let Ok((mut s, _)) = listener.accept() {
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(scaled(Duration::from_secs(5))))
            .expect("timeout");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        got.push(text);
    }
    got
}

#[test]
fn a_secret_read_taints_the_reader_and_its_children_but_not_its_siblings() {
    let refused = TcpListener::bind("127.0.0.1:0").expect("bind");
    let allowed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused_addr = refused.local_addr().expect("addr").to_string();
    let allowed_addr = allowed.local_addr().expect("addr").to_string();
    let rules = format!(
        "[taint]\negress = \"deny\"\nallow = [\"{allowed_addr}\"]\n\n\
         [[rule]]\nid = \"test-secret\"\nkind = \"file\"\npaths = [\"{{dir}}/service.env\"]\n\
         access = [\"read\"]\nsecret = true\naction = \"log\"\n"
    );
    let mut s = Enforcing::start(fake_agent_exe!(), "guard-e2e-taint", &rules, |dir| {
        std::fs::write(dir.join("service.env"), "TOKEN=hunter2\n").expect("write the secret");
    });
    let secret_path = s.path("service.env");

    let (run, events) = s.session(&["taint", &secret_path, &refused_addr, &allowed_addr]);
    let root = run.pid;
    let child = run.report("child_pid");
    let sibling = run.report("sibling_pid");

    // What the processes saw: the tainted child refused off the list and let through
    // on it; the sibling, forked before the read, not tainted.
    assert_eq!(
        run.report("denied_child"),
        i64::from(libc::EPERM),
        "the tainted child's connect off the allowlist\n{}",
        dump(&events)
    );
    assert_eq!(
        run.report("allowed_child"),
        0,
        "the allowlisted destination"
    );
    assert_eq!(run.report("denied_sibling"), 0, "the untainted sibling");
    // What the listeners saw: the refused one only the sibling's bytes, never the
    // tainted child's; the allowed one the child's.
    assert_eq!(queued(&refused), ["hello"], "one connection: the sibling's");
    assert_eq!(queued(&allowed), ["hello"]);

    check_schema(&events, s.since);
    let session = session_of(&events, root);
    let port = |l: &TcpListener| i64::from(l.local_addr().expect("addr").port());
    let (refused_port, allowed_port) = (port(&refused), port(&allowed));

    // The read that tainted: logged under the secret rule, marked tainted from there.
    let read = find(&events, "the secret's read", |e| {
        e.is("open", root) && e.str("path") == Some(secret_path.as_str())
    });
    assert_eq!(read.str("rule"), Some("test-secret"), "{read}");
    assert_eq!(read.bool("secret"), Some(true), "{read}");
    assert_eq!(read.bool("tainted"), Some(true), "{read}");

    // The refusal: a connect event with the deny, the taint rule and the secret.
    let denied = find(&events, "the tainted child's refused connect", |e| {
        e.is("connect", child) && e.int("port") == Some(refused_port)
    });
    assert_eq!(denied.str("result"), Some("EPERM"), "{denied}");
    assert_eq!(denied.str("rule"), Some("taint.egress"), "{denied}");
    assert_eq!(denied.str("action"), Some("deny"), "{denied}");
    assert_eq!(denied.str("outcome"), Some("denied"), "{denied}");
    assert_eq!(
        denied.strings("tainted_by"),
        Some(vec![secret_path.as_str()]),
        "{denied}"
    );
    assert_eq!(denied.session(), Some(session.as_str()));

    // The allowed connect and its flow: through, tainted, with the secret's path.
    let ok = find(&events, "the tainted child's allowed connect", |e| {
        e.is("connect", child) && e.int("port") == Some(allowed_port)
    });
    assert_eq!(ok.str("result"), Some("ok"), "{ok}");
    assert_eq!(ok.get("rule"), None, "no violation on the allowlist: {ok}");
    assert_eq!(ok.strings("tainted_by"), Some(vec![secret_path.as_str()]));
    let flows: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind() == "flow" && e.int("port") == Some(allowed_port))
        .collect();
    assert!(
        !flows.is_empty(),
        "no flow to the allowlisted listener\n{}",
        dump(&events)
    );
    for f in &flows {
        assert_eq!(f.bool("tainted"), Some(true), "{f}");
        assert_eq!(
            f.strings("tainted_by"),
            Some(vec![secret_path.as_str()]),
            "{f}"
        );
    }

    // The sibling: through, not tainted, no violation.
    let sib = find(&events, "the sibling's connect", |e| {
        e.is("connect", sibling) && e.int("port") == Some(refused_port)
    });
    assert_eq!(sib.str("result"), Some("ok"), "{sib}");
    assert_eq!(sib.get("tainted"), None, "{sib}");
    assert_eq!(sib.get("tainted_by"), None, "{sib}");
    assert_eq!(sib.get("rule"), None, "{sib}");

    // The session-level fact: the secret read, then bytes sent to each destination.
    let report = s.daemon.report(&session);
    let fact = &report["secret_egress"];
    assert_eq!(
        fact["secrets"]["items"][0]["path"],
        secret_path.as_str(),
        "{fact}"
    );
    let sent = fact["sent_after"]["items"].as_array().expect("sent_after");
    let to = |p: i64| {
        sent.iter()
            .find(|d| d["port"].as_i64() == Some(p))
            .unwrap_or_else(|| panic!("no entry for port {p}: {fact}"))
    };
    let allowed_entry = to(allowed_port);
    assert!(
        allowed_entry["bytes_out"].as_u64().is_some_and(|n| n > 5),
        "the child's hello and its headers: {fact}"
    );
    assert_eq!(allowed_entry["tainted"], true, "{fact}");
    let refused_entry = to(refused_port);
    assert_eq!(refused_entry["attempts"], 2, "child and sibling: {fact}");
    assert_eq!(refused_entry["failed"], 1, "the child's: {fact}");
    let md = s.daemon.report_text(&session, false);
    assert!(
        md.contains(&format!("This session read secret `{secret_path}`")),
        "{md}"
    );
    assert!(md.contains(&format!("bytes to {allowed_addr}/tcp")), "{md}");

    s.finish();
}
