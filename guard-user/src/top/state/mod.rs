//! The state of `guard top`, apart from any terminal: what the daemon last said
//! (sessions, status, recent events) and what the user is looking at (selection,
//! focus, filters, pause, prompts). The loop in `mod.rs` feeds it [`Update`]s and
//! keys; `ui/` draws it. Nothing here does I/O, so tests drive it directly.

mod feed;
mod keys;

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use guard_common::protocol::{self, SessionInfo, SessionState};

/// Events kept per session (and in the feed of every session), newest last.
pub const EVENT_CAP: usize = 10_000;

/// Violations kept apart per session, so that a flood of ordinary events does not
/// push them out of reach of the `violations` filter.
pub const VIOLATION_CAP: usize = 1_000;

/// How long a message (e.g. the outcome of a kill) stays on the hint line.
const MESSAGE_SECS: i64 = 6;
/// Lines PgUp/PgDn scroll a report by.
const REPORT_PAGE: usize = 20;

/// Session buffers kept for sessions the daemon no longer lists, in sessions polls.
const FORGET_AFTER_POLLS: u64 = 10;

// ---------------------------------------------------------------------------
// What the daemon says
// ---------------------------------------------------------------------------

/// How a session's container is shown: `namespace/pod/name` for a Kubernetes
/// container, the name for another named one, else the id.
fn container_label(s: &SessionInfo) -> Option<String> {
    let Some(name) = s.container_name.clone() else {
        return s.container.clone();
    };
    Some(match (&s.namespace, &s.pod_name) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}/{name}"),
        _ => name,
    })
}

/// A session's event counts, as the daemon keeps them.
pub use guard_common::protocol::Counts;

use self::feed::Destinations;
pub use self::feed::{DEST_CAP, Destination, Event, NetKind, NetUse, Violation};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    /// Its agent role (`tool`, `agent`…); empty when the daemon sent none.
    pub role: String,
    /// The package whose script it runs.
    pub package: Option<String>,
    /// Why no declared call accounts for it (`ProcessInfo::undeclared`).
    pub undeclared: Option<String>,
    /// A tool inside its agent's sandbox, or outside it.
    pub sandboxed: Option<bool>,
}

impl Process {
    /// The command line, or the program, or `[comm]` when no exec was seen.
    pub fn command(&self) -> String {
        if !self.argv.is_empty() {
            self.argv.join(" ")
        } else if let Some(exe) = &self.exe {
            exe.clone()
        } else {
            format!("[{}]", self.comm)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub agent: String,
    pub root_pid: u32,
    pub how: String,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub cwd: Option<String>,
    /// The git repository holding `cwd`, as `name/sub/dir` (found by the poller).
    pub repo: Option<String>,
    pub container: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub running: bool,
    pub counts: Counts,
    pub processes: Vec<Process>,
    /// The agent's (first) thread id, `CODEX_THREAD_ID` of its tools.
    pub agent_thread: Option<String>,
}

fn time_of(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Session {
    /// One element of the `sessions` answer.
    pub fn from_info(info: SessionInfo) -> Self {
        Self {
            container: container_label(&info),
            started: time_of(Some(&info.started)),
            ended: time_of(info.ended.as_deref()),
            running: info.state == SessionState::Running,
            processes: info
                .processes
                .into_iter()
                .map(|p| Process {
                    pid: p.pid,
                    ppid: p.ppid,
                    comm: p.comm,
                    exe: p.exe,
                    argv: p.argv,
                    role: p.role,
                    package: p.package,
                    undeclared: p.undeclared,
                    sandboxed: p.sandboxed,
                })
                .collect(),
            agent_thread: info.agent_threads.into_iter().next(),
            id: info.id,
            agent: info.agent,
            root_pid: info.root_pid,
            how: info.how.as_str().to_owned(),
            uid: Some(info.uid),
            user: info.user,
            cwd: info.cwd,
            repo: None,
            counts: info.counts,
        }
    }

    /// The whole `sessions` answer.
    pub fn list_from(list: Vec<SessionInfo>) -> Vec<Self> {
        list.into_iter().map(Self::from_info).collect()
    }

    /// The last 8 hex digits of the id, as `guard events` shows it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// Where the agent works: its repository if it is in one, else its directory.
    pub fn place(&self) -> &str {
        self.repo.as_deref().or(self.cwd.as_deref()).unwrap_or("-")
    }

    pub fn user_name(&self) -> String {
        match (&self.user, self.uid) {
            (Some(u), _) => u.clone(),
            (None, Some(uid)) => uid.to_string(),
            (None, None) => "-".to_owned(),
        }
    }
}

pub fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// The daemon's health (`status`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub events_total: u64,
    pub events_per_second: f64,
    /// Lost events by kind (kernel ring buffer full, untracked children, undecodable).
    pub lost: Vec<(String, u64)>,
    pub cpu_seconds: f64,
    /// CPU use since the previous poll, in percent of one CPU (set by the poller).
    pub cpu_percent: Option<f64>,
    pub rss_bytes: u64,
    pub programs: usize,
    pub subscribers: u64,
    pub policy: Option<String>,
    pub mode: Option<String>,
}

impl Status {
    /// The daemon's `status` answer.
    pub fn from_status(v: protocol::Status) -> Self {
        let mut lost: Vec<(String, u64)> = v.lost.into_iter().flatten().collect();
        lost.sort();
        Self {
            events_total: v.events_total,
            events_per_second: v.events_per_second,
            lost,
            cpu_seconds: v.cpu_seconds,
            cpu_percent: None,
            rss_bytes: v.rss_bytes,
            programs: v.programs.len(),
            subscribers: v.subscribers as u64,
            policy: Some(v.policy),
            mode: Some(v.mode.as_str().to_owned()),
        }
    }
}

/// What the feeders hand the view.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Sessions(Vec<Session>),
    Status(Status),
    /// One event (the follower hands them over in batches, as `Events`).
    Event(Event),
    /// Several events at once: what arrived since the last frame.
    Events(Vec<Event>),
    /// Events this client did not get: the daemon's `missed` notices (it read
    /// too slowly).
    Missed(u64),
    /// Events received but never shown: more than [`EVENT_CAP`] arrived between
    /// two frames, and only the newest are kept.
    Skipped(u64),
    /// The daemon cannot be reached (or the stream broke); the feeders retry.
    Disconnected(String),
    /// The answer to a kill.
    Killed(Result<String, String>),
    /// A session's report, in Markdown, or why there is none.
    Report(String, Result<String, String>),
}

// ---------------------------------------------------------------------------
// What the user looks at
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Sessions,
    Tree,
    Feed,
}

