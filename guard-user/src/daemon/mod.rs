//! `guard daemon`: load the programs, then one loop owns everything — it drains
//! the ring buffer through the pipeline, serves control commands, reloads the
//! policy and reports lost records — so no state is shared between tasks. This
//! file is the wiring; the work is in `pipeline` (events), `handle` (commands,
//! reloads, reports) and `adopt` (processes already running).

mod adopt;
mod handle;
mod pipeline;
mod reload;
mod survive;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use self::pipeline::{DRAIN_PASS, DRAIN_WHOLE, Outputs, Pipeline};
use crate::{
    audit::Sink,
    control::Server,
    ebpf::Probes,
    event::enrich::Enricher,
    metrics::Metrics,
    policy::{self, Source, diag, judge::Judge, matcher::Hosts, watch::Watch},
    resolve::{self, Resolver},
    session::cgroups::Watcher,
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
    /// Where the programs, links and maps are pinned (one daemon per directory).
    pub pin_dir: PathBuf,
    /// Remove the pins at a clean stop (enforcement ends with this daemon).
    pub lift_on_stop: bool,
    /// Bytes of the records' ring buffer, when the pins are created.
    pub ring_bytes: u32,
    /// Which build of guard-ebpf to load (`--ebpf-build`).
    pub ebpf_build: crate::ebpf::object::Choice,
    /// The socket agents' hooks ask what was stopped (`guard hook`).
    pub hook_socket: PathBuf,
    /// The export's endpoint, in place of the policy's (`--export-endpoint`).
    pub export_endpoint: Option<String>,
    /// The export's bearer token file, in place of the policy's
    /// (`--export-token-file`).
    pub export_token_file: Option<PathBuf>,
    /// Where state that outlives the daemon goes (the export's spool).
    pub state_dir: PathBuf,
}

/// Everything the loop owns.
struct Daemon {
    probes: Probes,
    pipe: Pipeline,
    out: Outputs,
    watch: Watch,
    /// Agent names given on the command line override the policy's.
    agents_override: Vec<String>,
    /// The programs the kernel knows by name (agents, MCP servers' commands).
    programs: crate::ebpf::AgentPrograms,
    /// The agents' configuration files (MCP servers).
    mcp: crate::agents::mcp::Configs,
    homes: Vec<String>,
    resolver: Resolver,
    /// guard's resolver in each network namespace sessions use.
    dns: crate::dns::Resolvers,
    /// Lost records already reported.
    lost_seen: u64,
    /// A reload changed the cgroups that start sessions: the loop swaps this watcher
    /// in (`Some(None)`: none any more).
    new_cgroups: Option<Option<AsyncFd<Watcher>>>,
    runtime_root: PathBuf,
    export_endpoint: Option<String>,
    export_token_file: Option<PathBuf>,
    state_dir: PathBuf,
    /// Policy from the fleet (`[fleet]`).
    fleet: Fleet,
}

/// The fleet's side of the policy in force.
struct Fleet {
    /// The task asking the fleet for this host's assignment.
    puller: Option<crate::fleet::Puller>,
    /// Where it sends what the fleet answers.
    tx: mpsc::Sender<guard_policy::signed::Envelope>,
    /// The assignment in force (verified), if the policy in force is the fleet's.
    in_force: Option<guard_policy::signed::Envelope>,
}

