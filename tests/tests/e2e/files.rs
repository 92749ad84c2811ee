//! Every way of naming a file ends up as the absolute path that was really opened.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::time::SystemTime;

use guard_tests::{
    Daemon, Event, FakeAgent, TempDir, assert_same_identity, check_schema, dump, fake_agent_exe,
    session_ended, session_of,
};

/// One open done by the `files` scenario, and the event it must give.
struct Case {
    /// The key the fake agent reports the fd (or minus the errno) under.
    key: &'static str,
    /// The file the event must name, relative to the test directory.
    path: &'static str,
    call: &'static str,
    access: &'static [&'static str],
    /// Ok, or the errno name.
    result: &'static str,
}

const READ: &[&str] = &["read"];
const CREATE: &[&str] = &["write", "create", "truncate"];

const CASES: &[Case] = &[
    Case {
        key: "abs",
        path: "abs.txt",
        call: "openat",
        access: READ,
        result: "ok",
    },
    Case {
        key: "open",
        path: "open.txt",
        call: "open",
        access: READ,
        result: "ok",
    },
    Case {
        key: "relative",
        path: "rel.txt",
        call: "openat",
        access: READ,
        result: "ok",
    },
    Case {
        key: "dirfd",
        path: "dirfd.txt",
        call: "openat",
        access: READ,
        result: "ok",
    },
    Case {
        key: "symlink",
        path: "linked.txt",
        call: "openat",
        access: READ,
        result: "ok",
    },
    Case {
        key: "dotdot",
        path: "dotdot.txt",
        call: "openat",
        access: READ,
        result: "ok",
    },
    Case {
        key: "procroot",
        path: "procroot.txt",
        call: "openat",
        access: READ,
        result: "ok",
    },
    Case {
        key: "rdwr",
        path: "rdwr.txt",
        call: "openat",
        access: &["read", "write"],
        result: "ok",
    },
    Case {
        key: "written",
        path: "written.txt",
        call: "openat",
        access: CREATE,
        result: "ok",
    },
    Case {
        key: "creat",
        path: "created.txt",
        call: "creat",
        access: CREATE,
        result: "ok",
    },
    Case {
        key: "openat2",
        path: "openat2.txt",
        call: "openat2",
        access: READ,
        result: "ok",
    },
    Case {
        key: "missing",
        path: "missing",
        call: "openat",
        access: READ,
        result: "ENOENT",
    },
    Case {
        key: "missing_relative",
        path: "nothere",
        call: "openat",
        access: READ,
        result: "ENOENT",
    },
];

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one agent run, each open case checked field by field against its event, then the paths that must not appear"
)]
fn opens_resolve_to_absolute_paths() {
    let since = SystemTime::now();
    let agent = FakeAgent::install(fake_agent_exe!());
    let mut daemon = Daemon::start(&[agent.name()]);

    let dir = TempDir::new("guard-e2e-files");
    for name in [
        "abs.txt",
        "open.txt",
        "rel.txt",
        "dirfd.txt",
        "linked.txt",
        "dotdot.txt",
        "procroot.txt",
        "rdwr.txt",
        "openat2.txt",
    ] {
        fs::write(dir.join(name), name).expect("write test file");
    }
    symlink("linked.txt", dir.join("link")).expect("symlink");
    fs::create_dir(dir.join("sub")).expect("mkdir sub");
    let dir_arg = dir.path().to_str().expect("UTF-8 temp dir");

    let run = agent.run(&["files", dir_arg]);
    let root = run.pid;
    let events = daemon.wait_for("the end of the agent's session", session_ended(root));
    check_schema(&events, since);
    let session = session_of(&events, root);

    let mut problems = Vec::new();
    for case in CASES {
        let path = dir.join(case.path);
        let path = path.to_str().expect("UTF-8 path");
        let reported = run.report(case.key);
        let opens: Vec<&Event> = events
            .iter()
            .filter(|e| e.is("open", root) && e.str("path") == Some(path))
            .collect();
        let [open] = opens.as_slice() else {
            problems.push(format!(
                "{}: expected one open event with path {path}, found {}: {opens:?}",
                case.key,
                opens.len()
            ));
            continue;
        };
        let mut check = |what: &str, ok: bool| {
            if !ok {
                problems.push(format!("{}: {what}: {open}", case.key));
            }
        };
        let ok = case.result == "ok";
        check("result", open.str("result") == Some(case.result));
        if ok {
            assert!(
                reported >= 0,
                "{} failed in the fake agent: errno {}",
                case.key,
                -reported
            );
            check(
                "fd is not the one open returned",
                open.int("fd") == Some(reported),
            );
        } else {
            assert!(reported < 0, "{} succeeded in the fake agent", case.key);
            check(
                "errno is not the one open returned",
                open.int("errno") == Some(-reported),
            );
        }
        check("path_resolved", open.bool("path_resolved") == Some(ok));
        check("path_truncated", open.bool("path_truncated") == Some(false));
        check("call", open.str("call") == Some(case.call));
        let access: Option<BTreeSet<&str>> =
            open.strings("access").map(|a| a.into_iter().collect());
        check(
            "access",
            access == Some(case.access.iter().copied().collect()),
        );
        check("session", open.session() == Some(session.as_str()));
        check("tid", open.int("tid") == Some(root));
        check("comm", open.str("comm") == Some(agent.name()));

        let flags = open.int("flags").unwrap_or(-1) as i32;
        let accmode = flags & libc::O_ACCMODE;
        let expected_accmode = match case.access {
            ["read"] => libc::O_RDONLY,
            ["read", "write"] => libc::O_RDWR,
            _ => libc::O_WRONLY,
        };
        check("flags: access mode", accmode == expected_accmode);
        if case.access == CREATE {
            check("flags: O_CREAT", flags & libc::O_CREAT != 0);
            check("flags: O_TRUNC", flags & libc::O_TRUNC != 0);
        } else {
            check("flags: O_CREAT", flags & libc::O_CREAT == 0);
        }
    }
    assert!(
        problems.is_empty(),
        "open events that do not match what the agent did:\n  {}\n{}",
        problems.join("\n  "),
        dump(&events)
    );

    // Nothing was opened under a path the agent did not use as such.
    for bogus in ["link", "sub/../dotdot.txt"] {
        let path = dir.join(bogus);
        let unresolved: Vec<Event> = events
            .iter()
            .filter(|e| e.kind() == "open" && e.str("path") == path.to_str())
            .cloned()
            .collect();
        assert!(
            unresolved.is_empty(),
            "opens not resolved to the real file:\n{}",
            dump(&unresolved)
        );
    }
    let procroot: Vec<Event> = events
        .iter()
        .filter(|e| {
            e.kind() == "open" && e.str("path").is_some_and(|p| p.starts_with("/proc/self"))
        })
        .cloned()
        .collect();
    assert!(
        procroot.is_empty(),
        "/proc/self/root was not resolved:\n{}",
        dump(&procroot)
    );

    // Every event of the root agrees on who it is.
    assert_same_identity(&events, root);

    let events = daemon.stop_ok();
    check_schema(&events, since);
}
