//! The session tree as the daemon keeps it from events: who is in which session, what
//! each process runs, when a session ends and who outlived its root, and which
//! processes a kill of a session or a subtree reaches.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use guard_common::OpenCall;
use guard_common::protocol::{Action, Outcome};

use super::{KEEP_ENDED, Registry};
use crate::event::{
    Detail, Event, How, Proto, SessionId, Task, Violation,
    test_support::{exec, task},
};

const S: SessionId = SessionId(0x5e55);
/// A pid no process has: /proc/<pid>/cwd does not exist (pid_max is at most 2^22).
const NO_SUCH_PID: u32 = 4_000_000_001;

fn event(session: SessionId, pid: u32, ts_ns: i128, detail: Detail) -> Event {
    Event::derived(ts_ns, Some(session), task(pid, 1, "codex"), detail)
}

fn fork(child_pid: u32) -> Detail {
    Detail::Fork { child_pid }
}

fn exit(root: bool) -> Detail {
    Detail::Exit { status: 0, root }
}

/// A registry with session `S` started by the exec of its root `root`.
fn with_root(root: u32) -> Registry {
    let mut r = Registry::default();
    let ev = event(S, root, 1, exec("/usr/bin/codex", &["codex"], true));
    assert!(
        r.before(&ev).is_some(),
        "the root's exec starts the session"
    );
    assert!(r.after(&ev).is_none());
    r
}

fn pids(r: &Registry, session: SessionId) -> HashSet<u32> {
    r.procs()
        .filter(|(_, p)| p.session == session)
        .map(|(pid, _)| *pid)
        .collect()
}

fn set(pids: &[u32]) -> HashSet<u32> {
    pids.iter().copied().collect()
}

#[test]
fn start_records_the_root_and_reports_session_start() {
    let mut r = Registry::default();
    let mut root = task(NO_SUCH_PID, 77, "codex");
    root.uid = 1000;
    root.container = Some("4f1c".into());
    let start = r.start(S, How::Scan, 42, &root, None);

    assert_eq!(start.session, Some(S));
    assert_eq!(start.ts_ns, 42);
    assert_eq!(start.task.pid, NO_SUCH_PID);
    assert_eq!(
        start.detail,
        Detail::SessionStart {
            agent: "codex".into(),
            root_pid: NO_SUCH_PID,
            how: How::Scan,
            cwd: None,
            repository: None,
        }
    );
    let sessions: Vec<_> = r.sessions().collect();
    assert_eq!(sessions.len(), 1);
    let s = sessions[0];
    assert_eq!(
        (s.id, s.root_pid, s.how, s.uid, s.started_ns, s.ended_ns),
        (S, NO_SUCH_PID, How::Scan, 1000, 42, None)
    );
    assert_eq!(s.container.as_deref(), Some("4f1c"));
    let (_, proc) = r.procs().next().expect("the root is a member");
    assert_eq!((proc.session, proc.ppid), (S, 77));
}

#[test]
fn session_start_carries_the_roots_working_directory() {
    let mut r = Registry::default();
    let me = task(std::process::id(), 1, "codex");
    let start = r.start(S, How::Run, 1, &me, None);
    let cwd = std::env::current_dir().expect("cwd");
    let Detail::SessionStart { cwd: got, .. } = &start.detail else {
        panic!("not a session_start: {start:?}");
    };
    assert_eq!(got.as_deref(), cwd.to_str());
    assert_eq!(r.sessions().next().and_then(|s| s.cwd.clone()), got.clone());
}

#[test]
fn an_exec_in_a_chosen_cgroup_starts_a_container_session() {
    let mut r = Registry::default();
    let ev = event(
        S,
        10,
        1,
        Detail::Exec {
            exe: "/usr/bin/codex".into(),
            exe_truncated: false,
            argv: vec![],
            argv_truncated: false,
            root: true,
            by_cgroup: true,
            by_identity: false,
            fileless: false,
            from_proc: false,
        },
    );
    let start = r.before(&ev).expect("session_start");
    assert!(
        matches!(
            start.detail,
            Detail::SessionStart {
                how: How::Container,
                root_pid: 10,
                ..
            }
        ),
        "{start:?}"
    );
}

