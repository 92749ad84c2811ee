//! `guard top` without a terminal: an [`App`] fed fake updates, drawn on ratatui's
//! `TestBackend` and compared with insta snapshots, plus key handling.

use std::time::Instant;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};
use serde_json::{Value, json};

use super::state::{
    Action, App, EVENT_CAP, Event, Focus, KillTarget, KindFilter, Mode, Session, Status, Update,
    Violation,
};
use super::{Inbox, kill_answer, repo_of, ui};

const CODEX: &str = "0000001f2b3c4d5e";
const CLAUDE: &str = "00000020aabbccdd";

fn now() -> DateTime<Utc> {
    "2026-03-04T10:20:30Z".parse().unwrap()
}

fn sessions_json() -> Value {
    json!([
        {
            "id": CODEX, "agent": "codex", "root_pid": 4242, "how": "exec", "uid": 1000, "user": "alice",
            "cwd": "/home/alice/src/guard/guard-user", "container": null,
            "started": "2026-03-04T10:15:00.123456789Z", "ended": null, "state": "running",
            "counts": {"exec": 12, "open": 345, "connect": 3, "send": 9, "fork": 11, "violations": 2,
                       "bytes_out": 1572864, "bytes_in": 40960},
            "agent_pid": 4242, "agent_threads": ["019aa2b0-5c1e-7d33-8f0e-6b1f2a3c4d5e"],
            "processes": [
                {"pid": 4242, "ppid": 4100, "comm": "codex", "exe": "/usr/bin/codex", "argv": ["codex", "--full-auto"], "role": "agent"},
                {"pid": 4250, "ppid": 4242, "comm": "bash", "exe": "/usr/bin/bash", "argv": ["bash", "-c", "cargo test"], "role": "tool", "agent_thread": "019aa2b0-5c1e-7d33-8f0e-6b1f2a3c4d5e", "sandboxed": true},
                {"pid": 4260, "ppid": 4250, "comm": "cargo", "exe": "/usr/bin/cargo", "argv": ["cargo", "test"], "role": "tool"},
                {"pid": 4270, "ppid": 4260, "comm": "rustc", "exe": "/usr/bin/rustc", "argv": ["rustc", "--crate-name", "guard"], "role": "tool"},
                {"pid": 4310, "ppid": 4300, "comm": "sh", "exe": "/usr/bin/dash", "argv": ["sh", "-c", "node install.js"], "role": "tool", "package": "esbuild"},
                {"pid": 4261, "ppid": 4250, "comm": "cat", "exe": null, "argv": [], "role": "tool", "sandboxed": false},
                {"pid": 4300, "ppid": 4242, "comm": "node", "exe": "/usr/bin/node", "argv": ["node", "mcp-server.js"], "role": "helper"}
            ]
        },
        {
            "id": CLAUDE, "agent": "claude", "root_pid": 5151, "how": "scan", "uid": 1001, "user": "bob",
            "cwd": "/srv/app", "container": "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b",
            "started": "2026-03-04T08:00:00Z", "ended": "2026-03-04T09:30:00Z", "state": "ended",
            "counts": {"exec": 40, "open": 1200, "connect": 0, "send": 0, "fork": 39, "violations": 0},
            "processes": []
        }
    ])
}

fn status() -> Status {
    Status::from_status(serde_json::from_value(json!({
        "events_total": 123456, "events_per_second": 1520.0,
        "lost": {"exec": 0, "open": 17, "connect": 0, "untracked_children": 0, "undecodable": 0},
        "cpu_seconds": 12.5, "rss_bytes": 23_456_789, "programs": ["a", "b"], "subscribers": 1,
        "policy": "workstation", "mode": "enforce"
    })).unwrap())
}

fn event(v: Value) -> Event {
    Event::from_line(&serde_json::from_value(v).unwrap())
}

fn sessions() -> Vec<Session> {
    Session::list_from(serde_json::from_value(sessions_json()).unwrap())
}

