//! Actions on processes, through pidfds: a pidfd names one process for its whole
//! life, so a pid reused after the target died is never signalled by mistake.

use std::io;

/// Sends SIGKILL to `pid` through a pidfd. `Ok(false)` when it was already gone.
pub fn kill(pid: u32) -> io::Result<bool> {
    // SAFETY: plain syscalls on integers; the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(e) };
    }
    let fd = fd as libc::c_int;
    // SAFETY: fd is the pidfd opened above.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<u8>(), 0) };
    let result = if rc == 0 {
        Ok(true)
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) { Ok(false) } else { Err(e) }
    };
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    result
}

/// Resource use of this process: (CPU seconds, resident bytes).
pub fn self_usage() -> (f64, u64) {
    let Ok(me) = procfs::process::Process::myself() else { return (0.0, 0) };
    let tps = procfs::ticks_per_second() as f64;
    let cpu = me.stat().map(|s| (s.utime + s.stime) as f64 / tps).unwrap_or(0.0);
    let rss = me.statm().map(|m| m.resident * procfs::page_size()).unwrap_or(0);
    (cpu, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_ends_a_child_and_reports_gone_ones() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        assert!(kill(pid).expect("kill"));
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: the pid no longer names a process.
        assert!(!kill(pid).expect("second kill"));
    }
}
