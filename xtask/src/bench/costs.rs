//! Where the time goes: the in-kernel cost of guard's programs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::ctx::Ctx;
use super::guard::start_guard;
use super::process::which;
use super::process::{check_interrupted, run_timed};
use super::setups::{Setup, Workload};
use crate::util::{self, log};

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns on the kernel's BPF run-time statistics; restores the setting on drop.
pub(super) struct BpfStats(String);

impl BpfStats {
    pub(super) fn enable() -> Result<Self> {
        let prev =
            fs::read_to_string(BPF_STATS).with_context(|| format!("cannot read {BPF_STATS}"))?;
        fs::write(BPF_STATS, "1").with_context(|| format!("cannot write {BPF_STATS}"))?;
        Ok(Self(prev.trim().to_owned()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS, &self.0) {
            log!("warning: cannot restore {BPF_STATS}: {e}");
        }
    }
}

/// A loaded BPF program, from `bpftool prog show`.
pub(super) struct BpfProg {
    name: String,
    /// Its program type (`tracepoint`, `lsm`, `cgroup_skb`, …).
    kind: String,
    run_time_ns: u64,
    run_cnt: u64,
    pids: Vec<u64>,
    /// Its size after the kernel's rewriting, in instructions.
    xlated_insns: Option<u64>,
    /// Its size once JIT-compiled, in bytes.
    jited_bytes: Option<u64>,
    /// The instructions the verifier processed to accept it (Linux 5.16 and later).
    verified_insns: Option<u64>,
}

/// The instructions the verifier processed for each loaded program, by id (the
/// kernel's `bpf_prog_info.verified_insns`, read with aya: Debian's bpftool does not
/// print it).
fn verified_insns() -> BTreeMap<u64, u64> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| {
            Some((
                u64::from(p.id()),
                u64::from(p.verified_instruction_count()?),
            ))
        })
        .collect()
}

/// Loaded BPF programs by id.
pub(super) fn bpf_programs() -> Result<BTreeMap<u64, BpfProg>> {
    let out = util::stdout_of(Command::new("bpftool").args(["prog", "show", "--json"]))?;
    let v: Value =
        serde_json::from_str(&out).context("bpftool printed something that is not JSON")?;
    let verified = verified_insns();
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let pids = p["pids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["pid"].as_u64())
                .collect();
            let id = p["id"].as_u64()?;
            Some((
                id,
                BpfProg {
                    name: p["name"].as_str().unwrap_or("?").to_owned(),
                    kind: p["type"].as_str().unwrap_or("?").to_owned(),
                    run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                    run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
                    pids,
                    xlated_insns: p["bytes_xlated"].as_u64().map(|b| b / 8),
                    jited_bytes: p["bytes_jited"].as_u64(),
                    verified_insns: p["verified_insns"]
                        .as_u64()
                        .or_else(|| verified.get(&id).copied()),
                },
            ))
        })
        .collect())
}

/// Where the time goes: the kernel's own run-time statistics of guard's programs
/// (`kernel.bpf_stats_enabled`, on only for this short phase, since it adds to every
/// program run) while the workloads run outside and inside a session; with
/// `micro_only`, the micro workloads alone (no git, gcc, cargo or npm).
pub(super) fn program_costs(ctx: &mut Ctx, micro_only: bool) -> Result<Value> {
    if which("bpftool").is_none() {
        bail!("bpftool not found (Debian package bpftool)");
    }
    let stats = BpfStats::enable()?;
    let mut rows = Vec::new();
    let mut programs = Vec::new();
    let policy = ctx.log_policy.clone();
    for floor in [true, false] {
        let setups: &[Setup] = if floor {
            &[Setup::Floor]
        } else {
            &[Setup::GuardOutside, Setup::GuardInside]
        };
        let p = &ctx.params;
        let workloads = [
            (Workload::Open, (p.open_n / 4).max(1000)),
            (Workload::Files, (p.open_n / 4).max(1000)),
            (Workload::ForkExec, (p.forkexec_n / 4).max(50)),
            (Workload::Connect, (p.connect_n / 4).max(1000)),
            (Workload::Unix, (p.unix_n / 4).max(1000)),
            (Workload::Dns, (p.dns_n / 4).max(500)),
            (Workload::Real, 1),
            (Workload::Build, p.build_n),
            (Workload::Fetch, p.fetch_n),
            (Workload::Cargo, 1),
            (Workload::Npm, 1),
            (Workload::Codex, 1),
        ];
        let workloads: Vec<(Workload, u64)> = workloads
            .into_iter()
            .filter(|(w, _)| w.micro() || !micro_only)
            .collect();
        let (found, loaded) =
            measure(ctx, "costs", &policy, floor, Some(IDLE), &workloads, setups)?;
        rows.extend(found);
        if !floor {
            programs = loaded;
        }
    }
    drop(stats);
    Ok(json!({ "rows": rows, "programs": programs }))
}