#[test]
fn events_without_a_known_session_change_nothing() {
    let mut r = with_root(10);
    let mut stray = event(S, 30, 2, fork(31));
    stray.session = None;
    assert!(r.before(&stray).is_none(), "no session, nothing to start");
    assert!(r.after(&stray).is_none());
    let other = event(SessionId(0x07e5), 40, 2, fork(41));
    assert!(r.after(&other).is_none(), "after() never starts a session");
    assert_eq!(pids(&r, S), set(&[10]));
    assert_eq!(r.procs().count(), 1);
}

#[test]
fn a_child_is_forked_into_the_session_then_runs_its_own_program() {
    let mut r = with_root(10);
    r.after(&event(S, 10, 2, fork(11)));
    let mut child_exec = event(S, 11, 3, exec("/bin/sh", &["sh", "-c", "make"], false));
    child_exec.task = task(11, 10, "sh");
    r.after(&child_exec);

    let (_, child) = r.procs().find(|(pid, _)| **pid == 11).expect("child");
    assert_eq!(child.session, S);
    assert_eq!(child.ppid, 10);
    assert_eq!(child.comm, "sh");
    assert_eq!(child.exe.as_deref(), Some("/bin/sh"));
    assert_eq!(child.argv, ["sh", "-c", "make"]);
    let counts = &r.sessions().next().expect("session").counts;
    assert_eq!((counts.exec, counts.fork), (2, 1));
}

#[test]
fn every_kind_of_event_is_counted_and_violations_too() {
    let mut r = with_root(10);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let open = Detail::Open {
        path: "/etc/hostname".into(),
        resolved: true,
        truncated: false,
        flags: 0,
        call: OpenCall::Openat,
        ret: 3,
        repeats: 0,
        dir: false,
    };
    let connect = Detail::Connect {
        addr: lo,
        port: 443,
        proto: Proto::Tcp,
        ret: 0,
    };
    let send = Detail::Send {
        addr: lo,
        port: 53,
        proto: Proto::Udp,
        ret: 0,
    };
    for detail in [open.clone(), open, connect.clone(), send] {
        r.after(&event(S, 10, 2, detail));
    }
    let mut denied = event(S, 10, 3, connect);
    denied.violation = Some(Violation {
        rule: "egress".into(),
        action: Action::Deny,
        outcome: Outcome::Denied,
        error: None,
        alert: false,
        would: None,
        rules: vec!["egress".into()],
        secret: false,
        kill_latency_us: None,
        anomaly: None,
    });
    r.after(&denied);

    let counts = &r.sessions().next().expect("session").counts;
    assert_eq!(
        (
            counts.exec,
            counts.open,
            counts.connect,
            counts.send,
            counts.violations
        ),
        (1, 2, 2, 1, 1)
    );
}

#[test]
fn a_child_that_exits_leaves_the_session_running() {
    let mut r = with_root(10);
    r.after(&event(S, 10, 2, fork(11)));
    assert!(r.after(&event(S, 11, 3, exit(false))).is_none());
    assert_eq!(pids(&r, S), set(&[10]));
    assert!(r.sessions().next().expect("session").ended_ns.is_none());
}

#[test]
fn the_roots_exit_ends_the_session_once_naming_the_stragglers_in_order() {
    let mut r = with_root(10);
    for child in [13, 11, 12] {
        r.after(&event(S, 10, 2, fork(child)));
    }
    r.after(&event(S, 12, 3, exit(false)));
    let end = r
        .after(&event(S, 10, 4, exit(true)))
        .expect("the root's exit ends the session");
    assert_eq!(end.session, Some(S));
    assert_eq!(end.ts_ns, 4);
    assert_eq!(
        end.detail,
        Detail::SessionEnd {
            root_pid: 10,
            stragglers: vec![11, 13],
            killed: vec![],
            agent: "codex".into(),
            agent_user: None,
        }
    );
    assert_eq!(r.sessions().next().and_then(|s| s.ended_ns), Some(4));

    // The stragglers are still the session's: a kill of the session reaches them.
    assert_eq!(set(&r.members(Some(S), None)), set(&[11, 13]));
    assert!(
        r.after(&event(S, 10, 5, exit(true))).is_none(),
        "a session ends once"
    );
    r.after(&event(S, 11, 6, exit(false)));
    r.after(&event(S, 13, 6, exit(false)));
    assert!(r.members(Some(S), None).is_empty());
}

