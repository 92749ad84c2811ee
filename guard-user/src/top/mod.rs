//! `guard top`: the live view of agent sessions.
//!
//! Data and drawing are kept apart (as in bandwhich and bottom): `state` holds
//! what is shown and handles keys, `ui` draws it, and this module owns the
//! terminal and the threads that talk to the daemon:
//!
//! - a poller asks for `sessions` and `status` every second;
//! - a follower reads the `subscribe` stream, parses each line and queues the
//!   event in an [`Inbox`] that keeps only the newest [`state::EVENT_CAP`];
//! - the UI thread never touches the socket: it waits for keys (at most one
//!   frame), takes whatever arrived meanwhile in one go, and redraws on input or
//!   at most every [`FRAME`].

pub mod state;
pub mod ui;

use std::{
    collections::{HashMap, VecDeque},
    io::{self, BufRead, IsTerminal, Stdout},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use chrono::Utc;
use crossterm::{
    cursor, event, execute,
    terminal::{
        Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
        enable_raw_mode,
    },
};
use guard_common::{
    line::{EventDetail, EventLine},
    protocol::{self, KillReport, SessionInfo},
};
use ratatui::{Terminal, backend::CrosstermBackend};

use self::state::{Action, App, Event, KillTarget, Session, Status, Update};
use crate::control::{Request, client};

/// The longest the view waits before showing what arrived.
const FRAME: Duration = Duration::from_millis(250);
/// Ages tick even when nothing happens.
const IDLE_REDRAW: Duration = Duration::from_secs(1);
/// How often sessions and status are asked for (and reconnects tried).
const POLL: Duration = Duration::from_secs(1);

/// Set by the panic hook: the UI stops when a feeder thread panicked.
static PANICKED: AtomicBool = AtomicBool::new(false);

pub fn run(socket: &Path) -> anyhow::Result<()> {
    // Reach the daemon before taking over the terminal, so that failing is a
    // plain message on a normal screen.
    let first: Vec<SessionInfo> = match client::call(socket, &Request::Sessions) {
        Ok(list) => list,
        Err(e) => {
            eprintln!("guard top: {}", unreachable(socket, &e));
            std::process::exit(1);
        }
    };
    if !io::stdout().is_terminal() {
        anyhow::bail!(
            "guard top draws on a terminal; use `guard sessions` or `guard events` in scripts"
        );
    }

    let mut app = App::new(Utc::now());
    let mut first = Session::list_from(first);
    let mut repos = RepoCache::default();
    first.iter_mut().for_each(|s| repos.fill(s));
    app.apply(Update::Sessions(first));

    let (tx, updates) = mpsc::channel();
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    {
        let (socket, tx) = (socket.to_owned(), tx.clone());
        thread::Builder::new()
            .name("top-poll".into())
            .spawn(move || poll(&socket, &tx, repos))?;
    }
    {
        let (socket, tx, inbox) = (socket.to_owned(), tx.clone(), Arc::clone(&inbox));
        thread::Builder::new()
            .name("top-events".into())
            .spawn(move || follow(&socket, &tx, &inbox))?;
    }

    let mut screen = Screen::enter()?;
    let result = ui_loop(
        &mut screen.terminal,
        &mut app,
        socket,
        &tx,
        &updates,
        &inbox,
    );
    drop(screen);
    result
}

/// Why the first connection failed, for people.
fn unreachable(socket: &Path, e: &client::Error) -> String {
    let path = socket.display();
    match e {
        client::Error::Connect { source, .. }
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            format!(
                "permission denied on the guard daemon's socket {path}: run as root, or as a member of the `guard` group"
            )
        }
        client::Error::Connect { .. } => {
            format!("cannot reach the guard daemon at {path} (is guard daemon running?)")
        }
        other => other.to_string(),
    }
}

/// A short reason for the status line when the daemon goes away.
fn short_reason(e: &client::Error) -> String {
    match e {
        client::Error::Connect { source, .. }
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            "permission denied".to_owned()
        }
        client::Error::Connect { source, .. } => source.to_string(),
        client::Error::Io { source, .. } => source.to_string(),
        client::Error::Answer(why) | client::Error::Refused(why) => why.clone(),
    }
}

