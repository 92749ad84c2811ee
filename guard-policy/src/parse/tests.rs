//! The checker's tests: every diagnostic code where it applies, what valid
//! policies read as, recovery, destinations, selectors and the fixtures.

use std::path::Path;

use super::super::diag::{Severity, render};
use super::super::model::{ContainerField, ContainerSelector, Host, Kind};
use super::check::check_path_pattern;
use super::destination::dest;
use super::recovery::{blank, statement_at};
use super::*;

fn codes(text: &str) -> Vec<&'static str> {
    match parse("t.toml", text) {
        Ok((_, diags)) | Err(diags) => diags.iter().map(|d| d.code).collect(),
    }
}

fn policy(text: &str) -> Policy {
    match parse("t.toml", text) {
        Ok((policy, diags)) => {
            assert!(diags.is_empty(), "{}", render("t.toml", &diags));
            policy
        }
        Err(diags) => panic!("{}", render("t.toml", &diags)),
    }
}

const FILE: &str = "[[rule]]\nid = \"r\"\nkind = \"file\"\naction = \"kill\"\n";
const EXEC: &str = "[[rule]]\nid = \"r\"\nkind = \"exec\"\naction = \"kill\"\n";
const NET: &str = "[[rule]]\nid = \"r\"\nkind = \"network\"\naction = \"deny\"\n";

