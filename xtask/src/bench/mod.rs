//! `cargo xtask bench`: what guard costs the processes it watches, next to no
//! monitoring, empty programs on the same hooks, auditd, libbpf-tools and bpftrace.
//!
//! Every workload runs under every setup, interleaved (round by round, and within
//! a round workload by workload with the setups one after the other), so drift on
//! a shared machine hits all setups alike. Each measurement starts its setup fresh
//! (daemon or tracer attached and ready), runs the workload, then stops the setup.
//! The workload times itself (CLOCK_MONOTONIC around its loop), so starting and
//! stopping setups is not in the numbers.
//!
//! Every workload drops to a uid of its own, unused on the host, so the peers can
//! filter it and everything it starts in the kernel (guard follows the process tree
//! of a session instead). Then the capacity of the daemon (highest event rate with
//! zero loss) and the user-space kill latency are measured.
//!
//! Everything started is stopped on the way out, failure or Ctrl-C included: the
//! daemons and tracers (`Proc` kills on drop), the audit rules and settings
//! (`AuditState` restores on drop) and the temporary directories (`TempDir`).
//!
//! The modules follow a run: [`options`] and [`setups`] say what runs; [`process`],
//! [`ctx`], [`guard`], [`auditd`], [`peers`] and [`host`] are the means;
//! [`prepare`] makes the workloads' files and [`agent_day`] the crate and npm
//! project of the cargo and npm workloads; [`running`] starts and stops a setup;
//! [`measure`], [`costs`], [`storm`], [`export`], [`fleet`] and [`scale`] take the numbers; [`summary`], [`markdown`] and
//! [`chart`] report them. [`kernels`] runs the per-program costs in Debian's kernels too
//! (`--vm`).

mod agent_day;
mod auditd;
mod chart;
mod codex;
mod costs;
mod ctx;
mod export;
mod fleet;
mod guard;
mod host;
mod kernels;
mod markdown;
mod measure;
mod options;
mod peers;
mod prepare;
mod process;
mod running;
mod scale;
mod setups;
mod storm;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use self::auditd::{AuditState, auditd_problem, write_auditd_conf};
use self::chart::chart;
use self::costs::{feature_costs, program_costs};
use self::ctx::Ctx;
use self::host::{machine, pick_account};
use self::markdown::write_markdown;
use self::measure::{capacity, kill_latency, measure};
pub(crate) use self::options::Options;
use self::options::Params;
use self::peers::{BPFTRACE_SCRIPT, install_peers, tcpconnect_problem};
use self::prepare::{listener, make_build_sources, make_repo, program_files, sink};
use self::process::chown_tree;
use self::process::which;
use self::process::{
    TempDir, check_interrupted, install_signal_handlers, random_hex, run_timed, sleep,
};
use self::running::{finish, start};
use self::setups::{SETUPS, Setup, WORKLOADS, Workload};
use self::summary::{print_summary, summarize, targets};
use crate::util::{self, log};

