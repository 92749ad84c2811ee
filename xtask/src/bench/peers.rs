//! The peers guard is compared with: installing them, and whether they can run.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{Proc, file_for, has_eventpoll, which};
use crate::util::{self, log};

fn dpkg_installed(package: &str) -> bool {
    util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

pub(super) fn dpkg_version(package: &str) -> Option<String> {
    let out =
        util::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", package])).ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// What the bench installs: the peers it compares guard with, and bpftool, whose
/// `prog show` gives the kernel's per-program statistics (the cost phases).
const PEER_PACKAGES: [&str; 4] = ["auditd", "libbpf-tools", "bpftrace", "bpftool"];

/// apt-get installs the peers that are missing; failures are reported, not fatal.
pub(super) fn install_peers() {
    let missing: Vec<&str> = PEER_PACKAGES
        .into_iter()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        log!("peers: {} present", PEER_PACKAGES.join(", "));
        return;
    }
    if which("apt-get").is_none() {
        log!(
            "warning: apt-get not found; cannot install {}",
            missing.join(" ")
        );
        return;
    }
    log!("peers: installing {}", missing.join(" "));
    let update = util::run(util::apt_get().args(["update", "-qq"]));
    if let Err(e) = update {
        log!("warning: {e:#}");
    }
    let install = util::run(
        util::apt_get()
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    );
    if let Err(e) = install {
        log!("warning: {e:#}");
    }
}

pub(super) const BPFTRACE_SCRIPT: &str = r#"BEGIN { printf("READY\n"); }
tracepoint:sched:sched_process_fork /uid == UID/ { printf("fork %d %s %d\n", pid, comm, args->child_pid); }
tracepoint:sched:sched_process_exec /uid == UID/ { printf("exec %d %s %s\n", pid, comm, str(args->filename)); }
tracepoint:sched:sched_process_exit /uid == UID/ { printf("exit %d %s\n", pid, comm); }
tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_openat2, tracepoint:syscalls:sys_enter_open /uid == UID/ { @path[tid] = args->filename; }
tracepoint:syscalls:sys_enter_creat /uid == UID/ { @path[tid] = args->pathname; }
tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_openat2, tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_creat /@path[tid]/ { printf("open %d %s %s %d\n", pid, comm, str(@path[tid]), args->ret); delete(@path[tid]); }
tracepoint:syscalls:sys_enter_connect /uid == UID/ { @sa[tid] = args->uservaddr; }
tracepoint:syscalls:sys_exit_connect /@sa[tid]/ { $s = (struct sockaddr_in *)@sa[tid]; printf("connect %d %s %s %d %d\n", pid, comm, ntop(2, $s->sin_addr.s_addr), bswap($s->sin_port), args->ret); delete(@sa[tid]); }
tracepoint:syscalls:sys_exit_sendto, tracepoint:syscalls:sys_exit_sendmsg, tracepoint:syscalls:sys_exit_sendmmsg /uid == UID/ { printf("send %d %s %d\n", pid, comm, args->ret); }
"#;

/// Why tcpconnect cannot run here (it needs kprobes), if it cannot.
pub(super) fn tcpconnect_problem(uid: u32, dir: &Path) -> Option<String> {
    which("tcpconnect")?;
    let err = dir.join("tcpconnect-probe.err");
    let mut cmd = Command::new("tcpconnect");
    cmd.arg("-u")
        .arg(uid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file_for(&err).ok()?);
    let mut p = Proc::spawn("tcpconnect", &mut cmd, Some(&err)).ok()?;
    let pid = p.pid();
    let problem = match p.wait_ready(Duration::from_secs(20), || has_eventpoll(pid)) {
        Ok(()) => None,
        Err(e) => Some(format!("{e:#}")),
    };
    p.stop(libc::SIGINT, Duration::from_secs(5));
    let _ = fs::remove_file(&err);
    problem
}
