//! `guard daemon`: load the programs, then one loop owns everything — it drains
//! the ring buffer, labels and writes events, serves control commands and reports
//! lost records — so no state is shared between tasks.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use guard_common::{Tracked, flags};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{
    action,
    audit::Sink,
    clock,
    control::{Command, Filter, Request, Response, Server},
    ebpf::Kernel,
    event::{Detail, Event, How, SessionId, Task, decode, enrich::Enricher},
    session::{self, Registry},
};

pub struct Options {
    pub agents: Vec<String>,
    pub events: PathBuf,
    pub socket: PathBuf,
}

/// A `subscribe` client: a bounded queue, and what it missed while it was full.
struct Subscriber {
    filter: Filter,
    events: mpsc::Sender<Arc<str>>,
    missed: u64,
}

struct State {
    kernel: Kernel,
    subscribers: Vec<Subscriber>,
    /// Events written since start, and at the last tick (for the rate).
    events_total: u64,
    events_at_tick: u64,
    rate: f64,
    registry: Registry,
    enricher: Enricher,
    sink: Sink,
    offset: i128,
    lost_seen: (u64, u64),
    undecodable: u64,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let sink = Sink::open(&opts.events)?;
    let (kernel, events) = Kernel::load(&opts.agents).context("cannot start the kernel side")?;
    let server = Server::bind(&opts.socket)?;
    let (tx, mut commands) = mpsc::channel(64);
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
    // long as the AsyncFd lives.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
    let mut state = State {
        kernel,
        subscribers: Vec::new(),
        events_total: 0,
        events_at_tick: 0,
        rate: 0.0,
        registry: Registry::default(),
        enricher: Enricher::default(),
        sink,
        offset: clock::boot_to_wall_offset(),
        lost_seen: (0, 0),
        undecodable: 0,
    };
    state.scan(&opts.agents)?;
    state.sink.flush()?;
    let serve = tokio::spawn(server.serve(tx));
    tracing::info!(
        agents = ?opts.agents,
        programs = state.kernel.attached.len(),
        socket = %opts.socket.display(),
        "guard daemon ready"
    );

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer poll failed")?;
                state.drain(guard.get_inner_mut())?;
                guard.clear_ready();
            }
            Some(cmd) = commands.recv() => state.command(cmd)?,
            _ = tick.tick() => {
                state.rate = (state.events_total - state.events_at_tick) as f64;
                state.events_at_tick = state.events_total;
                state.report_lost()?;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    serve.abort();
    state.drain(ring.get_mut())?;
    state.report_lost()?;
    state.sink.flush()?;
    tracing::info!("guard daemon stopped; programs detached");
    Ok(())
}

