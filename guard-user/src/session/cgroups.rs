//! Sessions chosen by container: the cgroup2 directories that hold the containers
//! `[agents] containers` names, or that match `[agents] cgroups`, and every directory
//! below them. The daemon keeps the kernel's `AGENT_CGROUPS` map equal to this set as
//! containers come and go: inotify on the cgroup2 tree reports each new directory as
//! it is made, before the runtime moves a process into it.

use std::{
    collections::HashMap,
    io,
    os::{
        fd::{AsRawFd, RawFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use crate::{
    container::{
        ContainerField, container_id_in_path, pod_uid_in_path,
        runtime::{ContainerMeta, Runtimes},
    },
    policy::{
        model::{ContainerSelector, Policy},
        parse::cgroup_glob,
    },
};

/// A `[agents] containers` entry, compiled.
enum Chooser {
    Any,
    All(Vec<Term>),
}

enum Term {
    IdPrefix(String),
    PodUid(String),
    Meta(ContainerField, GlobMatcher),
}

/// What `[agents]` chooses by container or cgroup path.
pub struct Selection {
    containers: Vec<Chooser>,
    globs: GlobSet,
    runtimes: Runtimes,
}

impl Selection {
    /// `None` when the policy chooses sessions by name only. Container names, images,
    /// pods and namespaces are read from the runtimes' state under `runtime_root`.
    pub fn of(policy: &Policy, runtime_root: &Path) -> anyhow::Result<Option<Self>> {
        if policy.containers.is_empty() && policy.cgroups.is_empty() {
            return Ok(None);
        }
        let mut globs = GlobSetBuilder::new();
        for pattern in &policy.cgroups {
            globs.add(cgroup_glob(pattern)?);
        }
        let mut containers = Vec::new();
        for selector in &policy.containers {
            containers.push(match selector {
                ContainerSelector::Any => Chooser::Any,
                ContainerSelector::All(terms) => Chooser::All(
                    terms
                        .iter()
                        .map(|(field, value)| {
                            Ok(match field {
                                ContainerField::Id => Term::IdPrefix(value.clone()),
                                ContainerField::PodUid => Term::PodUid(value.clone()),
                                _ => Term::Meta(*field, Glob::new(value)?.compile_matcher()),
                            })
                        })
                        .collect::<Result<_, globset::Error>>()?,
                ),
            });
        }
        Ok(Some(Self {
            containers,
            globs: globs.build()?,
            runtimes: Runtimes::new(runtime_root),
        }))
    }

    /// Whether the cgroup at `rel` (its path from the cgroup2 root, as
    /// `/proc/PID/cgroup` shows it) is chosen for itself, ancestors aside.
    pub fn chooses(&mut self, rel: &str) -> bool {
        if self.globs.is_match(rel) {
            return true;
        }
        if self.containers.is_empty() {
            return false;
        }
        let Some(id) = container_id_in_path(rel) else {
            return false;
        };
        let pod = pod_uid_in_path(rel);
        let Self {
            containers,
            runtimes,
            ..
        } = self;
        // Read from the runtime's state once, and only if a term needs it.
        let mut meta: Option<Option<std::sync::Arc<ContainerMeta>>> = None;
        containers.iter().any(|chooser| match chooser {
            Chooser::Any => true,
            Chooser::All(terms) => terms.iter().all(|term| match term {
                Term::IdPrefix(prefix) => id.starts_with(prefix.as_str()),
                Term::PodUid(uid) => pod.as_deref() == Some(uid.as_str()),
                Term::Meta(field, glob) => meta
                    .get_or_insert_with(|| runtimes.lookup(&id))
                    .as_deref()
                    .and_then(|m| m.field(*field))
                    .is_some_and(|v| glob.is_match(v)),
            }),
        })
    }
}

/// A cgroup directory under watch.
struct Dir {
    rel: String,
    id: u64,
    chosen: bool,
}

/// The chosen cgroups, kept current. Poll its descriptor for readability and call
/// [`Watcher::read`].
pub struct Watcher {
    root: PathBuf,
    selection: Selection,
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, Dir>,
    by_rel: HashMap<String, WatchDescriptor>,
    /// The daemon's own cgroup: never chosen, so that guard never polices itself.
    own: Option<u64>,
}

/// What changed in the chosen set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<u64>,
    pub removed: Vec<u64>,
    /// The kernel dropped inotify events: the caller must start a new watcher.
    pub overflow: bool,
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW);

impl Watcher {
    /// Watches every directory of the cgroup2 tree at `root` and finds the chosen
    /// ones. `own` is the daemon's cgroup id.
    pub fn start(root: &Path, selection: Selection, own: Option<u64>) -> io::Result<Self> {
        let mut watcher = Self {
            root: root.to_owned(),
            selection,
            inotify: Inotify::init()?,
            dirs: HashMap::new(),
            by_rel: HashMap::new(),
            own,
        };
        let mut changes = Changes::default();
        watcher.visit(String::new(), false, &mut changes)?;
        Ok(watcher)
    }

    /// The chosen cgroups' ids.
    pub fn chosen(&self) -> Vec<u64> {
        self.dirs
            .values()
            .filter(|d| d.chosen)
            .map(|d| d.id)
            .collect()
    }

    /// The processes now in chosen cgroups (their `cgroup.procs`).
    pub fn procs(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for dir in self.dirs.values().filter(|d| d.chosen) {
            let path = self.path(&dir.rel).join("cgroup.procs");
            if let Ok(text) = std::fs::read_to_string(path) {
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        pids
    }

    /// Whether the cgroup with this id is chosen.
    #[cfg(test)]
    pub fn is_chosen(&self, id: u64) -> bool {
        self.dirs.values().any(|d| d.chosen && d.id == id)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Watches the directory at `rel` ("" for the root) and everything below it,
    /// watching each directory before listing it so that nothing made meanwhile is
    /// missed.
    fn visit(&mut self, rel: String, parent_chosen: bool, changes: &mut Changes) -> io::Result<()> {
        let mut stack = vec![(rel, parent_chosen)];
        while let Some((rel, parent_chosen)) = stack.pop() {
            let path = self.path(&rel);
            let wd = match self.inotify.watches().add(&path, MASK) {
                Ok(wd) => wd,
                Err(e) if rel.is_empty() => return Err(e),
                // Removed meanwhile: nothing to watch.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(
                        "cannot watch cgroup {rel}: {e}; it and the cgroups below it are not \
                         chosen (fs.inotify.max_user_watches may be too low)"
                    );
                    continue;
                }
            };
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = meta.ino();
            let shown = if rel.is_empty() { "/" } else { rel.as_str() };
            let chosen = (parent_chosen || self.selection.chooses(shown)) && Some(id) != self.own;
            if chosen && !self.dirs.get(&wd).is_some_and(|d| d.chosen) {
                changes.added.push(id);
            }
            self.by_rel.insert(rel.clone(), wd.clone());
            self.dirs.insert(
                wd,
                Dir {
                    rel: rel.clone(),
                    id,
                    chosen,
                },
            );
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name();
                    stack.push((format!("{rel}/{}", name.to_string_lossy()), chosen));
                }
            }
        }
        Ok(())
    }

    /// Handles the pending inotify events: new directories are watched (and chosen
    /// when they or an ancestor are), removed ones forgotten.
    pub fn read(&mut self) -> io::Result<Changes> {
        let mut changes = Changes::default();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(changes),
                Err(e) => return Err(e),
            };
            // (parent watch, child name, created?)
            let mut todo = Vec::new();
            for ev in events {
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    changes.overflow = true;
                } else if ev.mask.contains(EventMask::ISDIR)
                    && let Some(name) = ev.name
                {
                    let created = ev.mask.contains(EventMask::CREATE);
                    todo.push((ev.wd.clone(), name.to_string_lossy().into_owned(), created));
                } else if ev.mask.contains(EventMask::IGNORED)
                    && let Some(dir) = self.dirs.remove(&ev.wd)
                {
                    self.by_rel.remove(&dir.rel);
                    if dir.chosen {
                        changes.removed.push(dir.id);
                    }
                }
            }
            for (parent, name, created) in todo {
                let Some(dir) = self.dirs.get(&parent) else {
                    continue;
                };
                let rel = format!("{}/{name}", dir.rel);
                if created {
                    let chosen = dir.chosen;
                    self.visit(rel, chosen, &mut changes)?;
                } else if let Some(wd) = self.by_rel.remove(&rel)
                    && let Some(gone) = self.dirs.remove(&wd)
                    && gone.chosen
                {
                    changes.removed.push(gone.id);
                }
            }
        }
    }
}

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse::parse;

    const ID: &str = "4f1c7b0e9d2a3b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678";
    const POD: &str = "5f0e2b6c-1d2e-4a3b-9c8d-7e6f5a4b3c2d";

    fn selection(agents: &str) -> Selection {
        selection_in(agents, Path::new("/nonexistent"))
    }

    fn selection_in(agents: &str, runtime_root: &Path) -> Selection {
        let (policy, _) = parse("t.toml", &format!("[agents]\n{agents}")).expect("valid");
        Selection::of(&policy, runtime_root)
            .expect("compiles")
            .expect("chooses")
    }

    #[test]
    fn names_alone_choose_no_cgroup() {
        let (policy, _) = parse("t.toml", "[agents]\nnames = [\"codex\"]").expect("valid");
        assert!(
            Selection::of(&policy, Path::new("/"))
                .expect("compiles")
                .is_none()
        );
    }

    #[test]
    fn containers_by_id_prefix_pod_or_any() {
        let docker = format!("/system.slice/docker-{ID}.scope");
        let kube = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            POD.replace('-', "_")
        );
        let pod_only = format!("/kubepods/burstable/pod{POD}");
        let host = "/user.slice/user-1000.slice/session-2.scope";

        let mut any = selection("containers = [\"*\"]");
        assert!(any.chooses(&docker) && any.chooses(&kube));
        assert!(!any.chooses(host), "a host cgroup is not a container");
        assert!(
            !any.chooses(&pod_only),
            "a pod's own cgroup holds no container id"
        );

        let mut by_id = selection(&format!("containers = [\"{}\"]", &ID[..12]));
        assert!(by_id.chooses(&docker));
        assert!(!selection("containers = [\"000000000000\"]").chooses(&docker));

        let mut by_pod = selection(&format!("containers = [\"pod_uid={POD}\"]"));
        assert!(by_pod.chooses(&kube));
        assert!(!by_pod.chooses(&docker));
    }

    #[test]
    fn containers_by_runtime_metadata() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let bundle = root.path().join(format!(
            "run/containerd/io.containerd.runtime.v2.task/k8s.io/{ID}"
        ));
        std::fs::create_dir_all(&bundle)?;
        std::fs::write(
            bundle.join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.container-name":"runner",
                "io.kubernetes.cri.sandbox-namespace":"arc-runners",
                "io.kubernetes.cri.sandbox-name":"ci-7x2k",
                "io.kubernetes.cri.image-name":"ghcr.io/actions/runner:2"}}"#,
        )?;
        let kube = format!("/kubepods/burstable/pod{POD}/{ID}");
        let other = format!("/kubepods/burstable/pod{POD}/{}0", &ID[1..]);
        for (agents, chosen) in [
            ("containers = [\"namespace=arc-*,name=runner\"]", true),
            ("containers = [\"namespace=arc-runners,name=other\"]", false),
            ("containers = [\"image=ghcr.io/actions/*\"]", true),
            ("containers = [\"pod=ci-*\"]", true),
            ("containers = [\"namespace=default\"]", false),
        ] {
            let mut s = selection_in(agents, root.path());
            assert_eq!(s.chooses(&kube), chosen, "{agents}");
            // No runtime state for that one: metadata terms cannot hold.
            assert!(!s.chooses(&other), "{agents}");
        }
        Ok(())
    }

    #[test]
    fn cgroup_globs_match_whole_paths() {
        let mut s = selection("cgroups = [\"/ci.slice/job-*.scope\"]");
        assert!(s.chooses("/ci.slice/job-17.scope"));
        assert!(!s.chooses("/ci.slice/other.scope"));
        assert!(
            !s.chooses("/ci.slice/x/job-17.scope"),
            "`*` stays in one component"
        );
    }

    /// A fake cgroup tree (plain directories: inotify reports them the same way).
    #[test]
    fn watcher_follows_directories_as_they_come_and_go() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("system.slice/ssh.service"))?;
        let chosen_dir = root.path().join(format!("system.slice/docker-{ID}.scope"));
        std::fs::create_dir_all(chosen_dir.join("init"))?;
        let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino());

        let mut w = Watcher::start(root.path(), selection("containers = [\"*\"]"), None)?;
        let mut chosen = w.chosen();
        chosen.sort_unstable();
        let mut expect = vec![ino(&chosen_dir)?, ino(&chosen_dir.join("init"))?];
        expect.sort_unstable();
        assert_eq!(chosen, expect, "the container and the cgroup below it");

        // A new container, and a new cgroup below a chosen one.
        let other = root
            .path()
            .join(format!("system.slice/docker-{}0.scope", &ID[1..]));
        std::fs::create_dir(&other)?;
        std::fs::create_dir(chosen_dir.join("sub"))?;
        std::fs::create_dir(root.path().join("system.slice/cron.service"))?;
        let changes = w.read()?;
        let mut added = changes.added;
        added.sort_unstable();
        let mut expect = vec![ino(&other)?, ino(&chosen_dir.join("sub"))?];
        expect.sort_unstable();
        assert_eq!(added, expect);
        assert!(w.is_chosen(ino(&other)?));

        let gone = ino(&chosen_dir.join("sub"))?;
        std::fs::remove_dir(chosen_dir.join("sub"))?;
        let changes = w.read()?;
        assert_eq!(changes.removed, vec![gone]);
        assert!(!w.is_chosen(gone));
        Ok(())
    }

    #[test]
    fn own_cgroup_is_never_chosen() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join(format!("docker-{ID}.scope"));
        std::fs::create_dir(&dir)?;
        let own = std::fs::metadata(&dir)?.ino();
        let w = Watcher::start(root.path(), selection("containers = [\"*\"]"), Some(own))?;
        assert!(w.chosen().is_empty());
        Ok(())
    }
}
