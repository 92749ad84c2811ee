//! `guard run`'s mount namespace: before the command runs, the process moves into a
//! mount namespace of its own in which what the policy forbids every process of the
//! session to change is mounted read-only over itself, and what it forbids them to
//! read is covered. So a protected path inside a tree the session may write (a
//! repository's `.git/hooks`, its `.env`, anything below `/tmp`), which Landlock
//! cannot carve out, is refused without a kill on every kernel: a write fails with
//! EROFS and changes nothing, a read fails with EACCES. The way bubblewrap builds a
//! sandbox, on the paths the daemon names (`super::targets`).
//!
//! - A directory to hide is covered by an empty read-only tmpfs whose root has mode
//!   0000: a process without `CAP_DAC_READ_SEARCH` gets EACCES below it (a root
//!   process finds nothing there).
//! - A file to hide is covered by `/dev/null` on a `nodev` mount: opening a device
//!   on a `nodev` mount fails with EACCES for everyone, root included.
//! - A path to protect from changes is bound over itself, read-only: writes,
//!   truncates, creates, renames and unlinks inside it fail with EROFS.
//! - Each directory above a covered path, up to the file system's root, is bound
//!   over itself: a mount point cannot be renamed or removed (EBUSY), so the
//!   session cannot move the repository aside and put a copy without the covers in
//!   its place.
//!
//! Who can undo it: a process with `CAP_SYS_ADMIN` over the namespace (a command that
//! stays root when `guard run` is started by root) can unmount the covers; Landlock
//! (`--landlock`) forbids that. A normal user's `guard run` needs a user namespace
//! for it (its own uid and gid mapped to themselves, nothing else): after the exec
//! the command holds no capability there, and a namespace it makes below (an agent's
//! own bubblewrap) gets the covers locked in place by the kernel, neither removable
//! nor revealed by a bind of the directory above them.

use std::path::{Path, PathBuf};

use rustix::fs::StatVfsMountFlags as St;
use rustix::mount::{MountFlags, MountPropagationFlags};