#[test]
fn every_code_is_reported_where_it_applies() {
    let file = |rest: &str| format!("{FILE}{rest}");
    let exec = |rest: &str| format!("{EXEC}{rest}");
    let net = |rest: &str| format!("{NET}{rest}");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("nothing at all", String::new(), vec![]),
        ("a clean file rule", file("paths = [\"~/.ssh/**\"]"), vec![]),
        ("syntax", "mode = enforce".to_owned(), vec!["G001"]),
        (
            "syntax does not hide later problems",
            file(
                "paths = [\"a\" \"b\"]\n[[rule]]\nid = 3\nkind = \"exec\"\nexe = [\"x\"]\naction = \"log\"",
            ),
            vec!["G001", "G009"],
        ),
        (
            "unknown top-level key",
            "moed = \"enforce\"".to_owned(),
            vec!["G002"],
        ),
        (
            "unknown [agents] key",
            "[agents]\nname = [\"codex\"]".to_owned(),
            vec!["G002"],
        ),
        (
            "unknown rule key",
            file("paths = [\"x\"]\nacces = [\"read\"]"),
            vec!["G002"],
        ),
        (
            "sub-table in a rule",
            file("paths = [\"x\"]\n[rule.extra]\na = 1"),
            vec!["G002"],
        ),
        (
            "bad path glob",
            file("paths = [\"~/.ssh/[\"]"),
            vec!["G003"],
        ),
        (
            "bad except glob",
            file("paths = [\"x\"]\nexcept = [\"{a\"]"),
            vec!["G003"],
        ),
        ("bad exe glob", exec("exe = [\"git[\"]"), vec!["G003"]),
        ("bad cidr", net("allow = [\"10.0.0.0/40\"]"), vec!["G004"]),
        (
            "bad port",
            net("deny = [\"example.com:70000\"]"),
            vec!["G004"],
        ),
        ("bad host", net("deny = [\"exa mple.com\"]"), vec!["G004"]),
        (
            "unknown action",
            format!("{}paths = [\"x\"]", FILE.replace("kill", "stop")),
            vec!["G005"],
        ),
        (
            "duplicate id",
            format!("{}{}", file("paths = [\"x\"]\n"), file("paths = [\"y\"]")),
            vec!["G006"],
        ),
        (
            "unknown kind",
            FILE.replace("\"file\"", "\"socket\""),
            vec!["G007"],
        ),
        (
            "missing kind",
            "[[rule]]\nid = \"r\"\naction = \"log\"".to_owned(),
            vec!["G007"],
        ),
        (
            "missing id",
            "[[rule]]\nkind = \"exec\"\nexe = [\"su\"]\naction = \"log\"".to_owned(),
            vec!["G008"],
        ),
        (
            "missing action",
            "[[rule]]\nid = \"r\"\nkind = \"exec\"\nexe = [\"su\"]".to_owned(),
            vec!["G008"],
        ),
        ("missing paths", FILE.to_owned(), vec!["G008"]),
        ("missing exe", EXEC.to_owned(), vec!["G008"]),
        ("missing allow and deny", NET.to_owned(), vec!["G008"]),
        ("empty paths", file("paths = []"), vec!["G008"]),
        ("bad mode", "mode = \"strict\"".to_owned(), vec!["G009"]),
        (
            "mode of the wrong type",
            "mode = true".to_owned(),
            vec!["G009"],
        ),
        (
            "bad scope",
            file("paths = [\"x\"]\nscope = \"children\""),
            vec!["G009"],
        ),
        (
            "bad access",
            file("paths = [\"x\"]\naccess = [\"exec\"]"),
            vec!["G009"],
        ),
        (
            "empty access",
            file("paths = [\"x\"]\naccess = []"),
            vec!["G009"],
        ),
        (
            "bad regex",
            exec("exe = [\"git\"]\nargv_regex = \"(\""),
            vec!["G009"],
        ),
        (
            "empty id",
            FILE.replace("\"r\"", "\"\"") + "paths = [\"x\"]",
            vec!["G009"],
        ),
        (
            "id with a space",
            FILE.replace("\"r\"", "\"a b\"") + "paths = [\"x\"]",
            vec!["G009"],
        ),
        (
            "list entry of the wrong type",
            file("paths = [\"x\", 1]"),
            vec!["G009"],
        ),
        (
            "rule as a plain table",
            "[rule]\nid = \"r\"".to_owned(),
            vec!["G009"],
        ),
        (
            "agents as a string",
            "agents = \"codex\"".to_owned(),
            vec!["G009"],
        ),
        (
            "agent name as a path",
            "[agents]\nnames = [\"/usr/bin/codex\"]".to_owned(),
            vec!["G009"],
        ),
        (
            "no names and nothing else",
            "[agents]\nnames = []".to_owned(),
            vec!["G009"],
        ),
        (
            "container id too short",
            "[agents]\ncontainers = [\"4f1c7b\"]".to_owned(),
            vec!["G009"],
        ),
        (
            "container name instead of an id",
            "[agents]\ncontainers = [\"ci-runner\"]".to_owned(),
            vec!["G009"],
        ),
        (
            "pod uid that is not one",
            "[agents]\ncontainers = [\"pod_uid=runner-0\"]".to_owned(),
            vec!["G009"],
        ),
        (
            "unknown container key",
            "[agents]\ncontainers = [\"label=ci\"]".to_owned(),
            vec!["G009"],
        ),
        (
            "container term without a value",
            "[agents]\ncontainers = [\"namespace=ci,name=\"]".to_owned(),
            vec!["G009"],
        ),
        (
            "relative cgroup glob",
            "[agents]\ncgroups = [\"kubepods.slice/**\"]".to_owned(),
            vec!["G003"],
        ),
        (
            "broken cgroup glob",
            "[agents]\ncgroups = [\"/kubepods/[abc\"]".to_owned(),
            vec!["G003"],
        ),
        (
            "exe as a relative path",
            exec("exe = [\"bin/git\"]"),
            vec!["G009"],
        ),
        ("empty allow", net("allow = []"), vec!["G009"]),
        (
            "key of another kind",
            exec("exe = [\"git\"]\npaths = [\"x\"]"),
            vec!["G010"],
        ),
        (
            "allow admits everything",
            net("allow = [\"0.0.0.0/0\", \"::/0\"]"),
            vec!["W101"],
        ),
        ("deny is empty", net("deny = []"), vec!["W101"]),
        (
            "every path excepted",
            file("paths = [\"a\"]\nexcept = [\"a\"]"),
            vec!["W101"],
        ),
        (
            "except covers everything",
            file("paths = [\"a\"]\nexcept = [\"/**\"]"),
            vec!["W101"],
        ),
        (
            "empty argument",
            exec("exe = [\"git\"]\nargv_contains = [\"\"]"),
            vec!["W101"],
        ),
        (
            "deny on files",
            FILE.replace("kill", "deny") + "paths = [\"x\"]",
            vec!["W102"],
        ),
        (
            "deny on execs",
            EXEC.replace("kill", "deny") + "exe = [\"x\"]",
            vec!["W102"],
        ),
        (
            "observe mode",
            "mode = \"observe\"".to_owned(),
            vec!["W103"],
        ),
        (
            "a kill of a wildcard directory",
            FILE.to_owned() + "paths = [\"/etc/cron*/**\", \"/etc/crontab\"]",
            vec!["W105"],
        ),
        (
            "a deny whose exception has no kernel shape",
            FILE.replace("kill", "deny") + "paths = [\"~/.ssh/**\"]\nexcept = [\"~/.ssh/*.pub\"]",
            vec!["W102", "W105"],
        ),
        (
            "a kill of a program glob",
            EXEC.to_owned() + "exe = [\"mkfs.*\", \"dd\"]",
            vec!["W105"],
        ),
        (
            "an alert is not a promise",
            FILE.replace("kill", "alert") + "paths = [\"/etc/cron*/**\"]",
            vec![],
        ),
        (
            "component runs and ends are kernel shapes",
            FILE.to_owned()
                + "paths = [\".git/hooks/**\", \".claude/settings.json\", \"*.pem\"]\nexcept = [\"*.sample\"]",
            vec![],
        ),
        (
            "deny with a fallback",
            FILE.replace("kill", "deny") + "paths = [\"x\"]\nfallback = \"alert\"",
            vec!["W102"],
        ),
        (
            "a fallback without deny",
            file("paths = [\"x\"]\nfallback = \"alert\""),
            vec!["G011"],
        ),
        (
            "a fallback that is deny",
            FILE.replace("kill", "deny") + "paths = [\"x\"]\nfallback = \"deny\"",
            vec!["G011"],
        ),
        (
            "a fallback that is no action",
            FILE.replace("kill", "deny") + "paths = [\"x\"]\nfallback = \"warn\"",
            vec!["W102", "G005"],
        ),
        (
            "a fallback on a network rule",
            net("deny = [\"10.0.0.1\"]\nfallback = \"alert\""),
            vec!["G010"],
        ),
        (
            "a fallback where user space decides",
            FILE.replace("kill", "deny") + "paths = [\"src/*.key\", \"x\"]\nfallback = \"alert\"",
            vec!["W102", "W104"],
        ),
        (
            "a fallback where user space decides an exec",
            EXEC.replace("kill", "deny")
                + "exe = [\"git\"]\nargv_contains = [\"push\"]\nfallback = \"log\"",
            vec!["W102", "W104"],
        ),
        // Not problems.
        (
            "allow everything but deny something",
            net("allow = [\"0.0.0.0/0\", \"::/0\"]\ndeny = [\"10.0.0.1\"]"),
            vec![],
        ),
        (
            "allow everything on one port",
            net("allow = [\"0.0.0.0/0:443\", \"[::/0]:443\"]"),
            vec![],
        ),
        ("deny on network", net("deny = [\"10.0.0.1\"]"), vec![]),
        (
            "no agents table",
            FILE.to_owned() + "paths = [\"x\"]",
            vec![],
        ),
    ];
    for (what, text, expected) in cases {
        assert_eq!(codes(&text), expected, "{what}:\n{text}");
    }
}

