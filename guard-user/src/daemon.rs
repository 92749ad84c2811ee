//! `guard daemon`: load the programs, then one loop owns everything — it drains
//! the ring buffer, labels and writes events, serves control commands and reports
//! lost records — so no state is shared between tasks.

use std::{
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

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
    metrics::Metrics,
    policy::{self, Source, diag, engine::Engine, glob, matcher::Hosts, model::Mode},
    session::{
        self, Registry,
        cgroups::{Changes, Selection, Watcher},
    },
};

pub struct Options {
    /// Agent names from the command line; empty: the policy's `[agents] names`.
    pub agents: Vec<String>,
    pub events: PathBuf,
    pub socket: PathBuf,
    pub policy: Source,
    /// Serve Prometheus metrics and /healthz here.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the container runtimes' state is (`/`, or the host's mounted elsewhere).
    pub runtime_root: PathBuf,
    /// Turn the kernel's BPF run-time statistics on while the daemon runs.
    pub bpf_stats: bool,
}

/// A `subscribe` client: a bounded queue, and what it missed while it was full.
struct Subscriber {
    filter: Filter,
    events: mpsc::Sender<Arc<str>>,
    missed: u64,
}

/// Something the resolver learned: a name and its addresses.
type Resolved = (String, Vec<IpAddr>);

struct State {
    kernel: Kernel,
    metrics: Arc<Metrics>,
    engine: Engine,
    source: Source,
    /// Agent names given on the command line override the policy's.
    agents_override: Vec<String>,
    policy_stamp: Option<SystemTime>,
    /// A changed modification time seen at the last tick: reload once it holds
    /// still for a tick, so a file being written is not read half-way.
    changed_stamp: Option<Option<SystemTime>>,
    homes: Vec<String>,
    resolver: Option<tokio::task::JoinHandle<()>>,
    resolved_tx: mpsc::Sender<Resolved>,
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
    /// A reload changed the cgroups that start sessions: the loop swaps this watcher
    /// in (`Some(None)`: none any more).
    new_cgroups: Option<Option<AsyncFd<Watcher>>>,
    runtime_root: PathBuf,
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let (policy, warnings) = policy::load(&opts.policy)?;
    if !warnings.is_empty() {
        tracing::warn!(
            "policy {}:\n{}",
            opts.policy.name(),
            diag::render(&opts.policy.name(), &warnings)
        );
    }
    let agents = if opts.agents.is_empty() {
        policy.agents.clone()
    } else {
        opts.agents.clone()
    };
    let sink = Sink::open(&opts.events)?;
    let homes = glob::homes();
    let hosts = Hosts {
        by_name: Default::default(),
        resolvers: resolvers(),
    };
    let (mut kernel, events) =
        Kernel::load(&agents, opts.bpf_stats).context("cannot start the kernel side")?;
    let engine = Engine::new(policy, homes.clone(), hosts, kernel.lsm.is_ok())
        .context("cannot compile the policy")?;
    kernel
        .install(engine.kernel_rules())
        .context("cannot install the policy in the kernel")?;
    let server = Server::bind(&opts.socket)?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_attached(kernel.attached.len(), kernel.attached.len());
    // Bound now, so a busy address fails the start instead of a scrape later.
    let metrics_server = match opts.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            Some(tokio::spawn(crate::metrics::serve_listener(
                listener,
                metrics.clone(),
            )))
        }
        None => None,
    };
    let (tx, mut commands) = mpsc::channel(64);
    let (resolved_tx, mut resolved) = mpsc::channel(64);
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
    // long as the AsyncFd lives.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
    let mut state = State {
        kernel,
        metrics,
        engine,
        policy_stamp: stamp(&opts.policy),
        changed_stamp: None,
        source: opts.policy.clone(),
        agents_override: opts.agents.clone(),
        homes,
        resolver: None,
        resolved_tx,
        subscribers: Vec::new(),
        events_total: 0,
        events_at_tick: 0,
        rate: 0.0,
        registry: Registry::default(),
        enricher: Enricher::new(&opts.runtime_root),
        sink,
        offset: clock::boot_to_wall_offset(),
        lost_seen: (0, 0),
        undecodable: 0,
        new_cgroups: None,
        runtime_root: opts.runtime_root.clone(),
    };
    state.policy_loaded(&warnings)?;
    state.start_resolver();
    state.scan(&agents)?;
    let mut cgroups = watch_cgroups(state.engine.policy(), &state.runtime_root)?;
    state.install_cgroups(cgroups.as_ref().map(AsyncFd::get_ref))?;
    state.sink.flush()?;
    let serve = tokio::spawn(server.serve(tx));
    tracing::info!(
        agents = ?agents,
        policy = %opts.policy.name(),
        programs = state.kernel.attached.len(),
        socket = %opts.socket.display(),
        "guard daemon ready"
    );

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Most records are queued without waking the daemon (see guard-ebpf's
    // emit.rs): drain them on this beat, and write them out in one go.
    let mut drain = tokio::time::interval(Duration::from_millis(10));
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer poll failed")?;
                state.drain(guard.get_inner_mut())?;
                guard.clear_ready();
            }
            _ = drain.tick() => state.drain(ring.get_mut())?,
            ready = cgroups_ready(&cgroups) => {
                ready?;
                state.cgroups_changed(&mut cgroups)?;
            }
            Some(cmd) = commands.recv() => state.command(cmd)?,
            Some((name, addrs)) = resolved.recv() => state.resolved(name, addrs)?,
            _ = hup.recv() => state.reload("SIGHUP")?,
            _ = tick.tick() => {
                state.rate = (state.events_total - state.events_at_tick) as f64;
                state.events_at_tick = state.events_total;
                state.report_lost()?;
                state.update_metrics();
                if let Some(w) = &cgroups {
                    state.adopt_in_cgroups(w.get_ref())?;
                }
                let now = stamp(&state.source);
                if now == state.policy_stamp {
                    state.changed_stamp = None;
                } else if state.changed_stamp == Some(now) {
                    state.changed_stamp = None;
                    state.reload("file change")?;
                } else {
                    state.changed_stamp = Some(now);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if let Some(watcher) = state.new_cgroups.take() {
            cgroups = watcher;
            state.install_cgroups(cgroups.as_ref().map(AsyncFd::get_ref))?;
        }
    }
    serve.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    if let Some(r) = state.resolver.take() {
        r.abort();
    }
    state.drain(ring.get_mut())?;
    state.report_lost()?;
    state.sink.flush()?;
    tracing::info!("guard daemon stopped; programs detached");
    Ok(())
}

