//! Containers as guard knows them, without asking a runtime: ids and pod uids from
//! cgroup paths, and the names, images, pods and namespaces a runtime's state gives
//! ([`ContainerMeta`], read by the daemon's `container::runtime`). A leaf: events,
//! sessions and the policy all read it, and it reads none of them.

/// What a [`ContainerSelector`] term looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerField {
    /// The container id: a prefix of it (lowercase hex, 12 to 64 digits).
    Id,
    /// The Kubernetes pod's uid, exactly.
    PodUid,
    /// The container's name (a glob), from the runtime's state.
    Name,
    /// The image reference (a glob), from the runtime's state.
    Image,
    /// The Kubernetes pod's name (a glob), from the runtime's state.
    Pod,
    /// The Kubernetes namespace (a glob), from the runtime's state.
    Namespace,
}

impl ContainerField {
    /// Every field, by the key a policy names it with.
    pub const ALL: [(&'static str, Self); 6] = [
        ("id", Self::Id),
        ("pod_uid", Self::PodUid),
        ("name", Self::Name),
        ("image", Self::Image),
        ("pod", Self::Pod),
        ("namespace", Self::Namespace),
    ];
}

/// A container's names, as far as its runtime's state tells.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The container's name (Kubernetes: the name in the pod spec; Docker: without `/`).
    pub name: Option<String>,
    /// The image reference it was created from.
    pub image: Option<String>,
    /// Kubernetes: the pod's name and namespace.
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// A Kubernetes pod sandbox (the pause container), not one of the pod's containers.
    pub sandbox: bool,
}

impl ContainerMeta {
    /// The value a `[agents] containers` term of this field is matched against.
    /// Sandboxes have none: they are never chosen by name, image, pod or namespace.
    pub fn field(&self, field: ContainerField) -> Option<&str> {
        if self.sandbox {
            return None;
        }
        match field {
            ContainerField::Name => self.name.as_deref(),
            ContainerField::Image => self.image.as_deref(),
            ContainerField::Pod => self.pod.as_deref(),
            ContainerField::Namespace => self.namespace.as_deref(),
            ContainerField::Id | ContainerField::PodUid => None,
        }
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