fn events() -> Vec<Event> {
    let base = |kind: &str, pid: u32, comm: &str, ms: u32| {
        json!({"schema": 1, "ts": format!("2026-03-04T10:20:{:02}.{:03}000000Z", 20 + ms / 100, ms % 100), "kind": kind,
               "session": CODEX, "pid": pid, "ppid": 4242, "tid": pid, "comm": comm, "uid": 1000, "user": "alice"})
    };
    let with = |mut v: Value, extra: Value| {
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    vec![
        event(with(
            base("exec", 4260, "cargo", 100),
            json!({"exe": "/usr/bin/cargo", "argv": ["cargo", "test"]}),
        )),
        event(with(
            base("open", 4260, "cargo", 200),
            json!({"path": "/home/alice/src/guard/Cargo.toml", "access": ["read"], "result": "ok", "fd": 3}),
        )),
        event(with(
            base("connect", 4300, "node", 300),
            json!({"addr": "140.82.112.3", "port": 443, "proto": "tcp", "family": "ipv4", "result": "EINPROGRESS"}),
        )),
        event(with(
            base("open", 4261, "cat", 400),
            json!({"path": "/home/alice/.ssh/id_rsa", "access": ["read"], "result": "ok", "fd": 4,
                   "rule": "ssh-keys", "action": "kill", "outcome": "killed"}),
        )),
        event(with(
            base("fork", 4250, "bash", 500),
            json!({"child_pid": 4261}),
        )),
        event(with(
            base("exit", 4261, "cat", 600),
            json!({"signal": 9, "root": false}),
        )),
        event(
            json!({"kind": "open", "session": CLAUDE, "pid": 5151, "comm": "claude", "ts": "2026-03-04T09:00:00.000Z",
                     "path": "/srv/app/main.py", "access": ["read"], "result": "ok"}),
        ),
    ]
}

fn app() -> App {
    let mut app = App::new(now());
    let mut list = sessions();
    list[0].repo = Some("guard/guard-user".to_owned());
    app.apply(Update::Sessions(list));
    app.apply(Update::Status(status()));
    app.apply(Update::Events(events()));
    app
}

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app)).unwrap();
    terminal
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn text(buf: &Buffer) -> String {
    let w = buf.area.width as usize;
    buf.content
        .chunks(w)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect()
}

/// Cells whose symbol is part of `needle` on the first row that contains it.
fn cells_of<'a>(buf: &'a Buffer, needle: &str) -> Vec<&'a ratatui::buffer::Cell> {
    let w = buf.area.width as usize;
    for row in buf.content.chunks(w) {
        let line: String = row.iter().map(|c| c.symbol()).collect();
        if let Some(at) = line.find(needle) {
            let start = line[..at].chars().count();
            return row[start..start + needle.chars().count()].iter().collect();
        }
    }
    panic!("{needle:?} is not on screen:\n{}", text(buf));
}

#[test]
fn normal_view_with_two_sessions() {
    let terminal = draw(&app(), 120, 30);
    insta::assert_snapshot!("normal_120x30", terminal.backend());
}

#[test]
fn violations_are_red_and_nothing_else_is_coloured() {
    let terminal = draw(&app(), 120, 30);
    let buf = terminal.backend().buffer();
    for cell in cells_of(buf, "! ssh-keys → kill (killed): /home/ali") {
        assert_eq!(
            cell.fg,
            Color::Red,
            "violation line not red:\n{}",
            text(buf)
        );
    }
    // A tool that ran outside its agent's sandbox is marked in red in the tree.
    for cell in cells_of(buf, "unsandboxed") {
        assert_eq!(cell.fg, Color::Red, "unsandboxed not red:\n{}", text(buf));
    }
    // Ordinary events keep the terminal's colours.
    for cell in cells_of(buf, "/home/alice/src/guard/Cargo.toml") {
        assert_eq!(cell.fg, Color::Reset);
    }
    // Only red, never a fixed foreground or background that may vanish on some theme.
    for cell in &buf.content {
        assert!(
            matches!(cell.fg, Color::Reset | Color::Red),
            "cell {cell:?}"
        );
        assert_eq!(cell.bg, Color::Reset, "cell {cell:?}");
    }
}

