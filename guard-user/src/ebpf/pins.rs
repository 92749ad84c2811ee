//! Enforcement that outlives the daemon: guard's maps, links and programs are pinned
//! under a directory of the BPF file system (`/sys/fs/bpf/guard` by default). A
//! pinned link keeps its program attached, and a pinned map keeps its contents, with
//! no process holding them: when the daemon dies (crash, SIGKILL, a normal stop) the
//! kernel goes on tracking sessions and killing or denying by the last rules
//! installed. The next daemon loads its own programs against the same maps and puts
//! them in place of the old ones link by link (see [`Links`]). Only `guard unload`
//! ([`unload`]) removes the pins, which detaches everything.
//!
//! Layout: `<dir>/maps/<MAP>`, `<dir>/links/<hook>`, `<dir>/progs/<program>`. One
//! daemon at a time holds the directory: an exclusive `flock` on it, taken before
//! anything is touched and held for the daemon's life.

use std::{
    collections::BTreeMap,
    fs::File,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};

use super::Error;
use crate::host::mounts;

/// Where guard pins its objects unless told otherwise (`--pin-dir`).
pub const DEFAULT_DIR: &str = "/sys/fs/bpf/guard";

/// Maps whose contents must outlive the daemon: sessions, agent names and cgroups,
/// rules and mode (the `[taint]` allowlist among them), the ring buffer (records written while no daemon runs wait there),
/// the counters, the opens and sends in flight, the sessions' record budgets, the
/// daemon's own state, what self-protection guards (the daemon's threads, the pin
/// directory), the tagged sockets' byte counts (a restart loses no flow), and the
/// processes held at exec for their digest (the next daemon lets them go), the
/// threads' counted repeats of opens and the epochs they hold for (a restart loses
/// no count), and where the DNS of sockets pointed at guard's resolver was sent (an
/// answer in flight across a restart still seems to come from there), and the
/// files sessions downloaded (a restart forgets no download). The
/// per-CPU scratch maps are not listed: each program version gets fresh ones. A map
/// added to the eBPF object whose contents the kernel needs across a restart
/// belongs here.
pub const PINNED_MAPS: [&str; 26] = [
    "TRACKED",
    "AGENTS",
    "AGENT_CGROUPS",
    "EVENTS",
    "COUNTERS",
    "PENDING_OPEN",
    "PENDING_NET",
    "CONFIG",
    "PATH_RULES",
    "NET_RULES",
    "TAINT_NET",
    "SESSION_LIMITS",
    "DAEMON",
    "GUARD_PIDS",
    "GUARD_PIN",
    "FLOW_SOCKS",
    "INODE_RULES",
    "INODE_COUNT",
    "DIGEST_SIZES",
    "HELD",
    "OPEN_CACHE",
    "OPEN_EPOCH",
    "DNS_ORIG",
    "FETCHED",
    "FETCH_SESSIONS",
    "HELD_FOR",
];

/// A pin directory held by this process.
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    /// The directory, opened and flocked; the lock goes with the descriptor.
    _lock: File,
}