impl Focus {
    fn next(self) -> Self {
        match self {
            Self::Sessions => Self::Tree,
            Self::Tree => Self::Feed,
            Self::Feed => Self::Sessions,
        }
    }

    fn prev(self) -> Self {
        match self {
            Self::Sessions => Self::Feed,
            Self::Tree => Self::Sessions,
            Self::Feed => Self::Tree,
        }
    }
}

/// The kinds `f` cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindFilter {
    #[default]
    All,
    Exec,
    Open,
    Net,
    Process,
    Session,
    Violations,
}

impl KindFilter {
    const ORDER: [Self; 7] = [
        Self::All,
        Self::Exec,
        Self::Open,
        Self::Net,
        Self::Process,
        Self::Session,
        Self::Violations,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Exec => "exec",
            Self::Open => "open",
            Self::Net => "connect/send",
            Self::Process => "fork/exit",
            Self::Session => "session/policy",
            Self::Violations => "violations",
        }
    }

    fn step(self, by: isize) -> Self {
        let n = Self::ORDER.len() as isize;
        let at = Self::ORDER.iter().position(|k| *k == self).unwrap_or(0) as isize;
        Self::ORDER[(at + by).rem_euclid(n) as usize]
    }

    pub fn wants(self, ev: &Event) -> bool {
        match self {
            Self::All => true,
            Self::Exec => ev.kind == "exec",
            Self::Open => ev.kind == "open",
            Self::Net => ev.kind == "connect" || ev.kind == "send",
            Self::Process => ev.kind == "fork" || ev.kind == "exit",
            Self::Session => {
                ev.kind.starts_with("session") || ev.kind.starts_with("policy") || ev.kind == "lost"
            }
            Self::Violations => ev.violation.is_some(),
        }
    }
}

/// What a kill is aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillTarget {
    Session(String),
    Pid(u32),
}

