//! Cheap /proc enrichment: user names and container ids, cached so a busy session
//! costs one lookup per new uid or cgroup, not one per event.

use std::{collections::HashMap, sync::Arc};

use super::{Event, Task};

#[derive(Default)]
pub struct Enricher {
    users: HashMap<u32, Option<Arc<str>>>,
    containers: HashMap<u64, Option<Arc<str>>>,
}

impl Enricher {
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
        task.container = self
            .containers
            .entry(task.cgroup_id)
            .or_insert_with(|| {
                let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
                container_id_from_cgroups(&text).map(Arc::from)
            })
            .clone();
    }
}

/// The container id in a `/proc/PID/cgroup` file: the 64-hex-digit id that docker,
/// containerd, CRI-O and Kubernetes put in the cgroup path, with either cgroup
/// driver (`…/docker-<id>.scope`, `…/cri-containerd-<id>.scope`, `…/crio-<id>`,
/// `/docker/<id>`, `/kubepods/…/pod<uid>/<id>`), cgroup v1 or v2.
pub fn container_id_from_cgroups(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        path.rsplit('/').find_map(container_id_in_component)
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
    fn host_processes_have_no_container() {
        assert_eq!(
            container_id_from_cgroups("0::/user.slice/user-1000.slice/session-2.scope"),
            None
        );
        assert_eq!(container_id_from_cgroups("0::/\n"), None);
    }
}
