//! Actions on processes, through pidfds: a pidfd names one process for its whole
//! life, so a pid reused after the target died is never signalled by mistake.

use std::io;

/// Sends SIGKILL to `pid` through a pidfd. `Ok(false)` when it was already gone.
pub fn kill(pid: u32) -> io::Result<bool> {
    // SAFETY: plain syscalls on integers; the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(e)
        };
    }
    let fd = fd as libc::c_int;
    // An exited process that is not yet reaped still takes signals: it is gone.
    // (What remains is the microseconds between this check and the signal.)
    if exited(pid) {
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
        return Ok(false);
    }
    // SAFETY: fd is the pidfd opened above.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            libc::SIGKILL,
            std::ptr::null::<u8>(),
            0,
        )
    };
    let result = if rc == 0 {
        Ok(true)
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(e)
        }
    };
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    result
}

/// Whether `pid` has exited (zombie or dead) or is gone.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_none_or(|s| matches!(s, 'Z' | 'X' | 'x')),
        Err(_) => true,
    }
}

/// Resource use of this process: (CPU seconds, resident bytes).
pub fn self_usage() -> (f64, u64) {
    let Ok(me) = procfs::process::Process::myself() else {
        return (0.0, 0);
    };
    let tps = procfs::ticks_per_second() as f64;
    let cpu = me
        .stat()
        .map(|s| (s.utime + s.stime) as f64 / tps)
        .unwrap_or(0.0);
    let rss = me
        .statm()
        .map(|m| m.resident * procfs::page_size())
        .unwrap_or(0);
    (cpu, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_ends_a_child_and_reports_gone_ones() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        assert!(kill(pid).expect("kill"));
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: the pid no longer names a process.
        assert!(!kill(pid).expect("second kill"));
    }

    #[test]
    fn an_exited_unreaped_child_is_gone_not_killed() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Wait until it is a zombie (exited, not reaped).
        for _ in 0..200 {
            if exited(pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            !kill(pid).expect("kill"),
            "a zombie must not count as killed"
        );
        let status = child.wait().expect("wait");
        assert!(status.success());
    }
}
