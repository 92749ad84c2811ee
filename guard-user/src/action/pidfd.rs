//! Kills through pidfds: a pidfd names one process for its whole life, so a pid
//! reused after the target died is never signalled by mistake.

use std::{io, os::fd::OwnedFd};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// Whether a kill landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Killed {
    Yes,
    /// The process had exited (or is a zombie) before the signal.
    AlreadyGone,
}

/// Sends SIGKILL to `pid` through a pidfd.
pub fn kill(pid: u32) -> io::Result<Killed> {
    let Some(fd) = open(pid)? else {
        return Ok(Killed::AlreadyGone);
    };
    // An exiting or exited process that is not yet reaped still takes signals, and
    // they change nothing: it is gone. (What remains is the microseconds between
    // this check and the signal.)
    if exited(pid) {
        return Ok(Killed::AlreadyGone);
    }
    match pidfd_send_signal(&fd, Signal::KILL) {
        Ok(()) => Ok(Killed::Yes),
        Err(rustix::io::Errno::SRCH) => Ok(Killed::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

/// Stops `pid` (SIGSTOP, which it cannot catch or ignore) through a pidfd, so that
/// it neither forks nor reacts to what happens to others until it is killed. A
/// process already gone is no error.
pub(crate) fn stop(pid: u32) -> io::Result<()> {
    let Some(fd) = open(pid)? else {
        return Ok(());
    };
    match pidfd_send_signal(&fd, Signal::STOP) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pidfd for `pid`; `None` when no such process is left.
fn open(pid: u32) -> io::Result<Option<OwnedFd>> {
    let Some(pid_t) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    match pidfd_open(pid_t, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::SRCH) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The parent of `pid`, while it lives.
pub(crate) fn parent(pid: u32) -> Option<u32> {
    let stat = procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .ok()?;
    u32::try_from(stat.ppid).ok()
}

/// The kernel's PF_EXITING task flag: set at the start of do_exit, before the exit
/// code is final. A SIGKILL sent after it changes nothing about how the task ends.
const PF_EXITING: u32 = 0x4;

/// Whether `pid` is exiting (in do_exit already, a zombie, dead) or gone.
fn exited(pid: u32) -> bool {
    match procfs::process::Process::new(pid as i32).and_then(|p| p.stat()) {
        Ok(stat) => matches!(stat.state, 'Z' | 'X' | 'x') || stat.flags & PF_EXITING != 0,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    #[test]
    fn kill_ends_a_child_and_reports_gone_ones() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        assert_eq!(kill(pid).expect("kill"), Killed::Yes);
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: the pid no longer names a process.
        assert_eq!(kill(pid).expect("second kill"), Killed::AlreadyGone);
    }

    #[test]
    fn an_exited_unreaped_child_is_gone_not_killed() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !exited(pid) {
            assert!(std::time::Instant::now() < deadline, "true never exited");
            std::thread::yield_now();
        }
        assert_eq!(
            kill(pid).expect("kill"),
            Killed::AlreadyGone,
            "a zombie must not count as killed"
        );
        assert!(child.wait().expect("wait").success());
    }
}
