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
    Detail::exec(
        exe.to_owned(),
        argv.iter().map(|a| (*a).to_owned()).collect(),
        root,
    )
}