#[test]
fn help_overlay() {
    let mut app = app();
    assert_eq!(app.on_key(key('?')), None);
    assert_eq!(app.mode, Mode::Help);
    insta::assert_snapshot!("help_120x30", draw(&app, 120, 30).backend());
    // Any key closes it.
    assert_eq!(app.on_key(key('j')), None);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn confirm_kill_prompt() {
    let mut app = app();
    assert_eq!(app.on_key(key('K')), None);
    assert!(matches!(app.mode, Mode::Confirm { .. }));
    insta::assert_snapshot!("confirm_kill_120x30", draw(&app, 120, 30).backend());
}

#[test]
fn r_opens_the_selected_sessions_report_and_esc_closes_it() {
    let mut app = app();
    let Some(Action::Report(id)) = app.on_key(key('r')) else {
        panic!("r asks for a report")
    };
    assert_eq!(id, CODEX, "the selected session's");
    let text: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    app.apply(Update::Report(
        id.clone(),
        Ok(format!("# guard session report `{id}`\n{text}")),
    ));
    assert!(matches!(app.mode, Mode::Report { top: 0, .. }));
    insta::assert_snapshot!("report_120x30", draw(&app, 120, 30).backend());
    app.on_key(code(KeyCode::PageDown));
    app.on_key(code(KeyCode::Down));
    let Mode::Report { top, .. } = &app.mode else {
        panic!("still the report")
    };
    assert_eq!(*top, 21, "a page of 20 lines and one more");
    app.on_key(code(KeyCode::End));
    assert!(matches!(&app.mode, Mode::Report { top: 60, .. }));
    assert_eq!(app.on_key(code(KeyCode::Esc)), None);
    assert_eq!(app.mode, Mode::Normal);
    // No report: said, and the view stays as it was.
    app.apply(Update::Report(id, Err("no session".into())));
    assert_eq!(app.mode, Mode::Normal);
    assert!(
        app.message
            .as_ref()
            .is_some_and(|m| m.error && m.text.contains("no session")),
        "{:?}",
        app.message
    );
}

/// `d` shows where the selected session's sockets went: each flow's last record
/// counts (a periodic record's totals are replaced by the next), flows of one
/// destination add up, connects and sends are counted, most bytes out first.
#[test]
fn d_shows_the_selected_sessions_destinations_with_their_bytes() {
    let mut app = app();
    let net = |kind: &str, extra: Value| {
        let mut v = json!({"schema": 2, "ts": "2026-03-04T10:20:25.000000000Z", "kind": kind,
                           "session": CODEX, "pid": 4300, "ppid": 4242, "tid": 4300, "comm": "node"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        event(v)
    };
    let flow = |addr: &str, port: u16, proto: &str, id: &str, out: u64, inb: u64, reason: &str| {
        let mut extra = json!({"addr": addr, "port": port, "proto": proto, "bytes_out": out,
                               "bytes_in": inb, "flow_id": id, "reason": reason, "dest_class": "other"});
        if port == 443 {
            extra["host"] = json!("api.openai.com");
        }
        net("flow", extra)
    };
    app.apply(Update::Events(vec![
        net(
            "connect",
            json!({"addr": "162.159.140.245", "port": 443, "proto": "tcp", "result": "ok",
                   "host": "api.openai.com"}),
        ),
        flow("162.159.140.245", 443, "tcp", "1-a", 1_000, 500, "periodic"),
        flow(
            "162.159.140.245",
            443,
            "tcp",
            "1-a",
            3_000_000,
            800,
            "close",
        ),
        flow("162.159.140.245", 443, "tcp", "2-b", 500, 100, "close"),
        net(
            "send",
            json!({"addr": "10.0.0.53", "port": 53, "proto": "udp", "result": "ok"}),
        ),
        flow("10.0.0.53", 53, "udp", "3-c", 60, 120, "close"),
    ]));
    assert!(!app.dests_view);
    app.on_key(key('d'));
    assert!(app.dests_view, "d opens the destinations view");
    let (dests, omitted) = app.destinations();
    assert_eq!(omitted, 0);
    // The connect to 140.82.112.3 in the base events had no flow: no bytes, last.
    let rows: Vec<(&str, u64, u64, u64, u64)> = dests
        .iter()
        .map(|d| (d.dest.as_str(), d.connects, d.sends, d.out, d.inb))
        .collect();
    assert_eq!(
        rows,
        [
            ("162.159.140.245:443/tcp", 1, 0, 3_000_500, 900),
            ("10.0.0.53:53/udp", 0, 1, 60, 120),
            ("140.82.112.3:443/tcp", 1, 0, 0, 0),
        ]
    );
    assert_eq!(dests[0].host.as_deref(), Some("api.openai.com"));
    assert_eq!(dests[1].host, None);
    insta::assert_snapshot!("destinations_120x30", draw(&app, 120, 30).backend());
    app.on_key(key('d'));
    assert!(!app.dests_view, "d again goes back to the events");
}

#[test]
fn tiny_terminal() {
    let app = app();
    insta::assert_snapshot!("tiny_40x10", draw(&app, 40, 10).backend());
}

#[test]
fn any_size_and_mode_draws_without_panicking() {
    let mut apps = vec![App::new(now()), app()];
    let mut help = app();
    help.on_key(key('?'));
    apps.push(help);
    let mut confirm = app();
    confirm.on_key(code(KeyCode::Tab));
    confirm.on_key(key('x'));
    apps.push(confirm);
    let mut filter = app();
    filter.on_key(key('/'));
    filter.on_key(key('z'));
    filter.on_key(key(' '));
    apps.push(filter);
    for app in &apps {
        for (w, h) in [
            (0, 0),
            (1, 1),
            (5, 3),
            (19, 4),
            (20, 5),
            (30, 6),
            (40, 10),
            (79, 15),
            (80, 16),
            (100, 20),
            (200, 60),
        ] {
            draw(app, w, h);
        }
    }
}

#[test]
fn moving_selects_sessions_and_the_tree_follows() {
    let mut app = app();
    assert_eq!(
        app.selected.as_deref(),
        Some(CODEX),
        "running sessions first"
    );
    assert_eq!(app.tree_pid, Some(4242));
    let rows = app.tree();
    let pids: Vec<u32> = rows.iter().map(|r| r.pid).collect();
    assert_eq!(
        pids,
        [4242, 4250, 4260, 4270, 4261, 4300, 4310],
        "depth first, children by pid"
    );
    assert_eq!(rows[4].prefix, "│ └─");
    assert_eq!(rows[4].command, "[cat]");

    app.on_key(key('j'));
    assert_eq!(app.selected.as_deref(), Some(CLAUDE));
    assert_eq!(app.tree_pid, None, "the ended session has no processes");
    assert_eq!(
        app.feed(10).len(),
        1,
        "the feed shows the selected session's events"
    );
    app.on_key(code(KeyCode::Down));
    assert_eq!(
        app.selected.as_deref(),
        Some(CLAUDE),
        "stays on the last one"
    );
    app.on_key(code(KeyCode::Up));
    assert_eq!(app.selected.as_deref(), Some(CODEX));

    // Enter goes to the tree; moving there selects processes.
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.focus, Focus::Tree);
    app.on_key(key('j'));
    app.on_key(key('j'));
    assert_eq!(app.tree_pid, Some(4260));
    app.on_key(code(KeyCode::End));
    assert_eq!(app.tree_pid, Some(4310));

    // The selection survives a refresh that reorders sessions.
    let mut list = sessions();
    list.reverse();
    app.apply(Update::Sessions(list));
    assert_eq!(app.selected.as_deref(), Some(CODEX));
    assert_eq!(app.tree_pid, Some(4310));

    app.on_key(code(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Feed);
    app.on_key(code(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Sessions);
    app.on_key(code(KeyCode::BackTab));
    assert_eq!(app.focus, Focus::Feed);
}

#[test]
fn filters_by_text_and_kind() {
    let mut app = app();
    assert_eq!(app.feed(100).len(), 6);
    app.on_key(key('/'));
    assert_eq!(app.mode, Mode::Filter);
    for c in "SSH".chars() {
        app.on_key(key(c));
    }
    // Typing filters at once, case-insensitively.
    let shown: Vec<&str> = app.feed(100).iter().map(|e| e.what.as_str()).collect();
    assert_eq!(shown, ["/home/alice/.ssh/id_rsa (read) ok"]);
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.text_filter, "SSH");
    // Keys are keys again: q quits.
    assert_eq!(app.on_key(key('q')), Some(Action::Quit));

    app.on_key(key('/'));
    app.on_key(code(KeyCode::Backspace));
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.text_filter, "", "Esc in the prompt clears the filter");
    assert_eq!(app.feed(100).len(), 6);

    app.on_key(key('f'));
    assert_eq!(app.kind_filter, KindFilter::Exec);
    assert!(app.feed(100).iter().all(|e| e.kind == "exec"));
    app.on_key(key('f'));
    assert_eq!(app.kind_filter, KindFilter::Open);
    assert_eq!(app.feed(100).len(), 2);
    app.on_key(key('f'));
    app.on_key(key('f'));
    app.on_key(key('f'));
    app.on_key(key('f'));
    assert_eq!(app.kind_filter, KindFilter::Violations);
    let shown = app.feed(100);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].violation.as_ref().unwrap().rule, "ssh-keys");
    app.on_key(key('f'));
    assert_eq!(app.kind_filter, KindFilter::All, "f wraps around");
    app.on_key(key('F'));
    assert_eq!(app.kind_filter, KindFilter::Violations, "F goes back");
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.kind_filter, KindFilter::All, "Esc clears the filters");
}