#[test]
fn is_root_tells_the_root_from_its_children() {
    let mut r = with_root(10);
    r.after(&event(S, 10, 2, fork(11)));
    assert!(r.is_root(&event(S, 10, 3, exit(true))));
    assert!(!r.is_root(&event(S, 11, 3, exit(false))));
    assert!(!r.is_root(&event(SessionId(1), 10, 3, exit(true))));
}

#[test]
fn adopted_processes_are_members_and_stragglers_like_forked_ones() {
    let mut r = Registry::default();
    r.start(S, How::Scan, 1, &task(NO_SUCH_PID, 1, "codex"), None);
    r.adopt(S, 21, NO_SUCH_PID, "sh".into());
    r.adopt(S, 22, 21, "cat".into());

    let (_, sh) = r.procs().find(|(pid, _)| **pid == 21).expect("adopted");
    assert_eq!(
        (sh.session, sh.ppid, sh.comm.as_str()),
        (S, NO_SUCH_PID, "sh")
    );
    assert_eq!(set(&r.members(Some(S), None)), set(&[NO_SUCH_PID, 21, 22]));
    assert_eq!(r.members(None, Some(21)), [22, 21], "cat before its parent");

    // What an adopted process does afterwards is the session's.
    r.after(&event(S, 22, 2, fork(23)));
    assert_eq!(pids(&r, S), set(&[NO_SUCH_PID, 21, 22, 23]));
    let end = r
        .after(&event(S, NO_SUCH_PID, 3, exit(true)))
        .expect("session_end");
    assert!(
        matches!(&end.detail, Detail::SessionEnd { stragglers, .. } if *stragglers == [21, 22, 23]),
        "{end:?}"
    );
}

/// Each process comes after every process below it, so a kill in this order never
/// leaves a child to be reparented away from a parent already killed.
fn assert_deepest_first(r: &Registry, order: &[u32]) {
    let parent_of = |pid: u32| r.procs().find(|(p, _)| **p == pid).map(|(_, p)| p.ppid);
    for (i, &pid) in order.iter().enumerate() {
        let mut up = parent_of(pid);
        while let Some(ancestor) = up {
            if let Some(at) = order.iter().position(|&p| p == ancestor) {
                assert!(
                    at > i,
                    "{ancestor} comes before its descendant {pid}: {order:?}"
                );
            }
            up = parent_of(ancestor).filter(|&p| p != ancestor);
        }
    }
}

#[test]
fn members_of_a_subtree_are_it_and_its_descendants_deepest_first() {
    // 10 ─┬─ 11 ─┬─ 12 ── 14
    //     │      └─ 13
    //     └─ 15
    let mut r = with_root(10);
    for (parent, child) in [(10, 11), (11, 12), (11, 13), (12, 14), (10, 15)] {
        r.after(&event(S, parent, 2, fork(child)));
    }
    // Another session's process with a parent of the same pid is not below 11's tree.
    r.adopt(SessionId(2), 99, 98, "other".into());

    let subtree = r.members(None, Some(11));
    assert_eq!(set(&subtree), set(&[11, 12, 13, 14]));
    assert_eq!(subtree.len(), 4, "no process twice: {subtree:?}");
    assert_deepest_first(&r, &subtree);
    assert_eq!(subtree.last(), Some(&11), "the subtree's root goes last");

    assert_eq!(r.members(None, Some(14)), [14], "a leaf is its own subtree");
    let whole = r.members(None, Some(10));
    assert_eq!(set(&whole), set(&[10, 11, 12, 13, 14, 15]));
    assert_deepest_first(&r, &whole);
}

#[test]
fn members_of_a_session_are_its_processes_only() {
    let mut r = with_root(10);
    r.after(&event(S, 10, 2, fork(11)));
    let other = SessionId(0x07e5);
    let ev = event(other, 20, 2, exec("/usr/bin/codex", &["codex"], true));
    r.before(&ev);
    r.after(&ev);
    r.after(&event(other, 20, 3, fork(21)));

    assert_eq!(set(&r.members(Some(S), None)), set(&[10, 11]));
    assert_eq!(set(&r.members(Some(other), None)), set(&[20, 21]));
    assert!(r.members(Some(SessionId(1)), None).is_empty());
    assert!(r.members(None, None).is_empty(), "neither: nothing");
    // A session id wins over a pid.
    assert_eq!(set(&r.members(Some(S), Some(20))), set(&[10, 11]));
}

