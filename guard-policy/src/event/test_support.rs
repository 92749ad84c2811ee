//! Events for tests, here and in the crates that use this one (feature
//! `test-support`).

use super::{Detail, Task};

/// Process `pid`, child of `ppid`, running `comm`.
pub fn task(pid: u32, ppid: u32, comm: &str) -> Task {
    Task {
        pid,
        tid: pid,
        ppid,
        comm: comm.into(),
        ..Task::default()
    }
}

/// An exec of `exe` with `argv`; `root`: it started the session.
pub fn exec(exe: &str, argv: &[&str], root: bool) -> Detail {
    Detail::Exec {
        exe: exe.to_owned(),
        exe_truncated: false,
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        argv_truncated: false,
        root,
        by_cgroup: false,
        by_identity: false,
        fileless: false,
        from_proc: false,
    }
}
