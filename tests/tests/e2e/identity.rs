//! Protected files by identity (issue 14 item 1, docs/routes.md): a rule on a
//! concrete file or directory also matches the same file under another name. Each
//! test reads a secret through one route and asserts that the secret never reached
//! the process (killed before the open returned on the tracepoint tier; refused with
//! EPERM where BPF-LSM runs, `cargo xtask vm-test`) and that the open event names
//! the route: the path as the process opened it, `by: "identity"` and the protected
//! path the file stands for.

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use guard_tests::{
    Enforcing, Event, Finished, TempDir, fake_agent_exe, find, python3, scaled, session_of,
    wait_until,
};

const SIGKILL: i64 = libc::SIGKILL as i64;
/// The enforcement row of the reads these tests refuse: BPF-LSM's where it runs
/// (Linux 5.10 has it for reads though not for every change), else the kill.
const READS: &str = "file_read_deny";
const SECRET: &str = "identity-secret-51d2";

/// A directory rule and a file rule, both `deny` on reads (kills where BPF-LSM
/// does not run).
const RULES: &str = r#"
[[rule]]
id = "secret-dir"
kind = "file"
access = ["read"]
paths = ["{dir}/secret/**"]
action = "deny"

[[rule]]
id = "secret-file"
kind = "file"
access = ["read"]
paths = ["{dir}/shadow"]
action = "deny"

[[rule]]
id = "named-key"
kind = "file"
access = ["read"]
paths = ["*.idkey"]
action = "deny"

[[rule]]
id = "denied-program"
kind = "exec"
exe = ["{dir}/bin/denied"]
action = "deny"
"#;

/// Opens and reads the file `argv[1]`; reports `opened` (the fd or errno) and the data.
const READER: &str = r#"
import os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except OSError as e:
    print(f"opened={e.errno}", flush=True)
    sys.exit(0)
print(f"opened={fd}", flush=True)
print("data=" + os.read(fd, 100).decode(), flush=True)
"#;

/// The secrets (`{dir}/secret/key`, `{dir}/shadow`), the program and `prepare`'s
/// files exist before the daemon starts and resolves them.
fn start(prepare: impl FnOnce(&TempDir)) -> Enforcing {
    // The directory, the file inside it, the file, the program.
    start_with(prepare, 4)
}

/// [`start`], with `entries` identity entries expected once the daemon is ready.
fn start_with(prepare: impl FnOnce(&TempDir), entries: i64) -> Enforcing {
    let s = Enforcing::start(fake_agent_exe!(), "guard-e2e-identity", RULES, |dir| {
        fs::create_dir_all(dir.join("secret")).expect("mkdir");
        fs::create_dir_all(dir.join("pub")).expect("mkdir");
        fs::write(dir.join("secret/key"), SECRET).expect("write");
        fs::write(dir.join("shadow"), SECRET).expect("write");
        fs::write(dir.join("reader.py"), READER).expect("write reader");
        // A program of its own (one name): a copy of touch.
        fs::create_dir_all(dir.join("bin")).expect("mkdir");
        fs::copy("/usr/bin/touch", dir.join("bin/denied")).expect("copy touch");
        prepare(dir);
    });
    let loaded = &s.loaded;
    assert_eq!(loaded.int("identity_entries"), Some(entries), "{loaded}");
    s
}

/// Runs `sh -c script` as the agent's child, `{reader}` being the reader.
fn sh(s: &mut Enforcing, script: &str) -> (Finished, Vec<Event>) {
    let reader = format!("{} {}", python3(), s.path("reader.py"));
    s.sh(&script.replace("{reader}", &reader))
}

/// The secret never reached the reader: killed before its open returned, or
/// (BPF-LSM) the open failed with EPERM.
fn assert_held(s: &Enforcing, run: &Finished) {
    run.assert_refused("opened", s.denies(READS));
    assert!(!run.stdout.contains(SECRET), "the secret was read: {run:?}");
}

/// Runs `script` (see [`sh`]): the reader's open of `opened` (under the test's
/// directory) is held by `rule`, which matched it by identity of `protected`.
fn assert_read_held(s: &mut Enforcing, script: &str, opened: &str, rule: &str, protected: &str) {
    assert_read_held_as(s, script, opened, rule, &[protected]);
}

