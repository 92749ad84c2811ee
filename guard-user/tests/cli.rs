//! The `guard` binary as people run it, without root: the commands that need no
//! daemon. (The daemon's own tests, as root, are in the `guard-tests` package.)

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

const GUARD: &str = env!("CARGO_BIN_EXE_guard");

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()))
}

/// A copy of guard alone in a directory of its own (no guard-fleet beside it).
fn lone_guard(dir: &Path) -> PathBuf {
    let copy = dir.join("guard");
    fs::copy(GUARD, &copy).expect("copy guard");
    copy
}

#[test]
fn guard_fleet_runs_the_guard_fleet_beside_it_with_every_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guard = lone_guard(dir.path());
    // A stand-in that says what it was given.
    let fleet = dir.path().join("guard-fleet");
    fs::write(&fleet, "#!/bin/sh\nprintf '%s|' \"$@\"\nexit 3\n").expect("write");
    fs::set_permissions(&fleet, fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = run(
        &guard,
        &["fleet", "report", "00000000000000b1", "--json", "--help"],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "report|00000000000000b1|--json|--help|",
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "its exit status is guard's");
}

#[test]
fn guard_fleet_without_guard_fleet_says_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guard = lone_guard(dir.path());
    let out = run(&guard, &["fleet", "sessions"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("guard-fleet") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn each_built_in_policy_passes_its_own_check() {
    for name in ["workstation", "ci"] {
        let shown = run(Path::new(GUARD), &["policy", "show", name]);
        assert!(shown.status.success(), "{shown:?}");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(format!("{name}.toml"));
        fs::write(&file, &shown.stdout).expect("write the policy");
        let checked = run(
            Path::new(GUARD),
            &["policy", "check", file.to_str().expect("UTF-8")],
        );
        assert!(
            checked.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

/// `guard events --log`: an audit log turned into OCSF (`--format ocsf`) and that
/// OCSF read back (`--json`) gives the log's own lines; a violation's Detection
/// Finding follows its activity.
#[test]
fn an_audit_log_round_trips_through_ocsf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let native = dir.path().join("events.jsonl");
    let lines = [
        r#"{"schema":2,"ts":"2026-11-21T05:42:36.688345123Z","session":"000000f27677c8c0","pid":42,"ppid":1,"tid":42,"comm":"cat","role":"tool","uid":1000,"user":"dev","cgroup_id":9,"container":null,"kind":"open","path":"/root/.ssh/id_rsa","path_resolved":true,"path_truncated":false,"access":["read"],"flags":0,"call":"openat","result":"ok","fd":3,"rule":"ssh-keys","action":"kill","outcome":"killed","alert":true,"rules":["ssh-keys"],"secret":true}"#,
        r#"{"schema":2,"ts":"2026-11-21T05:42:37Z","session":"000000f27677c8c0","pid":43,"ppid":42,"tid":43,"comm":"git","role":"tool","uid":1000,"user":"dev","cgroup_id":9,"container":null,"kind":"exec","exe":"/usr/bin/git","exe_truncated":false,"argv":["git","status"],"argv_truncated":false,"root":false}"#,
        r#"{"schema":2,"ts":"2026-11-21T05:42:38Z","kind":"lost","by_kind":{"open":3},"total":3}"#,
    ];
    fs::write(&native, lines.join("\n") + "\n").expect("write the log");
    let out = run(
        Path::new(GUARD),
        &[
            "events",
            "--log",
            native.to_str().expect("utf-8"),
            "--format",
            "ocsf",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let ocsf = String::from_utf8_lossy(&out.stdout).into_owned();
    let classes: Vec<u64> = ocsf
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON");
            v["class_uid"].as_u64().expect("class_uid")
        })
        .collect();
    assert_eq!(classes, [1001, 2004, 1007, 0], "{ocsf}");
    let ocsf_log = dir.path().join("ocsf.jsonl");
    fs::write(&ocsf_log, &ocsf).expect("write");
    let out = run(
        Path::new(GUARD),
        &[
            "events",
            "--log",
            ocsf_log.to_str().expect("utf-8"),
            "--json",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        lines.join("\n") + "\n",
        "the log's own lines again"
    );
    // Filters apply to what the records carry.
    let out = run(
        Path::new(GUARD),
        &[
            "events",
            "--log",
            ocsf_log.to_str().expect("utf-8"),
            "--json",
            "--kind",
            "exec",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", lines[1])
    );
}

/// The fenced blocks of a Markdown text whose info string starts with `lang`: (line
/// of the fence, info string, content).
fn fenced<'t>(text: &'t str, lang: &str) -> Vec<(usize, &'t str, String)> {
    let mut out = Vec::new();
    let mut open: Option<(usize, &str, usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```")
                    && (info == lang || info.starts_with(&format!("{lang} ")))
                {
                    open = Some((n + 1, info, indent, String::new()));
                }
            }
            Some((_, _, _, body)) if trimmed != "```" => {
                body.push_str(line.get(indent..).unwrap_or(trimmed));
                body.push('\n');
            }
            Some(_) => {
                if let Some((at, info, _, body)) = open.take() {
                    out.push((at, info, body));
                }
            }
        }
    }
    out
}

/// Every TOML example in the docs is what it says it is: a policy (```` ```toml ````)
/// passes `guard policy check` with no error; another program's file says whose
/// (```` ```toml guard-fleet ````, …) and is TOML.
#[test]
fn every_toml_example_in_the_docs_passes_guard_policy_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.push(root.join("README.md"));
    pages.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut policies, mut failures) = (0, Vec::new());
    for page in &pages {
        let text = fs::read_to_string(page).expect("read the page");
        let name = page.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        for (line, info, body) in fenced(&text, "toml") {
            let at = format!("{name}:{line}");
            match info {
                "toml" => {
                    policies += 1;
                    let file = dir.path().join(format!("{name}-{line}.toml"));
                    fs::write(&file, &body).expect("write the example");
                    let out = run(
                        Path::new(GUARD),
                        &["policy", "check", file.to_str().expect("UTF-8")],
                    );
                    if !out.status.success() {
                        failures.push(format!(
                            "{at}: guard policy check failed:\n{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
                "toml guard-fleet" | "toml guard-fleet-tokens" | "toml vector" => {
                    if let Err(e) = body.parse::<toml::Table>() {
                        failures.push(format!("{at}: not TOML: {e}"));
                    }
                }
                other => failures.push(format!(
                    "{at}: ```{other}: a policy is ```toml; another program's file says whose"
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(policies >= 8, "only {policies} policy examples found");
}

/// `guard policy check` counts a policy's own rules, as `policy_loaded` does: not
/// the `[sessions]` and `[taint]` rules every policy has.
#[test]
fn policy_check_counts_the_policy_s_own_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("p.toml");
    fs::write(
        &file,
        "[[rule]]\nid = \"keys\"\nkind = \"file\"\npaths = [\"~/.ssh/**\"]\naccess = \
         [\"read\"]\naction = \"kill\"\n\n[sessions]\nio_uring = \"deny\"\n",
    )
    .expect("write");
    let out = run(
        Path::new(GUARD),
        &["policy", "check", file.to_str().expect("UTF-8")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is valid: 1 rule(s), 0 warning(s)"), "{err}");
}

/// `guard policy test`: a recorded session replayed against the built-in
/// workstation policy says which rules fire, what changed since the recording
/// (exit 2), and as JSON the same; a line that is no event fails the run (exit 1).
#[test]
fn policy_test_replays_a_recorded_session() {
    let log = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guard-policy/tests/fixtures/replay/session.jsonl"
    );
    let out = run(Path::new(GUARD), &["policy", "test", "workstation", log]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let row = |rule: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{rule} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for {rule}: {text}"))
    };
    assert_eq!(row("dotenv-read"), ["dotenv-read", "kill", "1", "0", "new"]);
    assert_eq!(
        row("credentials-read"),
        ["credentials-read", "kill", "1", "1", "same"]
    );
    assert_eq!(row("notes-read"), ["notes-read", "-", "0", "1", "gone"]);

    let out = run(
        Path::new(GUARD),
        &["policy", "test", "workstation", log, "--json"],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["judged"], 10);
    assert_eq!(
        report["rules"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.jsonl");
    let mut content = fs::read_to_string(log).expect("the fixture");
    content.push_str("{\"kind\": \"exec\", truncated\n");
    fs::write(&bad, content).expect("write");
    let out = run(
        Path::new(GUARD),
        &[
            "policy",
            "test",
            "workstation",
            bad.to_str().expect("UTF-8"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.jsonl:16: "), "{err}");
    assert!(err.contains("1 line(s) are no event"), "{err}");
}

/// The README's layout shows the whole house: every crate of the workspace, every
/// module of `guard` (`guard-user/src/<module>/`) and of `guard-policy`; and
/// docs/architecture.md draws every crate. A module added without a line there fails.
#[test]
fn the_readme_layout_names_every_crate_and_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md");
    let layout = readme
        .split_once("## Layout\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .map(|(block, _)| block)
        .expect("a fenced block under ## Layout");
    let architecture =
        fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let manifest: toml::Table = fs::read_to_string(root.join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("TOML");
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members");
    let mut missing = Vec::new();
    for member in members.iter().filter_map(|m| m.as_str()) {
        if !layout.contains(&format!("{member}/")) {
            missing.push(format!("README layout: crate {member}/"));
        }
        if member.starts_with("guard-") && !architecture.contains(member) {
            missing.push(format!("docs/architecture.md: crate {member}"));
        }
    }
    let entries = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root.join(dir))
            .expect("a source directory")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let module = if e.path().is_dir() {
                    name
                } else {
                    name.strip_suffix(".rs")?.to_owned()
                };
                (!["lib", "main"].contains(&module.as_str())).then_some(module)
            })
            .collect();
        names.sort();
        names
    };
    for module in entries("guard-user/src") {
        if !layout.contains(&format!("src/{module}/")) {
            missing.push(format!("README layout: guard-user/src/{module}/"));
        }
    }
    let policy = layout
        .split_once("guard-policy/")
        .and_then(|(_, rest)| rest.split_once("guard-user/"))
        .map(|(part, _)| part)
        .expect("guard-policy's paragraph, before guard-user's");
    for module in entries("guard-policy/src") {
        if !policy
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == module)
        {
            missing.push(format!("README layout: guard-policy's {module}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in the layout:\n{}",
        missing.join("\n")
    );
}
