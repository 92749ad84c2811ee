//! The auditd peer: the kernel audit configuration it needs, and restoring it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use anyhow::{Context as _, Result};

use super::ctx::Ctx;
use super::process::tail;
use super::process::which;
use crate::util::{self, log};

/// Kernel audit status from `auditctl -s`.
pub(super) fn audit_status() -> Result<BTreeMap<String, String>> {
    let out = util::stdout_of(Command::new("auditctl").arg("-s"))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(2, ' ');
            Some((it.next()?.to_owned(), it.next()?.trim().to_owned()))
        })
        .collect())
}

pub(super) fn audit_u64(s: &BTreeMap<String, String>, key: &str) -> u64 {
    s.get(key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(super) fn auditctl(args: &[&str]) -> Result<()> {
    util::stdout_of(Command::new("auditctl").args(args)).map(|_| ())
}

/// The syscalls the auditd setup logs: those guard reports (fork/exec/exit,
/// open*, connect, send*).
pub(super) const AUDIT_SYSCALLS: &str = "open,openat,openat2,creat,execve,execveat,connect,sendto,sendmsg,\
                              sendmmsg,clone,clone3,fork,vfork,exit_group";

/// Owns the kernel audit configuration while the bench runs; restores it on drop.
///
/// Once audit has been enabled, the kernel gives every new task an audit context
/// (a syscall slow path) until reboot, even with audit disabled again. So that the
/// other setups measure a kernel as if audit had never been on, a `-a never,task`
/// rule is in place whenever the auditd setup is not running: new tasks (every
/// workload) then get no audit context.
pub(super) struct AuditState {
    enabled: u64,
    backlog_limit: u64,
    backlog_wait_time: u64,
}

impl AuditState {
    pub(super) fn take() -> Result<Self> {
        let s = audit_status()?;
        let state = Self {
            enabled: audit_u64(&s, "enabled"),
            backlog_limit: audit_u64(&s, "backlog_limit"),
            backlog_wait_time: audit_u64(&s, "backlog_wait_time"),
        };
        Self::quiet()?;
        Ok(state)
    }

    /// No rules but `-a never,task`; audit disabled.
    pub(super) fn quiet() -> Result<()> {
        auditctl(&["-e", "0"])?;
        auditctl(&["-D"])?;
        auditctl(&["-a", "never,task"])
    }
}

impl Drop for AuditState {
    fn drop(&mut self) {
        let enabled = self.enabled.to_string();
        let backlog = self.backlog_limit.to_string();
        let wait = self.backlog_wait_time.to_string();
        for args in [
            vec!["-D"],
            vec!["-e", enabled.as_str()],
            vec!["-b", backlog.as_str()],
            vec!["--backlog_wait_time", wait.as_str()],
        ] {
            if let Err(e) = auditctl(&args) {
                log!(
                    "warning: cleanup `auditctl {}` failed: {e:#}",
                    args.join(" ")
                );
            }
        }
    }
}

/// Why the auditd setup cannot run, if it cannot.
pub(super) fn auditd_problem() -> Option<String> {
    for bin in ["auditd", "auditctl"] {
        if which(bin).is_none() {
            return Some(format!("{bin} not found (Debian package auditd)"));
        }
    }
    let status = match audit_status() {
        Ok(s) => s,
        Err(e) => return Some(format!("`auditctl -s` failed: {e:#}")),
    };
    let pid = audit_u64(&status, "pid");
    if pid != 0 {
        return Some(format!(
            "an audit daemon (pid {pid}) is already running; stop it (e.g. `systemctl stop auditd`) \
             to include auditd"
        ));
    }
    if audit_u64(&status, "enabled") == 2 {
        return Some("the audit configuration is locked (enabled 2)".into());
    }
    match util::stdout_of(Command::new("auditctl").arg("-l")) {
        Ok(rules) if rules.trim() == "No rules" || rules.trim().is_empty() => None,
        Ok(rules) => Some(format!(
            "audit rules are loaded on this host; the bench does not touch them: {}",
            tail(&rules, 300)
        )),
        Err(e) => Some(format!("`auditctl -l` failed: {e:#}")),
    }
}

pub(super) fn write_auditd_conf(ctx: &Ctx) -> Result<()> {
    let base = fs::read_to_string("/etc/audit/auditd.conf")
        .context("cannot read /etc/audit/auditd.conf")?;
    let log_file = ctx.audit_dir.join("audit.log");
    let mut conf = String::new();
    for line in base.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "log_file" => {
                let _ = writeln!(conf, "log_file = {}", log_file.display());
            }
            // One file per measurement, counted afterwards: no rotation.
            "max_log_file_action" => conf.push_str("max_log_file_action = IGNORE\n"),
            _ => {
                conf.push_str(line);
                conf.push('\n');
            }
        }
    }
    fs::create_dir_all(&ctx.audit_dir)?;
    fs::set_permissions(&ctx.audit_dir, fs::Permissions::from_mode(0o750))?;
    let path = ctx.audit_dir.join("auditd.conf");
    fs::write(&path, conf)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
    Ok(())
}