/// What the loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Kill(KillTarget),
    /// Ask the daemon for this session's report.
    Report(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// Typing the `/` filter.
    Filter,
    /// Waiting for y/n before a kill; the question is shown as is.
    Confirm {
        target: KillTarget,
        question: String,
    },
    /// A session's report (`guard report`), as its Markdown lines, scrolled by `top`
    /// lines.
    Report {
        session: String,
        lines: Vec<String>,
        top: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
    pub until: DateTime<Utc>,
}

/// One row of the process tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    pub pid: u32,
    /// Tree-drawing prefix (`├─ ` and so on) for the indentation.
    pub prefix: String,
    pub command: String,
    /// The process's agent role, when known (`unknown` and absent are left out).
    pub role: Option<String>,
    /// The package whose script it runs.
    pub package: Option<String>,
    /// Why no declared call accounts for it (`ProcessInfo::undeclared`).
    pub undeclared: Option<String>,
    /// A tool inside its agent's sandbox, or outside it.
    pub sandboxed: Option<bool>,
}

/// Events of one session (or of all), newest last, bounded.
#[derive(Debug, Default)]
struct Buffer {
    events: VecDeque<Arc<Event>>,
    violations: VecDeque<Arc<Event>>,
    /// Every destination seen, not only those of the events still kept.
    dests: Destinations,
    /// Sessions poll generation of the last event (to forget old buffers).
    seen: u64,
}

impl Buffer {
    fn push(&mut self, ev: Arc<Event>, generation: u64) {
        if let Some(net) = &ev.net {
            self.dests.add(net);
        }
        if ev.violation.is_some() {
            if self.violations.len() >= VIOLATION_CAP {
                self.violations.pop_front();
            }
            self.violations.push_back(Arc::clone(&ev));
        }
        if self.events.len() >= EVENT_CAP {
            self.events.pop_front();
        }
        self.events.push_back(ev);
        self.seen = generation;
    }
}

/// A frozen copy of the feed while paused.
#[derive(Debug)]
struct Paused {
    events: Vec<Arc<Event>>,
    violations: Vec<Arc<Event>>,
    /// Events that arrived (for this feed) since.
    newer: u64,
}

type Slices<'a> = (&'a [Arc<Event>], &'a [Arc<Event>]);

/// Everything `guard top` shows.
#[derive(Debug)]
pub struct App {
    pub now: DateTime<Utc>,
    pub sessions: Vec<Session>,
    /// Id of the selected session.
    pub selected: Option<String>,
    /// Pid of the selected process in the tree.
    pub tree_pid: Option<u32>,
    pub focus: Focus,
    pub mode: Mode,
    pub kind_filter: KindFilter,
    pub text_filter: String,
    /// Matching events skipped from the bottom of the feed (scrolling back).
    pub feed_scroll: usize,
    pub status: Option<Status>,
    /// Events the daemon could not send us (we read too slowly).
    pub missed: u64,
    /// Events received but skipped: more than [`EVENT_CAP`] between two frames.
    pub skipped: u64,
    /// Set while the daemon cannot be reached.
    pub disconnected: Option<String>,
    pub message: Option<Message>,
    /// Whether sessions were received at least once.
    pub loaded: bool,
    /// The destinations view (`d`) in place of the event feed.
    pub dests_view: bool,
    /// Whether the feed shows reads of system files (`s`; off: execs, the
    /// session's own files, the network and violations come first).
    pub show_system: bool,
    all: Buffer,
    by_session: HashMap<String, Buffer>,
    generation: u64,
    paused: Option<Paused>,
}

impl Default for App {
    fn default() -> Self {
        Self::new(Utc::now())
    }
}