// ---------------------------------------------------------------------------
// The terminal
// ---------------------------------------------------------------------------

/// Raw mode and the alternate screen, restored on drop and on panic.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn restore() {
    let _ = disable_raw_mode();
    // Blank the alternate screen first: some terminals (tmux after a resize) copy
    // part of it back onto the normal screen when it is left.
    let _ = execute!(
        io::stdout(),
        Clear(ClearType::All),
        cursor::MoveTo(0, 0),
        LeaveAlternateScreen,
        cursor::Show
    );
}

impl Screen {
    fn enter() -> anyhow::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            restore();
            previous(info);
        }));
        enable_raw_mode()
            .map_err(|e| anyhow::anyhow!("cannot put the terminal in raw mode: {e}"))?;
        let screen = |mut stdout: Stdout| -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            execute!(stdout, EnterAlternateScreen, cursor::Hide)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
            terminal.clear()?;
            Ok(terminal)
        };
        match screen(io::stdout()) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(anyhow::anyhow!("cannot set up the terminal: {e}"))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

fn ui_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    socket: &Path,
    tx: &mpsc::Sender<Update>,
    updates: &mpsc::Receiver<Update>,
    inbox: &Mutex<Inbox>,
) -> anyhow::Result<()> {
    let mut dirty = true;
    let mut drawn = Instant::now();
    loop {
        if PANICKED.load(Ordering::SeqCst) {
            anyhow::bail!("a guard top thread panicked");
        }
        // Everything that arrived since the last frame, in one go.
        while let Ok(update) = updates.try_recv() {
            app.apply(update);
            dirty = true;
        }
        let taken = Inbox::take(inbox);
        if !taken.events.is_empty() {
            app.apply(Update::Events(taken.events));
            dirty = true;
        }
        if taken.skipped > 0 {
            app.apply(Update::Skipped(taken.skipped));
        }
        if taken.missed > 0 {
            app.apply(Update::Missed(taken.missed));
            dirty = true;
        }
        if dirty || drawn.elapsed() >= IDLE_REDRAW {
            app.set_now(Utc::now());
            terminal.draw(|frame| ui::draw(frame, app))?;
            drawn = Instant::now();
            dirty = false;
        }
        // Wait for a key, a resize or the next frame, whichever comes first.
        if !event::poll(FRAME)? {
            continue;
        }
        loop {
            match event::read()? {
                event::Event::Key(key) => match app.on_key(key) {
                    Some(Action::Quit) => return Ok(()),
                    Some(Action::Kill(target)) => kill(socket, target, tx),
                    Some(Action::Report(session)) => report(socket, session, tx),
                    None => {}
                },
                event::Event::Resize(..) => terminal.autoresize()?,
                _ => {}
            }
            dirty = true;
            if !event::poll(Duration::ZERO)? {
                break;
            }
        }
    }
}

/// Asks the daemon for a session's report, on a thread; it comes back as an update.
fn report(socket: &Path, session: String, tx: &mpsc::Sender<Update>) {
    let (socket, answers) = (socket.to_owned(), tx.clone());
    let spawned = thread::Builder::new()
        .name("top-report".into())
        .spawn(move || {
            let request = Request::Report {
                session: session.clone(),
            };
            let answer = client::call::<guard_common::report::Report>(&socket, &request)
                .map(|r| crate::report::markdown(&r))
                .map_err(|e| match e {
                    client::Error::Refused(why) => why,
                    e => short_reason(&e),
                });
            let _ = answers.send(Update::Report(session, answer));
        });
    if let Err(e) = spawned {
        let _ = tx.send(Update::Killed(Err(format!(
            "cannot ask for the report: {e}"
        ))));
    }
}