/// [`assert_read_held`] where the identity matched may be any of `protected` (a
/// file the session moves is known by its old name until guard has seen the move).
fn assert_read_held_as(
    s: &mut Enforcing,
    script: &str,
    opened: &str,
    rule: &str,
    protected: &[&str],
) {
    let (run, events) = sh(s, script);
    assert_held(s, &run);
    let opened = s.path(opened);
    let session = session_of(&events, run.pid);
    let e = find(&events, &format!("the open of {opened} by {rule}"), |e| {
        e.session() == Some(session.as_str())
            && e.kind() == "open"
            && e.str("path") == Some(opened.as_str())
            && e.str("rule") == Some(rule)
    });
    assert_eq!(e.str("by"), Some("identity"), "{e}");
    let names: Vec<String> = protected.iter().map(|p| s.path(p)).collect();
    assert!(
        e.str("protected")
            .is_some_and(|p| names.iter().any(|n| n == p)),
        "protected is none of {names:?}: {e}"
    );
    assert_eq!(e.str("outcome"), Some(s.outcome_of(READS)), "{e}");
}

/// A hard link is the same inode under another name: the file rule holds for it.
#[test]
fn a_hard_link_to_a_protected_file_is_the_protected_file() {
    let mut s = start(|dir| {
        fs::hard_link(dir.join("shadow"), dir.join("pub/link")).expect("link");
    });
    assert_read_held(
        &mut s,
        "exec {reader} {dir}/pub/link",
        "pub/link",
        "secret-file",
        "shadow",
    );
    s.finish();
}

/// A hard link to a program an exec rule names, run under another name, is that
/// program: it never runs (killed before its first instruction, or EPERM), and the
/// exec event names the link, the rule and `by: "identity"`.
#[test]
fn a_hard_link_to_a_denied_program_is_the_program() {
    let mut s = start(|_| {});
    let (run, events) = sh(
        &mut s,
        "ln {dir}/bin/denied {dir}/pub/innocent && {dir}/pub/innocent {dir}/ran; echo status=$?",
    );
    assert!(
        !s.dir.join("ran").exists(),
        "the denied program ran under another name: {run:?}"
    );
    let status = run.report("status");
    let expected = if s.denies("exec_deny") {
        126
    } else {
        128 + SIGKILL
    };
    assert_eq!(status, expected, "{run:?}");
    let innocent = s.path("pub/innocent");
    let e = find(
        &events,
        &format!("the exec of {innocent} by denied-program"),
        |e| {
            e.kind() == "exec"
                && e.str("exe") == Some(innocent.as_str())
                && e.str("rule") == Some("denied-program")
        },
    );
    assert_eq!(e.str("by"), Some("identity"), "{e}");
    let outcome = s.outcome_of("exec_deny");
    assert_eq!(e.str("outcome"), Some(outcome), "{e}");
    s.finish();
}

/// A bind mount of a protected directory, made by the session in a mount namespace
/// of its own (nothing reaches the host's): the files under it are the protected
/// directory's files.
#[test]
fn a_bind_mount_of_a_protected_directory_is_the_protected_directory() {
    let mut s = start(|dir| fs::create_dir_all(dir.join("view")).expect("mkdir"));
    assert_read_held(
        &mut s,
        "exec unshare -m sh -c 'mount --bind {dir}/secret {dir}/view && exec {reader} {dir}/view/key'",
        "view/key",
        "secret-dir",
        "secret/key",
    );
    // The mount lived in the session's namespace only.
    assert!(!s.dir.join("view/key").exists(), "the bind mount leaked");
    s.finish();
}

/// A directory the kernel found clear (nothing protected above it) stops being so
/// when it moves into a protected one: the kernel remembers clear directories
/// between opens, and a rename forgets them. The file is read through a bind mount
/// of the test's directory, so that its path matches no path rule and only the walk
/// up its directories can find the protected one.
#[test]
fn a_clear_directory_moved_into_a_protected_one_is_walked_again() {
    let mut s = start(|dir| {
        fs::create_dir_all(dir.join("view")).expect("mkdir");
        fs::write(dir.join("pub/data"), SECRET).expect("write");
    });
    assert_read_held_as(
        &mut s,
        "exec unshare -m sh -c 'mount --bind {dir} {dir}/view && \
         cat {dir}/view/pub/data >/dev/null && cat {dir}/view/pub/data >/dev/null && \
         mv {dir}/view/pub {dir}/view/secret/pub && exec {reader} {dir}/view/secret/pub/data'",
        "view/secret/pub/data",
        "secret-dir",
        &["secret", "secret/pub/data"],
    );
    s.finish();
}

