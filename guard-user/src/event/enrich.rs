//! Cheap /proc enrichment: user names and container ids, cached so a busy session
//! costs one lookup per new uid or cgroup, not one per event.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{Event, Task};
use crate::{
    container::{
        container_id_from_cgroups, container_id_in_path, pod_uid_from_cgroups, pod_uid_in_path,
        runtime::{ContainerMeta, Runtimes},
    },
    host::mounts::cgroup2_root,
};

/// Where a cgroup is: its container id, pod uid and the container's names.
#[derive(Clone, Default)]
struct Placement {
    container: Option<Arc<str>>,
    pod: Option<Arc<str>>,
    meta: Option<Arc<ContainerMeta>>,
}

impl Placement {
    /// Where the cgroup `cgroup_id` is, from `/proc/PID/cgroup` while the process
    /// lives, else (it exited before its first record got here, as a short tool's
    /// often has) from the cgroup2 tree, by the directory's inode: the cgroup id.
    fn of(pid: u32, cgroup_id: u64, runtimes: &mut Runtimes) -> Self {
        let (container, pod) = match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            Ok(text) => (
                container_id_from_cgroups(&text),
                pod_uid_from_cgroups(&text),
            ),
            Err(_) => match cgroup2_root()
                .ok()
                .and_then(|root| cgroup_path(&root, cgroup_id))
            {
                Some(rel) => (container_id_in_path(&rel), pod_uid_in_path(&rel)),
                None => (None, None),
            },
        };
        Self {
            meta: container.as_deref().and_then(|id| runtimes.lookup(id)),
            container: container.map(Arc::from),
            pod: pod.map(Arc::from),
        }
    }
}

/// Directories visited at most when looking a cgroup up by id: far more cgroups than
/// a host has, and a bound on the cost of one lookup.
const CGROUP_WALK_MAX: usize = 100_000;

/// The path under `root` (the cgroup2 mount), from `/`, of the cgroup directory whose
/// inode is `id`; `None` when it is gone (or the tree is larger than the bound).
fn cgroup_path(root: &Path, id: u64) -> Option<String> {
    let mut stack = vec![PathBuf::from(root)];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > CGROUP_WALK_MAX {
            return None;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if meta.ino() == id {
            let rel = dir.strip_prefix(root).ok()?;
            return Some(format!("/{}", rel.to_string_lossy()));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        stack.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    None
}

pub struct Enricher {
    users: HashMap<u32, Option<Arc<str>>>,
    /// By cgroup id.
    placements: HashMap<u64, Placement>,
    runtimes: Runtimes,
}

impl Enricher {
    /// `runtime_root`: where the container runtimes' state is (`/` on the host).
    pub fn new(runtime_root: &Path) -> Self {
        Self {
            users: HashMap::new(),
            placements: HashMap::new(),
            runtimes: Runtimes::new(runtime_root),
        }
    }

    pub fn enrich(&mut self, ev: &mut Event) {
        self.enrich_task(&mut ev.task);
        if let super::Detail::Exec {
            exe,
            fileless: true,
            ..
        } = &mut ev.detail
            && let Some(name) = fileless_name(exe, ev.task.pid)
        {
            *exe = name;
        }
    }

    pub fn enrich_task(&mut self, task: &mut Task) {
        let uid = task.uid;
        task.user = self
            .users
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid).map(|u| Arc::from(u.name().to_string_lossy().as_ref()))
            })
            .clone();
        let (pid, cgroup_id) = (task.pid, task.cgroup_id);
        let runtimes = &mut self.runtimes;
        let placement = self
            .placements
            .entry(cgroup_id)
            .or_insert_with(|| Placement::of(pid, cgroup_id, runtimes))
            .clone();
        task.container = placement.container;
        task.pod = placement.pod;
        task.meta = placement.meta;
    }
}

/// The truthful name of a program without a name in the file system, as the
/// kernel gives it in `/proc/<pid>/exe`: `memfd:NAME` for a memfd (the kernel's
/// path walk finds no name for it: its `exe` comes as `/`), `<old path> (deleted)`
/// for a deleted file. Read while the process lives (a process killed at its exec
/// is named by its `fileless_exec` route event); `None` for a named file. For
/// exec records the kernel flagged fileless (`flags::FILELESS`).
pub fn fileless_name(exe: &str, pid: u32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    from_proc_exe(exe, &link.to_string_lossy())
}

fn from_proc_exe(exe: &str, link: &str) -> Option<String> {
    let old = link.strip_suffix(" (deleted)")?;
    if let Some(memfd) = old.strip_prefix("/memfd:").filter(|_| exe == "/") {
        return Some(format!("memfd:{memfd}"));
    }
    (old == exe).then(|| link.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fileless_programs_are_named_as_the_kernel_names_them() {
        assert_eq!(
            from_proc_exe("/", "/memfd:payload (deleted)").as_deref(),
            Some("memfd:payload")
        );
        assert_eq!(
            from_proc_exe("/tmp/x/prog", "/tmp/x/prog (deleted)").as_deref(),
            Some("/tmp/x/prog (deleted)")
        );
        // A pid reused by another program names that one: not taken.
        assert_eq!(
            from_proc_exe("/tmp/x/prog", "/usr/bin/other (deleted)"),
            None
        );
        assert_eq!(from_proc_exe("/usr/bin/true", "/usr/bin/true"), None);
    }

    #[test]
    fn a_cgroup_is_found_by_its_inode() {
        let root = std::env::temp_dir().join(format!("guard-enrich-{}", std::process::id()));
        let dir = root.join("system.slice/docker-0123456789abcdef.scope");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let id = std::fs::metadata(&dir).expect("stat").ino();
        let found = cgroup_path(&root, id);
        let gone = cgroup_path(&root, u64::MAX);
        std::fs::remove_dir_all(&root).expect("clean up");
        assert_eq!(
            found.as_deref(),
            Some("/system.slice/docker-0123456789abcdef.scope")
        );
        assert_eq!(gone, None);
    }
}
