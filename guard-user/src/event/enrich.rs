//! Cheap /proc enrichment: user names and container ids, cached so a busy session
//! costs one lookup per new uid or cgroup, not one per event.

use std::{collections::HashMap, path::Path, sync::Arc};

use super::{Event, Task};
use crate::container::{
    container_id_from_cgroups, pod_uid_from_cgroups,
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
