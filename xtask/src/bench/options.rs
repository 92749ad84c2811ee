//! The command-line options and the sizes of a run they imply.

use std::path::PathBuf;

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Options {
    /// Smoke run: 2 rounds, fewer iterations, short capacity steps; results go to
    /// target/bench-quick unless --out is given.
    #[arg(long)]
    pub quick: bool,
    /// Rounds, each running every workload under every setup once (default 9; 2 with
    /// --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Use the existing release binary (target/release/guard) instead of building it.
    #[arg(long)]
    pub no_build: bool,
    /// Do not apt-get install missing peers (auditd, libbpf-tools, bpftrace).
    #[arg(long)]
    pub no_install: bool,
    /// Skip the PNG chart (it needs a Python venv with matplotlib, made on first use).
    #[arg(long)]
    pub no_chart: bool,
    /// Where BENCHMARKS.md, bench-results.json and bench-ratios.png go
    /// (default: the workspace root; target/bench-quick with --quick).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run only the storm phase (60 s, 10 s with --quick); its results go to
    /// storm-results.json and its section is printed, BENCHMARKS.md is left alone.
    #[arg(long)]
    pub storm_only: bool,
    /// Run only the export phase (guard exporting to a trial fleet server, at the
    /// capacity's starting rate); its results go to export-results.json and its
    /// section is printed, BENCHMARKS.md is left alone.
    #[arg(long, conflicts_with = "storm_only")]
    pub export_only: bool,
    /// Run only the fleet phase (one replica ingesting from 1,000 hosts, then the
    /// dashboard with a million sessions stored, on PostgreSQL and on SQLite;
    /// 100,000 with --quick); its results go to fleet-results.json and
    /// its section is printed, BENCHMARKS.md is left alone.
    #[arg(long, conflicts_with_all = ["storm_only", "export_only"])]
    pub fleet_only: bool,
    /// Run only the per-program costs (the micro workloads and the policy features,
    /// `--quick` sizes) here and in Debian's 6.1 and 6.12 kernels under QEMU (the
    /// kernel matrix of `cargo xtask vm-test`, software emulation): each kernel's
    /// figures relative to its own floor. Results go to bench-vm-results.json and
    /// BENCHMARKS.md's section on the kernels (the rest of it is left alone).
    #[arg(long, conflicts_with_all = ["storm_only", "export_only", "fleet_only"])]
    pub vm: bool,
    /// Run only the scale phase (~90 s): what guard costs as the work grows (1 to 100
    /// concurrent sessions, policies of 10 to 1,000 rules, 10,000 to 1,000,000 files
    /// under a protected directory, 1 to 1,000 destinations; smaller with --quick).
    /// Results go to scale-results.json, BENCHMARKS.md's section on scale and
    /// bench-scale.svg (the rest of BENCHMARKS.md is left alone).
    #[arg(long, conflicts_with_all = ["storm_only", "export_only", "fleet_only", "vm"])]
    pub scale: bool,
    /// With `--vm`: only the kernels of this series (repeatable: `5.10`, `6.1`,
    /// `6.12`), and this machine's; the other kernels keep their columns from the
    /// results file of an earlier run (each kernel is read against its own floor).
    #[arg(long = "series", requires = "vm")]
    pub series: Vec<String>,
    /// The per-program costs only, written to costs-results.json (what `--vm` runs
    /// in each kernel).
    #[arg(long, hide = true, conflicts_with = "vm")]
    pub costs_only: bool,
    /// Run only these workloads (repeatable: open, files, fork-exec, connect, unix, dns, fetch,
    /// real, build, cargo, npm, codex, bulk) under nothing, the floor and guard (outside, inside a session, enforce):
    /// the timed rounds only, no capacity, kill latency, costs or storm. The summary
    /// is printed and written to bench-only-results.json; BENCHMARKS.md is left alone.
    #[arg(long = "workload", value_name = "NAME")]
    pub only: Vec<String>,
    /// The codex workload's Codex declares its calls through guard's hooks
    /// (`guard hook codex` for PreToolUse and PostToolUse, at the daemon's hook
    /// socket), as docs/agents.md installs them: what the tie-in of calls costs
    /// (compare a run with it to one without).
    #[arg(long)]
    pub codex_hooks: bool,
}

/// Sizes of a run.
#[derive(Debug, Clone)]
pub(super) struct Params {
    pub(super) rounds: u32,
    pub(super) open_n: u64,
    pub(super) forkexec_n: u64,
    pub(super) connect_n: u64,
    pub(super) git_n: u64,
    pub(super) build_n: u64,
    /// Fetch-and-compile steps of the fetch workload.
    pub(super) fetch_n: u64,
    /// Clean builds the cargo workload does.
    pub(super) cargo_n: u64,
    /// `npm ci && npm test` runs of the npm workload.
    pub(super) npm_n: u64,
    /// Codex sessions the codex workload runs.
    pub(super) codex_n: u64,
    /// MiB the bulk workload uploads.
    pub(super) bulk_mib: u64,
    /// Datagrams the unix workload sends.
    pub(super) unix_n: u64,
    /// DNS queries the dns workload makes.
    pub(super) dns_n: u64,
    pub(super) files: u64,
    pub(super) changed: u64,
    pub(super) cap_step_secs: u64,
    pub(super) cap_start_rate: f64,
    pub(super) cap_max_steps: u32,
    pub(super) cap_procs: u32,
    pub(super) kill_runs: u32,
    /// Seconds of the storm phase.
    pub(super) storm_secs: u64,
}

impl Params {
    pub(super) fn new(opts: &Options) -> Self {
        let (rounds, p) = if opts.quick {
            (
                2,
                Self {
                    rounds: 0,
                    open_n: 50_000,
                    forkexec_n: 200,
                    connect_n: 5_000,
                    git_n: 1,
                    build_n: 2,
                    fetch_n: 4,
                    cargo_n: 1,
                    npm_n: 1,
                    codex_n: 1,
                    bulk_mib: 1024,
                    unix_n: 5_000,
                    dns_n: 2_000,
                    files: 5_000,
                    changed: 1_000,
                    cap_step_secs: 2,
                    cap_start_rate: 100_000.0,
                    cap_max_steps: 6,
                    cap_procs: 2,
                    kill_runs: 10,
                    storm_secs: 10,
                },
            )
        } else {
            (
                9,
                Self {
                    rounds: 0,
                    open_n: 200_000,
                    forkexec_n: 1_000,
                    connect_n: 20_000,
                    git_n: 6,
                    build_n: 5,
                    fetch_n: 20,
                    cargo_n: 1,
                    npm_n: 1,
                    codex_n: 1,
                    bulk_mib: 4096,
                    unix_n: 20_000,
                    dns_n: 10_000,
                    files: 5_000,
                    changed: 1_000,
                    cap_step_secs: 4,
                    cap_start_rate: 50_000.0,
                    cap_max_steps: 12,
                    cap_procs: 2,
                    kill_runs: 50,
                    storm_secs: 60,
                },
            )
        };
        Self {
            rounds: opts.rounds.unwrap_or(rounds),
            ..p
        }
    }
}
