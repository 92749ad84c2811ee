//! Starting a setup for one measurement, and stopping it to count what it saw.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::auditd::{AUDIT_SYSCALLS, AuditState, audit_status, audit_u64, auditctl};
use super::ctx::Ctx;
use super::guard::{events_total, guard_idle, lost_sum, start_guard, vm_hwm};
use super::process::{Proc, file_for, has_eventpoll, sleep};
use super::setups::Setup;

/// A setup in place for one measurement.
pub(super) struct Running {
    setup: Setup,
    procs: Vec<Proc>,
    /// Output files of the tracers (or guard's events file), removed after counting.
    outputs: Vec<PathBuf>,
    pub(super) audit_lost0: u64,
}

/// What a setup saw of one workload run.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) events: Option<u64>,
    pub(super) lost: Option<u64>,
    pub(super) daemon_hwm: Option<u64>,
}

pub(super) fn start(ctx: &mut Ctx, setup: Setup) -> Result<Running> {
    let mut r = Running {
        setup,
        procs: Vec::new(),
        outputs: Vec::new(),
        audit_lost0: 0,
    };
    match setup {
        Setup::None => {}
        Setup::Floor => {
            let events = ctx.dir.join("unused");
            let p = start_guard(ctx, Path::new("unused"), true, &events)?;
            r.procs.push(p);
        }
        Setup::GuardOutside | Setup::GuardInside | Setup::GuardEnforce => {
            let events = ctx.next_file("events", "jsonl");
            let policy = if setup == Setup::GuardEnforce {
                PathBuf::from("workstation")
            } else {
                ctx.log_policy.clone()
            };
            r.outputs.push(events.clone());
            let p = start_guard(ctx, &policy, false, &events)?;
            r.procs.push(p);
        }
        Setup::Auditd => {
            let log = ctx.audit_dir.join("audit.log");
            let _ = fs::remove_file(&log);
            r.outputs.push(log);
            auditctl(&["-D"])?;
            auditctl(&["-b", "8192"])?;
            auditctl(&["--backlog_wait_time", "60000"])?;
            let stderr = ctx.next_file("auditd", "err");
            let mut cmd = Command::new("auditd");
            cmd.arg("-n")
                .arg("-c")
                .arg(&ctx.audit_dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file_for(&stderr)?);
            let mut p = Proc::spawn("auditd", &mut cmd, Some(&stderr))?;
            let pid = u64::from(p.pid());
            p.wait_ready(Duration::from_secs(30), || {
                audit_status().is_ok_and(|s| audit_u64(&s, "pid") == pid)
            })?;
            ctx.own_pids.push(p.pid());
            r.procs.push(p);
            let uid = format!("uid={}", ctx.uid);
            auditctl(&[
                "-a",
                "always,exit",
                "-F",
                "arch=b64",
                "-S",
                AUDIT_SYSCALLS,
                "-F",
                &uid,
                "-k",
                "gbench",
            ])?;
            auditctl(&["-e", "1"])?;
            r.audit_lost0 = audit_u64(&audit_status()?, "lost");
        }
        Setup::LibbpfTools => {
            let mut tools = vec!["opensnoop", "execsnoop"];
            if ctx.tcpconnect_problem.is_none() {
                tools.push("tcpconnect");
            }
            let uid = ctx.uid.to_string();
            for tool in tools {
                let out = ctx.next_file(tool, "out");
                let err = ctx.next_file(tool, "err");
                r.outputs.push(out.clone());
                r.outputs.push(err.clone());
                let mut cmd = Command::new(tool);
                cmd.arg("-u")
                    .arg(&uid)
                    .stdin(Stdio::null())
                    .stdout(file_for(&out)?)
                    .stderr(file_for(&err)?);
                let mut p = Proc::spawn(tool, &mut cmd, Some(&err))?;
                let pid = p.pid();
                // libbpf-tools create their perf buffer's epoll after attaching.
                p.wait_ready(Duration::from_secs(30), || has_eventpoll(pid))?;
                ctx.own_pids.push(pid);
                r.procs.push(p);
            }
        }
        Setup::Bpftrace => {
            let out = ctx.next_file("bpftrace", "out");
            let err = ctx.next_file("bpftrace", "err");
            r.outputs.push(out.clone());
            r.outputs.push(err.clone());
            let mut cmd = Command::new("bpftrace");
            cmd.arg(&ctx.bpftrace_script)
                .env("BPFTRACE_STRLEN", "200")
                .stdin(Stdio::null())
                .stdout(file_for(&out)?)
                .stderr(file_for(&err)?);
            let mut p = Proc::spawn("bpftrace", &mut cmd, Some(&err))?;
            p.wait_ready(Duration::from_secs(120), || {
                fs::read_to_string(&out).is_ok_and(|s| s.contains("READY"))
            })?;
            ctx.own_pids.push(p.pid());
            r.procs.push(p);
        }
    }
    Ok(r)
}

