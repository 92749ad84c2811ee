//! Protected files by identity: the concrete files and directories file rules name
//! (`/etc/shadow`, `~/.ssh/**` → each home's `.ssh`), resolved to (device, inode)
//! for the kernel's `INODE_RULES` map, so that another name for the same file (a
//! hard link, a bind mount, a renamed directory) meets the same rule.
//!
//! The set is kept current with inotify: every target's parent directory (or its
//! nearest existing ancestor) and every resolved entry itself are watched; a
//! change there marks the set dirty, and it is resolved again once changes hold
//! still for [`DEBOUNCE`]. An entry stays while its inode lives, even when its path
//! now names another file or nothing (a protected directory moved away stays
//! protected at its new place); it leaves when the inode is deleted (its watch
//! reports `IN_DELETE_SELF`/`IN_IGNORED`) or the policy no longer names its path.
//! At most [`IDENTITY_MAX`] entries are installed; the rest are reported.
//!
//! A rule on a directory also protects the regular files in it under any other
//! name: each file found under an enforced directory rule (its exceptions left
//! out) gets a file entry with the directory's rule, so a hard link elsewhere, made
//! before the daemon started or during a session, is that file. Every directory of
//! such a tree is watched, so a file appearing there joins once changes hold
//! still, and each file is watched itself: an entry stays while its inode lives,
//! wherever it moved. At most [`IDENTITY_MEMBERS_MAX`] such entries are installed
//! (files with several names first); past that, the `MEMBERS_OVER` entry tells the
//! kernel to fail closed on a regular file with several names it cannot place.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::{fd::AsRawFd, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use guard_common::{
    RuleRef,
    rules::{
        IDENTITY_MAX, IDENTITY_MEMBERS_MAX, IDENTITY_UNKNOWN_MAX, InodeKey, inode_kind, rule_flags,
    },
};
use inotify::{Inotify, WatchDescriptor, WatchMask};

pub use guard_policy::identity::{Summary, Target, canonical};

/// Changes must hold still this long before the set is resolved again (an editor
/// writes a new file and renames it over the old one in two steps).
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// One resolved entry.
#[derive(Clone, Debug)]
struct Known {
    path: PathBuf,
    value: RuleRef,
    /// The inotify watch on the entry itself (it reports the inode's deletion).
    wd: Option<WatchDescriptor>,
    /// Whether the path still names this inode (else it moved away).
    current: bool,
    /// For a file found inside a protected directory: that directory (the
    /// target); `None` for a target itself.
    member_of: Option<PathBuf>,
    /// Its link count when last seen (files with several names go in first).
    links: u64,
}

/// Key without its generation: (kind, kernel device, inode).
type Id = (u8, u32, u64);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start inotify")]
    Init(#[source] std::io::Error),
}

/// The identity set and its watches.
pub struct Identity {
    targets: Vec<Target>,
    known: BTreeMap<Id, Known>,
    inotify: Inotify,
    /// Parent directories watched for entries appearing, moving or being replaced.
    parents: HashMap<WatchDescriptor, PathBuf>,
    dirty: Option<Instant>,
    /// The entries the kernel gets (at most [`IDENTITY_MAX`], current paths first).
    installed: Vec<Id>,
    /// Entries past [`IDENTITY_MAX`], not installed.
    over: Vec<PathBuf>,
    /// Protected directories whose files did not all get an entry (past
    /// [`IDENTITY_MEMBERS_MAX`] or [`WALK_MAX`]), with how many were left out.
    members_over: Vec<(PathBuf, usize)>,
    /// Targets that do not exist now (nothing to protect by identity).
    missing: Vec<PathBuf>,
    /// What [`Self::log_entries`] last said of each entry.
    logged: HashMap<Id, (PathBuf, bool, u16)>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("targets", &self.targets.len())
            .field("known", &self.known.len())
            .finish()
    }
}

/// The kernel's `dev_t` (`MKDEV(major, minor)` = `major << 20 | minor`) of a
/// `stat(2)` device number.
pub fn kernel_dev(dev: u64) -> u32 {
    mkdev(libc::major(dev), libc::minor(dev))
}