impl PinDir {
    /// Creates the directory if needed (mounting the BPF file system at `/sys/fs/bpf`
    /// when absent) and takes its lock; another process holding it is an error that
    /// names that daemon's pid where the pins record it.
    pub fn lock(path: &Path) -> Result<Self, Error> {
        mounts::ensure_bpffs()?;
        std::fs::create_dir_all(path).map_err(|source| Error::PinDir {
            path: path.to_owned(),
            source,
        })?;
        if !mounts::on_bpffs(path) {
            return Err(Error::NotBpffs(path.to_owned()));
        }
        for sub in ["maps", "links", "progs"] {
            let sub = path.join(sub);
            std::fs::create_dir_all(&sub).map_err(|source| Error::PinDir { path: sub, source })?;
        }
        let dir = File::open(path).map_err(|source| Error::PinDir {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(Error::PinsHeld {
                    path: path.to_owned(),
                    holder: holder(path),
                });
            }
            return Err(Error::PinDir {
                path: path.to_owned(),
                source: e,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.path.join("maps").join(name)
    }

    pub fn links(&self) -> PathBuf {
        self.path.join("links")
    }

    pub fn prog(&self, name: &str) -> PathBuf {
        self.path.join("progs").join(name)
    }

    /// Whether an earlier daemon left its maps here (this start adopts them).
    pub fn has_state(&self) -> bool {
        self.map("DAEMON").exists() && self.map("TRACKED").exists()
    }

    /// Pins `program` as `progs/<name>`, replacing an earlier version's pin (the
    /// program pins are for inspection with bpftool; links are what keep programs
    /// attached).
    pub fn pin_program(
        &self,
        name: &str,
        pin: impl FnOnce(&Path) -> Result<(), aya::pin::PinError>,
    ) -> Result<(), Error> {
        let path = self.prog(name);
        remove_pin(&path)?;
        pin(&path).map_err(|source| Error::Pin {
            path: path.clone(),
            source,
        })
    }
}

/// "(pid N)" of the daemon holding `dir`, from its state map, or "" when unknown.
fn holder(dir: &Path) -> String {
    let path = dir.join("maps").join("DAEMON");
    let pid = aya::maps::MapData::from_pin(&path)
        .ok()
        .and_then(|data| aya::maps::Array::<_, u64>::try_from(aya::maps::Map::Array(data)).ok())
        .and_then(|a| a.get(&guard_common::daemon_state::PID, 0).ok());
    match pid {
        Some(pid) if pid != 0 => format!(" (pid {pid})"),
        _ => String::new(),
    }
}

fn remove_pin(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::PinDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// How a hook's link was put in place at this start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swaps {
    /// Links created where none was pinned (the first start on this directory).
    pub new: usize,
    /// Links whose program was replaced in place by `BPF_LINK_UPDATE` (cgroup
    /// sock_addr hooks): the hook never ran without a program.
    pub updated: usize,
    /// Links of types the kernel cannot update (tracepoints, raw tracepoints, LSM):
    /// the new program was attached before the old link was removed, so both ran for
    /// a moment (a record may be reported twice then; a kill or deny applies once
    /// more at worst), and none was ever missing.
    pub replaced: usize,
    /// Old links with no counterpart in this version, removed at the end.
    pub removed: usize,
}

/// The links an earlier daemon pinned, taken over one hook at a time.
pub struct Links {
    dir: PathBuf,
    old: BTreeMap<String, PinnedLink>,
    pub swaps: Swaps,
    /// Links that cannot be pinned (syscall tracepoints before Linux 5.15, which
    /// attaches them without a bpf_link): they last as long as the daemon holds them.
    held: Vec<Held>,
}

/// A link the daemon holds because it cannot be pinned, with its program's name.
pub struct Held {
    pub program: &'static str,
    _link: aya::programs::trace_point::TracePointLink,
}

impl Links {
    /// Opens every link pinned under `pins`. A swap cut short by a crash can leave a
    /// hook's new link pinned as `<hook>-new`: alone, it becomes the hook's link; next
    /// to the old one, it is dropped (the old one still enforces).
    pub fn open(pins: &PinDir) -> Result<Self, Error> {
        let dir = pins.links();
        let read = std::fs::read_dir(&dir).map_err(|source| Error::PinDir {
            path: dir.clone(),
            source,
        })?;
        let names: Vec<String> = read
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let mut old = BTreeMap::new();
        for name in &names {
            let path = dir.join(name);
            let hook = match name.strip_suffix("-new") {
                Some(hook) if names.iter().any(|n| n == hook) => {
                    remove_pin(&path)?;
                    continue;
                }
                Some(hook) => hook,
                None => name.as_str(),
            };
            match PinnedLink::from_pin(&path) {
                Ok(link) => {
                    old.insert(hook.to_owned(), link);
                }
                Err(e) => tracing::warn!("ignoring {}: not a link ({e})", path.display()),
            }
        }
        Ok(Self {
            dir,
            old,
            swaps: Swaps::default(),
            held: Vec::new(),
        })
    }

    /// Whether an earlier daemon pinned a link for `hook`.
    pub fn has(&self, hook: &str) -> bool {
        self.old.contains_key(hook)
    }

    /// Points the pinned link of `hook` at `program` (`BPF_LINK_UPDATE`): one atomic
    /// switch, no moment without a program. Only some link types allow it (cgroup,
    /// XDP, netns, tcx); the kernel answers EOPNOTSUPP for the others.
    /// On failure the old link stays the hook's (still enforcing), for
    /// [`Self::install`] to replace.
    pub fn update(&mut self, hook: &str, program: impl AsFd) -> Result<(), Error> {
        if !self.old.contains_key(hook) {
            return Err(Error::NoLink(hook.to_owned()));
        }
        let path = self.dir.join(hook);
        obj_get(&path)
            .and_then(|fd| link_update(fd.as_fd(), program.as_fd()))
            .map_err(|source| Error::LinkUpdate {
                hook: hook.to_owned(),
                source,
            })?;
        // The pin stays where it was (and keeps the link); this descriptor goes.
        self.old.remove(hook);
        self.swaps.updated += 1;
        Ok(())
    }

    /// Pins the freshly attached `link` as `hook`'s, then removes the old link of
    /// `hook` if any (which detaches its program): new before old, never neither.
    pub fn install(&mut self, hook: &str, link: FdLink) -> Result<(), Error> {
        let path = self.dir.join(hook);
        let Some(old) = self.old.remove(hook) else {
            remove_pin(&path)?;
            link.pin(&path)
                .map_err(|source| Error::Pin { path, source })?;
            self.swaps.new += 1;
            return Ok(());
        };
        let aside = self.dir.join(format!("{hook}-new"));
        remove_pin(&aside)?;
        let pinned = link.pin(&aside).map_err(|source| Error::Pin {
            path: aside.clone(),
            source,
        })?;
        // The old link's last reference goes with its pin and this descriptor.
        let old = old.unpin().map_err(|source| Error::PinDir {
            path: path.clone(),
            source,
        })?;
        drop(old);
        FdLink::from(pinned)
            .pin(&path)
            .map_err(|source| Error::Pin {
                path: path.clone(),
                source,
            })?;
        remove_pin(&aside)?;
        self.swaps.replaced += 1;
        Ok(())
    }

    /// Removes the pinned link of `hook` (which detaches its program): part of a
    /// feature attached before a program it needs was refused.
    pub fn remove(&mut self, hook: &str) {
        self.old.remove(hook);
        if let Err(e) = remove_pin(&self.dir.join(hook)) {
            tracing::warn!("cannot remove the pinned link of {hook}: {e}");
        }
    }

    /// Keeps `link`, which cannot be pinned, for as long as the daemon runs.
    pub fn hold(
        &mut self,
        program: &'static str,
        link: aya::programs::trace_point::TracePointLink,
    ) {
        self.held.push(Held {
            program,
            _link: link,
        });
    }

    /// Removes the old links this version did not replace (hooks it no longer uses);
    /// returns how this start put each hook's link in place, and the links the daemon
    /// must hold.
    pub fn finish(mut self) -> (Swaps, Vec<Held>) {
        for (hook, link) in std::mem::take(&mut self.old) {
            tracing::info!("removing the link of {hook}, which this version does not use");
            if let Err(e) = link.unpin() {
                tracing::warn!("cannot remove the pinned link of {hook}: {e}");
            }
            self.swaps.removed += 1;
        }
        (self.swaps, self.held)
    }
}

/// `BPF_OBJ_GET`: a descriptor of the object pinned at `path` (aya 0.14 does not
/// hand out a pinned link's descriptor).
fn obj_get(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::{fd::FromRawFd as _, unix::ffi::OsStrExt as _};
    /// The `BPF_OBJ_*` member of `union bpf_attr`.
    #[repr(C)]
    struct ObjAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
    }
    const BPF_OBJ_GET: libc::c_long = 7;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let attr = ObjAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
    };
    // SAFETY: bpf(2) reads the attribute and the path it points to, both alive across
    // the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &raw const attr,
            size_of::<ObjAttr>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_LINK_UPDATE` (aya 0.14 keeps its wrapper crate-private).
fn link_update(
    link: std::os::fd::BorrowedFd<'_>,
    program: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    /// The `link_update` member of `union bpf_attr`.
    #[repr(C)]
    struct LinkUpdateAttr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    const BPF_LINK_UPDATE: libc::c_long = 29;
    let attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: program.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    // SAFETY: bpf(2) reads the attribute, which lives across the call; the
    // descriptors are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &raw const attr,
            size_of::<LinkUpdateAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `guard unload`: takes the lock (refusing while a daemon holds it) and removes
/// every pin under `path` — links first, which detaches guard's programs, then the
/// programs and maps — and the directory. Refuses a directory that is not guard's
/// (no `maps/DAEMON` or `links/`), so that a wrong path removes nothing of others'.
///
/// Removing a pin does not detach at once: the kernel releases a link whose last
/// reference was a pin from a work queue, after `unlink` has returned (and a
/// tracepoint link's perf event later still). So before it returns, `unload` waits
/// until every program the links and pins held is gone from the kernel — a program
/// is freed only once no hook holds it — and "guard enforces nothing now" is true
/// when it is said. Returns the number of links removed.
pub fn unload(path: &Path) -> Result<usize, Error> {
    if !path.exists() {
        return Ok(0);
    }
    if !path.join("maps").join("DAEMON").exists() && !path.join("links").is_dir() {
        return Err(Error::NotGuards(path.to_owned()));
    }
    let pins = PinDir::lock(path)?;
    let mut programs = std::collections::BTreeSet::new();
    let mut links = 0;
    for (sub, id) in [
        ("links", link_program_id as fn(&Path) -> Option<u32>),
        ("progs", |p: &Path| {
            aya::programs::ProgramInfo::from_pin(p).ok().map(|i| i.id())
        }),
    ] {
        for entry in std::fs::read_dir(path.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            links += usize::from(sub == "links");
            programs.extend(id(&entry.path()));
        }
    }
    for sub in ["links", "progs", "maps"] {
        let sub = path.join(sub);
        match std::fs::remove_dir_all(&sub) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::PinDir { path: sub, source }),
        }
    }
    std::fs::remove_dir(path).map_err(|source| Error::PinDir {
        path: path.to_owned(),
        source,
    })?;
    drop(pins);
    wait_released(&programs)?;
    Ok(links)
}

/// How long `unload` waits for the kernel to release guard's programs.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits until none of the program ids in `ids` is loaded any more.
fn wait_released(ids: &std::collections::BTreeSet<u32>) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    loop {
        let left: Vec<u32> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .map(|p| p.id())
            .filter(|id| ids.contains(id))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::StillLoaded {
                ids: left,
                waited: RELEASE_WAIT,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The id of the program the link pinned at `path` holds (`BPF_OBJ_GET_INFO_BY_FD`;
/// aya 0.14 reads link info only for the links it lists itself).
fn link_program_id(path: &Path) -> Option<u32> {
    /// The head of `struct bpf_link_info`; the kernel fills what `info_len` asks for.
    #[repr(C)]
    #[derive(Default)]
    struct LinkInfoHead {
        type_: u32,
        id: u32,
        prog_id: u32,
    }
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    let fd = obj_get(path).ok()?;
    let mut head = LinkInfoHead::default();
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<LinkInfoHead>() as u32,
        info: (&raw mut head) as u64,
    };
    // SAFETY: bpf(2) writes at most `info_len` bytes into `head`; both live across the
    // call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw const attr,
            size_of::<InfoAttr>(),
        )
    };
    (rc == 0 && head.prog_id != 0).then_some(head.prog_id)
}