#[test]
fn errors_refuse_the_policy_and_warnings_do_not() {
    let Err(diags) = parse("t.toml", "mode = \"observe\"\nfoo = 1") else {
        panic!("accepted")
    };
    assert_eq!(
        diags.iter().map(|d| d.severity).collect::<Vec<_>>(),
        [Severity::Warning, Severity::Error]
    );
    let Ok((policy, warnings)) = parse("t.toml", "mode = \"observe\"") else {
        panic!("refused")
    };
    assert_eq!(policy.mode, Mode::Observe);
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].pos, Pos { line: 1, col: 8 });
}

#[test]
fn defaults() {
    let p = policy("");
    assert_eq!(p.name, "t.toml");
    assert_eq!(p.mode, Mode::Enforce);
    // The built-in profiles' launchers.
    assert_eq!(p.agents, ["codex", "claude", "gemini", "copilot"]);
    assert!(p.profiles.is_empty());
    // What `guard policy check` and `policy_loaded` count: none of its own.
    assert_eq!(p.own_rules(), 0);
    assert_eq!(
        policy(&format!("{FILE}paths = [\"~/.ssh/**\"]")).own_rules(),
        1
    );
    assert!(!p.kill_stragglers);
    // No rules of its own: only the `[sessions]`, `[delegation]` and `[taint]`
    // defaults (no allowlist: no `dns.names`).
    assert!(p.rules.iter().all(|r| matches!(
        r.kind,
        Kind::Route(_) | Kind::TaintEgress { .. } | Kind::Delegation
    )));

    let p = policy(&format!("{FILE}paths = [\"x\"]"));
    let rule = &p.rules[0];
    assert_eq!(rule.scope, Scope::All);
    assert_eq!(rule.pos, Pos { line: 1, col: 1 });
    assert_eq!(
        rule.kind,
        Kind::File {
            paths: vec!["x".to_owned()],
            except: vec![],
            access: Access {
                read: true,
                write: true
            },
        }
    );
}

#[test]
fn homes_name_more_directories_for_tilde() {
    let p = policy("[agents]\nnames = [\"codex\"]\nhomes = [\"/home/runner\"]\n");
    assert_eq!(p.homes, ["/home/runner"]);
    for bad in [
        "home/runner",
        "/home/runner/",
        "/home/*",
        "~/x",
        "/home/../etc",
    ] {
        let text = format!("[agents]\nnames = [\"codex\"]\nhomes = [\"{bad}\"]\n");
        let Err(diags) = parse("t.toml", &text) else {
            panic!("{bad}: a bad home is taken");
        };
        let shown = render("t.toml", &diags);
        assert!(
            shown.contains("must be an absolute directory path"),
            "{bad}: {shown}"
        );
    }
}

#[test]
fn reads_every_field() {
    let p = policy(
        "mode = \"observe\"\n[agents]\nnames = [\"codex\", \"aider\"]\nkill_stragglers = true\n\
         [[rule]]\nid = \"git\"\ndescription = \"d\"\nkind = \"exec\"\nexe = [\"git\"]\n\
         argv_contains = [\"push\"]\nargv_regex = \"-f\"\naction = \"alert\"\nscope = \"root\"\n"
            .replace("mode = \"observe\"\n", "")
            .as_str(),
    );
    assert_eq!(p.agents, ["codex", "aider"]);
    assert!(p.kill_stragglers);
    let rule = &p.rules[0];
    assert_eq!(
        (rule.id.as_str(), rule.description.as_deref()),
        ("git", Some("d"))
    );
    assert_eq!((rule.action, rule.scope), (Action::Alert, Scope::Root));
    assert_eq!(rule.pos, Pos { line: 4, col: 1 });
    assert_eq!(
        rule.kind,
        Kind::Exec {
            exe: vec!["git".to_owned()],
            digests: vec![],
            argv_contains: vec!["push".to_owned()],
            argv_regex: Some("-f".to_owned()),
        }
    );
}