/// `MKDEV(major, minor)`, the kernel's own encoding of a device (not stat(2)'s).
fn mkdev(major: u32, minor: u32) -> u32 {
    (major << 20) | minor
}

/// A kernel `dev_t` as `major:minor`.
pub fn dev_text(dev: u32) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// The device of each mount (`mnt_id` → the super block's `MKDEV`), from
/// `/proc/self/mountinfo`: read once for a whole resolution, not once per file (a
/// host with many mounts makes that file long, and the daemon resolves every
/// protected path at start).
#[derive(Debug, Default)]
pub struct Mounts(HashMap<u64, u32>);

impl Mounts {
    pub fn read() -> Self {
        Self::of("/proc/self/mountinfo")
    }

    /// The mounts process `pid` sees (its mount namespace's, which a container's
    /// process does not share with the daemon).
    pub fn of_process(pid: u32) -> Self {
        Self::of(&format!("/proc/{pid}/mountinfo"))
    }

    fn of(mountinfo: &str) -> Self {
        let text = std::fs::read_to_string(mountinfo).unwrap_or_default();
        Self(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(' ');
                    let id = f.next()?.parse::<u64>().ok()?;
                    let (major, minor) = f.nth(1)?.split_once(':')?;
                    let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
                    Some((id, mkdev(major, minor)))
                })
                .collect(),
        )
    }
}

/// The (device, inode) the kernel's dentry walk sees for `path`, and whether it is
/// a directory. On most file systems that is what `stat(2)` says; on overlayfs it
/// is not (`stat` reports a file's lower or upper file system, the dentry holds an
/// overlay inode on the overlay's device), so the file is opened with `O_PATH` and
/// the kernel's own numbers are read back: the inode from
/// `/proc/self/fdinfo/<fd>` (`ino:`), the device from the mount's line in
/// `mounts` (`mnt_id:` → `major:minor`, the super block's device).
/// Falls back to `stat` where those fields are missing.
pub fn kernel_ident(path: &Path, mounts: &Mounts) -> std::io::Result<(u32, u64, bool)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)?;
    let meta = file.metadata()?;
    let fallback = (kernel_dev(meta.dev()), meta.ino(), meta.is_dir());
    let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd()))
    else {
        return Ok(fallback);
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let (Some(mnt_id), Some(ino)) = (field("mnt_id:"), field("ino:")) else {
        return Ok(fallback);
    };
    Ok(match mounts.0.get(&mnt_id) {
        Some(&dev) => (dev, ino, meta.is_dir()),
        None => fallback,
    })
}

/// Most directory entries looked at while indexing the files of protected
/// directories, all together: a rule on a huge tree stops the walk there (its
/// directory counts as past the bound).
pub const WALK_MAX: usize = 4 * IDENTITY_MEMBERS_MAX;

/// What a file inside a protected directory is watched for: its inode going.
/// Added to whatever else its watch has (a target may be a member too).
const MEMBER_MASK: WatchMask = WatchMask::DELETE_SELF.union(WatchMask::MASK_ADD);

/// What a directory inside a protected directory is watched for: names coming
/// and going.
const TREE_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::MASK_ADD);

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ATTRIB);