/// `guard daemon --floor`: empty programs on guard's hooks until SIGTERM/SIGINT.
pub async fn floor() -> anyhow::Result<()> {
    let (programs, n) = crate::ebpf::load_floor().context("cannot attach the floor programs")?;
    tracing::info!(
        attachments = n,
        "guard daemon ready (floor: empty programs)"
    );
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(programs);
    Ok(())
}

/// The policy file's modification time (None for built-ins).
fn stamp(source: &Source) -> Option<SystemTime> {
    match source {
        Source::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok(),
        Source::Builtin(_) => None,
    }
}

/// Name servers from /etc/resolv.conf (`@resolvers` in network rules).
fn resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Resolves `names`, again as each answer's records expire (at least every 5 s,
/// at most every 10 min; 30 s after a failure).
async fn resolve_loop(names: Vec<String>, tx: mpsc::Sender<Resolved>) {
    use hickory_resolver::TokioResolver;
    let resolver = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
        Ok(r) => r,
        Err(e) => {
            return tracing::warn!("no DNS resolver ({e}); names in network rules stay unresolved");
        }
    };
    let mut due: Vec<(String, Instant)> = names.into_iter().map(|n| (n, Instant::now())).collect();
    loop {
        let now = Instant::now();
        for (name, at) in due.iter_mut().filter(|(_, at)| *at <= now) {
            match tokio::time::timeout(Duration::from_secs(5), resolver.lookup_ip(name.as_str()))
                .await
            {
                Ok(Ok(answer)) => {
                    let addrs: Vec<IpAddr> = answer.iter().collect();
                    let ttl = answer
                        .valid_until()
                        .saturating_duration_since(Instant::now());
                    *at = Instant::now()
                        + ttl.clamp(Duration::from_secs(5), Duration::from_secs(600));
                    if tx.send((name.clone(), addrs)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("cannot resolve {name}: {e}");
                    *at = Instant::now() + Duration::from_secs(30);
                }
                Err(_) => {
                    tracing::warn!("resolving {name} timed out");
                    *at = Instant::now() + Duration::from_secs(30);
                }
            }
        }
        let next = due
            .iter()
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(now + Duration::from_secs(600));
        tokio::time::sleep_until(next.into()).await;
    }
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

    fn emit(&mut self, mut ev: Event) -> anyhow::Result<()> {
        if let Some(start) = self.registry.before(&ev) {
            self.write(&start)?;
        }
        let is_root = self.registry.is_root(&ev);
        let offset = self.offset;
        let kernel_rule = ev.kernel_rule;
        self.engine.judge(&mut ev, is_root, kernel_rule, || {
            clock::boot_ns() as i128 + offset
        });
        if let Some(v) = &ev.violation {
            tracing::info!(pid = ev.task.pid, rule = %v.rule, outcome = %v.outcome, "policy violation");
        }
        self.write(&ev)?;
        if let Some(mut end) = self.registry.after(&ev) {
            if self.engine.policy().kill_stragglers
                && let Detail::SessionEnd {
                    stragglers, killed, ..
                } = &mut end.detail
            {
                // CI: nothing of a session outlives its agent.
                for pid in stragglers.iter() {
                    if let Ok(true) = action::kill(*pid) {
                        killed.push(*pid);
                    }
                }
            }
            self.write(&end)?;
        }
        Ok(())
    }

    fn update_metrics(&mut self) {
        let running = self
            .registry
            .sessions()
            .filter(|s| s.ended_ns.is_none())
            .count();
        self.metrics.set_active_sessions(running as u64);
        if let Ok((by_kind, track_full)) = self.kernel.lost() {
            for (kind, n) in by_kind {
                self.metrics.set_lost(kind, n);
            }
            self.metrics.set_lost("untracked_children", track_full);
            self.metrics.set_lost("undecodable", self.undecodable);
        }
        // Programs that never ran, as all do while the kernel's statistics are off,
        // stay absent rather than claim zero cost.
        for (program, run_time_ns, run_count) in self.kernel.program_stats() {
            if run_count > 0 {
                self.metrics
                    .set_program_stats(&program, run_time_ns, run_count);
            }
        }
    }

    fn policy_loaded(&mut self, warnings: &[diag::Diagnostic]) -> anyhow::Result<()> {
        let rules = self.engine.kernel_rules();
        let policy = self.engine.policy();
        let detail = Detail::PolicyLoaded {
            name: policy.name.clone(),
            mode: match policy.mode {
                Mode::Enforce => "enforce",
                Mode::Observe => "observe",
            },
            rules: policy.rules.len(),
            kernel_entries: rules.paths.len() + rules.nets.len(),
            user_space_rules: self.engine.user_space_rules(),
            warnings: diag::render(&policy.name, warnings),
            enforcement: self.enforcement(),
        };
        self.write_daemon_event(detail)
    }

    /// Writes an event about the daemon itself (no session, no process) at once.
    fn write_daemon_event(&mut self, detail: Detail) -> anyhow::Result<()> {
        let ev = Event::derived(
            clock::boot_ns() as i128 + self.offset,
            None,
            Task::default(),
            detail,
        );
        self.write(&ev)?;
        self.sink.flush()?;
        Ok(())
    }

    /// How each kind of enforcement runs on this host.
    fn enforcement(&self) -> Vec<(&'static str, String)> {
        let deny = match &self.kernel.lsm {
            Ok(()) => "deny in the kernel (BPF-LSM): the operation fails with EPERM".to_owned(),
            Err(why) => format!("acts as kill: BPF-LSM unavailable ({why})"),
        };
        vec![
            (
                "exec_kill",
                "kernel, at sched_process_exec: the program never runs".to_owned(),
            ),
            (
                "file_read_kill",
                "kernel, before the open returns: the data is never seen".to_owned(),
            ),
            (
                "file_write_kill",
                "kernel, after the open: a truncate or create has happened".to_owned(),
            ),
            ("file_exec_deny", deny),
            (
                "network_deny",
                "kernel, cgroup sock_addr: EPERM, no packet leaves".to_owned(),
            ),
            (
                "argv_and_glob_kill",
                "user space, through a pidfd, after the event".to_owned(),
            ),
        ]
    }

    fn start_resolver(&mut self) {
        if let Some(r) = self.resolver.take() {
            r.abort();
        }
        let names = self.engine.host_names();
        if !names.is_empty() {
            self.resolver = Some(tokio::spawn(resolve_loop(names, self.resolved_tx.clone())));
        }
    }

    fn resolved(&mut self, name: String, addrs: Vec<IpAddr>) -> anyhow::Result<()> {
        tracing::info!(%name, ?addrs, "resolved");
        if self.engine.set_host(name, addrs) {
            self.kernel.install(self.engine.kernel_rules())?;
        }
        Ok(())
    }

    /// Loads the policy again; a policy with errors is refused and the running one
    /// stays in force (in the kernel too: its rules are only replaced whole).
    fn reload(&mut self, why: &str) -> anyhow::Result<()> {
        self.policy_stamp = stamp(&self.source);
        let name = self.source.name();
        let rejected = |state: &mut Self, errors: String| -> anyhow::Result<()> {
            state.metrics.policy_reload(false);
            tracing::warn!("policy {name} rejected ({why}); the running policy stays:\n{errors}");
            let detail = Detail::PolicyRejected {
                name: name.clone(),
                errors,
            };
            state.write_daemon_event(detail)
        };
        let (policy, warnings) = match policy::load(&self.source) {
            Ok(p) => p,
            Err(e) => return rejected(self, e.to_string()),
        };
        let agents = if self.agents_override.is_empty() {
            policy.agents.clone()
        } else {
            self.agents_override.clone()
        };
        let old = self.engine.policy();
        let new_cgroups = if policy.containers != old.containers || policy.cgroups != old.cgroups {
            match watch_cgroups(&policy, &self.runtime_root) {
                Ok(w) => Some(w),
                Err(e) => return rejected(self, format!("{e:#}")),
            }
        } else {
            None
        };
        let hosts = self.engine.hosts().clone();
        let engine = match Engine::new(policy, self.homes.clone(), hosts, self.kernel.lsm.is_ok()) {
            Ok(e) => e,
            Err(e) => return rejected(self, format!("{e:#}")),
        };
        if let Err(e) = self.kernel.install(engine.kernel_rules()) {
            return rejected(self, format!("cannot install it in the kernel: {e:#}"));
        }
        self.kernel.set_agents(&agents)?;
        if new_cgroups.is_some() {
            self.new_cgroups = new_cgroups;
        }
        let names_changed = engine.host_names() != self.engine.host_names();
        self.engine = engine;
        if names_changed {
            self.start_resolver();
        }
        tracing::info!("policy {name} loaded ({why})");
        self.metrics.policy_reload(true);
        self.policy_loaded(&warnings)
    }

    /// Writes one event to the audit log and offers it to every subscriber.
    fn write(&mut self, ev: &Event) -> anyhow::Result<()> {
        self.events_total += 1;
        self.metrics.event(ev.detail.kind());
        if let Some(v) = &ev.violation {
            // Keep label values few: "failed: <error>" counts as "failed".
            let outcome = if v.outcome.starts_with("failed") {
                "failed"
            } else {
                v.outcome.as_str()
            };
            self.metrics.violation(&v.rule, v.action, outcome);
        }
        if self.subscribers.is_empty() {
            // The common case: serialise straight into the sink's buffer.
            self.sink.write_event(ev)?;
            return Ok(());
        }
        let line: Arc<str> = Arc::from(ev.to_json());
        self.sink.write_line(&line)?;
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
            kernel_rule: 0,
            host: None,
            violation: None,
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
                self.subscribers.push(Subscriber {
                    filter,
                    events,
                    missed: 0,
                });
            }
            Command::Query {
                request,
                uid,
                reply,
            } => {
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
                    let mut m: serde_json::Map<String, serde_json::Value> = by_kind
                        .into_iter()
                        .map(|(k, n)| (k.to_owned(), n.into()))
                        .collect();
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
                    "policy": self.engine.policy().name,
                    "mode": match self.engine.policy().mode { Mode::Enforce => "enforce", Mode::Observe => "observe" },
                    "user_space_rules": self.engine.user_space_rules(),
                    "kill_latency_us": self.engine.kill_latency().map(|(p50, p99)| serde_json::json!({"p50": p50, "p99": p99})),
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
        self.enricher.enrich_task(&mut task);
        let now = clock::boot_ns() as i128 + self.offset;
        let start = self.registry.start(id, How::Run, now, &task);
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
        // An agent below another agent belongs to the outer session.
        let roots = outermost(&agent_pids, |p| ppid_of.get(&p).copied());
        for root in roots {
            self.adopt(root)?;
        }
        Ok(())
    }

    /// Processes in chosen cgroups that no session holds yet (already there when the
    /// cgroup was chosen, or moved in without an exec): each outermost one becomes a
    /// session root, `scan` sessions like those found at start.
    fn adopt_in_cgroups(&mut self, watcher: &Watcher) -> anyhow::Result<()> {
        let me = std::process::id();
        let candidates: Vec<u32> = watcher
            .procs()
            .into_iter()
            .filter(|&p| p != me && !self.kernel.is_tracked(p))
            .collect();
        for root in outermost(&candidates, |p| proc_stat(p).map(|s| s.ppid as u32)) {
            self.adopt(root)?;
        }
        Ok(())
    }

    /// Makes `root`, already running, a session root, and its descendants members.
    fn adopt(&mut self, root: u32) -> anyhow::Result<()> {
        if self.kernel.is_tracked(root) {
            return Ok(());
        }
        let id = SessionId(clock::boot_ns());
        let entry = Tracked {
            session: id.0,
            start_ns: 0,
            root_pid: root,
            flags: flags::ROOT_PROCESS as u32,
        };
        if !self.track_live(root, entry) {
            return Ok(());
        }
        let Some(mut task) = task_from_proc(root) else {
            return Ok(());
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
                if self.track_live(child, entry) {
                    let comm = task_from_proc(child).map(|t| t.comm).unwrap_or_default();
                    self.registry.adopt(id, child, pid, comm);
                    stack.push(child);
                }
            }
        }
        tracing::info!(pid = root, session = %id, "tracking an agent that was already running");
        Ok(())
    }

    /// Tracks a running process found in /proc. Its exit removes the entry, unless it
    /// exited before the entry went in: then the process is gone, or another one has its
    /// pid, and the entry is taken out again.
    fn track_live(&mut self, pid: u32, entry: Tracked) -> bool {
        let start = |pid: u32| proc_stat(pid).map(|s| s.starttime);
        let Some(before) = start(pid) else {
            return false;
        };
        if self.kernel.track(pid, entry).is_err() {
            return false;
        }
        if start(pid) != Some(before) {
            self.kernel.untrack(pid);
            return false;
        }
        true
    }

    /// Puts the chosen cgroups in the kernel and adopts what already runs there.
    fn install_cgroups(&mut self, watcher: Option<&Watcher>) -> anyhow::Result<()> {
        let ids = watcher.map(Watcher::chosen).unwrap_or_default();
        self.kernel.set_agent_cgroups(&ids)?;
        if let Some(w) = watcher {
            tracing::info!(cgroups = ids.len(), "sessions start in chosen cgroups");
            self.adopt_in_cgroups(w)?;
        }
        Ok(())
    }

    /// cgroups came or went: follow them in the kernel (a new container's cgroup is
    /// normally in the map before the runtime starts a process in it).
    fn cgroups_changed(&mut self, cgroups: &mut Option<AsyncFd<Watcher>>) -> anyhow::Result<()> {
        let Some(fd) = cgroups else {
            return Ok(());
        };
        let changes = match fd.get_mut().read() {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("cannot read cgroup notifications ({e}); watching them anew");
                Changes {
                    overflow: true,
                    ..Changes::default()
                }
            }
        };
        if changes.overflow {
            tracing::warn!("cgroup notifications were lost; walking the cgroup tree again");
            *cgroups = watch_cgroups(self.engine.policy(), &self.runtime_root)?;
            return self.install_cgroups(cgroups.as_ref().map(AsyncFd::get_ref));
        }
        for id in &changes.added {
            self.kernel.add_agent_cgroup(*id)?;
        }
        for id in &changes.removed {
            self.kernel.remove_agent_cgroup(*id);
        }
        if !changes.added.is_empty() {
            self.adopt_in_cgroups(fd.get_ref())?;
        }
        Ok(())
    }
}

