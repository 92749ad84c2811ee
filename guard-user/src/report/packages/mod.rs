//! A session's packages and their scripts, folded from its events: a package is a
//! manifest its install wrote ([`crate::packages::manifest`]), a script every
//! process that carried a package's name (`task.package`, from npm's
//! `npm_package_name`), grouped from its first process down.

use std::collections::HashMap;

use guard_common::{
    line::{Access, DestClass, EventDetail, EventLine, FlowReason},
    report::{Bounded, MAX_ITEMS, Package, Report, Script},
};

/// Processes whose registries are remembered (a session's installers).
const REGISTRY_PIDS_MAX: usize = 4_096;

/// What a session's events say about its packages.
#[derive(Clone, Debug, Default)]
pub(super) struct Packages {
    /// Each manifest's entry in the report's list.
    manifests: HashMap<String, usize>,
    /// Each process of a script: its entry in the report's list.
    scripts: HashMap<u32, usize>,
    /// Registries (flows of class `registry`) by the process that opened them.
    registries: HashMap<u32, Vec<String>>,
}

impl Packages {
    /// Folds one event of the session into `r`'s packages and scripts.
    pub(super) fn add(&mut self, r: &mut Report, ev: &EventLine) {
        let Some(task) = ev.task.as_ref() else {
            return;
        };
        let pid = task.pid;
        match &ev.detail {
            EventDetail::Fork { child_pid, .. } => {
                if let Some(&at) = self.scripts.get(&pid) {
                    self.scripts.insert(*child_pid, at);
                }
                return;
            }
            EventDetail::Open {
                path,
                access,
                result,
                ..
            } if result.is_ok() && access.iter().any(|a| *a != Access::Read) => {
                self.manifest(r, path, ev);
            }
            EventDetail::Flow {
                dest_class,
                to,
                reason,
                ..
            } if *dest_class == DestClass::Registry && *reason != FlowReason::Redirect => {
                let name = ev.host.as_deref().unwrap_or(&to.addr);
                if self.registries.len() < REGISTRY_PIDS_MAX || self.registries.contains_key(&pid) {
                    super::push_once(self.registries.entry(pid).or_default(), name);
                }
            }
            _ => {}
        }
        let Some(package) = task.package.as_deref() else {
            return;
        };
        let Some((s, new)) = self.script(&mut r.scripts, pid, task.ppid, package, ev) else {
            return;
        };
        if new {
            // A package's first script: npm runs it once the package is unpacked, and
            // removes the package again when an install script fails. Its version is
            // read now, while its manifest is there.
            read_versions(r.packages.items.iter_mut().filter(|p| p.name == package));
        }
        match &ev.detail {
            EventDetail::Exec { .. } => s.execs += 1,
            EventDetail::Open {
                path,
                access,
                repeats,
                ..
            } => {
                let opens = repeats.unwrap_or(1).max(1);
                if access.iter().any(|a| *a != Access::Read) {
                    s.writes += opens;
                } else {
                    s.reads += opens;
                }
                // Tried or done: a refused read of a secret is still the script's.
                if ev.violation.as_ref().is_some_and(|v| v.secret) {
                    super::push_once(&mut s.secrets, path);
                }
            }
            EventDetail::Connect { to, .. } | EventDetail::Send { to, .. } => {
                let at = super::endpoint(&to.addr, to.port, ev.host.as_deref());
                super::push_once(&mut s.destinations, &at);
            }
            _ => {}
        }
        if let Some(v) = super::verdict(ev) {
            super::push_once(&mut s.verdicts, &v);
        }
    }