#[test]
fn pause_freezes_the_feed() {
    let mut app = app();
    let newest = |app: &App| app.feed(1)[0].what.clone();
    assert_eq!(newest(&app), "killed by signal 9");
    app.on_key(key(' '));
    assert!(app.is_paused());
    let more = event(
        json!({"kind": "exec", "session": CODEX, "pid": 4400, "comm": "ls", "argv": ["ls", "-l"]}),
    );
    app.apply(Update::Event(more.clone()));
    app.apply(Update::Event(more));
    assert_eq!(
        newest(&app),
        "killed by signal 9",
        "paused: new events are held back"
    );
    assert_eq!(app.newer_while_paused(), 2);
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(screen.contains("PAUSED, 2 newer"), "{screen}");
    app.on_key(key('p'));
    assert!(!app.is_paused());
    assert_eq!(newest(&app), "ls -l", "resumed: the feed catches up");

    // Scrolling back in the feed pauses it too.
    app.focus = Focus::Feed;
    app.on_key(key('k'));
    assert!(app.is_paused());
    assert_eq!(app.feed_scroll, 1);
    assert_eq!(newest(&app), "ls -l", "one line back from the newest");
    app.on_key(key('j'));
    assert_eq!(app.feed_scroll, 0);
}

#[test]
fn killing_a_session_needs_confirmation() {
    let mut app = app();
    assert_eq!(app.on_key(key('K')), None);
    let Mode::Confirm { question, .. } = &app.mode else {
        panic!("no confirmation: {:?}", app.mode)
    };
    assert_eq!(
        question,
        "Kill session 2b3c4d5e (codex, root pid 4242, 7 processes)?"
    );
    assert_eq!(app.on_key(key('n')), None, "n cancels");
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.on_key(key('K')), None);
    assert_eq!(app.on_key(key('z')), None, "other keys wait for y or n");
    assert_eq!(
        app.on_key(key('y')),
        Some(Action::Kill(KillTarget::Session(CODEX.to_owned())))
    );
    assert_eq!(app.mode, Mode::Normal);

    // An ended session cannot be killed.
    app.on_key(key('j'));
    assert_eq!(app.on_key(key('K')), None);
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.message.as_ref().unwrap().text.contains("already ended"));
}

