//! What the container runtimes say about a container, read from the state they keep
//! on the host (no socket, no API call): the container's name, its image, and for
//! Kubernetes its pod's name and namespace.
//!
//! - containerd (Kubernetes and Docker ≥ 23 through it): the OCI bundle of each running
//!   task, `run/containerd/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`,
//!   whose annotations the CRI plugin fills (`io.kubernetes.cri.*`);
//! - CRI-O: `run/containers/storage/overlay-containers/<id>/userdata/config.json`
//!   (`io.kubernetes.*` annotations);
//! - Docker: `var/lib/docker/containers/<id>/config.v2.json` (`Name`, `Config.Image`).
//!
//! Each file exists before the runtime makes the container's cgroup, so the metadata is
//! there when guard sees the cgroup appear. Paths are relative to a root (`/`, or where
//! a DaemonSet mounts the host's directories).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde_json::Value;

pub use guard_policy::container::ContainerMeta;

const CONTAINERD_TASKS: &str = "run/containerd/io.containerd.runtime.v2.task";
const CRIO_CONTAINERS: &str = "run/containers/storage/overlay-containers";
const DOCKER_CONTAINERS: &str = "var/lib/docker/containers";

/// Reads container metadata under `root`, and remembers what it found.
pub struct Runtimes {
    root: PathBuf,
    cache: HashMap<String, Option<Arc<ContainerMeta>>>,
}