#[test]
fn destinations() {
    let net = |s: &str| Host::Net(s.parse().expect("a net"));
    let ok: &[(&str, Host, Option<u16>)] = &[
        (
            "api.openai.com:443",
            Host::Name("api.openai.com".to_owned()),
            Some(443),
        ),
        (
            "Api.OpenAI.COM",
            Host::Name("api.openai.com".to_owned()),
            None,
        ),
        ("localhost", Host::Name("localhost".to_owned()), None),
        ("10.1.2.3", net("10.1.2.3/32"), None),
        ("10.1.2.3:1", net("10.1.2.3/32"), Some(1)),
        ("10.0.0.0/8:65535", net("10.0.0.0/8"), Some(65535)),
        ("::1", net("::1/128"), None),
        ("fd00::/8", net("fd00::/8"), None),
        ("[::1]", net("::1/128"), None),
        ("[::1]:8080", net("::1/128"), Some(8080)),
        ("[fd00::/8]:443", net("fd00::/8"), Some(443)),
        ("0.0.0.0/0", net("0.0.0.0/0"), None),
        ("@resolvers", Host::Resolvers, None),
        ("@resolvers:53", Host::Resolvers, Some(53)),
    ];
    for (text, host, port) in ok {
        assert_eq!(
            dest(text),
            Ok(Dest {
                host: host.clone(),
                port: *port,
                text: (*text).to_owned()
            }),
            "{text}"
        );
    }
    for bad in [
        "",
        " a.com",
        "a.com:",
        "a.com:0",
        "a.com:65536",
        "a.com:+1",
        "a.com:x",
        "10.0.0.1/8",
        "10.0.0.0/33",
        "1.2.3.4.5",
        "999.1.1.1",
        "[10.0.0.1]",
        "[::1]x",
        "[::1",
        "::1::2",
        "*.a.com",
        "a..com",
        "a.com.",
        "-a.com",
        "a_b.com",
        "@dns",
        "@resolvers:",
        "fe80::1%eth0",
        &"a".repeat(64),
    ] {
        assert!(dest(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn globs_are_checked_as_the_matcher_compiles_them() {
    // `*` stays within a path component: `~/*` is not a bad glob, nor `**` alone.
    for ok in [
        "~",
        "~/*",
        "**",
        "*",
        "/etc/cron*/**",
        "a/**/b",
        "[!a]*.{pem,key}",
        "x**",
    ] {
        assert_eq!(check_path_pattern(ok), Ok(()), "{ok}");
    }
    for bad in [
        "", "~x", "~x/y", "dir/", "a//b", "./a", "a/../b", "[", "{a", "[z-a]", "a\\",
    ] {
        assert!(check_path_pattern(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn unknown_keys_suggest_the_closest_valid_one() {
    assert_eq!(closest("acess", FILE_KEYS), Some("access"));
    assert_eq!(closest("path", FILE_KEYS), Some("paths"));
    assert_eq!(closest("rules", TOP_KEYS), Some("rule"));
    assert_eq!(closest("x", COMMON_KEYS), None);
    assert_eq!(closest("colour", TOP_KEYS), None);
    // Two letters swapped, in short keys too.
    assert_eq!(closest("mdoe", TOP_KEYS), Some("mode"));
    assert_eq!(closest("atcion", COMMON_KEYS), Some("action"));
    assert_eq!(closest("ptahs", FILE_KEYS), Some("paths"));
    let Err(errors) = parse("t.toml", "mdoe = \"observe\"\n") else {
        panic!("mdoe accepted");
    };
    assert!(
        errors[0].message.contains("did you mean `mode`?"),
        "{}",
        errors[0].message
    );
}

#[test]
fn syntax_recovery_blanks_whole_statements() {
    let text = "a = [\"x\",\n  \"y\" z,\n  \"w\"]\nb = 1\n[t]\nc = ?\nd = 2\n[u]\n";
    // The array's second line: the whole array statement, to `b`.
    let second = text.find('z').expect("z");
    assert_eq!(
        &text[statement_at(text, second)],
        "a = [\"x\",\n  \"y\" z,\n  \"w\"]"
    );
    let bad = text.find('?').expect("?");
    assert_eq!(&text[statement_at(text, bad)], "c = ?");
    let header = text.find("[t]").expect("[t]");
    assert_eq!(&text[statement_at(text, header)], "[t]\nc = ?\nd = 2");
    let blanked = blank(text, statement_at(text, bad));
    assert_eq!(blanked.len(), text.len());
    assert!(blanked.contains("\n     \nd = 2"));
}

#[test]
fn containers_and_cgroups_choose_sessions() {
    let text = "[agents]\nnames = []\ncontainers = [\"*\", \"4F1C7B0E9D2A\", \
                \"pod_uid=5f0e2b6c_1d2e_4a3b_9c8d_7e6f5a4b3c2d\", \
                \"namespace=arc-*, name=runner\"]\n\
                cgroups = [\"/kubepods.slice/**\"]";
    let (p, warnings) = parse("t.toml", text).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(p.agents.is_empty());
    assert_eq!(
        p.containers,
        [
            ContainerSelector::Any,
            ContainerSelector::All(vec![(ContainerField::Id, "4f1c7b0e9d2a".to_owned())]),
            ContainerSelector::All(vec![(
                ContainerField::PodUid,
                "5f0e2b6c-1d2e-4a3b-9c8d-7e6f5a4b3c2d".to_owned()
            )]),
            ContainerSelector::All(vec![
                (ContainerField::Namespace, "arc-*".to_owned()),
                (ContainerField::Name, "runner".to_owned()),
            ]),
        ]
    );
    assert_eq!(p.cgroups, ["/kubepods.slice/**"]);
    let glob = cgroup_glob("/system.slice/docker-*.scope")
        .expect("glob")
        .compile_matcher();
    assert!(glob.is_match("/system.slice/docker-4f1c.scope"));
    assert!(!glob.is_match("/system.slice/x/docker-4f1c.scope"));
}

/// `tests/fixtures/policy/NAME.toml` is checked and its diagnostics rendered as
/// `guard policy check NAME.toml` prints them must equal the insta snapshot
/// `NAME.snap` beside it (`cargo insta review` or `INSTA_UPDATE=always` updates them).
#[test]
fn fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    fixtures.sort();
    for path in &fixtures {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        let stem = name.trim_end_matches(".toml");
        let text = std::fs::read_to_string(path).expect("fixture");
        let rendered = match parse(name, &text) {
            Ok((_, diags)) | Err(diags) => render(name, &diags),
        };
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_input_file(path);
        settings.bind(|| insta::assert_snapshot!(stem, rendered));
    }
    for name in [
        "ok",
        "unknown-key",
        "bad-glob",
        "bad-cidr",
        "unknown-action",
        "duplicate-id",
        "never-matches",
        "many-errors",
        "scope-roles",
    ] {
        assert!(
            fixtures
                .iter()
                .any(|p| p.file_stem().is_some_and(|s| s == name)),
            "fixture {name}.toml is missing"
        );
    }
}

#[test]
fn scopes_take_roles() {
    use crate::model::{Scope, role_bit};
    let p = policy(
        "[[rule]]\nid = \"a\"\nkind = \"file\"\npaths = [\"/x\"]\nscope = [\"tool\", \"mcp\"]\naction = \"kill\"\n\
         [[rule]]\nid = \"b\"\nkind = \"file\"\npaths = [\"/y\"]\nscope = \"helper\"\naction = \"log\"\n\
         [[rule]]\nid = \"c\"\nkind = \"file\"\npaths = [\"/z\"]\nscope = \"descendants\"\naction = \"log\"\n",
    );
    let tool = role_bit("tool").expect("tool");
    let mcp = role_bit("mcp").expect("mcp");
    assert_eq!(p.rules[0].scope, Scope::Roles(tool | mcp));
    assert_eq!(p.rules[0].scope.role_names(), ["tool", "mcp"]);
    assert_eq!(
        p.rules[1].scope,
        Scope::Roles(role_bit("helper").expect("helper"))
    );
    assert_eq!(p.rules[2].scope, Scope::Descendants);
    // Applies by role; a process of unknown role (0) is held to every role scope.
    let s = p.rules[0].scope;
    assert!(s.applies(false, guard_common::role::TOOL));
    assert!(s.applies(true, guard_common::role::MCP));
    assert!(!s.applies(false, guard_common::role::AGENT));
    assert!(!s.applies(false, guard_common::role::HELPER));
    assert!(s.applies(false, guard_common::role::UNKNOWN));
}

#[test]
fn fixtures_that_should_load_do() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
    for (name, loads) in [
        ("ok", true),
        ("never-matches", true),
        ("observe", true),
        ("many-errors", false),
        ("scope-roles", false),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).expect("fixture");
        assert_eq!(parse(name, &text).is_ok(), loads, "{name}");
    }
}

#[test]
fn limits_read_with_defaults_and_bounds() {
    use super::super::model::OnLoss;
    let default = policy("");
    assert_eq!(default.limits, Limits::default());
    let p = policy("[limits]\nrate = 2_000\non_loss = \"kill\"\n");
    assert_eq!(
        p.limits,
        Limits {
            rate: 2000,
            burst: 10_000,
            on_loss: OnLoss::Kill
        },
        "burst defaults to five seconds of the rate"
    );
    let p = policy("[limits]\nrate = 0\nburst = 7\non_loss = \"log\"\n");
    assert_eq!((p.limits.rate, p.limits.burst), (0, 7));
    assert_eq!(codes("[limits]\nrate = 2000000\n"), ["G009"]);
    assert_eq!(codes("[limits]\nburst = 0\n"), ["G009"]);
    assert_eq!(codes("[limits]\nrate = \"fast\"\n"), ["G009"]);
    assert_eq!(codes("[limits]\non_loss = \"panic\"\n"), ["G009"]);
    assert_eq!(codes("[limits]\nratee = 5\n"), ["G002"]);
}

#[test]
fn builtin_policies_choose_what_a_loss_means() {
    use super::super::{builtin, model::OnLoss};
    let of = |name: &str| match parse(name, builtin::get(name).expect("built-in")) {
        Ok((p, _)) => p.limits,
        Err(d) => panic!("{}", render(name, &d)),
    };
    assert_eq!(of("workstation").on_loss, OnLoss::Alert);
    assert_eq!(of("ci").on_loss, OnLoss::Kill, "CI does not trust a gap");
    assert!(of("ci").rate > 0 && of("workstation").rate > 0);
}

#[test]
fn secret_marks_file_rules_and_report_names_a_directory() {
    use super::super::builtin;
    let p = policy(&format!(
        "[report]\ndir = \"/var/lib/guard/reports\"\n\n{FILE}access = [\"read\"]\npaths = [\"/s/**\"]\nsecret = true\n"
    ));
    assert!(p.rules[0].secret);
    assert_eq!(
        p.report.dir.as_deref(),
        Some(Path::new("/var/lib/guard/reports"))
    );
    assert!(!policy("").rules.iter().any(|r| r.secret));
    assert_eq!(policy("").report.dir, None);
    // `secret` belongs to file rules.
    assert_eq!(
        codes(&format!("{EXEC}exe = [\"x\"]\nsecret = true\n")),
        ["G010"]
    );
    assert_eq!(
        codes(&format!("{FILE}paths = [\"/s\"]\nsecret = \"yes\"\n")),
        ["G009"]
    );
    assert_eq!(codes("[report]\ndir = \"reports\"\n"), ["G009"]);
    assert_eq!(codes("[report]\nfolder = \"/r\"\n"), ["G002"]);
    // The built-ins mark their credential and dotenv rules, and the ci policy writes
    // reports for CI to keep.
    for name in builtin::NAMES {
        let (p, _) = parse(name, builtin::get(name).expect("built-in")).expect("valid");
        let secret: Vec<&str> = p
            .rules
            .iter()
            .filter(|r| r.secret)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(
            secret,
            [
                "credentials-read",
                "netrc-read",
                "agent-tokens-read",
                "codex-auth-read",
                "claude-credentials-read",
                "gemini-credentials-read",
                "copilot-credentials-read",
                "dotenv-read",
                "private-keys-read",
                "secrets-read-by-agent",
                "credential-stores-read",
                "credential-stores-read-by-agent"
            ],
            "{name}"
        );
    }
    let (ci, _) = parse("ci", builtin::get("ci").expect("ci")).expect("valid");
    assert_eq!(
        ci.report.dir.as_deref(),
        Some(Path::new("/var/lib/guard/reports"))
    );
}

#[test]
fn taint_egress_is_a_rule_with_its_own_allowlist() {
    use super::super::model::{Action, Host, Taint};
    let p = policy(
        "[taint]\negress = \"deny\"\nallow = [\"api.openai.com:443\", \"127.0.0.1:8080\"]\n",
    );
    assert_eq!(p.taint.egress, Some(Action::Deny));
    let rule = p.rules.last().expect("the taint rule");
    assert_eq!(rule.id, Taint::RULE);
    assert_eq!(rule.action, Action::Deny);
    let Kind::TaintEgress { allow } = &rule.kind else {
        panic!("{:?}", rule.kind)
    };
    assert_eq!(allow[0].host, Host::Name("api.openai.com".into()));
    assert_eq!(allow[1].port, Some(8080));
    // "allow" makes no rule; by default every tainted connect or send alerts.
    assert!(
        !policy("[taint]\negress = \"allow\"\n")
            .rules
            .iter()
            .any(|r| r.id == Taint::RULE)
    );
    assert_eq!(policy("").taint, Taint::default());
    assert_eq!(codes("[taint]\negress = \"kill\"\n"), ["G009"]);
    assert_eq!(codes("[taint]\nallow = [\"10.0.0.1/8\"]\n"), ["G004"]);
    assert_eq!(codes("[taint]\nalow = []\n"), ["G002"]);
    // The built-in policies: `ci` denies tainted egress off its allowlist,
    // `workstation` alerts.
    use super::super::builtin;
    for (name, action) in [("ci", Action::Deny), ("workstation", Action::Alert)] {
        let (p, _) = parse(name, builtin::get(name).expect("built-in")).expect("valid");
        assert_eq!(p.taint.egress, Some(action), "{name}");
        assert!(
            p.taint.allow.iter().any(|d| d.text == "api.openai.com:443"),
            "{name}"
        );
    }
}

#[test]
fn sessions_refuse_routes_by_default_and_each_key_is_a_rule() {
    use super::super::model::{Action, Route, Sessions};
    let default = policy("");
    assert_eq!(default.sessions, Sessions::default());
    let ids: Vec<(&str, Action)> = default
        .rules
        .iter()
        .map(|r| (r.id.as_str(), r.action))
        .collect();
    assert_eq!(
        ids,
        [
            ("sessions.io_uring", Action::Deny),
            ("sessions.open_by_handle_at", Action::Deny),
            ("sessions.fileless_exec", Action::Alert),
            ("sessions.raw_sockets", Action::Deny),
            ("delegation.spawner", Action::Alert),
            ("taint.egress", Action::Alert),
        ]
    );
    let p = policy(
        "[taint]\negress = \"allow\"\n[sessions]\nio_uring = \"allow\"\nraw_sockets = \"kill\"\nfileless_exec = \"allow\"\nopen_by_handle_at = \"log\"\n",
    );
    assert_eq!(p.sessions.io_uring, None);
    assert_eq!(p.sessions.raw_sockets, Some(Action::Kill));
    let kinds: Vec<(&str, &Kind)> = p.rules.iter().map(|r| (r.id.as_str(), &r.kind)).collect();
    assert_eq!(
        kinds,
        [
            (
                "sessions.open_by_handle_at",
                &Kind::Route(vec![Route::OpenByHandleAt])
            ),
            (
                "sessions.raw_sockets",
                &Kind::Route(vec![Route::RawSocket, Route::PacketSocket])
            ),
            ("delegation.spawner", &Kind::Delegation),
        ]
    );
    // The policy's own rules come first: the kernel's rule indexes stay theirs.
    let p = policy(&format!("{EXEC}exe = [\"x\"]\n"));
    assert_eq!(p.rules[0].id, "r");
    // A tool outside the sandbox: reported, or acted on after its exec (never
    // refused: it runs by the time it is known).
    assert_eq!(p.sessions.unsandboxed_tools, None);
    let p = policy("[sessions]\nunsandboxed_tools = \"kill\"\n");
    assert_eq!(p.sessions.unsandboxed_tools, Some(Action::Kill));
    assert!(
        !p.rules.iter().any(|r| r.id == "sessions.unsandboxed_tools"),
        "not a route rule"
    );
    assert_eq!(
        codes("[sessions]\nunsandboxed_tools = \"deny\"\n"),
        ["G009"]
    );
    // A process that outlived its declared call: likewise.
    assert_eq!(p.sessions.undeclared, None);
    let p = policy("[sessions]\nundeclared = \"alert\"\n");
    assert_eq!(p.sessions.undeclared, Some(Action::Alert));
    assert!(!p.rules.iter().any(|r| r.id == "sessions.undeclared"));
    assert_eq!(codes("[sessions]\nundeclared = \"deny\"\n"), ["G009"]);
    assert_eq!(codes("[sessions]\nio_uring = \"maybe\"\n"), ["G009"]);
    assert_eq!(codes("[sessions]\nio_urin = \"deny\"\n"), ["G002"]);
    assert_eq!(codes("[sessions]\nio_uring = 1\n"), ["G009"]);
    assert_eq!(codes("sessions = 1\n"), ["G009"]);
    assert_eq!(
        codes(
            "[[rule]]\nid = \"sessions.io_uring\"\nkind = \"exec\"\nexe = [\"x\"]\naction = \"log\"\n"
        ),
        ["G006"]
    );
    use super::super::builtin;
    let of = |name: &str| match parse(name, builtin::get(name).expect("built-in")) {
        Ok((p, _)) => p.sessions,
        Err(d) => panic!("{}", render(name, &d)),
    };
    assert_eq!(of("workstation").fileless_exec, Some(Action::Alert));
    assert_eq!(of("ci").fileless_exec, Some(Action::Kill));
    assert_eq!(of("ci").io_uring, Some(Action::Deny));
}

#[test]
fn packages_near_miss_makes_its_rule_and_refuses_what_it_cannot_do() {
    let p = policy("[packages]\nnear_miss = \"kill\"\n");
    assert_eq!(p.packages.near_miss, Some(Action::Kill));
    let rule = p.rules.iter().find(|r| r.id == "packages.near-miss");
    assert_eq!(
        rule.map(|r| (&r.kind, r.action)),
        Some((&Kind::Packages, Action::Kill))
    );
    // Off by default and with "allow": no rule.
    for text in ["", "[packages]\nnear_miss = \"allow\"\n"] {
        let p = policy(text);
        assert_eq!(p.packages.near_miss, None);
        assert!(!p.rules.iter().any(|r| r.id == "packages.near-miss"));
    }
    // The manifest is written when it is seen: nothing to deny.
    assert_eq!(codes("[packages]\nnear_miss = \"deny\"\n"), ["G009"]);
    let p = policy("[packages]\nscript_network = \"alert\"\n");
    assert_eq!(p.packages.script_network, Some(Action::Alert));
    assert!(p.rules.iter().any(|r| r.id == "packages.script-network"));
    assert_eq!(codes("[packages]\nscript_network = \"deny\"\n"), ["G009"]);
    let p = policy("[packages]\nfirst_seen = \"alert\"\n");
    assert_eq!(p.packages.first_seen, Some(Action::Alert));
    assert!(p.rules.iter().any(|r| r.id == "packages.first-seen"));
    assert_eq!(codes("[packages]\nfirst_seen = \"deny\"\n"), ["G009"]);
    assert_eq!(codes("[packages]\nnear_mis = \"alert\"\n"), ["G002"]);
    assert_eq!(
        codes(
            "[packages]\nnear_miss = \"log\"\n[[rule]]\nid = \"packages.near-miss\"\nkind = \"exec\"\nexe = [\"x\"]\naction = \"log\"\n"
        ),
        ["G006"]
    );
    use super::super::builtin;
    for name in ["workstation", "ci"] {
        let (p, _) = parse(name, builtin::get(name).expect("built-in")).expect("parses");
        assert_eq!(p.packages.near_miss, Some(Action::Alert), "{name}");
        assert_eq!(p.packages.script_network, Some(Action::Alert), "{name}");
    }
}

#[test]
fn exec_rules_name_programs_by_digest() {
    let hex = "C79BF44242829108E323378531F4AC839513CA1FBA45EFD6583643526E1E9FD2";
    let p = policy(&format!(
        "[[rule]]\nid = \"true\"\nkind = \"exec\"\ndigest = [\"sha256:{hex}:35664\"]\naction = \"kill\"\n"
    ));
    assert_eq!(
        p.rules[0].kind,
        Kind::Exec {
            exe: vec![],
            digests: vec![crate::model::Digest {
                sha256: hex.to_ascii_lowercase(),
                size: 35664,
            }],
            argv_contains: vec![],
            argv_regex: None,
        }
    );
    let rule = |digest: &str| {
        format!(
            "[[rule]]\nid = \"d\"\nkind = \"exec\"\ndigest = [\"{digest}\"]\naction = \"kill\"\n"
        )
    };
    // Each bad entry is one error, and the rule is not also said to name nothing.
    for bad in [
        format!("sha1:{hex}:1"),
        "sha256:abc:1".to_owned(),
        format!("sha256:{hex}:0"),
        format!("sha256:{hex}:many"),
        format!("sha256:{hex}"),
    ] {
        assert_eq!(codes(&rule(&bad)), [code::INVALID], "{bad}");
    }
    assert_eq!(
        codes("[[rule]]\nid = \"n\"\nkind = \"exec\"\naction = \"kill\"\n"),
        [code::MISSING]
    );
}

/// `[[agents.profile]]`: a profile of the policy's own, every key read; and every
/// mistake reported where it was written.
#[test]
fn agent_profiles_are_read_and_checked() {
    use super::super::model::AgentProfile;
    let p = policy(
        "[agents]\nnames = [\"aider\"]\n\n[[agents.profile]]\nid = \"aider\"\n\
         programs = [\"aider\"]\nscripts = [\"aider.py\"]\nstructured = true\n\
         session_var = \"AIDER_SESSION\"\n",
    );
    assert_eq!(
        p.profiles,
        [AgentProfile {
            id: "aider".to_owned(),
            programs: vec!["aider".to_owned()],
            scripts: vec!["aider.py".to_owned()],
            structured: true,
            session_var: Some("AIDER_SESSION".to_owned()),
        }]
    );
    for (text, code) in [
        ("[[agents.profile]]\nprograms = [\"x\"]\n", "G008"),
        ("[[agents.profile]]\nid = \"x\"\n", "G008"),
        (
            "[[agents.profile]]\nid = \"x\"\nprograms = [\"/usr/bin/x\"]\n",
            "G009",
        ),
        (
            "[[agents.profile]]\nid = \"x\"\nprograms = [\"x\"]\nsession_var = \"A=B\"\n",
            "G009",
        ),
        (
            "[[agents.profile]]\nid = \"x\"\nprograms = [\"x\"]\nsessionvar = \"A\"\n",
            "G002",
        ),
        ("[agents]\nprofile = \"x\"\n", "G009"),
    ] {
        let text = if text.starts_with("[agents]") {
            text.to_owned()
        } else {
            format!("[agents]\nnames = [\"x\"]\n\n{text}")
        };
        assert_eq!(codes(&text), [code], "{text}");
    }
    // More session variables than the kernel searches for.
    let many: String = (0..3)
        .map(|i| {
            format!("[[agents.profile]]\nid = \"a{i}\"\nprograms = [\"a{i}\"]\nsession_var = \"A{i}_ID\"\n")
        })
        .collect();
    assert_eq!(
        codes(&format!("[agents]\nnames = [\"a0\"]\n\n{many}")),
        ["G009"]
    );
}

/// `[audit] format` and `[export] schema`: guard's own lines or OCSF, anything else
/// named where it is.
#[test]
fn the_audit_log_and_the_export_take_ocsf() {
    use crate::model::Schema;
    let p = policy("[audit]\nformat = \"ocsf\"\n\n[export]\nschema = \"ocsf\"\n");
    assert_eq!(
        (p.audit.format, p.export.schema),
        (Schema::Ocsf, Schema::Ocsf)
    );
    let p = policy("[audit]\nformat = \"json\"\n\n[export]\nschema = \"guard\"\n");
    assert_eq!(
        (p.audit.format, p.export.schema),
        (Schema::Guard, Schema::Guard)
    );
    assert_eq!(policy("").audit.format, Schema::Guard, "the default");
    let Err(diags) = parse("t.toml", "[audit]\nformat = \"ecs\"\nlevel = 1\n") else {
        panic!("an unknown format must be refused");
    };
    let text = render("t.toml", &diags);
    assert!(
        text.contains("t.toml:2:10: error[G009]: unknown [audit] format \"ecs\" (expected \"json\" or \"ocsf\")"),
        "{text}"
    );
    assert!(text.contains("unknown key `level` in [audit]"), "{text}");
    assert_eq!(codes("[export]\nschema = \"otlp\"\n"), ["G009"]);
}

#[test]
fn fleet_names_where_the_policy_comes_from_and_the_key_that_signs_it() {
    const KEY: &str = "ERERERERERERERERERERERERERERERERERERERERERE=";
    let p = policy(&format!(
        "[fleet]\npolicy_url = \"https://fleet.example.org/v1/policy\"\npublic_key = \"{KEY}\"\n"
    ));
    let fleet = p.fleet.expect("[fleet]");
    assert_eq!(fleet.public_key, [0x11; 32]);
    assert_eq!(
        (fleet.group, fleet.interval),
        (None, fleet::DEFAULT_INTERVAL)
    );
    let p = policy(&format!(
        "[fleet]\npolicy_url = \"http://10.0.0.1:4318/v1/policy\"\npublic_key = \"{KEY}\"\n\
         group = \"ci-runners\"\ninterval = \"5s\"\n\
         labels = {{ team = \"payments\", env = \"ci\" }}\n"
    ));
    let fleet = p.fleet.expect("[fleet]");
    assert_eq!(fleet.group.as_deref(), Some("ci-runners"));
    assert_eq!(fleet.interval, std::time::Duration::from_secs(5));
    // Labels in key order, as the pull and the export send them.
    assert_eq!(fleet.labels.to_string(), "env=ci,team=payments");
    assert_eq!(
        fleet.labels.targets(),
        ["label:env=ci", "label:team=payments"]
    );
    assert_eq!("env=ci,team=payments".parse(), Ok(fleet.labels));
    for bad in ["env", "env=c i", "a=1,a=2", "=x"] {
        assert!(bad.parse::<crate::model::Labels>().is_err(), "{bad}");
    }
    // Each wrong value says so; a section missing its URL or key is no fleet.
    for (text, code) in [
        (
            "public_key = \"ERERERERERERERERERERERERERERERERERERERERERE=\"\n",
            code::MISSING,
        ),
        (
            "policy_url = \"https://f.example/v1/policy\"\n",
            code::MISSING,
        ),
        (
            "policy_url = \"ftp://f.example/\"\npublic_key = \"abc\"\n",
            code::INVALID,
        ),
        (
            "policy_url = \"https://f.example/\"\npublic_key = \"c2hvcnQ=\"\n",
            code::INVALID,
        ),
        (
            &format!(
                "policy_url = \"https://f.example/\"\npublic_key = \"{KEY}\"\ngroup = \"a b\"\n"
            ),
            code::INVALID,
        ),
        (
            &format!(
                "policy_url = \"https://f.example/\"\npublic_key = \"{KEY}\"\ninterval = \"0s\"\n"
            ),
            code::INVALID,
        ),
        (
            &format!("policy_url = \"https://f.example/\"\npublic_key = \"{KEY}\"\nurl = \"x\"\n"),
            code::UNKNOWN_KEY,
        ),
        (
            &format!(
                "policy_url = \"https://f.example/\"\npublic_key = \"{KEY}\"\n\
                 labels = {{ env = \"c i\" }}\n"
            ),
            code::INVALID,
        ),
        (
            &format!(
                "policy_url = \"https://f.example/\"\npublic_key = \"{KEY}\"\nlabels = \"env=ci\"\n"
            ),
            code::INVALID,
        ),
    ] {
        let codes = codes(&format!("[fleet]\n{text}"));
        assert!(codes.contains(&code), "{text}: {codes:?}");
    }
}
