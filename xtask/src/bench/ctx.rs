//! What every measurement needs, and the workload command as a setup runs it.

use std::path::PathBuf;
use std::process::Command;

use super::agent_day::AgentDay;
use super::codex::{self, CodexDay};
use super::options::Params;
use super::process::path_str;
use super::setups::{self, Setup, Workload};

/// What every measurement needs.
pub(super) struct Ctx {
    pub(super) guard: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) params: Params,
    pub(super) workload_bin: PathBuf,
    /// The account the workloads run as (an existing one no process uses).
    pub(super) account: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// CPU the micro workloads are pinned to (None on one CPU).
    pub(super) pin_cpu: Option<usize>,
    pub(super) agent: String,
    pub(super) port: u16,
    /// A loopback listener that reads and discards (the bulk workload's sink).
    pub(super) sink_port: u16,
    pub(super) open_target: PathBuf,
    pub(super) repo: PathBuf,
    pub(super) build_dir: PathBuf,
    /// The fetch workload's working directory (the build's sources are served by
    /// HTTP on `http_port`; names resolve per `resolver_etc`'s resolv.conf).
    pub(super) fetch_dir: PathBuf,
    pub(super) http_port: u16,
    pub(super) resolver_etc: PathBuf,
    /// The cargo and npm workloads' crate, toolchain and project.
    pub(super) agent_day: AgentDay,
    /// The codex workload's Codex and scripted model.
    pub(super) codex: CodexDay,
    pub(super) home: PathBuf,
    pub(super) log_policy: PathBuf,
    pub(super) socket: PathBuf,
    pub(super) bpftrace_script: PathBuf,
    pub(super) audit_dir: PathBuf,
    /// Why tcpconnect cannot run, if it cannot.
    pub(super) tcpconnect_problem: Option<String>,
    /// Files read before each real-workload run (git and its libraries).
    pub(super) warm_files: Vec<PathBuf>,
    /// Pids of the daemons and tracers this bench runs (to tell other guards apart).
    pub(super) own_pids: Vec<u32>,
    pub(super) counter: u64,
}

impl Ctx {
    /// Arguments of the workload program for `n` iterations.
    pub(super) fn workload_args(&self, w: Workload, n: u64) -> Vec<String> {
        let n = n.to_string();
        let mut a = vec![self.ids()];
        match w {
            Workload::Open => a.extend(["open".into(), n, path_str(&self.open_target)]),
            Workload::Files => a.extend(["files".into(), n, path_str(&self.open_target)]),
            Workload::ForkExec => a.extend(["forkexec".into(), n]),
            Workload::Connect => a.extend(["connect".into(), n, self.port.to_string()]),
            Workload::Real => a.extend(["git".into(), n, path_str(&self.repo)]),
            Workload::Build => a.extend(["build".into(), n, path_str(&self.build_dir)]),
            Workload::Fetch => a.extend([
                "fetch".into(),
                n,
                path_str(&self.fetch_dir),
                self.http_port.to_string(),
                self.params.build_n.to_string(),
                path_str(&self.resolver_etc),
            ]),
            Workload::Cargo => a.extend([
                "cargo".into(),
                n,
                path_str(&self.agent_day.crate_dir),
                path_str(&self.agent_day.toolchain),
            ]),
            Workload::Npm => a.extend(["npm".into(), n, path_str(&self.agent_day.npm_dir)]),
            Workload::Codex => {
                a.extend(["codex".into(), n]);
                a.extend(codex::args(&self.codex, &self.repo));
            }
            Workload::Bulk => a.extend(["bulk".into(), n, self.sink_port.to_string()]),
            Workload::Unix => a.extend(["unix".into(), n, path_str(&self.home)]),
            Workload::Dns => a.extend(["dns".into(), n, setups::DNS_SERVER.into()]),
        }
        a
    }

    pub(super) fn ids(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }

    pub(super) fn next_file(&mut self, stem: &str, ext: &str) -> PathBuf {
        self.counter += 1;
        self.dir.join(format!("{stem}-{}.{ext}", self.counter))
    }

    /// The workload command, as a setup runs it.
    pub(super) fn workload_command(&self, setup: Setup, w: Workload) -> Command {
        self.workload_command_n(setup, w, w.size(&self.params))
    }

    /// The workload command with `n` iterations.
    pub(super) fn workload_command_n(&self, setup: Setup, w: Workload, n: u64) -> Command {
        let mut cmd = self.program_command(setup.in_session(), self.workload_args(w, n));
        if w == Workload::Codex {
            cmd.env("CODEX_HOME", &self.codex.home);
        }
        // The micro workloads run on one CPU: their parent/child and client/server
        // wake-ups then do not depend on waking an idle virtual CPU. The real
        // workloads (git, gcc, cargo, npm, Codex) run where the scheduler puts them.
        if let (Some(cpu), true) = (self.pin_cpu, w.micro()) {
            cmd.env("GBENCH_CPU", cpu.to_string());
        }
        cmd
    }

    /// The workload program with `args` (its uid first), in a session of its own
    /// (`guard run`) or not, in the workloads' environment.
    pub(super) fn program_command(&self, in_session: bool, args: Vec<String>) -> Command {
        let mut cmd = if in_session {
            let mut c = Command::new(&self.guard);
            c.arg("run")
                .arg("--socket")
                .arg(&self.socket)
                .arg("--")
                .arg(&self.workload_bin);
            c
        } else {
            Command::new(&self.workload_bin)
        };
        cmd.args(args);
        self.workload_env(&mut cmd);
        cmd
    }

    pub(super) fn workload_env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(&self.dir);
    }
}