#[test]
fn the_oldest_ended_sessions_are_forgotten_first_and_running_ones_never() {
    let mut r = Registry::default();
    // The oldest session (session ids are start times) still runs.
    let running = SessionId(1);
    let ev = event(running, 1, 1, exec("/usr/bin/codex", &[], true));
    r.before(&ev);
    r.after(&ev);
    let ended = KEEP_ENDED as u64 + 3;
    for n in 0..ended {
        let id = SessionId(100 + n);
        let pid = 1000 + n as u32;
        let start = event(id, pid, 2, exec("/usr/bin/codex", &[], true));
        r.before(&start);
        r.after(&start);
        assert!(r.after(&event(id, pid, 3, exit(true))).is_some());
    }
    let kept: Vec<SessionId> = r.sessions().map(|s| s.id).collect();
    assert_eq!(kept.len(), KEEP_ENDED + 1, "{} sessions kept", kept.len());
    assert!(kept.contains(&running), "a running session was forgotten");
    for n in 0..3 {
        assert!(
            !kept.contains(&SessionId(100 + n)),
            "the oldest ended are forgotten"
        );
    }
    assert!(
        kept.contains(&SessionId(100 + ended - 1)),
        "the newest is kept"
    );
}

#[test]
fn an_ended_session_with_live_stragglers_is_not_forgotten() {
    let mut r = with_root(10);
    r.after(&event(S, 10, 2, fork(11)));
    r.after(&event(S, 10, 3, exit(true)));
    for n in 0..KEEP_ENDED as u64 + 1 {
        let id = SessionId(S.0 + 1 + n);
        let pid = 1000 + n as u32;
        let start = event(id, pid, 4, exec("/usr/bin/codex", &[], true));
        r.before(&start);
        r.after(&start);
        r.after(&event(id, pid, 5, exit(true)));
    }
    assert!(
        r.sessions().any(|s| s.id == S),
        "the oldest ended session was forgotten while its straggler 11 lives"
    );
    assert_eq!(r.members(Some(S), None), [11]);
}

#[test]
fn members_survive_a_parent_loop_and_come_deepest_first() {
    let mut r = Registry::default();
    let id = SessionId(3);
    // 10 → 11 → 12, and 20 ⇄ 21 (a loop left by lost exits and reused pids).
    r.adopt(id, 10, 1, "root".into());
    r.adopt(id, 11, 10, "sh".into());
    r.adopt(id, 12, 11, "cat".into());
    r.adopt(id, 20, 21, "a".into());
    r.adopt(id, 21, 20, "b".into());
    let all = r.members(Some(id), None);
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![10, 11, 12, 20, 21]);
    let pos = |p: u32| all.iter().position(|x| *x == p).expect("member");
    assert!(
        pos(12) < pos(11) && pos(11) < pos(10),
        "deepest first: {all:?}"
    );
    assert_eq!(r.members(None, Some(20)).len(), 2, "the loop ends");
}

/// `guard run` as root, then a wrapper that drops to another user and execs the
/// agent (`setpriv`, `sudo -u`): the session is the agent's, run by that user, in
/// `guard sessions`, the report, the export and its `session_end`.
#[test]
fn a_wrapper_that_drops_privileges_leaves_the_session_to_the_agent_and_its_user() {
    let mut r = Registry::default();
    let wrapper = Task {
        uid: 0,
        user: Some("root".into()),
        ..task(10, 1, "setpriv")
    };
    let start = r.start(S, How::Run, 1, &wrapper, Some("/src".into()));
    assert!(matches!(&start.detail, Detail::SessionStart { agent, .. } if agent == "setpriv"));
    // The wrapper's own exec (still the wrapper), then the agent's in its place.
    r.after(&event(
        S,
        10,
        2,
        exec("/usr/bin/setpriv", &["setpriv"], true),
    ));
    let agent = Event::derived(
        3,
        Some(S),
        Task {
            uid: 1000,
            user: Some("alice".into()),
            role: guard_common::role::AGENT,
            ..task(10, 1, "my-agent")
        },
        exec("/opt/agents/bin/my-agent.js", &["my-agent"], true),
    );
    r.after(&agent);
    let s = r.sessions().find(|s| s.id == S).expect("the session");
    assert_eq!(
        (s.agent.as_str(), s.uid, s.user.as_deref()),
        ("my-agent", 1000, Some("alice"))
    );
    let end = r.after(&event(S, 10, 4, exit(true))).expect("session_end");
    assert!(
        matches!(&end.detail, Detail::SessionEnd { agent, agent_user, .. }
            if agent == "my-agent" && agent_user.as_deref() == Some("alice")),
        "{:?}",
        end.detail
    );
}