/// What the namespace covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Paths no process of the session may read (files and directories).
    pub hide: Vec<PathBuf>,
    /// Paths no process of the session may change.
    pub read_only: Vec<PathBuf>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.hide.is_empty() && self.read_only.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot make a mount namespace of its own")]
    Unshare(#[source] std::io::Error),
    #[error("cannot map the user and group ids into the new user namespace ({file})")]
    IdMap {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} {path}")]
    Mount {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot return to the working directory {path} inside the namespace")]
    Chdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the namespace covers, as set up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entered {
    pub hidden: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
    /// A user namespace was made for it (`guard run` by a normal user).
    pub user_ns: bool,
}

impl Entered {
    /// For people and for the daemon (`guard sessions`).
    pub fn summary(&self) -> String {
        format!(
            "{} read-only, {} hidden{}",
            self.read_only.len(),
            self.hidden.len(),
            if self.user_ns {
                " (in a user namespace)"
            } else {
                ""
            }
        )
    }
}

fn io(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

fn mount_error(what: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> Error {
    move |e| Error::Mount {
        what,
        path: path.to_owned(),
        source: io(e),
    }
}

/// The flags a mount at `path` has that a read-only remount of it must keep: in a
/// user namespace the kernel locks them on mounts it copied from the parent's, and
/// refuses a remount that would drop one (`nosuid`, `nodev`, `noexec`, the atime
/// mode).
fn kept_flags(path: &Path) -> MountFlags {
    let Ok(st) = rustix::fs::statvfs(path) else {
        return MountFlags::empty();
    };
    let f = st.f_flag;
    let mut out = MountFlags::empty();
    for (st, ms) in [
        (St::NOSUID, MountFlags::NOSUID),
        (St::NODEV, MountFlags::NODEV),
        (St::NOEXEC, MountFlags::NOEXEC),
        (St::NOATIME, MountFlags::NOATIME),
        (St::NODIRATIME, MountFlags::NODIRATIME),
    ] {
        if f.contains(st) {
            out |= ms;
        }
    }
    // Without `relatime` or `noatime` the mount has strict atime, which a remount
    // must ask for (the kernel's default is relatime).
    if !f.intersects(St::RELATIME | St::NOATIME) {
        out |= MountFlags::STRICTATIME;
    }
    out
}

/// Remounts the bind mount at `path` read-only, with `extra` flags.
fn read_only(path: &Path, extra: MountFlags) -> Result<(), Error> {
    let flags = MountFlags::BIND | MountFlags::RDONLY | extra | kept_flags(path);
    rustix::mount::mount_remount(path, flags, c"").map_err(mount_error("remount read-only", path))
}

/// The directories above `paths` that must not be renamed, shallowest first: every
/// one between each path and the root.
fn anchors(paths: &[&PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = paths
        .iter()
        .flat_map(|p| p.ancestors().skip(1))
        .filter(|a| *a != Path::new("/") && !a.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    out.sort_by_key(|a| (a.components().count(), a.clone()));
    out.dedup();
    out
}

/// Moves the calling process (single-threaded: a user namespace needs it) into a
/// mount namespace of its own that covers `plan`, and returns to its working
/// directory there. Paths that are gone since the daemon named them are left out.
pub fn enter(plan: &Plan) -> Result<Entered, Error> {
    use rustix::thread::UnshareFlags;
    let uid = rustix::process::geteuid();
    let gid = rustix::process::getegid();
    let user_ns = !uid.is_root();
    let cwd = std::env::current_dir().map_err(|source| Error::Chdir {
        path: PathBuf::from("."),
        source,
    })?;
    let flags = if user_ns {
        UnshareFlags::NEWUSER | UnshareFlags::NEWNS
    } else {
        UnshareFlags::NEWNS
    };
    // SAFETY: neither flag touches the file descriptor table; `guard run` has one
    // thread (a user namespace refuses more).
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| Error::Unshare(io(e)))?;
    if user_ns {
        // Its own ids only, mapped to themselves: files keep their owners, the daemon
        // sees the same uid, and nothing becomes root.
        for (file, text) in [
            ("/proc/self/setgroups", "deny".to_owned()),
            ("/proc/self/gid_map", format!("{0} {0} 1", gid.as_raw())),
            ("/proc/self/uid_map", format!("{0} {0} 1", uid.as_raw())),
        ] {
            std::fs::write(file, text).map_err(|source| Error::IdMap { file, source })?;
        }
    }
    // Nothing mounted here reaches the host's namespace; the host's later mounts
    // still show here.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(mount_error("make private", Path::new("/")))?;

    let exists = |p: &&PathBuf| std::fs::symlink_metadata(p).is_ok();
    let hide: Vec<&PathBuf> = plan.hide.iter().filter(exists).collect();
    let protect: Vec<&PathBuf> = plan.read_only.iter().filter(exists).collect();
    let all: Vec<&PathBuf> = hide.iter().chain(&protect).copied().collect();
    for a in anchors(&all) {
        rustix::mount::mount_bind_recursive(&a, &a).map_err(mount_error("bind", &a))?;
    }
    let mut entered = Entered {
        user_ns,
        ..Entered::default()
    };
    for p in protect {
        rustix::mount::mount_bind_recursive(p, p).map_err(mount_error("bind", p))?;
        read_only(p, MountFlags::empty())?;
        entered.read_only.push(p.clone());
    }
    let covers = MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC;
    for p in hide {
        if p.is_dir() {
            rustix::mount::mount(
                "tmpfs",
                p,
                "tmpfs",
                covers | MountFlags::RDONLY,
                c"mode=0000,size=4k",
            )
            .map_err(mount_error("cover", p))?;
        } else {
            rustix::mount::mount_bind("/dev/null", p).map_err(mount_error("cover", p))?;
            read_only(p, covers)?;
        }
        entered.hidden.push(p.clone());
    }
    // The working directory was looked up before the mounts: look it up again, so
    // that relative paths go through them.
    std::env::set_current_dir(&cwd).map_err(|source| Error::Chdir { path: cwd, source })?;
    Ok(entered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_above_a_covered_path_is_anchored_shallowest_first() {
        let a = PathBuf::from("/home/u/src/app/.git/hooks");
        let b = PathBuf::from("/home/u/src/app/.env");
        let c = PathBuf::from("/tmp/ws/key.pem");
        assert_eq!(
            anchors(&[&a, &b, &c]),
            [
                "/home",
                "/tmp",
                "/home/u",
                "/tmp/ws",
                "/home/u/src",
                "/home/u/src/app",
                "/home/u/src/app/.git"
            ]
            .map(PathBuf::from)
        );
    }
}