#[test]
fn killing_a_process_subtree_needs_confirmation() {
    let mut app = app();
    assert_eq!(app.on_key(key('x')), None);
    assert_eq!(app.mode, Mode::Normal, "x acts on the tree pane only");
    app.on_key(code(KeyCode::Tab));
    app.on_key(key('j'));
    assert_eq!(app.on_key(key('x')), None);
    let Mode::Confirm { question, .. } = &app.mode else {
        panic!("no confirmation: {:?}", app.mode)
    };
    assert_eq!(question, "Kill process 4250 (bash) and its 3 descendants?");
    assert_eq!(app.on_key(code(KeyCode::Esc)), None);
    assert_eq!(app.mode, Mode::Normal);
    app.on_key(key('x'));
    assert_eq!(
        app.on_key(key('Y')),
        Some(Action::Kill(KillTarget::Pid(4250)))
    );
}

#[test]
fn kill_answers_become_messages() {
    app().apply(Update::Killed(Ok("killed".into())));
    let answer = |data: Value| kill_answer(Ok(serde_json::from_value(data).unwrap()), "session x");
    assert_eq!(
        answer(json!({"killed": [3, 2], "errors": []})),
        Ok("killed session x: 2 processes (3 2)".into())
    );
    assert_eq!(
        answer(json!({"killed": [], "errors": [{"pid": 2, "error": "EPERM"}]})),
        Err("session x: nothing left to kill; failed: 2: EPERM".into())
    );
    let refused = kill_answer(
        Err(crate::control::client::Error::Refused(
            "only root may kill through guard".into(),
        )),
        "process 9",
    );
    assert_eq!(
        refused,
        Err("cannot kill process 9: only root may kill through guard".into())
    );

    let mut app = app();
    app.apply(Update::Killed(Err(
        "cannot kill process 9: only root may kill through guard".into(),
    )));
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(screen.contains("cannot kill process 9"), "{screen}");
    app.set_now(now() + chrono::Duration::seconds(60));
    assert!(app.message.is_none(), "messages expire");
}