fn count_lines(path: &Path, pred: impl Fn(&str) -> bool) -> u64 {
    let Ok(f) = fs::File::open(path) else {
        return 0;
    };
    BufReader::new(f)
        .split(b'\n')
        .map_while(std::result::Result::ok)
        .filter(|l| pred(&String::from_utf8_lossy(l)))
        .count() as u64
}

/// Numbers in lines like "Lost 12 events" (libbpf-tools, bpftrace).
fn lost_from_text(path: &Path) -> u64 {
    let Ok(s) = fs::read_to_string(path) else {
        return 0;
    };
    s.lines()
        .filter(|l| l.to_ascii_lowercase().contains("lost"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
        .sum()
}

/// Stops the setup and reports what it saw.
pub(super) fn finish(ctx: &mut Ctx, mut r: Running) -> Result<Seen> {
    let mut seen = Seen::default();
    match r.setup {
        Setup::None => {}
        Setup::Floor => {
            for p in &mut r.procs {
                p.stop(libc::SIGTERM, Duration::from_secs(15));
            }
        }
        Setup::GuardOutside | Setup::GuardInside | Setup::GuardEnforce => {
            let status = guard_idle(ctx)?;
            seen.events = Some(events_total(&status));
            seen.lost = Some(lost_sum(&status));
            seen.daemon_hwm = r.procs.first().and_then(|p| vm_hwm(p.pid()));
            for p in &mut r.procs {
                p.stop(libc::SIGTERM, Duration::from_secs(15));
            }
        }
        Setup::Auditd => {
            // Let the kernel's queue drain into auditd before stopping it.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if audit_status().is_ok_and(|s| audit_u64(&s, "backlog") == 0) {
                    break;
                }
                sleep(Duration::from_millis(50))?;
            }
            let lost = audit_u64(&audit_status()?, "lost").saturating_sub(r.audit_lost0);
            auditctl(&["-e", "0"])?;
            auditctl(&["-D"])?;
            for p in &mut r.procs {
                p.stop(libc::SIGTERM, Duration::from_secs(15));
            }
            AuditState::quiet()?;
            let log = ctx.audit_dir.join("audit.log");
            seen.events = Some(count_lines(&log, |l| l.starts_with("type=SYSCALL")));
            seen.lost = Some(lost);
        }
        Setup::LibbpfTools => {
            for p in &mut r.procs {
                p.stop(libc::SIGINT, Duration::from_secs(15));
            }
            let mut events = 0;
            let mut lost = 0;
            for o in &r.outputs {
                if o.extension().is_some_and(|e| e == "out") {
                    // Minus the header line.
                    events += count_lines(o, |l| !l.trim().is_empty()).saturating_sub(1);
                } else {
                    lost += lost_from_text(o);
                }
            }
            seen.events = Some(events);
            seen.lost = Some(lost);
        }
        Setup::Bpftrace => {
            for p in &mut r.procs {
                p.stop(libc::SIGINT, Duration::from_secs(15));
            }
            let mut events = 0;
            let mut lost = 0;
            for o in &r.outputs {
                if o.extension().is_some_and(|e| e == "out") {
                    events += count_lines(o, |l| {
                        ["open ", "exec ", "fork ", "exit ", "connect ", "send "]
                            .iter()
                            .any(|k| l.starts_with(k))
                    });
                }
                lost += lost_from_text(o);
            }
            seen.events = Some(events);
            seen.lost = Some(lost);
        }
    }
    for o in &r.outputs {
        let _ = fs::remove_file(o);
    }
    r.procs.clear();
    Ok(seen)
}