    /// The script entry of `pid`: its own, its parent's when that runs the same
    /// package's script, or a new one starting here (then with `true`).
    fn script<'r>(
        &mut self,
        scripts: &'r mut Bounded<Script>,
        pid: u32,
        ppid: u32,
        package: &str,
        ev: &EventLine,
    ) -> Option<(&'r mut Script, bool)> {
        let same = |at: &usize| scripts.items.get(*at).is_some_and(|s| s.package == package);
        let mut new = false;
        let at = match self.scripts.get(&pid).filter(|at| same(at)) {
            Some(&at) => at,
            None => match self.scripts.get(&ppid).filter(|at| same(at)) {
                Some(&at) => at,
                None if scripts.items.len() >= MAX_ITEMS => {
                    scripts.omitted += 1;
                    return None;
                }
                None => {
                    // Its exec as people read it (`sh -c node install.js`), else its
                    // program's name.
                    let command = match &ev.detail {
                        EventDetail::Exec { .. } => ev.what(),
                        _ => ev.comm().unwrap_or_default().to_owned(),
                    };
                    scripts.items.push(Script {
                        package: package.to_owned(),
                        ts: ev.ts.clone(),
                        pid,
                        command,
                        ..Script::default()
                    });
                    new = true;
                    scripts.items.len() - 1
                }
            },
        };
        self.scripts.insert(pid, at);
        Some((scripts.items.get_mut(at)?, new))
    }

    /// Adds the package whose manifest `path` is, once per manifest.
    fn manifest(&mut self, r: &mut Report, path: &str, ev: &EventLine) {
        if self.manifests.contains_key(path) {
            return;
        }
        let Some(m) = crate::packages::manifest(path) else {
            return;
        };
        if r.packages.items.len() >= MAX_ITEMS {
            r.packages.omitted += 1;
            return;
        }
        let pid = ev.pid().unwrap_or(0);
        // The writer's command line, as the commands list shows its latest exec.
        let command = r
            .commands
            .items
            .iter()
            .rev()
            .find(|c| c.pid == pid)
            .map(|c| c.argv.join(" "));
        r.packages.items.push(Package {
            ecosystem: m.ecosystem.to_owned(),
            name: m.name,
            version: m.version,
            manifest: path.to_owned(),
            ts: ev.ts.clone(),
            pid,
            by: ev.comm().unwrap_or_default().to_owned(),
            command,
            ..Package::default()
        });
        self.manifests
            .insert(path.to_owned(), r.packages.items.len() - 1);
    }

    /// The report's packages and scripts completed: each package's registries, and
    /// which scripts are install scripts (their package is one the session
    /// installed: an npm package's, a crate's build script).
    pub(super) fn finish(&self, r: &mut Report) {
        for p in &mut r.packages.items {
            if let Some(list) = self.registries.get(&p.pid) {
                p.registries.clone_from(list);
            }
        }
        // An npm package's script, a crate's build script, or a Python project's
        // build, of a package the session installed (downloaded, or built from its
        // source distribution): its code came with the install.
        for s in &mut r.scripts.items {
            s.install = r.packages.items.iter().any(|p| {
                let ecosystem = p.ecosystem.as_str();
                matches!(
                    ecosystem,
                    crate::packages::NPM | crate::packages::CRATES | crate::packages::PYPI
                ) && guard_policy::packages::normalise(ecosystem, &p.name)
                    == guard_policy::packages::normalise(ecosystem, &s.package)
            });
        }
    }

    /// Reads the versions the paths did not give from the manifests (npm's), once;
    /// the rest get a note saying why. Runs when the session's report is final (its
    /// end), when the installs are done writing.
    pub(super) fn read_versions(r: &mut Report) {
        read_versions(r.packages.items.iter_mut());
    }
}

/// Reads the versions of `packages` that have none yet from their manifests, or
/// notes why it cannot.
fn read_versions<'p, I: Iterator<Item = &'p mut Package>>(packages: I) {
    for p in packages {
        if p.version.is_some() || p.note.is_some() {
            continue;
        }
        match crate::packages::read(&p.ecosystem, std::path::Path::new(&p.manifest)) {
            Ok(read) => {
                p.version = Some(read.version);
                if read.name != p.name {
                    p.note = Some(format!("the manifest names it {}", read.name));
                }
            }
            Err(e) => p.note = Some(e),
        }
    }
}

#[cfg(test)]
mod tests;
