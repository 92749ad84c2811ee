//! Cheap /proc enrichment: user names and container ids, cached so a busy session
//! costs one lookup per new uid or cgroup, not one per event.

use std::{collections::HashMap, path::Path, sync::Arc};

use super::{
    Event, Task,
    runtime::{ContainerMeta, Runtimes},
};

/// Where a cgroup is: its container id, pod uid and the container's names.
#[derive(Clone, Default)]
struct Placement {
    container: Option<Arc<str>>,
    pod: Option<Arc<str>>,
    meta: Option<Arc<ContainerMeta>>,
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
        let pid = task.pid;
        let runtimes = &mut self.runtimes;
        let placement = self
            .placements
            .entry(task.cgroup_id)
            .or_insert_with(|| {
                let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
                    return Placement::default();
                };
                let container = container_id_from_cgroups(&text);
                Placement {
                    meta: container.as_deref().and_then(|id| runtimes.lookup(id)),
                    container: container.map(Arc::from),
                    pod: pod_uid_from_cgroups(&text).map(Arc::from),
                }
            })
            .clone();
        task.container = placement.container;
        task.pod = placement.pod;
        task.meta = placement.meta;
    }
}

/// The container id in a `/proc/PID/cgroup` file: the 64-hex-digit id that docker,
/// containerd, CRI-O and Kubernetes put in the cgroup path, with either cgroup
/// driver (`…/docker-<id>.scope`, `…/cri-containerd-<id>.scope`, `…/crio-<id>`,
/// `/docker/<id>`, `/kubepods/…/pod<uid>/<id>`), cgroup v1 or v2.
pub fn container_id_from_cgroups(text: &str) -> Option<String> {
    cgroup_paths(text).find_map(container_id_in_path)
}

/// The Kubernetes pod uid in a `/proc/PID/cgroup` file: `…/pod<uid>/…` with the
/// cgroupfs driver, `…-pod<uid_with_underscores>.slice` with the systemd driver.
pub fn pod_uid_from_cgroups(text: &str) -> Option<String> {
    cgroup_paths(text).find_map(pod_uid_in_path)
}

/// The paths of a `/proc/PID/cgroup` file (`hierarchy:controllers:path` lines).
fn cgroup_paths(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| line.splitn(3, ':').nth(2))
}

/// The container id in one cgroup path (the innermost, if several).
pub fn container_id_in_path(path: &str) -> Option<String> {
    path.rsplit('/').find_map(container_id_in_component)
}

/// The Kubernetes pod uid in one cgroup path.
pub fn pod_uid_in_path(path: &str) -> Option<String> {
    path.split('/').find_map(|c| {
        let c = c.strip_suffix(".slice").unwrap_or(c);
        let uid = c
            .rsplit_once("-pod")
            .map(|(_, u)| u)
            .or_else(|| c.strip_prefix("pod"))?;
        let uid = uid.replace('_', "-");
        is_pod_uid(&uid).then_some(uid)
    })
}

/// Whether `uid` has the form of a Kubernetes uid (`8-4-4-4-12` hex digits).
pub fn is_pod_uid(uid: &str) -> bool {
    uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

fn container_id_in_component(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".scope").unwrap_or(component);
    let id = stem.rsplit(['-', ':']).next()?;
    (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c7b0e9d2a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

    #[test]
    fn container_ids_from_each_runtime() {
        for path in [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"
            ),
            format!("0::/kubepods/burstable/pod5f0e/{ID}"),
            format!("12:memory:/docker/{ID}"),
            format!("0::/machine.slice/crio-{ID}.scope"),
        ] {
            assert_eq!(
                container_id_from_cgroups(&path).as_deref(),
                Some(ID),
                "{path}"
            );
        }
    }

    #[test]
    fn pod_uids_from_both_cgroup_drivers() {
        let uid = "5f0e2b6c-1d2e-4a3b-9c8d-7e6f5a4b3c2d";
        let systemd = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid.replace('-', "_")
        );
        let cgroupfs = format!("0::/kubepods/burstable/pod{uid}/{ID}");
        for text in [systemd, cgroupfs] {
            assert_eq!(pod_uid_from_cgroups(&text).as_deref(), Some(uid), "{text}");
        }
        assert_eq!(
            pod_uid_from_cgroups(&format!("0::/system.slice/docker-{ID}.scope")),
            None
        );
    }

    #[test]
    fn host_processes_have_no_container() {
        assert_eq!(
            container_id_from_cgroups("0::/user.slice/user-1000.slice/session-2.scope"),
            None
        );
        assert_eq!(container_id_from_cgroups("0::/\n"), None);
    }
}