/// A path the kernel found matching no rule stops being so when a mount puts a file
/// of another name there: a file whose name a rule protects (`*.idkey`), bind
/// mounted over a file the session read before, is refused under the old path.
#[test]
fn a_file_mounted_over_a_clear_path_is_judged_by_its_name() {
    let mut s = start(|dir| {
        fs::create_dir_all(dir.join("keys")).expect("mkdir");
        fs::write(dir.join("keys/a.idkey"), SECRET).expect("write");
        fs::write(dir.join("pub/data"), "public").expect("write");
    });
    let (run, events) = sh(
        &mut s,
        "exec unshare -m sh -c 'cat {dir}/pub/data >/dev/null && cat {dir}/pub/data >/dev/null && \
         mount --bind {dir}/keys/a.idkey {dir}/pub/data && exec {reader} {dir}/pub/data'",
    );
    assert_held(&s, &run);
    let data = s.path("pub/data");
    let session = session_of(&events, run.pid);
    let e = find(&events, &format!("the open of {data} by named-key"), |e| {
        e.session() == Some(session.as_str())
            && e.kind() == "open"
            && e.str("path") == Some(data.as_str())
            && e.str("rule") == Some("named-key")
    });
    assert_eq!(e.str("outcome"), Some(s.outcome_of(READS)), "{e}");
    s.finish();
}

/// A protected directory moved away (`mv`, same inode) stays protected at its new
/// place: re-resolution keeps entries whose inode lives on.
#[test]
fn a_moved_protected_directory_stays_protected() {
    let mut s = start(|_| {});
    assert_read_held_as(
        &mut s,
        "mv {dir}/secret {dir}/moved && exec {reader} {dir}/moved/key",
        "moved/key",
        "secret-dir",
        &["secret/key", "moved/key"],
    );
    s.finish();
}

/// A rule on a directory protects the files in it under any other name: a hard
/// link elsewhere made before the daemon started, one the session makes itself
/// (a link is no read: it is not refused), and one to a file that appeared in the
/// directory while the daemon ran.
#[test]
fn a_hard_link_to_a_file_inside_a_protected_directory_is_that_file() {
    let mut s = start(|dir| {
        fs::hard_link(dir.join("secret/key"), dir.join("pub/before")).expect("link");
    });
    assert_read_held(
        &mut s,
        "exec {reader} {dir}/pub/before",
        "pub/before",
        "secret-dir",
        "secret/key",
    );
    assert_read_held(
        &mut s,
        "ln {dir}/secret/key {dir}/pub/during && exec {reader} {dir}/pub/during",
        "pub/during",
        "secret-dir",
        "secret/key",
    );
    fs::write(s.dir.join("secret/new"), SECRET).expect("write");
    let new = s.path("secret/new");
    let daemon = &s.daemon;
    wait_until(
        "the daemon to give the new file its entry",
        scaled(Duration::from_secs(10)),
        || {
            daemon
                .log()
                .lines()
                .any(|l| l.contains("identity entry") && l.contains(&new))
        },
    );
    fs::hard_link(s.dir.join("secret/new"), s.dir.join("pub/later")).expect("link");
    assert_read_held(
        &mut s,
        "exec {reader} {dir}/pub/later",
        "pub/later",
        "secret-dir",
        "secret/new",
    );
    s.finish();
}

/// Past the bound on a protected directory's files (docs/policy.md), the set holds
/// those with several names first, and the kernel fails closed on any regular file
/// with several names it cannot place: an unrelated linked file outside is held
/// (`identity_unknown`), a file with one name is read.
#[test]
fn past_the_bound_a_file_with_several_names_fails_closed() {
    const FILES: usize = guard_common::rules::IDENTITY_MEMBERS_MAX + 8;
    let mut s = start_with(
        |dir| {
            for i in 0..FILES {
                fs::write(dir.join(format!("secret/f{i}")), "x").expect("write");
            }
            fs::write(dir.join("pub/one"), SECRET).expect("write");
            fs::write(dir.join("pub/two"), SECRET).expect("write");
            fs::hard_link(dir.join("pub/two"), dir.join("pub/two-again")).expect("link");
        },
        3 + guard_common::rules::IDENTITY_MEMBERS_MAX as i64,
    );
    let (run, _) = sh(&mut s, "exec {reader} {dir}/pub/one");
    assert!(run.stdout.contains(SECRET), "a file with one name: {run:?}");
    let (run, events) = sh(&mut s, "exec {reader} {dir}/pub/two");
    assert_held(&s, &run);
    let child = run.report("child");
    let e = find(&events, "an open refused by secret-dir", |e| {
        e.kind() == "open" && e.pid() == Some(child) && e.str("rule") == Some("secret-dir")
    });
    assert_eq!(e.bool("identity_unknown"), Some(true), "{e}");
    assert_eq!(e.str("outcome"), Some(s.outcome_of(READS)), "{e}");
    let over = s.loaded.get("identity_over").cloned().unwrap_or_default();
    assert!(
        over.to_string().contains("files)"),
        "policy_loaded names the directory past the bound: {}",
        s.loaded
    );
    s.finish();
}

