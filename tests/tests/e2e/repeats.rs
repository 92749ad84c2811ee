//! Repeated opens (guard-ebpf's repeat.rs, docs/events.md "Repeated opens"): a
//! thread that opens the same file again with the same flags is counted in the
//! kernel, and the count reaches the log as an `open` line with `repeats`. Every
//! open is accounted for, and a change that could alter the verdict (the file
//! moved into a protected directory, a new policy) makes the next open judged again.

use std::fs;

use guard_tests::{
    Enforcing, Event, Fifo, Finished, fake_agent_exe, python3, session_ended, write_policy,
};

/// Reads under `{dir}/vault` are refused (killed where BPF-LSM does not run).
const RULES: &str = r#"
[[rule]]
id = "vault"
kind = "file"
access = ["read"]
paths = ["{dir}/vault/**"]
action = "deny"
"#;

fn start() -> Enforcing {
    Enforcing::start(fake_agent_exe!(), "guard-e2e-repeats", RULES, |dir| {
        fs::create_dir_all(dir.join("pub")).expect("mkdir");
        fs::create_dir_all(dir.join("vault")).expect("mkdir");
        fs::write(dir.join("pub/data"), "public").expect("write");
    })
}

/// The open lines of `path` in the session of the run `run`.
fn opens_of<'e>(events: &'e [Event], run: &Finished, path: &str) -> Vec<&'e Event> {
    Enforcing::of_run(events, run)
        .into_iter()
        .filter(|e| e.kind() == "open" && e.str("path") == Some(path))
        .collect()
}

/// Opens a line stands for: its `repeats`, or 1.
fn opens_in(lines: &[&Event]) -> i64 {
    lines.iter().map(|e| e.int("repeats").unwrap_or(1)).sum()
}

#[test]
fn a_file_opened_again_and_again_is_reported_with_its_count() {
    let mut s = start();
    let path = s.path("pub/data");
    let (run, events) = s.python(
        r#"
import os
for _ in range(500):
    os.close(os.open("{dir}/pub/data", os.O_RDONLY))
print("done=1", flush=True)
"#,
    );
    run.assert_success();
    let lines = opens_of(&events, &run, &path);
    // Every open is accounted for: the lines of single opens and the counts.
    assert_eq!(opens_in(&lines), 500, "{lines:#?}");
    let counts: Vec<&&Event> = lines
        .iter()
        .filter(|e| e.get("repeats").is_some())
        .collect();
    assert!(!counts.is_empty(), "no count of repeated opens: {lines:#?}");
    // Far fewer lines than opens (a rename anywhere on the host makes the next open
    // a line of its own again, so not exactly one).
    assert!(lines.len() <= 50, "{} lines for 500 opens", lines.len());
    for c in counts {
        // A count names the file and access of the opens it stands for.
        assert_eq!(c.strings("access"), Some(vec!["read"]), "{c}");
        assert_eq!(c.str("result"), Some("ok"), "{c}");
        assert!(c.int("repeats").is_some_and(|n| n > 0), "{c}");
    }
    // The session report counts them all.
    let session = lines[0].session().expect("session").to_owned();
    let report = s.daemon.report(&session);
    let read = &report["read"];
    let entry = ["secrets", "workspace", "system", "outside"]
        .iter()
        .filter_map(|class| read[*class]["items"].as_array())
        .flatten()
        .find(|f| f["path"] == path.as_str())
        .unwrap_or_else(|| panic!("{path} not in the report's reads: {read}"));
    assert_eq!(entry["opens"], 500, "{entry}");
    s.finish();
}

/// A file opened (and counted) in a directory that then moves into the protected
/// one keeps its dentry, its parent and its name: only the moved epoch of names
/// makes the next open judged, and refused, again.
#[test]
fn a_directory_moved_into_a_protected_one_is_judged_again() {
    let mut s = start();
    let (run, events) = s.python(
        r#"
import os
for _ in range(20):
    os.close(os.open("{dir}/pub/data", os.O_RDONLY))
os.rename("{dir}/pub", "{dir}/vault/pub")
try:
    fd = os.open("{dir}/vault/pub/data", os.O_RDONLY)
except OSError as e:
    print(f"opened={e.errno}", flush=True)
    raise SystemExit(0)
print(f"opened={fd}", flush=True)
print("data=" + os.read(fd, 100).decode(), flush=True)
"#,
    );
    run.assert_refused("opened", s.lsm);
    assert!(
        !run.stdout.contains("data=public"),
        "the file was read: {run:?}"
    );
    let moved = s.path("vault/pub/data");
    let refused = opens_of(&events, &run, &moved);
    assert!(
        refused.iter().any(|e| e.str("rule") == Some("vault")),
        "no open of {moved} by rule vault: {refused:#?}"
    );
    s.finish();
}

/// A file opened (and counted) before a policy that protects it was loaded is
/// judged again at its next open.
#[test]
fn a_new_policy_judges_a_counted_file_again() {
    let mut s = start();
    let fifo = Fifo::new(s.dir.path(), "go");
    let script = format!(
        r#"
import os
for _ in range(20):
    os.close(os.open("{dir}/pub/data", os.O_RDONLY))
open("{fifo}").read()
fd = os.open("{dir}/pub/data", os.O_RDONLY)
print(f"opened={{fd}}", flush=True)
"#,
        dir = s.dir.path().display(),
        fifo = fifo.path_str(),
    );
    let running = s.agent.spawn(&["run", python3(), "-c", &script]);
    let path = s.path("pub/data");
    let pid = running.pid();
    // Opened and counted under the first policy.
    s.daemon.wait_for("the first opens of the file", |ev| {
        ev.iter().any(|e| {
            e.kind() == "open" && e.str("path") == Some(path.as_str()) && e.int("repeats").is_none()
        })
    });
    // The same file protected now.
    let rules = format!(
        "{RULES}\n[[rule]]\nid = \"pub-now\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{{dir}}/pub/**\"]\naction = \"kill\"\n"
    )
    .replace("{dir}", &s.dir.path().display().to_string());
    write_policy(
        &s.dir.join("guard.toml"),
        &format!(
            "mode = \"enforce\"\n\n[agents]\nnames = [\"{}\"]\n\n{rules}",
            s.agent.name()
        ),
    );
    s.daemon.wait_for("the second policy_loaded", |ev| {
        ev.iter().filter(|e| e.kind() == "policy_loaded").count() >= 2
    });
    fifo.release();
    let run = running.finish();
    let events = s
        .daemon
        .wait_for("the end of the session", session_ended(pid));
    assert!(
        !run.stdout.contains("opened="),
        "the open returned: {run:?}"
    );
    let lines = opens_of(&events, &run, &path);
    let killed = lines
        .iter()
        .find(|e| e.str("rule") == Some("pub-now"))
        .unwrap_or_else(|| panic!("no open of {path} by rule pub-now: {lines:#?}"));
    assert_eq!(killed.str("outcome"), Some("killed"), "{killed}");
    s.finish();
}