#[expect(
    clippy::too_many_lines,
    reason = "the daemon's start-up, each step using what the one before made, then its loop"
)]
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (policy, warnings) = policy::load(&opts.policy)?;
    // The fleet's assignment kept by the last run, when the host's own policy still
    // names that fleet and it verifies: in force again before the fleet answers.
    let kept = policy
        .fleet
        .is_some()
        .then(|| crate::fleet::kept(&opts.state_dir))
        .flatten();
    let (in_force, (policy, warnings)) = crate::fleet::choose((policy, warnings), kept);
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
    let homes = policy::homes();
    let hosts = Hosts {
        by_name: Default::default(),
        resolvers: resolve::resolvers(),
    };
    let mut mcp = crate::agents::mcp::Configs::new(crate::agents::mcp::codex_configs(&homes, &[]));
    mcp.changed();
    let programs = crate::ebpf::AgentPrograms {
        names: agents.clone(),
        mcp: mcp.names(),
        known: crate::agents::profile::Known::new(&policy.profiles),
    };
    if !programs.mcp.is_empty() {
        tracing::info!(programs = ?programs.mcp, "MCP servers in the agents' configurations");
    }
    let (mut probes, events) = Probes::load(
        &programs,
        opts.bpf_stats,
        &opts.pin_dir,
        opts.ring_bytes,
        opts.ebpf_build,
    )
    .context("cannot start the kernel side")?;
    let loaded = started.elapsed();
    let judge = Judge::new(policy, homes.clone(), hosts, probes.kernel())
        .context("cannot compile the policy")?;
    let mut identity =
        crate::identity::Identity::new().context("cannot watch the protected files")?;
    identity.set_targets(judge.tables().identity.clone());
    identity.log_entries();
    probes
        .install(judge.tables().maps(), &identity)
        .context("cannot install the policy in the kernel")?;
    // SAFETY: the inotify descriptor stays open and unchanged while `identity`
    // lives, which outlives this AsyncFd (both end with the daemon).
    let identity_fd = unsafe {
        AsyncFd::register_with_interest(IdentityFd(identity.fd()), tokio::io::Interest::READABLE)
    }
    .map_err(|e| anyhow::anyhow!("cannot poll the identity watches: {e}"))?;
    let server = Server::bind(&opts.socket)?;
    let hooks = Server::bind_hooks(&opts.hook_socket)?;
    let metrics = Arc::new(Metrics::new());
    // Bound now, so a busy address fails the start instead of a scrape later.
    let metrics_server = match opts.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            Some(tokio::spawn(crate::metrics::serve_listener(
                listener,
                Arc::clone(&metrics),
            )))
        }
        None => None,
    };
    let (tx, mut commands) = mpsc::channel(64);
    let (fleet_tx, mut fleet_policies) = mpsc::channel(4);
    let (resolved_tx, mut resolved) = mpsc::channel(64);
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged for as
    // long as the AsyncFd lives.
    let mut ring =
        unsafe { AsyncFd::register_with_interest(events, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;
    let held_map = probes.take_held();
    let download_maps = probes.take_downloads();
    let (dns_started_tx, mut dns_started) = mpsc::channel(16);
    let mut dns = crate::dns::Resolvers::new(
        probes.take_dns().context("the DNS maps are taken")?,
        probes.take_stub_peers(),
        judge.dns(),
        probes.dns_resolver.clone(),
        dns_started_tx,
    )
    .context("cannot start guard's resolver")?;
    dns.configure(judge.policy(), judge.dns())
        .context("cannot point sessions' DNS at guard's resolver")?;
    let spawners = probes.take_delegation().map(|maps| {
        let mut s = crate::delegation::Spawners::new(maps);
        s.configure(judge.policy());
        s
    });
    let mut d = Daemon {
        probes,
        pipe: Pipeline::new(
            judge,
            Enricher::new(&opts.runtime_root),
            programs.known.clone(),
            identity,
            crate::digest::Holds::new(held_map, download_maps),
            spawners,
        ),
        out: Outputs::new(sink, metrics),
        watch: Watch::new(opts.policy.clone()),
        agents_override: opts.agents.clone(),
        programs,
        mcp,
        homes,
        resolver: Resolver::new(resolved_tx),
        dns,
        lost_seen: 0,
        new_cgroups: None,
        runtime_root: opts.runtime_root.clone(),
        export_endpoint: opts.export_endpoint.clone(),
        export_token_file: opts.export_token_file.clone(),
        state_dir: opts.state_dir.clone(),
        fleet: Fleet {
            puller: None,
            tx: fleet_tx,
            in_force,
        },
    };
    d.set_audit_format();
    d.start_export();
    d.sync_puller();
    d.policy_loaded(&warnings)?;
    d.check_attached();
    d.resume()?;
    d.resolver.restart(d.pipe.judge().host_names());
    d.scan(&agents)?;
    let mut cgroups = adopt::watch_cgroups(d.pipe.judge().policy(), &d.runtime_root)?;
    d.install_cgroups(cgroups.as_ref().map(AsyncFd::get_ref))?;
    d.out.sink.flush()?;
    let serve_hooks = tokio::spawn(hooks.serve(tx.clone(), true));
    let serve = tokio::spawn(server.serve(tx, false));
    tracing::info!(
        agents = ?agents,
        policy = %opts.policy.name(),
        programs = d.probes.attached.len(),
        socket = %opts.socket.display(),
        pins = %opts.pin_dir.display(),
        load_ms = loaded.as_millis(),
        ready_ms = started.elapsed().as_millis(),
        "guard daemon ready"
    );

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    // Most records are queued without waking the daemon (see guard-ebpf's
    // emit.rs): drain them on this beat, and write them out in one go.
    let mut drain = tokio::time::interval(Duration::from_millis(10));
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Records left in the ring buffer after this turn's pass.
        let mut behind = false;
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer poll failed")?;
                // Records left: still readable, taken at the next turn.
                behind = d.pipe.drain(guard.get_inner_mut(), &mut d.out, DRAIN_PASS)?;
                if !behind {
                    guard.clear_ready();
                }
            }
            ready = identity_fd.readable() => {
                let mut guard = ready.context("identity watch poll failed")?;
                d.pipe.identity_mut().read_events();
                guard.clear_ready();
            }
            _ = drain.tick() => {
                if d.pipe.identity().due(std::time::Instant::now()) {
                    d.refresh_identity();
                }
                behind = d.pipe.drain(ring.get_mut(), &mut d.out, DRAIN_PASS)?;
                if behind {
                    drain.reset_immediately();
                }
            }
            ready = adopt::cgroups_ready(&cgroups) => {
                ready?;
                d.cgroups_changed(&mut cgroups)?;
            }
            Some(cmd) = commands.recv() => {
                // A hook asks right after its tool ended: what the kernel reported of
                // it may still wait in the ring buffer.
                // A call's start, likewise: what happened before it is not its.
                if matches!(
                    cmd,
                    crate::control::Command::Stops { .. } | crate::control::Command::ToolCall { .. }
                ) {
                    d.pipe.drain(ring.get_mut(), &mut d.out, DRAIN_WHOLE)?;
                }
                d.command(cmd)?
            }
            Some((name, addrs)) = resolved.recv() => d.resolved(name, addrs)?,
            Some(started) = dns_started.recv() => d.dns.started(started),
            _ = hup.recv() => d.reload("SIGHUP")?,
            Some(envelope) = fleet_policies.recv() => d.fleet_policy(envelope)?,
            _ = beat.tick() => {
                d.out.beat();
                d.pipe.release_overdue(&mut d.out, false)?;
                let probes = &d.probes;
                d.pipe.release_stale_holds(&mut d.out, |pid| probes.tracked(pid))?;
                d.report_lost()?;
                d.update_metrics();
                d.refresh_mcp()?;
                d.dns.recheck();
                let probes = &d.probes;
                d.pipe.scan_spawners(|pid| probes.is_tracked(pid));
                d.out.summaries_due();
                if let Some(w) = &cgroups {
                    d.adopt_in_cgroups(w.get_ref())?;
                }
                if d.watch.due() {
                    d.reload("file change")?;
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        d.dns_work();
        if let Some(watcher) = d.new_cgroups.take() {
            cgroups = watcher;
            d.install_cgroups(cgroups.as_ref().map(AsyncFd::get_ref))?;
        }
        // The ignore files of repositories sessions started in (`[files]`).
        d.apply_ignores()?;
        // A sign of life after each turn of the loop (one map write): the next
        // daemon measures its gap from the last one, so a daemon that answered a
        // client or drained records was alive then.
        d.probes.daemon.alive();
        if behind {
            // The tasks beside this loop (the control and hook servers, guard's
            // resolver) run when it waits: a daemon behind the kernel never would.
            tokio::task::yield_now().await;
        }
    }
    serve.abort();
    serve_hooks.abort();
    if let Some(m) = metrics_server {
        m.abort();
    }
    d.resolver.stop();
    d.dns.stop();
    d.pipe.drain(ring.get_mut(), &mut d.out, DRAIN_WHOLE)?;
    d.pipe.release_overdue(&mut d.out, true)?;
    d.report_lost()?;
    d.out.sink.flush()?;
    if let Some(export) = d.out.export.take() {
        export.stop();
    }
    d.probes.daemon.stopped();
    if opts.lift_on_stop {
        // The lock goes with the probes; unloading takes it anew.
        drop(d);
        drop(ring);
        let links = crate::ebpf::pins::unload(&opts.pin_dir)?;
        tracing::info!(
            links,
            pins = %opts.pin_dir.display(),
            "guard daemon stopped; pins removed, programs detached (--lift-on-stop)"
        );
        return Ok(());
    }
    tracing::info!(
        pins = %d.probes.pin_dir().display(),
        "guard daemon stopped; enforcement stays pinned (`guard unload` lifts it)"
    );
    Ok(())
}

impl Daemon {
    /// What the pipeline saw of network namespaces and sessions, for guard's
    /// resolver: a namespace a session process runs in gets one; a namespace whose
    /// sessions all ended loses it.
    fn dns_work(&mut self) {
        for work in self.pipe.take_dns_work() {
            match work {
                pipeline::DnsWork::Seen {
                    netns,
                    pid,
                    session,
                } => {
                    let netns = match netns {
                        0 => crate::dns::netns::inode(&pid.to_string()).unwrap_or(0),
                        n => n,
                    };
                    self.dns.want(netns, pid, session);
                }
                pipeline::DnsWork::Ended(session) => self.dns.session_ended(session),
            }
        }
    }
}

/// The identity set's inotify descriptor, for the poll loop (owned by the set).
struct IdentityFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for IdentityFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// `guard daemon --floor`: empty programs on guard's hooks until SIGTERM/SIGINT.
pub async fn floor() -> anyhow::Result<()> {
    let (programs, n) = crate::ebpf::floor::load().context("cannot attach the floor programs")?;
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