impl Identity {
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            targets: Vec::new(),
            known: BTreeMap::new(),
            inotify: Inotify::init().map_err(Error::Init)?,
            parents: HashMap::new(),
            dirty: None,
            installed: Vec::new(),
            over: Vec::new(),
            members_over: Vec::new(),
            missing: Vec::new(),
            logged: HashMap::new(),
        })
    }

    /// The inotify descriptor, for the daemon's poll loop.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.inotify.as_raw_fd()
    }

    /// A new policy's targets: resolves them at once.
    pub fn set_targets(&mut self, targets: Vec<Target>) {
        self.targets = targets;
        self.resolve();
    }

    /// Reads pending inotify events; returns whether any arrived.
    pub fn read_events(&mut self) -> bool {
        let mut buffer = [0u8; 4096];
        let mut any = false;
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("identity: inotify read failed: {e}");
                    break;
                }
            };
            let mut gone = Vec::new();
            let mut n = 0;
            for ev in events {
                n += 1;
                if ev.mask.contains(inotify::EventMask::IGNORED)
                    || ev.mask.contains(inotify::EventMask::DELETE_SELF)
                {
                    gone.push(ev.wd.clone());
                }
            }
            if n == 0 {
                break;
            }
            any = true;
            for wd in gone {
                // The inode is gone (its last link removed) or its file system was
                // unmounted: no name leads to it any more.
                self.known.retain(|_, k| k.wd.as_ref() != Some(&wd));
                self.parents.remove(&wd);
            }
        }
        if any {
            self.dirty = Some(Instant::now());
        }
        any
    }

    /// Whether changes held still long enough to resolve the set again.
    pub fn due(&self, now: Instant) -> bool {
        self.dirty
            .is_some_and(|t| now.duration_since(t) >= DEBOUNCE)
    }

    /// Resolves every target again (after changes): new inodes come in, entries
    /// whose inode lives on stay.
    pub fn resolve(&mut self) {
        self.dirty = None;
        let wanted: HashSet<(PathBuf, u8)> = self
            .targets
            .iter()
            .map(|t| (t.path.clone(), t.kind))
            .collect();
        let trees: HashMap<&Path, RuleRef> = self
            .targets
            .iter()
            .filter(|t| is_tree_rule(t))
            .map(|t| (t.path.as_path(), t.value))
            .collect();
        // The policy no longer names it (or its directory, or with another rule):
        // out (and its watch with it).
        let stale: Vec<Id> = self
            .known
            .iter()
            .filter(|((kind, _, _), k)| match &k.member_of {
                Some(tree) => trees.get(tree.as_path()) != Some(&k.value),
                None => !wanted.contains(&(k.path.clone(), *kind)),
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(Known { wd: Some(wd), .. }) = self.known.remove(&id) {
                let still = self.known.values().any(|k| k.wd.as_ref() == Some(&wd));
                if !still {
                    let _ = self.inotify.watches().remove(wd);
                }
            }
        }
        for k in self.known.values_mut() {
            k.current = false;
        }
        self.missing.clear();
        let targets = self.targets.clone();
        let mounts = Mounts::read();
        // Targets share directories (a home's dot files): each is looked at and
        // watched once a pass.
        let mut dirs = HashMap::new();
        for t in &targets {
            self.watch_parent(&t.path, &mut dirs);
            if t.kind == inode_kind::EXEC && !sole_name(&t.path) {
                // Not a program of its own: an entry made while it was stays.
                if !t.optional && !t.path.exists() {
                    self.missing.push(t.path.clone());
                }
                continue;
            }
            let Ok((dev, ino, is_dir)) = kernel_ident(&t.path, &mounts) else {
                if !t.optional {
                    self.missing.push(t.path.clone());
                }
                continue;
            };
            let fits = match t.kind {
                inode_kind::TREE => is_dir,
                inode_kind::EXEC => !is_dir,
                _ => true,
            };
            if !fits {
                // A directory rule on a file, a program that is a directory.
                if !t.optional {
                    self.missing.push(t.path.clone());
                }
                continue;
            }
            let id = (t.kind, dev, ino);
            let wd = self.inotify.watches().add(&t.path, MASK).ok();
            match self.known.get_mut(&id) {
                Some(k) => {
                    // Two rules on one inode: the first that the kernel enforces
                    // holds the entry, else the first.
                    if k.path == t.path || (!enforcing(&k.value) && enforcing(&t.value)) {
                        k.value = t.value;
                        k.path = t.path.clone();
                    }
                    k.current = true;
                    k.wd = wd.or(k.wd.take());
                }
                None => {
                    self.known.insert(
                        id,
                        Known {
                            path: t.path.clone(),
                            value: t.value,
                            wd,
                            current: true,
                            member_of: None,
                            links: 0,
                        },
                    );
                }
            }
        }
        let left_out = self.index_members(&targets, &mounts);
        // What the kernel gets, decided once: current paths first, then entries
        // that moved away, at most IDENTITY_MAX; the rest are reported. The files
        // inside protected directories apart, at most IDENTITY_MEMBERS_MAX: those
        // with several names first, then the rest, then those that moved away.
        let mut order: Vec<(bool, Id)> = Vec::new();
        let mut members: Vec<(bool, bool, Id)> = Vec::new();
        for (id, k) in &self.known {
            match k.member_of {
                None => order.push((!k.current, *id)),
                Some(_) => members.push((!k.current, k.links < 2, *id)),
            }
        }
        order.sort();
        members.sort();
        self.over = order
            .split_off(order.len().min(IDENTITY_MAX))
            .into_iter()
            .filter_map(|(_, id)| self.known.get(&id).map(|k| k.path.clone()))
            .collect();
        let mut members_over: BTreeMap<PathBuf, usize> = left_out;
        for (_, _, id) in members.split_off(members.len().min(IDENTITY_MEMBERS_MAX)) {
            if let Some(tree) = self.known.get(&id).and_then(|k| k.member_of.clone()) {
                *members_over.entry(tree).or_default() += 1;
            }
        }
        self.members_over = members_over.into_iter().collect();
        self.installed = order
            .into_iter()
            .map(|(_, id)| id)
            .chain(members.into_iter().map(|(_, _, id)| id))
            .collect();
    }

    /// Gives every regular file under each directory the kernel enforces a rule on
    /// (its exceptions apart) an entry with that rule, watching each directory of
    /// the tree for files coming and each file for its inode going. Returns the
    /// directories whose walk stopped at [`WALK_MAX`], with the entries it did not
    /// look at (at least one).
    fn index_members(&mut self, targets: &[Target], mounts: &Mounts) -> BTreeMap<PathBuf, usize> {
        let mut left_out = BTreeMap::new();
        let mut budget = WALK_MAX;
        for t in targets.iter().filter(|t| is_tree_rule(t)) {
            let Ok((dev, _, true)) = kernel_ident(&t.path, mounts) else {
                continue;
            };
            let except = exceptions(&t.except);
            let mut dirs = vec![t.path.clone()];
            while let Some(dir) = dirs.pop() {
                if let Ok(wd) = self.inotify.watches().add(&dir, TREE_MASK) {
                    self.parents.insert(wd, dir.clone());
                }
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if budget == 0 {
                        *left_out.entry(t.path.clone()).or_insert(0) += 1;
                        break;
                    }
                    budget -= 1;
                    let path = entry.path();
                    let Ok(meta) = std::fs::symlink_metadata(&path) else {
                        continue;
                    };
                    if meta.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    if !meta.is_file() || except.is_match(&path) {
                        continue;
                    }
                    // stat(2)'s numbers are the kernel's unless an overlay is in
                    // the way (its device then differs from the directory's).
                    let id = if kernel_dev(meta.dev()) == dev {
                        (inode_kind::FILE, dev, meta.ino())
                    } else {
                        match kernel_ident(&path, mounts) {
                            Ok((d, ino, _)) => (inode_kind::FILE, d, ino),
                            Err(_) => continue,
                        }
                    };
                    self.add_member(id, path, &t.path, t.value, meta.nlink());
                }
            }
        }
        left_out
    }

    /// One file found inside the protected directory `tree`; a target's own entry
    /// for the same file keeps its rule.
    fn add_member(&mut self, id: Id, path: PathBuf, tree: &Path, value: RuleRef, links: u64) {
        if let Some(k) = self.known.get_mut(&id) {
            k.current |= k.member_of.is_some();
            k.links = links;
            if k.member_of.is_some() {
                k.path = path;
                k.member_of = Some(tree.to_owned());
                k.value = value;
            }
            return;
        }
        let wd = self.inotify.watches().add(&path, MEMBER_MASK).ok();
        self.known.insert(
            id,
            Known {
                path,
                value,
                wd,
                current: true,
                member_of: Some(tree.to_owned()),
                links,
            },
        );
    }

    /// Watches the nearest existing ancestor of `path` (its parent, unless that is
    /// missing too): a name appearing or being replaced there is seen. `dirs` holds
    /// what this pass already found of each directory (whether it is one).
    fn watch_parent(&mut self, path: &Path, dirs: &mut HashMap<PathBuf, bool>) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            let is_dir = match dirs.get(d) {
                // Watched already, this pass.
                Some(true) => return,
                Some(false) => false,
                None => {
                    let is_dir = d.is_dir();
                    dirs.insert(d.to_owned(), is_dir);
                    is_dir
                }
            };
            if is_dir {
                if let Ok(wd) = self.inotify.watches().add(d, MASK) {
                    self.parents.insert(wd, d.to_owned());
                }
                return;
            }
            dir = d.parent();
        }
    }

    /// The kernel's entries for `generation`: at most [`IDENTITY_MAX`] files and
    /// directories, then the fail-closed entries ([`Self::fail_closed`]).
    pub fn entries(&self, generation: u8) -> Vec<(InodeKey, RuleRef)> {
        let mut out = self.inode_entries(generation);
        if let Some(value) = self.members_over_value() {
            out.push((
                InodeKey::new(generation, inode_kind::MEMBERS_OVER, 0, 0),
                value,
            ));
        }
        out.extend(
            self.fail_closed()
                .0
                .into_iter()
                .zip(0u64..)
                .map(|(value, ino)| {
                    (
                        InodeKey::new(generation, inode_kind::UNKNOWN, 0, ino),
                        value,
                    )
                }),
        );
        out
    }

    /// What the kernel judges an open by when the opened file's directories could
    /// not be walked to the root (too deep): every rule on a concrete directory that
    /// the kernel enforces, once each, at most [`IDENTITY_UNKNOWN_MAX`]; and the
    /// directories of the rules past that bound (reported, not failed closed).
    fn fail_closed(&self) -> (Vec<RuleRef>, Vec<PathBuf>) {
        let mut values: Vec<RuleRef> = Vec::new();
        let mut over = Vec::new();
        for t in &self.targets {
            if t.kind != inode_kind::TREE || !enforcing(&t.value) || values.contains(&t.value) {
                continue;
            }
            if values.len() < IDENTITY_UNKNOWN_MAX {
                values.push(t.value);
            } else {
                over.push(t.path.clone());
            }
        }
        (values, over)
    }

    /// The `MEMBERS_OVER` entry's value (the first directory past the bound's
    /// rule), when some protected directory's files did not all get an entry.
    fn members_over_value(&self) -> Option<RuleRef> {
        let (tree, _) = self.members_over.first()?;
        self.targets
            .iter()
            .find(|t| t.path == *tree && is_tree_rule(t))
            .map(|t| t.value)
    }

    /// The file and directory entries for `generation` (at most [`IDENTITY_MAX`]).
    fn inode_entries(&self, generation: u8) -> Vec<(InodeKey, RuleRef)> {
        self.installed
            .iter()
            .filter_map(|id| Some((*id, self.known.get(id)?.value)))
            .map(|((kind, dev, ino), value)| (InodeKey::new(generation, kind, dev, ino), value))
            .collect()
    }

    /// The protected path (dev, ino) stands for, as the policy names it.
    pub fn name_of(&self, dev: u32, ino: u64) -> Option<&Path> {
        [inode_kind::FILE, inode_kind::TREE, inode_kind::EXEC]
            .iter()
            .find_map(|kind| self.known.get(&(*kind, dev, ino)))
            .map(|k| k.path.as_path())
    }

    /// A summary for the logs and `policy_loaded`: entries installed, paths past
    /// the bound, targets that do not exist.
    pub fn summary(&self) -> Summary {
        let (fail_closed, unknown_over) = self.fail_closed();
        Summary {
            entries: self.installed.len(),
            over: self
                .over
                .iter()
                .chain(&unknown_over)
                .map(|p| p.display().to_string())
                .chain(
                    self.members_over
                        .iter()
                        .map(|(tree, n)| format!("{}/** ({n} files)", tree.display())),
                )
                .collect(),
            missing: self.missing.len(),
            fail_closed: fail_closed.len(),
            members: self
                .installed
                .iter()
                .filter(|id| self.known.get(id).is_some_and(|k| k.member_of.is_some()))
                .count(),
        }
    }

    /// One line per entry that is new or changed since the last call, for the
    /// daemon's log (tests wait on these): a protected directory's files would
    /// repeat on every change in it otherwise.
    pub fn log_entries(&mut self) {
        self.logged.retain(|id, _| self.known.contains_key(id));
        for (id @ (kind, dev, ino), k) in &self.known {
            let state = (k.path.clone(), k.current, k.value.rule);
            if self.logged.get(id) == Some(&state) {
                continue;
            }
            self.logged.insert(*id, state);
            tracing::info!(
                path = %k.path.display(),
                kind = match *kind {
                    inode_kind::TREE => "tree",
                    inode_kind::EXEC => "program",
                    _ if k.member_of.is_some() => "member",
                    _ => "file",
                },
                dev = dev_text(*dev),
                ino,
                current = k.current,
                rule = k.value.rule,
                "identity entry"
            );
        }
    }
}