impl App {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            sessions: Vec::new(),
            selected: None,
            tree_pid: None,
            focus: Focus::Sessions,
            mode: Mode::Normal,
            kind_filter: KindFilter::All,
            text_filter: String::new(),
            feed_scroll: 0,
            status: None,
            missed: 0,
            skipped: 0,
            disconnected: None,
            message: None,
            loaded: false,
            dests_view: false,
            show_system: false,
            all: Buffer::default(),
            by_session: HashMap::new(),
            generation: 0,
            paused: None,
        }
    }

    /// Advances the clock (ages, message expiry).
    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.now = now;
        if self.message.as_ref().is_some_and(|m| m.until <= now) {
            self.message = None;
        }
    }

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Sessions(list) => self.set_sessions(list),
            Update::Status(status) => {
                self.status = Some(status);
                self.disconnected = None;
            }
            Update::Event(ev) => self.push_event(ev),
            Update::Events(evs) => evs.into_iter().for_each(|ev| self.push_event(ev)),
            Update::Missed(n) => self.missed += n,
            Update::Skipped(n) => self.skipped += n,
            Update::Disconnected(why) => self.disconnected = Some(why),
            Update::Killed(Ok(text)) => self.say(text, false),
            Update::Killed(Err(text)) => self.say(text, true),
            Update::Report(session, Ok(text)) => {
                self.mode = Mode::Report {
                    session,
                    lines: text.lines().map(str::to_owned).collect(),
                    top: 0,
                }
            }
            Update::Report(session, Err(why)) => {
                self.say(format!("no report of {}: {why}", short_id(&session)), true)
            }
        }
    }

    fn say(&mut self, text: String, error: bool) {
        self.message = Some(Message {
            text,
            error,
            until: self.now + chrono::Duration::seconds(MESSAGE_SECS),
        });
    }

    fn set_sessions(&mut self, mut list: Vec<Session>) {
        // Running sessions first, newest first.
        list.sort_by(|a, b| {
            b.running
                .cmp(&a.running)
                .then(b.started.cmp(&a.started))
                .then(a.id.cmp(&b.id))
        });
        let before = self.selected_index();
        self.sessions = list;
        self.loaded = true;
        self.disconnected = None;
        let still_there = self
            .selected
            .as_ref()
            .is_some_and(|id| self.sessions.iter().any(|s| &s.id == id));
        if !still_there {
            let at = before
                .unwrap_or(0)
                .min(self.sessions.len().saturating_sub(1));
            let id = self.sessions.get(at).map(|s| s.id.clone());
            self.select_session(id);
        }
        self.fix_tree_selection();
        self.generation += 1;
        let generation = self.generation;
        let listed: Vec<&str> = self.sessions.iter().map(|s| s.id.as_str()).collect();
        self.by_session.retain(|id, buf| {
            listed.contains(&id.as_str()) || buf.seen + FORGET_AFTER_POLLS > generation
        });
    }

    fn push_event(&mut self, ev: Event) {
        let ev = Arc::new(ev);
        if self.paused.is_some() && self.in_feed(&ev) {
            if let Some(p) = self.paused.as_mut() {
                p.newer += 1;
            }
        } else if self.feed_scroll > 0 && self.in_feed(&ev) && self.feed_wants(&ev) {
            // Keep the lines under the reader's eyes while scrolled back.
            self.feed_scroll += 1;
        }
        if let Some(id) = &ev.session {
            self.by_session
                .entry(id.clone())
                .or_default()
                .push(Arc::clone(&ev), self.generation);
        }
        self.all.push(ev, self.generation);
    }

    /// Whether the feed currently shown includes `ev`.
    fn in_feed(&self, ev: &Event) -> bool {
        match &self.selected {
            Some(id) => ev.session.as_deref() == Some(id.as_str()),
            None => true,
        }
    }

    fn feed_wants(&self, ev: &Event) -> bool {
        let needle = self.text_filter.to_lowercase();
        self.wants(ev, &needle)
    }

    /// The feed's filters: the kind, the text, and system reads unless `s` is on.
    fn wants(&self, ev: &Event, needle_lower: &str) -> bool {
        (self.show_system || !ev.system)
            && self.kind_filter.wants(ev)
            && ev.matches_text(needle_lower)
    }

    /// The live buffer of the feed shown.
    fn buffer(&self) -> Option<&Buffer> {
        match &self.selected {
            Some(id) => self.by_session.get(id),
            None => Some(&self.all),
        }
    }

    /// What the feed draws from, oldest first: the frozen copy while paused, else
    /// the live buffer; only the violations when only they are wanted.
    fn shown(&self) -> Slices<'_> {
        let violations = self.kind_filter == KindFilter::Violations;
        match (&self.paused, self.buffer()) {
            (Some(p), _) if violations => (&p.violations, &[]),
            (Some(p), _) => (&p.events, &[]),
            (None, Some(b)) if violations => b.violations.as_slices(),
            (None, Some(b)) => b.events.as_slices(),
            (None, None) => (&[], &[]),
        }
    }

    /// The destinations of the selected session (of every session when none is
    /// selected), most bytes out first, and how many the view had no room for.
    pub fn destinations(&self) -> (Vec<Destination>, u64) {
        match self.buffer() {
            Some(b) => (b.dests.sorted(), b.dests.omitted),
            None => (Vec::new(), 0),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Events that arrived for the feed since it was paused.
    pub fn newer_while_paused(&self) -> u64 {
        self.paused.as_ref().map_or(0, |p| p.newer)
    }

    /// Events buffered for the shown feed (before the text filter).
    pub fn feed_len(&self) -> usize {
        let (a, b) = self.shown();
        a.len() + b.len()
    }

    /// The newest `rows` events of the feed that pass the filters, oldest first,
    /// after skipping `feed_scroll` of them from the bottom.
    pub fn feed(&self, rows: usize) -> Vec<&Event> {
        let needle = self.text_filter.to_lowercase();
        let wants = |ev: &&Arc<Event>| self.wants(ev, &needle);
        let (a, b) = self.shown();
        let mut out: Vec<&Event> = a
            .iter()
            .chain(b)
            .rev()
            .filter(wants)
            .skip(self.feed_scroll)
            .take(rows)
            .map(|e| &**e)
            .collect();
        out.reverse();
        out
    }

    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.sessions.iter().position(|s| &s.id == id)
    }

    pub fn selected_session(&self) -> Option<&Session> {
        self.selected_index().and_then(|i| self.sessions.get(i))
    }

    fn select_session(&mut self, id: Option<String>) {
        if id == self.selected {
            return;
        }
        self.selected = id;
        self.tree_pid = None;
        self.feed_scroll = 0;
        self.fix_tree_selection();
        if self.paused.is_some() {
            self.freeze();
        }
    }

    fn fix_tree_selection(&mut self) {
        let rows = self.tree();
        if !self
            .tree_pid
            .is_some_and(|pid| rows.iter().any(|r| r.pid == pid))
        {
            self.tree_pid = rows.first().map(|r| r.pid);
        }
    }

    /// The selected session's processes, parents before children.
    pub fn tree(&self) -> Vec<TreeRow> {
        self.selected_session().map(tree_rows).unwrap_or_default()
    }

    fn freeze(&mut self) {
        let (events, violations) = match self.buffer() {
            Some(b) => (
                b.events.iter().cloned().collect(),
                b.violations.iter().cloned().collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        self.paused = Some(Paused {
            events,
            violations,
            newer: 0,
        });
    }

    fn toggle_pause(&mut self) {
        if self.paused.take().is_none() {
            self.freeze();
        } else {
            self.feed_scroll = 0;
        }
    }
}

/// `pid` and every process below it in the session.
fn subtree(s: &Session, pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() && out.len() <= s.processes.len() {
        let parent = out[i];
        out.extend(
            s.processes
                .iter()
                .filter(|p| p.ppid == parent && p.pid != parent)
                .map(|p| p.pid),
        );
        i += 1;
    }
    out
}

/// The process tree of a session, depth first, with tree-drawing prefixes.
pub fn tree_rows(s: &Session) -> Vec<TreeRow> {
    let pids: std::collections::HashSet<u32> = s.processes.iter().map(|p| p.pid).collect();
    let mut children: HashMap<u32, Vec<&Process>> = HashMap::new();
    let mut roots: Vec<&Process> = Vec::new();
    for p in &s.processes {
        if p.ppid != p.pid && pids.contains(&p.ppid) {
            children.entry(p.ppid).or_default().push(p);
        } else {
            roots.push(p);
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|p| p.pid);
    }
    roots.sort_by_key(|p| (p.pid != s.root_pid, p.pid));
    let mut rows = Vec::with_capacity(s.processes.len());
    let mut seen = std::collections::HashSet::new();
    // (process, ancestors' "has more siblings" flags, is last child)
    let mut stack: Vec<(&Process, Vec<bool>, bool, bool)> = roots
        .iter()
        .rev()
        .map(|p| (*p, Vec::new(), false, true))
        .collect();
    while let Some((p, rails, last, root)) = stack.pop() {
        if !seen.insert(p.pid) {
            continue;
        }
        let mut prefix = String::new();
        for more in &rails {
            prefix.push_str(if *more { "│ " } else { "  " });
        }
        if !root {
            prefix.push_str(if last { "└─" } else { "├─" });
        }
        rows.push(TreeRow {
            pid: p.pid,
            prefix,
            command: p.command(),
            role: (!p.role.is_empty() && p.role != "unknown").then(|| p.role.clone()),
            package: p.package.clone(),
            undeclared: p.undeclared.clone(),
            sandboxed: p.sandboxed,
        });
        if let Some(kids) = children.get(&p.pid) {
            let mut child_rails = rails.clone();
            if !root {
                child_rails.push(!last);
            }
            for (i, kid) in kids.iter().enumerate().rev() {
                stack.push((*kid, child_rails.clone(), i + 1 == kids.len(), false));
            }
        }
    }
    rows
}