#[test]
fn status_line_shows_policy_when_the_daemon_has_one() {
    let mut app = app();
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(
        screen.contains(
            "1520 ev/s │ lost open:17 │ daemon cpu 12.5s mem 22.4 MiB │ policy workstation mode enforce"
        ),
        "{screen}"
    );
    let mut st = Status::from_status(
        serde_json::from_value(json!({"events_per_second": 3.0, "policy": "/etc/guard/policy.toml", "mode": "enforce", "cpu_seconds": 1.0})).unwrap(),
    );
    st.cpu_percent = Some(2.5);
    app.apply(Update::Status(st));
    app.apply(Update::Missed(42));
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(screen.contains("3 ev/s │ lost 0 │ daemon cpu 2.5% mem 0 B │ policy /etc/guard/policy.toml mode enforce │ missed 42"), "{screen}");
    app.apply(Update::Disconnected("connection refused".into()));
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(
        screen.contains("daemon unreachable: connection refused (retrying)"),
        "{screen}"
    );
}

#[test]
fn events_read_for_people() {
    let e = events();
    let what: Vec<&str> = e.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        what,
        [
            "cargo test",
            "/home/alice/src/guard/Cargo.toml (read) ok",
            "tcp 140.82.112.3:443 EINPROGRESS",
            "/home/alice/.ssh/id_rsa (read) ok",
            "child 4261",
            "killed by signal 9",
            "/srv/app/main.py (read) ok",
        ]
    );
    assert_eq!(e[0].time, "10:20:21.000");
    assert!(e[3].violation.is_some() && e[2].violation.is_none());
    let end = event(json!({"kind": "session_end", "stragglers": [7], "killed": [7, 8]}));
    assert_eq!(end.what, "ended; stragglers 7; killed 7 8");
    let loaded = event(
        json!({"kind": "policy_loaded", "policy": "ci", "mode": "enforce", "rules": 4, "warnings": "ci:3:1: warning[W102]: a rule that never matches\n"}),
    );
    assert_eq!(
        loaded.what,
        "policy ci loaded (enforce, 4 rules, 1 warnings)"
    );
    let net = event(
        json!({"kind": "connect", "proto": "tcp", "addr": "1.2.3.4", "port": 443, "host": "github.com", "result": "ok"}),
    );
    assert_eq!(net.what, "tcp 1.2.3.4:443 (github.com) ok");
    let odd =
        event(json!({"kind": "policy_reload", "ts": "x", "pid": 1, "file": "/etc/guard.toml"}));
    assert_eq!(odd.kind, "other");
    assert_eq!(odd.what, "(an event kind this guard does not know)");
}

