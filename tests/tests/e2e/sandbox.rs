//! Sandbox truth, end to end: what confined each tool, read by the kernel at its exec,
//! and a tool that escaped the sandbox its session's tools ran in.
//!
//! The fake Codex-like chain (`guard_tests::chain`) runs two tools the way Codex
//! does, through its own binary again (`/proc/self/exe`, the sandbox step): the first
//! inside bubblewrap (its own user, mount and network namespaces, as Codex's
//! `workspace-write` runs them), the second straight from the sandbox step, as an
//! escalated command runs. With `[sessions] unsandboxed_tools = "kill"`, the second is
//! killed and the agent lives.

use std::path::Path;

use guard_tests::chain::Chain;
use guard_tests::{Event, dump};
use serde_json::Value;

/// The `confinement` of an exec event, as a map.
fn confinement(e: &Event) -> &serde_json::Map<String, Value> {
    e.get("confinement")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no confinement on {e}"))
}

fn ns(e: &Event, key: &str) -> u64 {
    confinement(e)
        .get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {key} in the confinement of {e}"))
}

#[test]
fn a_tool_outside_the_sandbox_its_session_used_is_seen_and_killed() {
    let bwrap = Path::new("/usr/bin/bwrap");
    assert!(
        bwrap.is_file(),
        "bubblewrap is not installed (cargo xtask setup installs it)"
    );
    let mut chain = Chain::new("gsb", "[sessions]\nunsandboxed_tools = \"kill\"\n");
    let agent = chain.agent.clone();

    // The first tool inside bubblewrap; the second, escalated, straight from the
    // sandbox step: it prints a line, then becomes a `sleep` (the same process) that
    // would print nothing for 20 s; guard kills it long before.
    let inside = format!(
        "exec {} --unshare-user --unshare-pid --unshare-net --ro-bind / / --dev /dev \
         --proc /proc /bin/sh -c 'echo inside-sandbox'",
        bwrap.display()
    );
    let escaped = "exec /bin/sh -c 'echo escaped-tool; exec sleep 20'";
    let script = format!(
        "/proc/self/exe -c \"{inside}\"; echo first-done $?; \
         /proc/self/exe -c \"{escaped}\"; echo second-done $?; echo agent-done"
    );
    let (run, _, events) = chain.run(&script);
    let ctx = || {
        format!(
            "stdout:\n{}\nstderr:\n{}\n{}",
            run.stdout,
            run.stderr,
            dump(&events)
        )
    };

    // What the user sees: the sandboxed tool ran, the escaped one was killed after
    // its first line, and the agent went on.
    for line in [
        "inside-sandbox",
        "first-done 0",
        "agent-done",
        "wrapper-done 0",
    ] {
        assert!(run.stdout.contains(line), "no {line:?}\n{}", ctx());
    }
    assert!(
        run.stdout.contains("second-done 137"),
        "the escaped tool was not killed (SIGKILL: 137)\n{}",
        ctx()
    );

    let exec = |pred: &dyn Fn(&Event) -> bool, what: &str| -> Event {
        events
            .iter()
            .find(|e| e.kind() == "exec" && pred(e))
            .cloned()
            .unwrap_or_else(|| panic!("no exec of {what}\n{}", ctx()))
    };
    let a = exec(
        &|e| e.str("exe") == Some(agent.as_str()) && e.str("role") == Some("agent"),
        "the agent",
    );
    assert_eq!(
        confinement(&a).get("seccomp").and_then(Value::as_str),
        Some("disabled"),
        "{a}"
    );
    assert!(
        confinement(&a).get("sandboxed").is_none(),
        "only tools are judged: {a}"
    );
    // The tool inside bubblewrap: other user, mount and network namespaces.
    let t1 = exec(
        &|e| {
            e.str("role") == Some("tool")
                && e.strings("argv")
                    .is_some_and(|a| a.iter().any(|x| x.contains("inside-sandbox")))
        },
        "the sandboxed tool",
    );
    assert_eq!(
        confinement(&t1).get("sandboxed").and_then(Value::as_bool),
        Some(true),
        "{t1}"
    );
    for key in ["user_ns", "mnt_ns", "net_ns"] {
        assert_ne!(ns(&t1, key), ns(&a, key), "{key}: {t1}\n{a}");
    }
    assert!(t1.get("rule").is_none(), "{t1}");
    // The escaped tool: the agent's namespaces, no seccomp filter: killed, by the
    // rule `[sessions] unsandboxed_tools` makes.
    let t2 = exec(
        &|e| {
            e.str("role") == Some("tool")
                && e.strings("argv")
                    .is_some_and(|a| a.iter().any(|x| x.contains("escaped-tool")))
        },
        "the escaped tool",
    );
    assert_eq!(
        confinement(&t2).get("sandboxed").and_then(Value::as_bool),
        Some(false),
        "{t2}"
    );
    for key in ["user_ns", "mnt_ns", "net_ns"] {
        assert_eq!(ns(&t2, key), ns(&a, key), "{key}: {t2}\n{a}");
    }
    assert_eq!(t2.str("rule"), Some("sessions.unsandboxed_tools"), "{t2}");
    assert_eq!(t2.str("outcome"), Some("killed"), "{t2}");
    // Nothing else broke a rule: the agent, bubblewrap and the sandbox steps (the
    // escaped tool's `sleep`, the same process, is judged the same).
    let others: Vec<&Event> = events
        .iter()
        .filter(|e| e.get("rule").is_some() && e.pid() != t2.pid())
        .collect();
    assert!(others.is_empty(), "{others:#?}\n{}", ctx());
}
