//! What `/proc` shows of a process, for processes whose kernel record user space
//! has not seen: who a process is (sessions adopted or started by `guard run`),
//! and the exec event of a process the kernel held at its exec whose record never
//! reached user space (lost while the ring buffer was full, or written while no
//! daemon ran), so that the exec is judged, acted on and logged as its record
//! would have been. That event says so (`from_proc`).

use std::{path::PathBuf, sync::OnceLock};

use guard_common::{Tracked, flags, role};
use procfs::process::Process;

use super::{Detail, Event, SessionId, Task};

/// Who `pid` is, from /proc: ids, parent, name, cgroup.
pub fn task(pid: u32) -> Option<Task> {
    task_of(&process(pid)?, pid)
}

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

/// [`task`] of process `pid`, open as `p`.
fn task_of(p: &Process, pid: u32) -> Option<Task> {
    static CGROUP2: OnceLock<Option<PathBuf>> = OnceLock::new();
    let cgroup2 = CGROUP2.get_or_init(|| crate::host::mounts::cgroup2_root().ok());
    let stat = p.stat().ok()?;
    let status = p.status().ok()?;
    Some(Task {
        pid,
        tid: pid,
        ppid: u32::try_from(stat.ppid).unwrap_or(0),
        uid: status.ruid,
        gid: status.rgid,
        comm: stat.comm,
        cgroup_id: cgroup2
            .as_deref()
            .and_then(|root| crate::host::mounts::cgroup_id_of(root, pid))
            .unwrap_or(0),
        ..Task::default()
    })
}

/// The exec of process `pid`, which the kernel held at wall-clock time `ts_ns`;
/// `tracked` is the kernel's entry for the process (its session and role), when
/// it has one. `None` when the process is gone.
pub fn exec(pid: u32, tracked: Option<&Tracked>, ts_ns: i128) -> Option<Event> {
    let process = process(pid)?;
    let mut task = task_of(&process, pid)?;
    task.role = tracked.map_or(role::UNKNOWN, |t| {
        u8::try_from((t.flags & role::MASK) >> role::SHIFT).unwrap_or(role::UNKNOWN)
    });
    let exe = process
        .exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let argv = process.cmdline().unwrap_or_default();
    let detail = Detail::Exec {
        exe,
        exe_truncated: false,
        argv,
        argv_truncated: false,
        root: tracked.is_some_and(|t| t.flags & u32::from(flags::ROOT_PROCESS) != 0),
        by_cgroup: false,
        by_identity: false,
        fileless: false,
        from_proc: true,
    };
    let mut ev = Event::derived(ts_ns, tracked.map(|t| SessionId(t.session)), task, detail);
    ev.tainted = tracked.is_some_and(|t| t.flags & guard_common::TAINTED != 0);
    ev.held = true;
    Some(ev)
}

/// A child running `program` with `args`, once its exec is complete: `spawn`
/// returns at the exec's point of no return, before the new program's memory (its
/// command line) is in place. A held process is past that.
#[cfg(test)]
pub(crate) fn spawned(program: &std::path::Path, args: &[&str]) -> std::process::Child {
    let child = std::process::Command::new(program)
        .args(args)
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read(format!("/proc/{}/cmdline", child.id())).is_ok_and(|c| c.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "no command line");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_described_as_proc_shows_it() {
        let mut child = spawned(std::path::Path::new("sleep"), &["30"]);
        let tracked = Tracked {
            session: 42,
            start_ns: 0,
            root_pid: 1,
            flags: u32::from(role::TOOL) << role::SHIFT,
        };
        let ev = exec(child.id(), Some(&tracked), 7).expect("the process is there");
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert_eq!(ev.session, Some(SessionId(42)));
        assert_eq!(ev.ts_ns, 7);
        assert_eq!(
            (
                ev.task.pid,
                ev.task.ppid,
                ev.task.role,
                ev.task.comm.as_str()
            ),
            (child.id(), std::process::id(), role::TOOL, "sleep")
        );
        assert_eq!(ev.task.uid, rustix::process::getuid().as_raw());
        let Detail::Exec {
            exe,
            argv,
            from_proc,
            root,
            ..
        } = &ev.detail
        else {
            panic!("not an exec: {ev:?}");
        };
        assert!(exe.ends_with("/sleep"), "{exe}");
        assert_eq!(argv, &["sleep", "30"]);
        assert!(*from_proc && !*root && ev.held);
        assert!(
            exec(child.id(), None, 0).is_none(),
            "a reaped process has nothing to describe"
        );
    }
}