/// Asks the daemon to kill, on a thread; the answer comes back as an update.
fn kill(socket: &Path, target: KillTarget, tx: &mpsc::Sender<Update>) {
    let (socket, answers) = (socket.to_owned(), tx.clone());
    let spawned = thread::Builder::new()
        .name("top-kill".into())
        .spawn(move || {
            let (request, what) = match &target {
                KillTarget::Session(id) => (
                    Request::Kill {
                        session: Some(id.clone()),
                        pid: None,
                    },
                    format!("session {}", state::short_id(id)),
                ),
                KillTarget::Pid(pid) => (
                    Request::Kill {
                        session: None,
                        pid: Some(*pid),
                    },
                    format!("process {pid}"),
                ),
            };
            let _ = answers.send(Update::Killed(kill_answer(
                client::call(&socket, &request),
                &what,
            )));
        });
    if let Err(e) = spawned {
        let _ = tx.send(Update::Killed(Err(format!("cannot kill: {e}"))));
    }
}

fn kill_answer(answer: Result<KillReport, client::Error>, what: &str) -> Result<String, String> {
    let report = match answer {
        Ok(report) => report,
        Err(client::Error::Refused(why)) => return Err(format!("cannot kill {what}: {why}")),
        Err(e) => return Err(format!("cannot kill {what}: {}", short_reason(&e))),
    };
    let pids: Vec<String> = report.killed.iter().map(u32::to_string).collect();
    let killed = match pids.len() {
        0 => format!("{what}: nothing left to kill"),
        1 => format!("killed {what}: pid {}", pids.join(" ")),
        n => format!("killed {what}: {n} processes ({})", pids.join(" ")),
    };
    if report.errors.is_empty() {
        Ok(killed)
    } else {
        let errors: Vec<String> = report
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.pid, e.error))
            .collect();
        Err(format!("{killed}; failed: {}", errors.join(", ")))
    }
}

// ---------------------------------------------------------------------------
// Feeders
// ---------------------------------------------------------------------------

/// Events parsed by the follower and not yet taken by the UI: the newest
/// [`state::EVENT_CAP`], and apart from them the newest [`state::VIOLATION_CAP`]
/// violations (a flood must not wash those away), with counts of what was left out.
#[derive(Default)]
struct Inbox {
    /// (arrival number, event), oldest first.
    events: VecDeque<(u64, Event)>,
    violations: VecDeque<(u64, Event)>,
    arrived: u64,
    /// Pushed out before the UI took them.
    skipped: u64,
    /// The daemon's `missed` notices.
    missed: u64,
}

/// What the UI takes from the inbox at each frame.
struct Taken {
    events: Vec<Event>,
    skipped: u64,
    missed: u64,
}

impl Inbox {
    fn put(inbox: &Mutex<Self>, batch: &mut Vec<Event>, missed: u64) {
        let Ok(mut inbox) = inbox.lock() else { return };
        inbox.missed += missed;
        for ev in batch.drain(..) {
            inbox.arrived += 1;
            let n = inbox.arrived;
            let (queue, cap) = if ev.violation.is_some() {
                (&mut inbox.violations, state::VIOLATION_CAP)
            } else {
                (&mut inbox.events, state::EVENT_CAP)
            };
            let full = queue.len() >= cap;
            if full {
                queue.pop_front();
            }
            queue.push_back((n, ev));
            inbox.skipped += u64::from(full);
        }
    }

    fn take(inbox: &Mutex<Self>) -> Taken {
        let (events, violations, skipped, missed) = match inbox.lock() {
            Ok(mut inbox) => (
                std::mem::take(&mut inbox.events),
                std::mem::take(&mut inbox.violations),
                std::mem::take(&mut inbox.skipped),
                std::mem::take(&mut inbox.missed),
            ),
            Err(_) => {
                return Taken {
                    events: Vec::new(),
                    skipped: 0,
                    missed: 0,
                };
            }
        };
        // Merge the two queues back into arrival order.
        let mut out = Vec::with_capacity(events.len() + violations.len());
        let (mut events, mut violations) = (
            events.into_iter().peekable(),
            violations.into_iter().peekable(),
        );
        loop {
            let next = match (events.peek(), violations.peek()) {
                (Some((a, _)), Some((b, _))) if b < a => violations.next(),
                (Some(_), _) => events.next(),
                (None, _) => violations.next(),
            };
            match next {
                Some((_, ev)) => out.push(ev),
                None => break,
            }
        }
        Taken {
            events: out,
            skipped,
            missed,
        }
    }
}