#[expect(
    clippy::too_many_lines,
    reason = "set-up then every phase in order; the temp dirs, servers and auditd state it holds must outlive them all"
)]
pub(crate) fn run(guard: &Path, opts: &Options) -> Result<()> {
    if !util::is_root() {
        bail!("the benchmarks need root; run `sudo -E env PATH=$PATH cargo xtask bench`");
    }
    install_signal_handlers();
    let params = Params::new(opts);
    let out_dir = opts.out.clone().unwrap_or_else(|| {
        if opts.quick {
            util::target_dir().join("bench-quick")
        } else {
            util::workspace_root()
        }
    });
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    // The per-program costs read the kernel's statistics with bpftool (the guests
    // use the host's): `--vm` and `--costs-only` need it, not the peers.
    if (opts.vm || opts.costs_only || opts.scale) && !opts.no_install {
        crate::setup::debian_packages(&["bpftool"])?;
    }
    if opts.vm {
        return kernels::costs_in_kernels(&out_dir, &opts.series);
    }
    if !opts.no_install && opts.only.is_empty() && !opts.costs_only && !opts.scale {
        install_peers();
    }
    for bin in ["gcc", "git"] {
        if which(bin).is_none() {
            bail!("{bin} is needed (apt-get install {bin})");
        }
    }
    let guard = fs::canonicalize(guard)
        .with_context(|| format!("no guard binary at {}", guard.display()))?;
    let started = Instant::now();
    let _pins = guard::Pins(guard.clone());

    // The temporary directory is on disk (guard's events file is a real file); in a
    // kernel's VM (`--costs-only`) only the guest's /tmp is writable.
    let hex = random_hex(4);
    let base = if opts.costs_only { "/tmp" } else { "/var/tmp" };
    let (_tmp, dir) = TempDir::new_in(Path::new(base), &format!("gbench-{hex}-"))?;

    let (account, uid, gid) = pick_account()?;
    let agent = format!("gbench{hex}");
    log!(
        "temp dir {}, workloads run as {account} ({uid}:{gid}), agent name {agent}",
        dir.display()
    );

    // The workload program, under a name of its own.
    let workload_bin = dir.join(format!("gbw-{hex}"));
    let source = util::workspace_root().join("bench/workload.c");
    util::stdout_of(
        Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&workload_bin)
            .arg(&source),
    )
    .context("cannot compile bench/workload.c")?;

    let open_target = dir.join("open-target");
    fs::write(&open_target, "guard bench\n")?;
    fs::set_permissions(&open_target, fs::Permissions::from_mode(0o644))?;
    // The capacity generator's files (`open-target.0` … `.7`, see workload.c).
    for i in 0..8 {
        let f = dir.join(format!("open-target.{i}"));
        fs::write(&f, "guard bench\n")?;
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644))?;
    }
    let home = dir.join("home");
    fs::create_dir_all(&home)?;
    chown_tree(&home, uid, gid)?;
    // The repository lives in tmpfs where there is one: on this kind of VM the
    // disk's latency spikes (seconds, now and then) would swamp the comparison.
    // Outputs (guard's events, the peers' logs) stay on disk.
    let shm = Path::new("/dev/shm");
    let (repo, _repo_tmp) = if shm.is_dir() {
        let (tmp, d) = TempDir::new_in(shm, &format!("gbench-{hex}-"))?;
        (d.join("repo"), Some(tmp))
    } else {
        (dir.join("repo"), None)
    };
    let build_dir = repo.with_file_name("build");
    let fetch_dir = repo.with_file_name("fetch");
    // The micro workloads and the scale phase need neither the repository nor the
    // build's sources.
    if !opts.costs_only && !opts.scale {
        log!(
            "generating a git repository of {} files in {}",
            params.files,
            repo.display()
        );
        make_repo(&repo, params.files, params.changed, uid, gid)?;
        make_build_sources(&build_dir, params.build_n, uid, gid)?;
        fs::create_dir_all(&fetch_dir)?;
        chown_tree(&fetch_dir, uid, gid)?;
    }
    // The cargo and npm workloads' set-up fetches from the registries: only when
    // they run.
    let phase_only =
        opts.fleet_only || opts.export_only || opts.storm_only || opts.costs_only || opts.scale;
    let agent_day = if !phase_only
        && (opts.only.is_empty() || opts.only.iter().any(|w| w == "cargo" || w == "npm"))
    {
        agent_day::prepare(
            repo.parent().context("the repository has a parent")?,
            &dir,
            &home,
            uid,
            gid,
        )?
    } else {
        agent_day::AgentDay::default()
    };
    let codex = if !phase_only && (opts.only.is_empty() || opts.only.iter().any(|w| w == "codex")) {
        // guard's hook, at the hook socket beside the daemon's control socket.
        let hook = opts.codex_hooks.then(|| {
            format!(
                "{} hook codex --socket {}",
                guard.display(),
                dir.join("hook.sock").display()
            )
        });
        codex::prepare(&dir, &home, uid, gid, hook.as_deref())?
    } else {
        codex::CodexDay::default()
    };
    let log_policy = dir.join("log-only.toml");
    fs::write(
        &log_policy,
        // No record budget: the comparisons and the capacity measure the whole
        // pipeline, every record delivered. The storm phase measures the budgets.
        format!("mode = \"enforce\"\n[agents]\nnames = [\"{agent}\"]\n[limits]\nrate = 0\n"),
    )?;
    let bpftrace_script = dir.join("bench.bt");
    fs::write(
        &bpftrace_script,
        BPFTRACE_SCRIPT.replace("UID", &uid.to_string()),
    )?;
    let port = listener()?;
    let sink_port = sink()?;
    // The dns workload's server: Debian's dnsmasq, answering its one name and
    // forwarding nowhere; stopped with the bench (`Proc` kills on drop).
    // The fetch workload's client and its sources' server: Debian's curl and Python.
    crate::setup::debian_packages(&["dnsmasq-base", "curl", "python3"])?;
    let _dns_server = process::Proc::spawn(
        "dnsmasq",
        Command::new("dnsmasq").args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
            "--bind-interfaces",
            "--port=53",
            &format!("--listen-address={}", setups::DNS_SERVER),
            "--address=/bench.example/127.0.0.1",
            "--address=/deps.bench.example/127.0.0.1",
            "--local=/bench.example/",
            "--log-facility=/dev/null",
        ]),
        None,
    )?;
    // The fetch workload's names resolve through that dnsmasq only (its own
    // resolv.conf and nsswitch.conf, bound over /etc's in the workload's mount
    // namespace), and its sources come from Debian's Python HTTP server.
    let resolver_etc = dir.join("resolver-etc");
    fs::create_dir_all(&resolver_etc)?;
    fs::write(
        resolver_etc.join("resolv.conf"),
        format!("nameserver {}\n", setups::DNS_SERVER),
    )?;
    fs::write(resolver_etc.join("nsswitch.conf"), "hosts: files dns\n")?;
    let (_http_server, http_port) = http_server(&dir, &build_dir)?;

    let mut ctx = Ctx {
        guard: guard.clone(),
        dir: dir.clone(),
        params: params.clone(),
        workload_bin,
        account,
        uid,
        gid,
        pin_cpu: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() - 1)
            .filter(|n| *n > 0),
        agent,
        port,
        sink_port,
        open_target,
        repo,
        build_dir,
        fetch_dir,
        http_port,
        resolver_etc,
        agent_day,
        codex,
        home,
        log_policy,
        socket: dir.join("guard.sock"),
        bpftrace_script,
        audit_dir: dir.join("audit"),
        tcpconnect_problem: None,
        warm_files: which("git").map(|g| program_files(&g)).unwrap_or_default(),
        own_pids: vec![std::process::id()],
        counter: 0,
    };

    if opts.costs_only {
        log!("in-kernel cost of guard's programs (micro workloads)");
        let costs = program_costs(&mut ctx, true)?;
        log!("what policy features cost an open");
        let features = feature_costs(&mut ctx)?;
        let results = json!({
            "machine": machine(&guard),
            "program_costs": costs,
            "feature_costs": features,
        });
        let path = out_dir.join(kernels::COSTS_FILE);
        fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
        log!("wrote {}", path.display());
        return Ok(());
    }
    if opts.scale {
        let results = json!({
            "quick": opts.quick,
            "machine": machine(&guard),
            "scale": scale::scale(&mut ctx, opts.quick)?,
            "duration_seconds": started.elapsed().as_secs_f64(),
        });
        let path = out_dir.join("scale-results.json");
        fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
        log!("wrote {}", path.display());
        scale::write_report(&out_dir, &results)?;
        log!(
            "wrote {}/BENCHMARKS.md (scale) and bench-scale.svg",
            out_dir.display()
        );
        return Ok(());
    }
    if opts.fleet_only {
        let fleet = fleet::fleet(opts.quick)?;
        let path = out_dir.join("fleet-results.json");
        fs::write(&path, serde_json::to_string_pretty(&fleet)? + "\n")?;
        log!("wrote {}", path.display());
        print!("{}", markdown::fleet_section(&fleet));
        return Ok(());
    }
    if opts.export_only {
        let rate = params.cap_start_rate;
        log!("export only (at {rate:.0} opens/s)");
        let export = export::export(&mut ctx, rate)?;
        let path = out_dir.join("export-results.json");
        fs::write(&path, serde_json::to_string_pretty(&export)? + "\n")?;
        log!("wrote {}", path.display());
        print!("{}", markdown::export_section(&export));
        return Ok(());
    }
    if opts.storm_only {
        log!("storm only ({} s at the maximum)", params.storm_secs);
        let storm = storm::storm(&mut ctx)?;
        let path = out_dir.join("storm-results.json");
        fs::write(&path, serde_json::to_string_pretty(&storm)? + "\n")?;
        log!("wrote {}", path.display());
        print!("{}", markdown::storm_section(&storm));
        return Ok(());
    }

    let only: Vec<Workload> = opts
        .only
        .iter()
        .map(|n| Workload::by_name(n).with_context(|| format!("no workload {n:?}")))
        .collect::<Result<_>>()?;
    let workloads: Vec<Workload> = if only.is_empty() {
        WORKLOADS.to_vec()
    } else {
        only
    };

    // Which setups can run here.
    let mut problems: BTreeMap<Setup, String> = BTreeMap::new();
    if !opts.only.is_empty() {
        for s in [Setup::Auditd, Setup::LibbpfTools, Setup::Bpftrace] {
            problems.insert(s, "not run with --workload".into());
        }
    }
    let audit_problem = if problems.contains_key(&Setup::Auditd) {
        Some("not run with --workload".to_owned())
    } else {
        auditd_problem()
    };
    let _audit_state = match &audit_problem {
        Some(p) => {
            problems.insert(Setup::Auditd, p.clone());
            None
        }
        None => {
            write_auditd_conf(&ctx)?;
            Some(AuditState::take()?)
        }
    };
    for tool in ["opensnoop", "execsnoop"] {
        if which(tool).is_none() && !problems.contains_key(&Setup::LibbpfTools) {
            problems.insert(
                Setup::LibbpfTools,
                format!("{tool} not found (Debian package libbpf-tools)"),
            );
        }
    }
    if which("bpftrace").is_none() && !problems.contains_key(&Setup::Bpftrace) {
        problems.insert(Setup::Bpftrace, "bpftrace not found".into());
    }
    ctx.tcpconnect_problem = match which("tcpconnect") {
        _ if !opts.only.is_empty() => Some("not run with --workload".into()),
        None => Some("tcpconnect not found".into()),
        Some(_) => tcpconnect_problem(uid, &dir),
    };
    if let Some(p) = &ctx.tcpconnect_problem {
        log!("tcpconnect cannot run; libbpf-tools runs without it: {p}");
    }
    // Start each setup once: whatever cannot start is left out (with the reason).
    for setup in SETUPS {
        if problems.contains_key(&setup) {
            continue;
        }
        check_interrupted()?;
        let result = start(&mut ctx, setup).and_then(|r| finish(&mut ctx, r));
        if let Err(e) = result {
            check_interrupted()?;
            log!("{} cannot run: {e:#}", setup.name());
            problems.insert(setup, format!("{e:#}"));
        }
    }
    let setups: Vec<Setup> = SETUPS
        .into_iter()
        .filter(|s| !problems.contains_key(s))
        .collect();
    log!(
        "setups: {}",
        setups
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Warm-up (page cache, git's index): each workload once, not recorded.
    for &w in &workloads {
        run_timed(
            &mut ctx.workload_command(Setup::None, w),
            Duration::from_secs(600),
        )
        .with_context(|| format!("warm-up of {} failed", w.name()))?;
    }

    let mut samples = Vec::new();
    for round in 1..=params.rounds {
        // Each round starts one setup further on, so no setup is always first
        // (or always right after the same other one).
        let mut order = setups.clone();
        order.rotate_left((round as usize - 1) % setups.len().max(1));
        for &w in &workloads {
            for &setup in &order {
                check_interrupted()?;
                let sample = measure(&mut ctx, setup, w, round).with_context(|| {
                    format!("{} under {} (round {round})", w.name(), setup.name())
                })?;
                samples.push(sample);
                sleep(Duration::from_millis(100))?;
            }
        }
        log!(
            "round {round}/{} done ({:.0} s so far)",
            params.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    if !opts.only.is_empty() {
        let results = json!({
            "schema": 1,
            "quick": opts.quick,
            "machine": machine(&guard),
            "duration_seconds": started.elapsed().as_secs_f64(),
            "rounds": params.rounds,
            "workloads": workloads.iter().map(|w| json!({
                "name": w.name(),
                "description": w.description(&params),
            })).collect::<Vec<_>>(),
            "samples": samples,
            "summary": summarize(&samples, &setups),
        });
        let path = out_dir.join("bench-only-results.json");
        fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
        log!("wrote {}", path.display());
        print_summary(&results);
        return Ok(());
    }

    log!("capacity");
    let capacity = capacity(&mut ctx).unwrap_or_else(|e| {
        log!("capacity failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    log!("kill latency");
    let kill = kill_latency(&mut ctx).unwrap_or_else(|e| {
        log!("kill latency failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    log!("in-kernel cost of guard's programs");
    let costs = program_costs(&mut ctx, false).unwrap_or_else(|e| {
        log!("program costs not measured: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    log!("what policy features cost an open");
    let features = feature_costs(&mut ctx).unwrap_or_else(|e| {
        log!("feature costs not measured: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    log!("storm ({} s at the maximum)", params.storm_secs);
    let storm = storm::storm(&mut ctx).unwrap_or_else(|e| {
        log!("storm phase failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    // The export at the capacity's best zero-loss rate (the load the daemon carries
    // without loss), else at the capacity's starting rate.
    let rate = capacity["max_zero_loss"]["target_opens_per_second"]
        .as_f64()
        .unwrap_or(params.cap_start_rate);
    log!("export (at {rate:.0} opens/s)");
    let export = export::export(&mut ctx, rate).unwrap_or_else(|e| {
        log!("export phase failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;
    let fleet = fleet::fleet(opts.quick).unwrap_or_else(|e| {
        log!("fleet phase failed: {e:#}");
        json!({ "error": format!("{e:#}") })
    });
    check_interrupted()?;

    let summary = summarize(&samples, &setups);
    let targets = targets(&summary, &samples, &capacity);
    let results = json!({
        "schema": 1,
        "quick": opts.quick,
        "machine": machine(&guard),
        "duration_seconds": started.elapsed().as_secs_f64(),
        "params": {
            "rounds": params.rounds,
            "open_iterations": params.open_n,
            "forkexec_iterations": params.forkexec_n,
            "connect_iterations": params.connect_n,
            "git_iterations": params.git_n,
            "build_files": params.build_n,
            "cargo_builds": params.cargo_n,
            "npm_runs": params.npm_n,
            "repo_files": params.files,
            "repo_changed_files": params.changed,
            "capacity_step_seconds": params.cap_step_secs,
            "capacity_generator_processes": params.cap_procs,
            "kill_runs": params.kill_runs,
            "storm_seconds": params.storm_secs,
            "workload_account": format!("{} ({})", ctx.account, ctx.ids()),
            "micro_workloads_pinned_to_cpu": ctx.pin_cpu,
        },
        "setups": SETUPS.iter().map(|s| json!({
            "name": s.name(),
            "description": s.description(),
            "available": !problems.contains_key(s),
            "problem": problems.get(s),
        })).collect::<Vec<_>>(),
        "tcpconnect_problem": ctx.tcpconnect_problem,
        "workloads": WORKLOADS.iter().map(|w| json!({
            "name": w.name(),
            "description": w.description(&params),
        })).collect::<Vec<_>>(),
        "samples": samples,
        "summary": summary,
        "capacity": capacity,
        "kill_latency": kill,
        "program_costs": costs,
        "feature_costs": features,
        "storm": storm,
        "export": export,
        "fleet": fleet,
        "targets": targets,
    });
    let json_path = out_dir.join("bench-results.json");
    fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    log!("wrote {}", json_path.display());
    let md_path = out_dir.join("BENCHMARKS.md");
    write_markdown(&md_path, &results)?;
    log!("wrote {}", md_path.display());
    if !opts.no_chart {
        let png = out_dir.join("bench-ratios.png");
        match chart(&json_path, &png) {
            Ok(()) => log!("wrote {}", png.display()),
            Err(e) => log!("no chart: {e:#}"),
        }
    }
    print_summary(&results);
    log!(
        "summary: benchmarks finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Debian's Python HTTP server serving `root` on a loopback port of its choosing
/// (read from what it prints), stopped when dropped.
fn http_server(dir: &Path, root: &Path) -> Result<(process::Proc, u16)> {
    let out = dir.join("http-server.log");
    let mut server = process::Proc::spawn(
        "http.server",
        Command::new("/usr/bin/python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .arg("0")
            .stdout(fs::File::create(&out)?)
            .stderr(std::process::Stdio::null()),
        Some(&out),
    )?;
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let port = || -> Option<u16> {
        let text = fs::read_to_string(&out).ok()?;
        text.split(" port ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    server.wait_ready(Duration::from_secs(30), || port().is_some())?;
    Ok((server, port().context("http.server printed no port")?))
}