/// The programs guard's daemon (`pid`) loaded, by name: type, size (instructions after
/// the kernel's rewriting, JIT-compiled bytes) and the instructions the verifier
/// processed to accept each.
fn loaded(pid: u64, before: &[u64]) -> Result<Vec<Value>> {
    let all = bpf_programs()?;
    let mut out: Vec<Value> = ours(&all, pid, before)
        .into_iter()
        .filter_map(|id| all.get(&id))
        .map(|p| {
            json!({
                "program": p.name,
                "type": p.kind,
                "xlated_insns": p.xlated_insns,
                "jited_bytes": p.jited_bytes,
                "verified_insns": p.verified_insns,
            })
        })
        .collect();
    out.sort_by(|a, b| a["program"].as_str().cmp(&b["program"].as_str()));
    Ok(out)
}

/// How long the programs' cost at idle is watched: the host's own background (the
/// bench's workloads are not running; guard's daemon is, with no session).
const IDLE: Duration = Duration::from_secs(10);

/// Starts guard (or the floor's empty programs) on `policy`; with `idle`, watches
/// its programs for that long with nothing running (rows of workload `idle`); runs
/// `workloads` under `setups`, stops it. Returns the run-time statistics of its
/// programs (see [`program_rows`]) and the programs it loaded (see [`loaded`]).
fn measure(
    ctx: &mut Ctx,
    phase: &str,
    policy: &Path,
    floor: bool,
    idle: Option<Duration>,
    workloads: &[(Workload, u64)],
    setups: &[Setup],
) -> Result<(Vec<Value>, Vec<Value>)> {
    let before: Vec<u64> = bpf_programs()?.into_keys().collect();
    let events = ctx.next_file(phase, "jsonl");
    let mut daemon = start_guard(ctx, policy, floor, &events)?;
    let pid = u64::from(daemon.pid());
    let mut rows = Vec::new();
    let result = loaded(pid, &before).and_then(|programs| {
        idle.map_or(Ok(()), |d| idle_rows(pid, &before, floor, d, &mut rows))
            .and_then(|()| program_rows(ctx, pid, &before, workloads, setups, &mut rows))
            .map(|()| programs)
    });
    daemon.stop(libc::SIGTERM, Duration::from_secs(15));
    let _ = fs::remove_file(&events);
    result.map(|programs| (rows, programs))
}

/// Policy features that cost an open inside a session, each added to the ones
/// before it on top of the log-only policy: (name, rules; `{dir}` is the bench
/// directory).
const FEATURES: [(&str, &str); 4] = [
    ("no kernel rule (log only)", ""),
    (
        "path rules only",
        "[[rule]]\nid = \"by-path\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{dir}/protected/*.key\"]\naction = \"kill\"\n",
    ),
    (
        "+ identity (a rule on a concrete directory)",
        "[[rule]]\nid = \"by-identity\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{dir}/protected/**\"]\naction = \"kill\"\n",
    ),
    (
        "+ identity + taint (a secret log rule)",
        "[[rule]]\nid = \"secret\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{dir}/cred.env\", \"*.pem\"]\nsecret = true\naction = \"log\"\n",
    ),
];