/// A protected file replaced by rename-over (how editors save: the new file is a
/// new inode) is protected again once inotify reports the change: a hard link to
/// the new file is the protected file.
#[test]
fn a_protected_file_replaced_by_rename_is_resolved_again() {
    let mut s = start(|_| {});
    fs::write(s.dir.join("shadow.new"), SECRET).expect("write");
    fs::rename(s.dir.join("shadow.new"), s.dir.join("shadow")).expect("rename over");
    let ino = fs::metadata(s.dir.join("shadow")).expect("stat").ino();
    let shadow = s.path("shadow");
    // The log may colour `ino=`: look for the number (with the path, on one line).
    let wanted = format!("{ino}");
    let daemon = &s.daemon;
    wait_until(
        "the daemon to resolve the new file",
        scaled(Duration::from_secs(10)),
        || {
            daemon
                .log()
                .lines()
                .any(|l| l.contains("identity entry") && l.contains(&shadow) && l.contains(&wanted))
        },
    );
    fs::hard_link(s.dir.join("shadow"), s.dir.join("pub/link2")).expect("link");
    assert_read_held(
        &mut s,
        "exec {reader} {dir}/pub/link2",
        "pub/link2",
        "secret-file",
        "shadow",
    );
    s.finish();
}

/// `/proc/self/root/…` and `/proc/self/cwd/…` resolve to the real path in the
/// kernel: the rule holds by path (no identity needed), and the event names the
/// real path.
#[test]
fn proc_root_and_cwd_aliases_are_the_real_path() {
    let mut s = start(|_| {});
    for (alias, script) in [
        ("root", "exec {reader} /proc/self/root{dir}/secret/key"),
        ("cwd", "cd {dir}/secret && exec {reader} /proc/self/cwd/key"),
    ] {
        let (run, events) = sh(&mut s, script);
        assert_held(&s, &run);
        let real = s.path("secret/key");
        // Where the open happened (killed after it), the kernel names the file it
        // opened; where BPF-LSM refused it, nothing was opened and the event names
        // what the process asked for. Either way the rule that held it is named.
        let asked = match alias {
            "root" => format!("/proc/self/root{real}"),
            _ => "/proc/self/cwd/key".to_owned(),
        };
        let named = if s.denies(READS) { &asked } else { &real };
        let child = run.report("child");
        let e = find(&events, &format!("{alias}: the open of {named}"), |e| {
            e.kind() == "open" && e.pid() == Some(child) && e.str("path") == Some(named.as_str())
        });
        assert_eq!(e.str("rule"), Some("secret-dir"), "{alias}: {e}");
        assert_eq!(e.str("outcome"), Some(s.outcome_of(READS)), "{alias}: {e}");
        assert_eq!(e.str("by"), None, "{alias}: matched by path: {e}");
    }
    s.finish();
}

/// A file whose directories are deeper than the kernel walks (64 levels) cannot be
/// placed inside or outside the protected directory: the open fails closed on the
/// directory rule (killed before it returns, or EPERM), and the event says why
/// (`identity_unknown`, the rule). The same file's content is readable at a depth
/// the walk reaches.
#[test]
fn a_file_too_deep_to_place_fails_closed() {
    const LEVELS: usize = 70;
    let deep = std::iter::repeat_n("d", LEVELS)
        .collect::<Vec<_>>()
        .join("/");
    let deep_dir = format!("pub/{deep}");
    let mut s = start(|dir| {
        fs::create_dir_all(dir.join(&deep_dir)).expect("mkdir -p");
        fs::write(dir.join(&deep_dir).join("file"), SECRET).expect("write");
        fs::write(dir.join("pub/file"), SECRET).expect("write");
    });
    let (run, _) = sh(&mut s, "exec {reader} {dir}/pub/file");
    assert!(
        run.stdout.contains(SECRET),
        "a shallow file outside the protected directory was not readable: {run:?}"
    );
    let (run, events) = sh(&mut s, &format!("exec {{reader}} {{dir}}/{deep_dir}/file"));
    assert_held(&s, &run);
    let opened = s.path(&format!("{deep_dir}/file"));
    let child = run.report("child");
    let e = find(&events, "an open refused by secret-dir", |e| {
        e.kind() == "open" && e.pid() == Some(child) && e.str("rule") == Some("secret-dir")
    });
    assert_eq!(e.str("path"), Some(opened.as_str()), "{e}");
    assert_eq!(e.bool("identity_unknown"), Some(true), "{e}");
    assert_eq!(e.str("by"), None, "not a match: {e}");
    let outcome = s.outcome_of(READS);
    assert_eq!(e.str("outcome"), Some(outcome), "{e}");
    // Counted in the kernel, and shown by `guard status`.
    let unknown = s.daemon.status()["identity"]["unknown"].as_u64();
    assert!(
        unknown.is_some_and(|n| n >= 1),
        "identity.unknown {unknown:?}"
    );
    s.finish();
}