#[test]
fn buffers_keep_only_the_newest_events() {
    let mut app = app();
    let flood: Vec<Event> = (0..25_000u32)
        .map(|i| event(json!({"kind": "open", "session": CODEX, "pid": 4260, "comm": "cargo", "path": format!("/f/{i}")})))
        .collect();
    app.apply(Update::Events(flood));
    assert_eq!(app.feed_len(), EVENT_CAP);
    assert_eq!(app.feed(1)[0].what, "/f/24999 () ");

    // The violations among them outlive the flood, for the violations filter.
    app.on_key(key('F'));
    assert_eq!(app.kind_filter, KindFilter::Violations);
    assert_eq!(app.feed(10).len(), 1);
    assert_eq!(app.feed(10)[0].violation.as_ref().unwrap().rule, "ssh-keys");
}

#[test]
fn the_inbox_keeps_the_newest_events_and_the_violations() {
    let inbox = std::sync::Mutex::new(Inbox::default());
    let open = |i: u32| event(json!({"kind": "open", "pid": i, "path": format!("/f/{i}")}));
    let mut batch: Vec<Event> = (0..15_000u32)
        .map(|i| {
            let mut ev = open(i);
            if i % 3_000 == 0 {
                ev.violation = Some(Violation {
                    rule: format!("r{i}"),
                    ..Violation::default()
                });
            }
            ev
        })
        .collect();
    Inbox::put(&inbox, &mut batch, 7);
    let taken = Inbox::take(&inbox);
    assert_eq!(
        (taken.skipped, taken.missed),
        (15_000 - 5 - EVENT_CAP as u64, 7)
    );
    assert_eq!(
        taken.events.len(),
        EVENT_CAP + 5,
        "the newest events and every violation"
    );
    let pids: Vec<u32> = taken.events.iter().map(|e| e.pid).collect();
    assert!(pids.windows(2).all(|w| w[0] < w[1]), "in arrival order");
    // Violations 0 and 3000 are older than the oldest ordinary event kept: of the
    // 14,995 ordinary ones, the newest 10,000 start at 4997 (6000, 9000 and 12000
    // being violations).
    assert_eq!(&pids[..3], [0, 3_000, 4_997]);
    assert_eq!(taken.events.last().unwrap().pid, 14_999);
    assert!(Inbox::take(&inbox).events.is_empty());

    let mut app = app();
    app.apply(Update::Skipped(taken.skipped));
    let screen = text(draw(&app, 140, 30).backend().buffer());
    assert!(screen.contains("too fast: 4995 not shown"), "{screen}");
}

