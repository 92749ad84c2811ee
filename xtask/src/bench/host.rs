//! The host: the account the workloads run as, what else runs, what the machine is.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Value, json};

use super::peers::dpkg_version;
use crate::util;

/// Uids of running processes (real, effective, saved, fs).
fn uids_in_use() -> Vec<u32> {
    let Ok(d) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut uids: Vec<u32> = d
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .filter_map(|u| u.parse::<u32>().ok())
                    .collect::<Vec<_>>()
            })
        })
        .flatten()
        .collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// An existing account that no process runs as: (name, uid, gid).
///
/// The workloads run as that account so the peers can filter them by uid. It must
/// exist: auditd's default (ENRICHED) log format looks every uid up, and a uid
/// without an account costs it a failed NSS lookup per record (through
/// nss-systemd), which slows auditd down by an order of magnitude.
pub(super) fn pick_account() -> Result<(String, u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    let in_use = uids_in_use();
    let accounts: Vec<(String, u32, u32)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((
                (*f.first()?).to_owned(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect();
    let preferred = [
        "games", "news", "uucp", "irc", "gnats", "list", "backup", "proxy", "lp", "man",
    ];
    preferred
        .iter()
        .filter_map(|name| accounts.iter().find(|a| a.0 == *name))
        .chain(accounts.iter().filter(|a| a.1 >= 1000 && a.1 < 65534))
        .find(|a| a.1 != 0 && a.2 != 0 && !in_use.contains(&a.1))
        .cloned()
        .ok_or_else(|| anyhow!("no account in /etc/passwd that no process runs as"))
}

/// Processes named `guard` that are not this bench's (other people's daemons and
/// tests, which add their own hooks to the machine).
pub(super) fn foreign_guards(own: &[u32]) -> u64 {
    let Ok(d) = fs::read_dir("/proc") else {
        return 0;
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| !own.contains(pid))
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "guard")
        })
        .count() as u64
}

pub(super) fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

pub(super) fn machine(guard: &Path) -> Value {
    let first_line = |cmd: &mut Command| {
        util::stdout_of(cmd)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
    };
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned());
    json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "nproc": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "memory_bytes": mem_kb * 1024,
        "cpu": cpu,
        "os": fs::read_to_string("/etc/os-release").ok().and_then(|s| s.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))),
        "date": first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        "guard": first_line(Command::new(guard).arg("--version")),
        "auditd": dpkg_version("auditd"),
        "libbpf_tools": dpkg_version("libbpf-tools"),
        "bpftrace": first_line(Command::new("bpftrace").arg("--version")),
        "gcc": first_line(Command::new("gcc").arg("--version")),
        "git": first_line(Command::new("git").arg("--version")),
    })
}