/// The event the pipeline would write for `detail` of `pid` (child of `ppid`), as the
/// registry annotates it, applied.
fn annotated(r: &mut Registry, pid: u32, ppid: u32, ts_ns: i128, detail: Detail) -> Event {
    let mut ev = event(S, pid, ts_ns, detail);
    ev.task = task(pid, ppid, "bash");
    ev.task.role = guard_common::role::TOOL;
    r.annotate(&mut ev);
    r.after(&ev);
    ev
}

fn declare(
    r: &mut Registry,
    hook: u32,
    phase: guard_common::protocol::CallPhase,
    id: &str,
    command: &str,
) {
    let ev = r
        .declare(
            hook,
            0,
            5,
            guard_common::protocol::ToolCall {
                phase,
                id: id.to_owned(),
                thread: Some("t-1".to_owned()),
                tool: "Bash".to_owned(),
                command: Some(command.to_owned()),
            },
        )
        .expect("the hook is the session's");
    assert_eq!(ev.task.call.as_deref(), Some(id), "{ev:?}");
    assert!(matches!(ev.detail, Detail::ToolCall { .. }), "{ev:?}");
}

/// Gemini CLI relaunches itself (a second process of role agent) and starts its
/// tools from the second: they work for the open call as the first's would.
#[test]
fn a_relaunched_agent_s_children_work_for_the_open_call() {
    use guard_common::protocol::CallPhase::Start;
    let as_agent = |r: &mut Registry, pid, ppid, ts, detail| {
        let mut ev = event(S, pid, ts, detail);
        ev.task = task(pid, ppid, "node");
        ev.task.role = guard_common::role::AGENT;
        r.annotate(&mut ev);
        r.after(&ev);
    };
    let mut r = Registry::default();
    let mut root = event(S, 10, 1, exec("/usr/bin/node", &["node", "gemini"], true));
    root.task.role = guard_common::role::AGENT;
    r.before(&root);
    r.after(&root);
    as_agent(&mut r, 10, 1, 2, fork(11));
    as_agent(
        &mut r,
        11,
        10,
        3,
        exec(
            "/usr/bin/node",
            &["node", "--max-old-space-size=8", "gemini"],
            false,
        ),
    );
    as_agent(&mut r, 11, 10, 4, fork(12));
    declare(&mut r, 12, Start, "gemini-00ff", "git status");
    as_agent(&mut r, 11, 10, 5, fork(13));
    let shell = annotated(
        &mut r,
        13,
        11,
        6,
        exec(
            "/usr/bin/bash",
            &["/usr/bin/bash", "-c", "git status"],
            false,
        ),
    );
    assert_eq!(shell.task.call.as_deref(), Some("gemini-00ff"), "{shell:?}");
}