impl State {
    fn drain(&mut self, ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> anyhow::Result<()> {
        while let Some(item) = ring.next() {
            match decode::decode(&item) {
                Ok(record) => {
                    let mut ev = Event::from_record(record, self.offset);
                    self.enricher.enrich(&mut ev);
                    self.emit(ev)?;
                }
                Err(e) => {
                    self.undecodable += 1;
                    tracing::warn!(
                        "undecodable kernel record ({} so far): {e}",
                        self.undecodable
                    );
                }
            }
        }
        self.sink.flush()?;
        Ok(())
    }

    fn emit(&mut self, ev: Event) -> anyhow::Result<()> {
        if let Some(start) = self.registry.before(&ev) {
            self.write(&start)?;
        }
        self.write(&ev)?;
        if let Some(end) = self.registry.after(&ev) {
            self.write(&end)?;
        }
        Ok(())
    }

    /// Writes one event to the audit log and offers it to every subscriber.
    fn write(&mut self, ev: &Event) -> anyhow::Result<()> {
        let line: Arc<str> = Arc::from(ev.to_json());
        self.sink.write_line(&line)?;
        self.events_total += 1;
        if self.subscribers.is_empty() {
            return Ok(());
        }
        let session = ev.session.map(|s| s.to_string());
        let kind = ev.detail.kind();
        self.subscribers.retain_mut(|sub| {
            if !sub.filter.wants(session.as_deref(), kind) {
                return true;
            }
            if sub.missed > 0 {
                let notice = format!(r#"{{"kind":"missed","count":{}}}"#, sub.missed);
                match sub.events.try_send(Arc::from(notice)) {
                    Ok(()) => sub.missed = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        sub.missed += 1;
                        return true;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            match sub.events.try_send(line.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.missed += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        Ok(())
    }

    fn report_lost(&mut self) -> anyhow::Result<()> {
        let (by_kind, track_full) = self.kernel.lost()?;
        let total: u64 = by_kind.iter().map(|(_, n)| n).sum::<u64>() + track_full;
        if total + self.undecodable == self.lost_seen.0 + self.lost_seen.1 {
            return Ok(());
        }
        let mut by_kind: Vec<(&'static str, u64)> =
            by_kind.into_iter().filter(|(_, n)| *n > 0).collect();
        if track_full > 0 {
            by_kind.push(("untracked_children", track_full));
        }
        if self.undecodable > 0 {
            by_kind.push(("undecodable", self.undecodable));
        }
        tracing::warn!(?by_kind, "events lost");
        let ev = Event {
            ts_ns: clock::boot_ns() as i128 + self.offset,
            session: None,
            task: Task::default(),
            detail: Detail::Lost {
                by_kind,
                total: total + self.undecodable,
            },
        };
        self.write(&ev)?;
        self.sink.flush()?;
        self.lost_seen = (total, self.undecodable);
        Ok(())
    }

    fn command(&mut self, cmd: Command) -> anyhow::Result<()> {
        match cmd {
            Command::Register {
                pid,
                uid,
                argv,
                reply,
            } => {
                let response = match self.register(pid, uid, &argv) {
                    Ok(id) => Response {
                        ok: true,
                        session: Some(id.to_string()),
                        ..Response::default()
                    },
                    Err(e) => Response::error(&format!("{e:#}")),
                };
                let _ = reply.send(response);
                self.sink.flush()?;
            }
            Command::Subscribe { filter, events } => {
                self.subscribers.push(Subscriber { filter, events, missed: 0 });
            }
            Command::Query { request, uid, reply } => {
                let _ = reply.send(self.query(request, uid));
            }
        }
        Ok(())
    }

    fn query(&mut self, request: Request, uid: u32) -> Response {
        match request {
            Request::Sessions => Response::data(session::view::sessions(&self.registry)),
            Request::Status => {
                let (cpu_s, rss) = action::self_usage();
                let lost = self.kernel.lost().map(|(by_kind, full)| {
                    let mut m: serde_json::Map<String, serde_json::Value> =
                        by_kind.into_iter().map(|(k, n)| (k.to_owned(), n.into())).collect();
                    m.insert("untracked_children".into(), full.into());
                    m.insert("undecodable".into(), self.undecodable.into());
                    m
                });
                Response::data(serde_json::json!({
                    "events_total": self.events_total,
                    "events_per_second": self.rate,
                    "lost": lost.ok(),
                    "cpu_seconds": cpu_s,
                    "rss_bytes": rss,
                    "programs": self.kernel.attached,
                    "subscribers": self.subscribers.len(),
                }))
            }
            Request::Kill { session, pid } => {
                if uid != 0 {
                    return Response::error("only root may kill through guard");
                }
                let session = match session.as_deref().map(|s| u64::from_str_radix(s, 16)) {
                    Some(Ok(id)) => Some(SessionId(id)),
                    Some(Err(_)) => return Response::error("bad session id"),
                    None => None,
                };
                let targets = self.registry.members(session, pid);
                if targets.is_empty() {
                    return Response::error("no such session or process");
                }
                let mut killed = Vec::new();
                let mut errors = Vec::new();
                for pid in targets {
                    match action::kill(pid) {
                        Ok(true) => killed.push(pid),
                        Ok(false) => {}
                        Err(e) => errors.push(format!("{pid}: {e}")),
                    }
                }
                tracing::info!(?killed, "killed on request");
                Response::data(serde_json::json!({ "killed": killed, "errors": errors }))
            }
            Request::Run { .. } | Request::Subscribe { .. } => Response::error("not a query"),
        }
    }

    /// `guard run`: the client process becomes a session root before it execs.
    fn register(&mut self, pid: u32, uid: u32, argv: &[String]) -> anyhow::Result<SessionId> {
        let id = SessionId(clock::boot_ns());
        self.kernel.track(
            pid,
            Tracked {
                session: id.0,
                start_ns: 0,
                root_pid: pid,
                flags: flags::ROOT_PROCESS as u32,
            },
        )?;
        let agent = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_else(|| "guard-run".to_owned());
        let mut task = task_from_proc(pid).unwrap_or_default();
        task.pid = pid;
        task.tid = pid;
        task.uid = uid;
        task.comm = agent;
        let now = clock::boot_ns() as i128 + self.offset;
        let mut start = self.registry.start(id, How::Run, now, &task);
        self.enricher.enrich(&mut start);
        self.write(&start)?;
        Ok(id)
    }

    /// Agents already running when the daemon starts: track each one and its
    /// descendants, parents before children so that nothing forked meanwhile escapes
    /// (the kernel follows every fork of a process once it is in the map).
    fn scan(&mut self, agents: &[String]) -> anyhow::Result<()> {
        let keys: Vec<[u8; 16]> = agents
            .iter()
            .map(|a| guard_common::agent_key(a.as_bytes()))
            .collect();
        let procs: Vec<(u32, u32, String)> = procfs::process::all_processes()
            .context("cannot list /proc")?
            .filter_map(|p| p.ok()?.stat().ok())
            .map(|s| (s.pid as u32, s.ppid as u32, s.comm))
            .collect();
        let is_agent = |comm: &str| keys.contains(&guard_common::agent_key(comm.as_bytes()));
        let ppid_of: std::collections::HashMap<u32, u32> =
            procs.iter().map(|(p, pp, _)| (*p, *pp)).collect();
        let agent_pids: Vec<u32> = procs
            .iter()
            .filter(|(_, _, c)| is_agent(c))
            .map(|(p, _, _)| *p)
            .collect();
        for &root in &agent_pids {
            // An agent below another agent belongs to the outer session.
            let mut up = ppid_of.get(&root).copied().unwrap_or(0);
            let mut nested = false;
            for _ in 0..64 {
                if up <= 1 {
                    break;
                }
                if agent_pids.contains(&up) {
                    nested = true;
                    break;
                }
                up = ppid_of.get(&up).copied().unwrap_or(0);
            }
            if nested || self.kernel.is_tracked(root) {
                continue;
            }
            let id = SessionId(clock::boot_ns());
            let entry = Tracked {
                session: id.0,
                start_ns: 0,
                root_pid: root,
                flags: flags::ROOT_PROCESS as u32,
            };
            if self.kernel.track(root, entry).is_err() {
                continue;
            }
            let Some(mut task) = task_from_proc(root) else {
                continue;
            };
            self.enricher.enrich_task(&mut task);
            let now = clock::boot_ns() as i128 + self.offset;
            let start = self.registry.start(id, How::Scan, now, &task);
            self.write(&start)?;
            let mut stack = vec![root];
            while let Some(pid) = stack.pop() {
                for child in children(pid) {
                    let entry = Tracked {
                        session: id.0,
                        start_ns: 0,
                        root_pid: root,
                        flags: 0,
                    };
                    if self.kernel.track(child, entry).is_ok() {
                        let comm = task_from_proc(child).map(|t| t.comm).unwrap_or_default();
                        self.registry.adopt(id, child, pid, comm);
                        stack.push(child);
                    }
                }
            }
            tracing::info!(pid = root, session = %id, "tracking an agent that was already running");
        }
        Ok(())
    }
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn task_from_proc(pid: u32) -> Option<Task> {
    let p = procfs::process::Process::new(pid as i32).ok()?;
    let stat = p.stat().ok()?;
    let status = p.status().ok()?;
    Some(Task {
        pid,
        tid: pid,
        ppid: stat.ppid as u32,
        uid: status.ruid,
        gid: status.rgid,
        comm: stat.comm,
        ..Task::default()
    })
}