#[test]
fn a_flood_of_events_stays_cheap_to_show() {
    // One frame's worth at 50,000 events per second (a quarter of a second, but
    // take a whole second of them), applied and drawn.
    let mut app = app();
    let flood: Vec<Event> = (0..50_000u32)
        .map(|i| {
            event(json!({"kind": "open", "session": CODEX, "pid": 4260, "comm": "cargo", "ts": "2026-03-04T10:20:30.000Z",
                         "path": format!("/f/{i}"), "access": ["read"], "result": "ok"}))
        })
        .collect();
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let start = Instant::now();
    app.apply(Update::Events(flood));
    for _ in 0..4 {
        terminal.draw(|f| ui::draw(f, &app)).unwrap();
    }
    let took = start.elapsed();
    assert!(
        took.as_secs_f64() < 2.0,
        "applying 50,000 events and drawing took {took:?}"
    );
}

#[test]
fn repositories_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("proj");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("src/deep")).unwrap();
    assert_eq!(repo_of(&repo).as_deref(), Some("proj"));
    assert_eq!(
        repo_of(&repo.join("src/deep")).as_deref(),
        Some("proj/src/deep")
    );
    assert_eq!(repo_of(std::path::Path::new("relative")), None);
}

#[test]
fn containers_show_by_name_where_the_runtime_named_them() {
    let id = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b";
    let label = |extra: Value| {
        let mut v = json!({"id": CODEX, "agent": "codex", "root_pid": 1, "container": id});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Session::from_info(serde_json::from_value(v).expect("a session")).container
    };
    assert_eq!(label(json!({})).as_deref(), Some(id));
    assert_eq!(
        label(json!({"container_name": "agent", "pod_name": "job-1", "namespace": "ci"}))
            .as_deref(),
        Some("ci/job-1/agent")
    );
    assert_eq!(
        label(json!({"container_name": "runner-build"})).as_deref(),
        Some("runner-build")
    );
}

/// What one `sleep` opens is mostly its loader's and locale's files: those reads come
/// behind `s`, while a system file written, or read against a rule, stays in front.
#[test]
fn system_reads_wait_behind_s() {
    let mut app = app();
    let open = |pid: u32, path: &str, access: &str, rule: Option<&str>| {
        let mut v = json!({"schema": 1, "ts": "2026-03-04T10:21:00.000000000Z", "kind": "open",
            "session": CODEX, "pid": pid, "ppid": 4242, "tid": pid, "comm": "sleep", "uid": 1000,
            "user": "alice", "path": path, "access": [access], "result": "ok"});
        if let Some(rule) = rule {
            v["rule"] = json!(rule);
            v["action"] = json!("alert");
            v["outcome"] = json!("alerted");
        }
        event(v)
    };
    app.apply(Update::Events(vec![
        open(4270, "/usr/lib/x86_64-linux-gnu/libc.so.6", "read", None),
        open(4270, "/usr/lib/locale/locale-archive", "read", None),
        open(4270, "/etc/hosts", "write", None),
        open(4270, "/etc/shadow", "read", Some("shadow")),
    ]));
    let paths = |app: &App| -> Vec<String> {
        app.feed(100)
            .iter()
            .filter(|e| e.comm == "sleep")
            .map(|e| e.what.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(paths(&app), ["/etc/hosts", "/etc/shadow"]);
    assert_eq!(app.feed(100).len(), 8, "the other events stay");
    app.on_key(key('s'));
    assert!(app.show_system);
    assert_eq!(
        paths(&app),
        [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/locale/locale-archive",
            "/etc/hosts",
            "/etc/shadow"
        ]
    );
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(screen.contains("[+system reads]"), "{screen}");
    app.on_key(key('s'));
    assert_eq!(paths(&app).len(), 2, "s again hides them");
}