/// What policy features cost an open inside a session: the kernel's run time of
/// `sys_exit_open` per run, for the `files` workload in a session (every open
/// judged and recorded, none counted as a repeat),
/// under policies that add path rules, identity entries (every open walks its
/// file's directories to the root) and a secret `log` rule (the taint check). The
/// open target matches none of the rules, the worst case: every check runs to its
/// end.
pub(super) fn feature_costs(ctx: &mut Ctx) -> Result<Value> {
    if which("bpftool").is_none() {
        bail!("bpftool not found (Debian package bpftool)");
    }
    let base = fs::read_to_string(&ctx.log_policy).context("cannot read the log-only policy")?;
    fs::create_dir_all(ctx.dir.join("protected")).context("cannot make protected/")?;
    fs::write(ctx.dir.join("cred.env"), "TOKEN=bench\n").context("cannot write cred.env")?;
    let stats = BpfStats::enable()?;
    let n = (ctx.params.open_n / 4).max(1000);
    let mut rows = Vec::new();
    let dir = ctx.dir.display().to_string();
    let mut text = base;
    for (name, rules) in FEATURES {
        check_interrupted()?;
        text = format!("{text}\n{}", rules.replace("{dir}", &dir));
        let policy = ctx.next_file("features", "toml");
        fs::write(&policy, &text)?;
        let (found, _) = measure(
            ctx,
            "features",
            &policy,
            false,
            None,
            &[(Workload::Files, n)],
            &[Setup::GuardInside],
        )?;
        for mut row in found {
            // The checks run at the open's exit; its entry only notes the call.
            if row["program"] == "sys_exit_open" {
                row["policy"] = json!(name);
                rows.push(row);
            }
        }
    }
    drop(stats);
    Ok(json!({ "rows": rows }))
}

/// The daemon's programs among `all`: those bpftool says `pid` holds, else those
/// loaded since `before`.
fn ours(all: &BTreeMap<u64, BpfProg>, pid: u64, before: &[u64]) -> Vec<u64> {
    let by_pid: Vec<u64> = all
        .iter()
        .filter(|(_, p)| p.pids.contains(&pid))
        .map(|(id, _)| *id)
        .collect();
    if by_pid.is_empty() {
        all.keys()
            .filter(|id| !before.contains(id))
            .copied()
            .collect()
    } else {
        by_pid
    }
}

/// The daemon's programs that ran between the snapshots `s0` and `s1`: (name, runs,
/// nanoseconds).
pub(super) fn ran(
    s0: &BTreeMap<u64, BpfProg>,
    s1: &BTreeMap<u64, BpfProg>,
    pid: u64,
    before: &[u64],
) -> Vec<(String, u64, u64)> {
    ours(s1, pid, before)
        .into_iter()
        .filter_map(|id| {
            let (a, b) = (s0.get(&id)?, s1.get(&id)?);
            let runs = b.run_cnt.saturating_sub(a.run_cnt);
            (runs > 0).then(|| {
                (
                    b.name.clone(),
                    runs,
                    b.run_time_ns.saturating_sub(a.run_time_ns),
                )
            })
        })
        .collect()
}

/// The run-time statistics of the daemon's programs over `window` with no workload
/// running (workload `idle`, setup `floor` or `guard`: no session exists), added to
/// `rows` with their runs per second. The window is the measurement itself.
fn idle_rows(
    pid: u64,
    before: &[u64],
    floor: bool,
    window: Duration,
    rows: &mut Vec<Value>,
) -> Result<()> {
    check_interrupted()?;
    let s0 = bpf_programs()?;
    std::thread::sleep(window);
    let s1 = bpf_programs()?;
    for (program, runs, ns) in ran(&s0, &s1, pid, before) {
        rows.push(json!({
            "workload": "idle",
            "setup": if floor { "floor" } else { "guard" },
            "program": program,
            "runs": runs,
            "ns_per_run": ns as f64 / runs as f64,
            "runs_per_s": runs as f64 / window.as_secs_f64(),
        }));
    }
    Ok(())
}

/// Runs `workloads` (with their iteration counts) under `setups` and adds the
/// run-time statistics of the daemon's programs (those bpftool says `pid` holds,
/// else those loaded since `before`) to `rows`.
fn program_rows(
    ctx: &Ctx,
    pid: u64,
    before: &[u64],
    workloads: &[(Workload, u64)],
    setups: &[Setup],
    rows: &mut Vec<Value>,
) -> Result<()> {
    for &(w, n) in workloads {
        for &setup in setups {
            check_interrupted()?;
            let s0 = bpf_programs()?;
            run_timed(
                &mut ctx.workload_command_n(setup, w, n),
                Duration::from_secs(600),
            )?;
            let s1 = bpf_programs()?;
            for (program, runs, ns) in ran(&s0, &s1, pid, before) {
                rows.push(json!({
                    "workload": w.name(),
                    "iterations": n,
                    "setup": setup.name(),
                    "program": program,
                    "runs": runs,
                    "ns_per_run": ns as f64 / runs as f64,
                    "ns_per_iteration": ns as f64 / n as f64,
                }));
            }
        }
    }
    Ok(())
}
