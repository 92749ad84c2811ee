//! Sessions for processes that no exec brought in: agents running when the daemon
//! starts, and processes in chosen cgroups (the watcher follows the cgroup tree).
//! The adoption itself is `session::scan`'s; this is its wiring to the kernel.

use anyhow::Context as _;
use guard_common::Tracked;
use tokio::io::unix::AsyncFd;

use super::Daemon;
use crate::{
    ebpf::Probes,
    event::SessionId,
    host::clock,
    policy::model::Policy,
    session::{
        cgroups::{Changes, Selection, Watcher},
        scan::{self, Adopter, Membership},
    },
};

impl Membership for Probes {
    fn track(&mut self, pid: u32, entry: Tracked) -> bool {
        Self::track(self, pid, entry).is_ok()
    }

    fn untrack(&mut self, pid: u32) {
        Self::untrack(self, pid);
    }

    fn is_tracked(&self, pid: u32) -> bool {
        Self::is_tracked(self, pid)
    }
}

impl Daemon {
    /// Makes each of `roots` a `scan` session with its descendants.
    fn adopt_all(&mut self, roots: Vec<u32>) -> anyhow::Result<()> {
        for root in roots {
            let now_ns = self.pipe.now();
            let (registry, enricher) = self.pipe.adopting();
            let adopter = Adopter {
                kernel: &mut self.probes,
                registry,
                enricher,
                now_ns,
                id: SessionId(clock::boot_ns()),
            };
            if let Some(start) = adopter.adopt(root) {
                self.out.write(&start)?;
            }
        }
        Ok(())
    }

    /// Agents already running when the daemon starts.
    pub(super) fn scan(&mut self, agents: &[String]) -> anyhow::Result<()> {
        let roots = scan::agents_running(agents).context("cannot list /proc")?;
        self.adopt_all(roots)
    }

    /// Processes in chosen cgroups that no session holds yet.
    pub(super) fn adopt_in_cgroups(&mut self, watcher: &Watcher) -> anyhow::Result<()> {
        let roots = scan::untracked_roots(&watcher.procs(), &self.probes);
        self.adopt_all(roots)
    }

    /// Puts the chosen cgroups in the kernel and adopts what already runs there.
    pub(super) fn install_cgroups(&mut self, watcher: Option<&Watcher>) -> anyhow::Result<()> {
        let ids = watcher.map(Watcher::chosen).unwrap_or_default();
        self.probes.set_agent_cgroups(&ids)?;
        if let Some(w) = watcher {
            tracing::info!(cgroups = ids.len(), "sessions start in chosen cgroups");
            self.adopt_in_cgroups(w)?;
        }
        Ok(())
    }

    /// cgroups came or went: follow them in the kernel (a new container's cgroup is
    /// normally in the map before the runtime starts a process in it).
    pub(super) fn cgroups_changed(
        &mut self,
        cgroups: &mut Option<AsyncFd<Watcher>>,
    ) -> anyhow::Result<()> {
        let Some(fd) = cgroups else {
            return Ok(());
        };
        let changes = match fd.get_mut().read() {
            Ok(changes) => changes,
            Err(e) => {
                tracing::warn!("cannot read cgroup notifications ({e}); watching them anew");
                Changes {
                    overflow: true,
                    ..Changes::default()
                }
            }
        };
        if changes.overflow {
            tracing::warn!("cgroup notifications were lost; walking the cgroup tree again");
            *cgroups = watch_cgroups(self.pipe.judge().policy(), &self.runtime_root)?;
            return self.install_cgroups(cgroups.as_ref().map(AsyncFd::get_ref));
        }
        for id in &changes.added {
            self.probes.add_agent_cgroup(*id)?;
        }
        for id in &changes.removed {
            self.probes.remove_agent_cgroup(*id);
        }
        if !changes.added.is_empty() {
            self.adopt_in_cgroups(fd.get_ref())?;
        }
        Ok(())
    }
}

/// The watcher of the cgroups `policy` chooses sessions by, if it chooses any.
pub(super) fn watch_cgroups(
    policy: &Policy,
    runtime_root: &std::path::Path,
) -> anyhow::Result<Option<AsyncFd<Watcher>>> {
    let Some(selection) = Selection::of(policy, runtime_root)? else {
        return Ok(None);
    };
    let root = crate::host::mounts::cgroup2_root()?;
    let own = crate::host::mounts::cgroup_id_of(&root, std::process::id());
    let watcher = Watcher::start(&root, selection, own)
        .with_context(|| format!("cannot watch the cgroups under {}", root.display()))?;
    // SAFETY: the watcher owns its inotify descriptor, which stays open and unchanged
    // for as long as the AsyncFd (which owns the watcher) lives.
    let fd = unsafe { AsyncFd::register_with_interest(watcher, tokio::io::Interest::READABLE) }
        .context("cannot poll cgroup notifications")?;
    Ok(Some(fd))
}

/// Resolves when the cgroup watcher has notifications; never without a watcher.
pub(super) async fn cgroups_ready(cgroups: &Option<AsyncFd<Watcher>>) -> anyhow::Result<()> {
    match cgroups {
        Some(fd) => {
            fd.readable()
                .await
                .context("cgroup notifications poll failed")?
                .clear_ready();
            Ok(())
        }
        None => std::future::pending().await,
    }
}