/// The watcher of the cgroups `policy` chooses sessions by, if it chooses any.
fn watch_cgroups(
    policy: &policy::model::Policy,
    runtime_root: &std::path::Path,
) -> anyhow::Result<Option<AsyncFd<Watcher>>> {
    let Some(selection) = Selection::of(policy, runtime_root)? else {
        return Ok(None);
    };
    let root = crate::ebpf::mounts::cgroup2_root()?;
    let own = crate::ebpf::mounts::cgroup_id_of(&root, std::process::id());
    let watcher = Watcher::start(&root, selection, own)
        .with_context(|| format!("cannot watch the cgroups under {}", root.display()))?;
    // SAFETY: the watcher owns its inotify descriptor, which stays open and unchanged
    // for as long as the AsyncFd (which owns the watcher) lives.
    let fd = unsafe { AsyncFd::register_with_interest(watcher, tokio::io::Interest::READABLE) }
        .context("cannot poll cgroup notifications")?;
    Ok(Some(fd))
}

/// Resolves when the cgroup watcher has notifications; never without a watcher.
async fn cgroups_ready(cgroups: &Option<AsyncFd<Watcher>>) -> anyhow::Result<()> {
    match cgroups {
        Some(fd) => {
            fd.readable()
                .await
                .context("cgroup notifications poll failed")?
                .clear_ready();
            Ok(())
        }
        None => std::future::pending().await,
    }
}

/// The candidates that have no other candidate among their ancestors.
fn outermost(candidates: &[u32], ppid: impl Fn(u32) -> Option<u32>) -> Vec<u32> {
    candidates
        .iter()
        .copied()
        .filter(|&pid| {
            let mut up = ppid(pid).unwrap_or(0);
            for _ in 0..64 {
                if up <= 1 {
                    return true;
                }
                if candidates.contains(&up) {
                    return false;
                }
                up = ppid(up).unwrap_or(0);
            }
            true
        })
        .collect()
}

fn proc_stat(pid: u32) -> Option<procfs::process::Stat> {
    procfs::process::Process::new(pid as i32).ok()?.stat().ok()
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
    static CGROUP2: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let cgroup2 = CGROUP2.get_or_init(|| crate::ebpf::mounts::cgroup2_root().ok());
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
        cgroup_id: cgroup2
            .as_deref()
            .and_then(|root| crate::ebpf::mounts::cgroup_id_of(root, pid))
            .unwrap_or(0),
        ..Task::default()
    })
}