#[test]
fn the_agent_s_children_work_for_the_open_call_and_outlive_it_after_its_end() {
    use guard_common::protocol::CallPhase::{End, Start};
    let mut r = Registry::default();
    let mut root = event(S, 10, 1, exec("/usr/bin/codex", &["codex"], true));
    root.task.role = guard_common::role::AGENT;
    r.before(&root);
    r.after(&root);
    // Before any call: nothing is declared, so nothing is undeclared.
    annotated(&mut r, 10, 1, 2, fork(11));
    let helper = annotated(
        &mut r,
        11,
        10,
        3,
        exec("/usr/bin/git", &["git", "status"], false),
    );
    assert_eq!(helper.task.call, None);
    assert!(r.sessions().next().is_some_and(|s| {
        s.calls
            .undeclared(11, None, guard_common::role::TOOL)
            .is_none()
    }));

    // The hook (forked outside every call) declares call_0; the agent's next child
    // and its descendants work for it.
    annotated(&mut r, 10, 1, 4, fork(12));
    declare(&mut r, 12, Start, "call_0", "npm install ./pkg");
    annotated(&mut r, 10, 1, 5, fork(20));
    let shell = annotated(
        &mut r,
        20,
        10,
        6,
        exec(
            "/bin/bash",
            &["/bin/bash", "-lc", "npm install ./pkg"],
            false,
        ),
    );
    assert_eq!(shell.task.call.as_deref(), Some("call_0"));
    annotated(&mut r, 20, 10, 7, fork(21));
    let npm = annotated(
        &mut r,
        21,
        20,
        8,
        exec("/usr/bin/node", &["npm", "install", "./pkg"], false),
    );
    assert_eq!(npm.task.call.as_deref(), Some("call_0"), "inherited");
    assert!(!r.outlived_call(&npm));

    // Two calls open at once: the exec says which.
    annotated(&mut r, 10, 1, 9, fork(13));
    declare(&mut r, 13, Start, "call_1", "git log");
    annotated(&mut r, 10, 1, 9, fork(30));
    let again = annotated(
        &mut r,
        30,
        10,
        10,
        exec(
            "/bin/bash",
            &["/bin/bash", "-lc", "npm install ./pkg"],
            false,
        ),
    );
    assert_eq!(
        again.task.call.as_deref(),
        Some("call_0"),
        "by its command, not the latest call"
    );

    // call_0 ends: what its processes start from now on outlived it.
    annotated(&mut r, 10, 1, 11, fork(14));
    declare(&mut r, 14, End, "call_0", "npm install ./pkg");
    annotated(&mut r, 21, 20, 11, fork(22));
    let late = annotated(
        &mut r,
        22,
        21,
        12,
        exec("/usr/bin/curl", &["curl", "x"], false),
    );
    assert_eq!(late.task.call.as_deref(), Some("call_0"));
    assert!(r.outlived_call(&late), "{late:?}");
    let s = r.sessions().next().expect("the session");
    assert_eq!(
        s.calls
            .undeclared(22, Some("call_0"), guard_common::role::TOOL)
            .as_deref(),
        Some("outlived_call")
    );
    assert_eq!(
        s.calls
            .undeclared(11, None, guard_common::role::TOOL)
            .as_deref(),
        Some("outside_calls")
    );
    assert_eq!(
        s.calls.undeclared(12, None, guard_common::role::TOOL),
        None,
        "the hook"
    );
    assert_eq!(
        s.calls
            .undeclared(30, Some("call_1"), guard_common::role::TOOL),
        None,
        "open"
    );

    // A process outside every session cannot declare.
    assert!(
        r.declare(
            NO_SUCH_PID,
            0,
            5,
            guard_common::protocol::ToolCall {
                phase: Start,
                id: "x".to_owned(),
                thread: None,
                tool: "Bash".to_owned(),
                command: None,
            },
        )
        .is_err()
    );
}

#[test]
fn an_open_below_a_hidden_directory_is_told_apart_from_its_neighbours() {
    let mut r = with_root(NO_SUCH_PID);
    let hidden = ["/home/u/.ssh", "/srv/vault/"].map(std::path::PathBuf::from);
    r.set_hidden(S, hidden.to_vec());
    assert!(
        !r.hidden_below(Some(S), "/home/u/.ssh/id_rsa"),
        "no mount namespace yet: nothing is hidden"
    );
    r.confined(NO_SUCH_PID, &S.to_string(), (None, Some("ns".into())))
        .expect("the root says how it is confined");
    for (path, below) in [
        ("/home/u/.ssh/id_rsa", true),
        ("/home/u/.ssh/keys/deep/id_ed25519", true),
        ("/srv/vault/token", true),
        ("/home/u/.ssh", false),
        ("/home/u/.sshx/id_rsa", false),
        ("/home/u/notes", false),
        ("relative/.ssh/id_rsa", false),
    ] {
        assert_eq!(r.hidden_below(Some(S), path), below, "{path}");
    }
    assert!(!r.hidden_below(None, "/home/u/.ssh/id_rsa"), "no session");
}