/// Reads the event stream for good, reconnecting when it breaks.
fn follow(socket: &Path, tx: &mpsc::Sender<Update>, inbox: &Mutex<Inbox>) {
    const BATCH: usize = 512;
    let request = Request::Subscribe {
        session: None,
        kinds: Vec::new(),
    };
    loop {
        let why = match client::subscribe(socket, &request) {
            Ok(mut reader) => {
                let mut line = String::new();
                let mut batch = Vec::with_capacity(BATCH);
                let mut missed = 0;
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) => break "the daemon closed the event stream".to_owned(),
                        Ok(_) => {}
                        Err(e) => break format!("event stream: {e}"),
                    }
                    if let Ok(ev) = serde_json::from_str::<EventLine>(&line) {
                        match ev.detail {
                            EventDetail::Missed { count } => missed += count,
                            _ => batch.push(Event::from_line(&ev)),
                        }
                    }
                    // Hand over what was read once the socket has no more for now.
                    if batch.len() >= BATCH || reader.buffer().is_empty() {
                        Inbox::put(inbox, &mut batch, missed);
                        missed = 0;
                    }
                }
            }
            Err(e) => short_reason(&e),
        };
        if tx.send(Update::Disconnected(why)).is_err() {
            return;
        }
        thread::sleep(POLL);
    }
}

/// Asks for sessions and status every second.
fn poll(socket: &Path, tx: &mpsc::Sender<Update>, mut repos: RepoCache) {
    let mut cpu: Option<(f64, Instant)> = None;
    loop {
        let started = Instant::now();
        let update = match client::call(socket, &Request::Sessions) {
            Ok(list) => {
                let mut list = Session::list_from(list);
                list.iter_mut().for_each(|s| repos.fill(s));
                Update::Sessions(list)
            }
            Err(e) => Update::Disconnected(short_reason(&e)),
        };
        if tx.send(update).is_err() {
            return;
        }
        if let Ok(answer) = client::call::<protocol::Status>(socket, &Request::Status) {
            let mut status = Status::from_status(answer);
            let now = Instant::now();
            if let Some((before, at)) = cpu {
                let wall = now.duration_since(at).as_secs_f64();
                if wall > 0.0 {
                    status.cpu_percent =
                        Some(((status.cpu_seconds - before) / wall * 100.0).max(0.0));
                }
            }
            cpu = Some((status.cpu_seconds, now));
            if tx.send(Update::Status(status)).is_err() {
                return;
            }
        }
        thread::sleep(POLL.saturating_sub(started.elapsed()));
    }
}

/// Which git repository holds a directory, remembered per directory.
#[derive(Default)]
struct RepoCache {
    known: HashMap<PathBuf, Option<String>>,
}

impl RepoCache {
    fn fill(&mut self, s: &mut Session) {
        // A container's paths are in its own mount namespace, not ours.
        if s.container.is_some() {
            return;
        }
        let Some(cwd) = s.cwd.as_deref().map(PathBuf::from) else {
            return;
        };
        if self.known.len() > 1024 {
            self.known.clear();
        }
        s.repo = self
            .known
            .entry(cwd)
            .or_insert_with_key(|cwd| repo_of(cwd))
            .clone();
    }
}

/// `name/sub/dir` when `dir` is inside the git repository `name`.
fn repo_of(dir: &Path) -> Option<String> {
    if !dir.is_absolute() {
        return None;
    }
    let root = dir
        .ancestors()
        .find(|d| d.parent().is_some() && d.join(".git").exists())?;
    let name = root.file_name()?.to_string_lossy();
    let rel = dir.strip_prefix(root).ok()?;
    Some(if rel.as_os_str().is_empty() {
        name.into_owned()
    } else {
        format!("{name}/{}", rel.display())
    })
}

#[cfg(test)]
mod tests;