impl Runtimes {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            cache: HashMap::new(),
        }
    }

    /// The metadata of the container with this (64-hex-digit) id, if a runtime's state
    /// has it. A miss is not remembered: the runtime may write its state later.
    pub fn lookup(&mut self, id: &str) -> Option<Arc<ContainerMeta>> {
        if let Some(Some(meta)) = self.cache.get(id) {
            return Some(Arc::clone(meta));
        }
        let meta = self.read(id).map(Arc::new);
        if meta.is_some() {
            if self.cache.len() > 4096 {
                self.cache.clear();
            }
            self.cache.insert(id.to_owned(), meta.clone());
        }
        meta
    }

    fn read(&self, id: &str) -> Option<ContainerMeta> {
        self.containerd(id)
            .or_else(|| {
                let path = self.root.join(CRIO_CONTAINERS).join(id);
                from_oci_spec(&read_json(&path.join("userdata/config.json"))?)
            })
            .or_else(|| {
                let path = self.root.join(DOCKER_CONTAINERS).join(id);
                from_docker_config(&read_json(&path.join("config.v2.json"))?)
            })
    }

    /// containerd keeps one directory of bundles per namespace (`k8s.io`, `moby`, …).
    fn containerd(&self, id: &str) -> Option<ContainerMeta> {
        let tasks = self.root.join(CONTAINERD_TASKS);
        std::fs::read_dir(tasks).ok()?.flatten().find_map(|ns| {
            let spec = read_json(&ns.path().join(id).join("config.json"))?;
            let meta = from_oci_spec(&spec)?;
            // Docker through containerd: the names are in Docker's own state.
            if meta.name.is_none() {
                let docker = self.root.join(DOCKER_CONTAINERS).join(id);
                if let Some(d) = read_json(&docker.join("config.v2.json")) {
                    return from_docker_config(&d);
                }
            }
            Some(meta)
        })
    }
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Names from an OCI runtime spec's annotations (containerd's CRI plugin or CRI-O).
fn from_oci_spec(spec: &Value) -> Option<ContainerMeta> {
    let annotations = spec.get("annotations").and_then(Value::as_object);
    let get = |keys: &[&str]| {
        keys.iter().find_map(|k| {
            annotations?
                .get(*k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    };
    Some(ContainerMeta {
        name: get(&[
            "io.kubernetes.cri.container-name",
            "io.kubernetes.container.name",
        ]),
        image: get(&[
            "io.kubernetes.cri.image-name",
            "io.kubernetes.cri-o.ImageName",
        ]),
        pod: get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
        namespace: get(&[
            "io.kubernetes.cri.sandbox-namespace",
            "io.kubernetes.pod.namespace",
        ]),
        sandbox: get(&[
            "io.kubernetes.cri.container-type",
            "io.kubernetes.cri-o.ContainerType",
        ])
        .is_some_and(|t| t == "sandbox"),
    })
}

/// Names from Docker's `config.v2.json`.
fn from_docker_config(config: &Value) -> Option<ContainerMeta> {
    let name = config.get("Name")?.as_str()?.trim_start_matches('/');
    Some(ContainerMeta {
        name: Some(name.to_owned()),
        image: config
            .pointer("/Config/Image")
            .and_then(Value::as_str)
            .map(str::to_owned),
        pod: None,
        namespace: None,
        sandbox: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerField;

    const ID: &str = "4f1c7b0e9d2a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";

    fn write(root: &Path, rel: &str, json: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, json).expect("write");
    }

    #[test]
    fn containerd_cri_o_and_docker_state() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut r = Runtimes::new(root.path());
        assert_eq!(r.lookup(ID), None);

        write(
            root.path(),
            &format!("{CONTAINERD_TASKS}/k8s.io/{ID}/config.json"),
            r#"{"ociVersion":"1.2.0","annotations":{
                "io.kubernetes.cri.container-type":"container",
                "io.kubernetes.cri.container-name":"runner",
                "io.kubernetes.cri.image-name":"ghcr.io/actions/runner:2.330",
                "io.kubernetes.cri.sandbox-name":"ci-runner-7x2k",
                "io.kubernetes.cri.sandbox-namespace":"arc-runners"}}"#,
        );
        let meta = r.lookup(ID).expect("containerd bundle");
        assert_eq!(meta.name.as_deref(), Some("runner"));
        assert_eq!(meta.image.as_deref(), Some("ghcr.io/actions/runner:2.330"));
        assert_eq!(meta.pod.as_deref(), Some("ci-runner-7x2k"));
        assert_eq!(meta.namespace.as_deref(), Some("arc-runners"));

        let crio = format!("5{}", &ID[1..]);
        write(
            root.path(),
            &format!("{CRIO_CONTAINERS}/{crio}/userdata/config.json"),
            r#"{"annotations":{"io.kubernetes.container.name":"agent",
                "io.kubernetes.pod.name":"job-1","io.kubernetes.pod.namespace":"ci",
                "io.kubernetes.cri-o.ImageName":"quay.io/x/agent:1"}}"#,
        );
        let meta = r.lookup(&crio).expect("CRI-O state");
        assert_eq!(
            (meta.name.as_deref(), meta.namespace.as_deref()),
            (Some("agent"), Some("ci"))
        );

        let docker = format!("{}1", &ID[..63]);
        write(
            root.path(),
            &format!("{DOCKER_CONTAINERS}/{docker}/config.v2.json"),
            r#"{"Name":"/runner-abc-project-1-concurrent-0-build","Config":{"Image":"node:22"}}"#,
        );
        // Docker through containerd: a bundle without CRI annotations.
        write(
            root.path(),
            &format!("{CONTAINERD_TASKS}/moby/{docker}/config.json"),
            r#"{"ociVersion":"1.2.0"}"#,
        );
        let meta = r.lookup(&docker).expect("docker state");
        assert_eq!(
            meta.name.as_deref(),
            Some("runner-abc-project-1-concurrent-0-build")
        );
        assert_eq!(meta.image.as_deref(), Some("node:22"));
        assert_eq!(meta.pod, None);

        // A pod's sandbox: known, but chosen by no name, image, pod or namespace.
        let pause = format!("6{}", &ID[1..]);
        write(
            root.path(),
            &format!("{CONTAINERD_TASKS}/k8s.io/{pause}/config.json"),
            r#"{"annotations":{"io.kubernetes.cri.container-type":"sandbox",
                "io.kubernetes.cri.sandbox-namespace":"arc-runners"}}"#,
        );
        let meta = r.lookup(&pause).expect("sandbox bundle");
        assert!(meta.sandbox);
        assert_eq!(meta.field(ContainerField::Namespace), None);
    }
}