/// Whether `path` is a regular file with one name: a program that is its own.
/// A symlink names another file (whose own name the exec rules match), and a file
/// with several names already (busybox's applets, hard-linked multi-call binaries)
/// shares its identity with programs the rule does not name: matching it by
/// identity would stop those too.
fn sole_name(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file() && m.nlink() == 1)
}

/// Whether `t` is a directory rule the kernel enforces: its files are indexed.
fn is_tree_rule(t: &Target) -> bool {
    t.kind == inode_kind::TREE && enforcing(&t.value)
}

/// A rule's exceptions as one matcher (patterns the policy compiled already; one
/// that does not build is left out).
fn exceptions(patterns: &[String]) -> globset::GlobSet {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        if let Ok(g) = globset::GlobBuilder::new(p).literal_separator(true).build() {
            set.add(g);
        }
    }
    set.build().unwrap_or_else(|_| globset::GlobSet::empty())
}

/// Whether an entry's value is one the kernel enforces (kill or deny, not an
/// exception).
fn enforcing(v: &RuleRef) -> bool {
    v.flags & (rule_flags::KILL | rule_flags::DENY) != 0 && v.flags & rule_flags::EXCEPT == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_join_the_levels_below_the_protected_entry() {
        assert_eq!(
            canonical(Path::new("/root/.ssh"), "/mnt/x/keys/id_rsa", 2),
            "/root/.ssh/keys/id_rsa"
        );
        assert_eq!(
            canonical(Path::new("/etc/shadow"), "/tmp/link", 0),
            "/etc/shadow"
        );
    }

    #[test]
    fn the_kernel_identity_of_a_plain_file_is_what_stat_says() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = std::fs::metadata(dir.path()).expect("stat");
        let (dev, ino, is_dir) = kernel_ident(dir.path(), &Mounts::read()).expect("ident");
        // tmpfs or a disk: no overlay in the way of a test's temp dir here.
        assert_eq!(
            (dev, ino, is_dir),
            (kernel_dev(meta.dev()), meta.ino(), true)
        );
    }

    #[test]
    fn kernel_device_numbers_use_mkdev() {
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(0, 44)), 44);
    }

    #[test]
    fn a_program_is_matched_by_identity_only_while_it_has_one_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let at = |name: &str| dir.path().join(name);
        std::fs::write(at("prog"), "x").expect("write");
        std::fs::write(at("multi"), "x").expect("write");
        std::fs::hard_link(at("multi"), at("applet")).expect("link");
        std::os::unix::fs::symlink(at("multi"), at("sym")).expect("symlink");
        let value = RuleRef {
            rule: 1,
            access: 0,
            flags: rule_flags::KILL,
            ports: [0; 8],
        };
        let program = |name: &str, optional| Target {
            path: at(name),
            kind: inode_kind::EXEC,
            value,
            optional,
            except: Vec::new(),
        };
        let mut id = Identity::new().expect("inotify");
        id.set_targets(vec![
            program("prog", false),
            program("applet", true),
            program("sym", true),
            program("absent", true),
        ]);
        let prog = std::fs::metadata(at("prog")).expect("stat").ino();
        let inos =
            |id: &Identity| -> Vec<u64> { id.entries(0).iter().map(|(k, _)| k.ino).collect() };
        // A multi-call binary's name and a symlink are not programs of their own;
        // an optional candidate that does not exist is not missing.
        assert_eq!(inos(&id), vec![prog]);
        assert_eq!(id.summary().missing, 0);
        // A second name made later (the route this guards against) keeps the entry.
        std::fs::hard_link(at("prog"), at("innocent")).expect("link");
        assert!(id.read_events(), "inotify saw the new link count");
        id.resolve();
        assert_eq!(inos(&id), vec![prog]);
    }

    #[test]
    fn entries_past_the_bound_are_reported_not_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = RuleRef {
            rule: 1,
            access: 1,
            flags: rule_flags::KILL,
            ports: [0; 8],
        };
        let targets: Vec<Target> = (0..IDENTITY_MAX + 2)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                std::fs::write(&path, "x").expect("write");
                Target {
                    path,
                    kind: inode_kind::FILE,
                    value,
                    optional: false,
                    except: Vec::new(),
                }
            })
            .collect();
        let mut id = Identity::new().expect("inotify");
        id.set_targets(targets);
        let files = id
            .entries(0)
            .iter()
            .filter(|(k, _)| k.kind == inode_kind::FILE)
            .count();
        let summary = id.summary();
        assert_eq!(files, IDENTITY_MAX);
        assert_eq!(summary.entries, IDENTITY_MAX);
        assert_eq!(summary.over.len(), 2, "{:?}", summary.over);
        // What is reported over the bound is exactly what is not installed.
        let installed: HashSet<u64> = id.entries(0).iter().map(|(k, _)| k.ino).collect();
        for path in &summary.over {
            let ino = std::fs::metadata(path).expect("stat").ino();
            assert!(!installed.contains(&ino), "{path} is installed");
        }
    }

    #[test]
    fn a_protected_file_keeps_its_entry_when_moved_and_a_replacement_joins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "x").expect("write");
        let mut id = Identity::new().expect("inotify");
        let value = RuleRef {
            rule: 3,
            access: 1,
            flags: rule_flags::KILL,
            ports: [0; 8],
        };
        id.set_targets(vec![Target {
            path: secret.clone(),
            kind: inode_kind::FILE,
            value,
            optional: false,
            except: Vec::new(),
        }]);
        let first = std::fs::metadata(&secret).expect("stat").ino();
        assert_eq!(id.entries(0).len(), 1);
        // Moved away: the inode lives on, the entry stays; a new file at the path
        // is protected too once the change is read and resolved.
        std::fs::rename(&secret, dir.path().join("moved")).expect("mv");
        std::fs::write(&secret, "y").expect("write");
        assert!(id.read_events(), "inotify saw the change");
        id.resolve();
        let inos: Vec<u64> = id.entries(1).iter().map(|(k, _)| k.ino).collect();
        let second = std::fs::metadata(&secret).expect("stat").ino();
        assert!(inos.contains(&first) && inos.contains(&second), "{inos:?}");
        // Deleted: its entry leaves.
        std::fs::remove_file(dir.path().join("moved")).expect("rm");
        assert!(id.read_events());
        id.resolve();
        let inos: Vec<u64> = id.entries(1).iter().map(|(k, _)| k.ino).collect();
        assert_eq!(inos, vec![second]);
        assert_eq!(
            id.name_of(
                kernel_dev(std::fs::metadata(&secret).expect("stat").dev()),
                second
            ),
            Some(secret.as_path())
        );
    }

    fn tree(path: &Path, except: &[&str]) -> Target {
        Target {
            path: path.to_owned(),
            kind: inode_kind::TREE,
            value: RuleRef {
                rule: 7,
                access: 1,
                flags: rule_flags::KILL,
                ports: [0; 8],
            },
            optional: false,
            except: except.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    fn member_inos(id: &Identity) -> HashSet<u64> {
        id.entries(0)
            .iter()
            .filter(|(k, v)| k.kind == inode_kind::FILE && v.rule == 7)
            .map(|(k, _)| k.ino)
            .collect()
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).expect("stat").ino()
    }

    #[test]
    fn the_files_inside_a_protected_directory_are_entries_of_its_rule() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::create_dir_all(secret.join("deep/er")).expect("mkdir");
        for f in ["key", "deep/er/token", "key.pub"] {
            std::fs::write(secret.join(f), "x").expect("write");
        }
        std::os::unix::fs::symlink("/etc/hostname", secret.join("sym")).expect("symlink");
        let excepted = format!("{}/**/*.pub", secret.display());
        let mut id = Identity::new().expect("inotify");
        id.set_targets(vec![tree(&secret, &[&excepted])]);
        // Regular files at any depth; not the exception, not a symbolic link.
        let want: HashSet<u64> = [secret.join("key"), secret.join("deep/er/token")]
            .iter()
            .map(|p| ino(p))
            .collect();
        assert_eq!(member_inos(&id), want);
        assert_eq!(id.summary().members, 2);
        assert!(id.summary().over.is_empty());
        // The directory itself is an entry too (the kernel's walk finds it above).
        assert!(
            id.entries(0)
                .iter()
                .any(|(k, _)| k.kind == inode_kind::TREE && k.ino == ino(&secret))
        );

        // A file appearing deep inside joins once the change is read; one moved
        // out stays (its inode is the protected file wherever it went), and it
        // leaves with its last name.
        std::fs::write(secret.join("deep/new"), "y").expect("write");
        std::fs::rename(secret.join("key"), dir.path().join("outside")).expect("mv");
        assert!(id.read_events(), "inotify saw the new file");
        id.resolve();
        let moved = ino(&dir.path().join("outside"));
        let now = member_inos(&id);
        assert!(now.contains(&ino(&secret.join("deep/new"))), "{now:?}");
        assert!(now.contains(&moved), "the moved file left: {now:?}");
        std::fs::remove_file(dir.path().join("outside")).expect("rm");
        assert!(id.read_events());
        id.resolve();
        assert!(!member_inos(&id).contains(&moved));
        // The policy drops the rule: its files leave with it.
        id.set_targets(Vec::new());
        assert!(member_inos(&id).is_empty());
    }

    #[test]
    fn past_the_bound_files_with_several_names_go_in_first_and_the_rest_fail_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).expect("mkdir");
        for i in 0..IDENTITY_MEMBERS_MAX + 10 {
            std::fs::write(secret.join(format!("f{i:05}")), "x").expect("write");
        }
        let linked = secret.join(format!("f{:05}", IDENTITY_MEMBERS_MAX + 9));
        std::fs::hard_link(&linked, dir.path().join("elsewhere")).expect("link");
        let mut id = Identity::new().expect("inotify");
        id.set_targets(vec![tree(&secret, &[])]);
        let members = member_inos(&id);
        assert_eq!(members.len(), IDENTITY_MEMBERS_MAX);
        assert!(members.contains(&ino(&linked)), "the linked file is not in");
        let over = id.summary().over;
        assert_eq!(over, vec![format!("{}/** (10 files)", secret.display())]);
        // The kernel is told to fail closed on files with several names it cannot place.
        let flag: Vec<_> = id
            .entries(1)
            .into_iter()
            .filter(|(k, _)| k.kind == inode_kind::MEMBERS_OVER)
            .collect();
        assert_eq!(flag.len(), 1, "{flag:?}");
        assert_eq!((flag[0].0.generation, flag[0].1.rule), (1, 7));
    }
}
