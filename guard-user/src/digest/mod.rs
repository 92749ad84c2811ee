//! Programs by what they are: the SHA-256 of an executed file, for exec rules that
//! name programs by `digest` (a copy under any name is the same program).
//!
//! The kernel cannot hash a file from the hooks guard runs on every kernel (IMA's
//! hash helper needs sleepable BPF-LSM and IMA measuring the file; fs-verity's
//! digest exists only for files that enabled it). So the kernel holds: a session's
//! exec of a file whose size a digest names is stopped (SIGSTOP) before its first
//! instruction and listed in `HELD`; user space hashes the file the process runs
//! (`/proc/PID/exe`, whatever its name or whether it still has one), the judge
//! decides, and the process is killed or continued. Sizes rarely collide, so
//! almost no exec is ever held; a file is hashed once per (device, inode, change
//! time, size).

use std::collections::HashMap;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use aya::maps::{HashMap as BpfHashMap, MapData};
use sha2::{Digest as _, Sha256};

pub use crate::event::Download;

/// Files hashed at most, remembered by identity; past it the cache starts over.
const CACHE_MAX: usize = 4096;

/// A hold older than this whose exec record never came (lost, or written while no
/// daemon ran) is decided without it.
pub const STALE_HOLD_NS: u64 = 2_000_000_000;

/// The SHA-256 of `file`, lowercase hex, and its size.
pub fn of_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    Ok((hash(&mut file)?, size))
}

fn hash(file: &mut std::fs::File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// What identifies a file's content without reading it: a write changes the
/// change time (or the size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
    size: u64,
}

/// Digests of executed files, cached by identity.
#[derive(Default)]
pub struct Digests {
    cache: HashMap<Key, Arc<str>>,
    /// Files hashed (cache misses), for the numbers.
    pub hashed: u64,
}

impl Digests {
    /// The digest of the program process `pid` runs.
    pub fn of_process(&mut self, pid: u32) -> io::Result<Arc<str>> {
        let mut file = std::fs::File::open(format!("/proc/{pid}/exe"))?;
        let m = file.metadata()?;
        let key = Key {
            dev: m.dev(),
            ino: m.ino(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            size: m.len(),
        };
        if let Some(d) = self.cache.get(&key) {
            return Ok(Arc::clone(d));
        }
        let digest: Arc<str> = hash(&mut file)?.into();
        self.hashed += 1;
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, Arc::clone(&digest));
        Ok(digest)
    }
}

/// The processes the kernel holds at exec (`HELD`), and letting them go; and the
/// files sessions downloaded (`FETCHED`), for the holds of downloads and of
/// interpreters in sessions with downloads.
#[derive(Default)]
pub struct Holds {
    map: Option<BpfHashMap<MapData, u32, u64>>,
    fetched: Option<BpfHashMap<MapData, guard_common::FileId, guard_common::Fetched>>,
    /// `HELD_FOR`: why the kernel held a process for a download.
    held_for: Option<BpfHashMap<MapData, u32, u32>>,
}

/// The kernel's maps of downloads: `FETCHED` (the files sessions downloaded) and
/// `HELD_FOR` (the processes held at exec for one).
pub struct DownloadMaps {
    pub fetched: BpfHashMap<MapData, guard_common::FileId, guard_common::Fetched>,
    pub held_for: BpfHashMap<MapData, u32, u32>,
}

impl Holds {
    pub fn new(
        map: Option<BpfHashMap<MapData, u32, u64>>,
        downloads: Option<DownloadMaps>,
    ) -> Self {
        let (fetched, held_for) =
            downloads.map_or((None, None), |d| (Some(d.fetched), Some(d.held_for)));
        Self {
            map,
            fetched,
            held_for,
        }
    }

    /// Why the kernel held process `pid` at its exec for a download (`held_for`
    /// bits), if it did; the entry is taken.
    pub fn download_hold(&mut self, pid: u32) -> Option<u32> {
        let map = self.held_for.as_mut()?;
        let why = map.get(&pid, 0).ok()?;
        let _ = map.remove(&pid);
        Some(why)
    }

    /// The download process `pid`, held at its exec of `exe` with `argv` for
    /// `held_for` (`guard_common::held_for` bits), runs, if it runs one: the exec'd
    /// file itself, or the script (or program) an interpreter (or the loader) was
    /// given, resolved against the process's working directory.
    pub fn download(
        &self,
        pid: u32,
        exe: &str,
        argv: &[String],
        held_for: u32,
    ) -> Option<Download> {
        use guard_common::held_for;
        let fetched = self.fetched.as_ref()?;
        // The file as the kernel's dentry names it (on overlayfs, as in containers,
        // not what stat(2) says), through the process's own mounts.
        let mounts = crate::identity::Mounts::of_process(pid);
        let lookup = |path: &Path| -> Option<u32> {
            let (dev, ino, _) = crate::identity::kernel_ident(path, &mounts).ok()?;
            let key = guard_common::FileId {
                dev,
                _reserved: 0,
                ino,
            };
            fetched.get(&key, 0).ok().map(|f| f.pid)
        };
        if held_for & held_for::DOWNLOAD != 0
            && let Some(by_pid) = lookup(Path::new(&format!("/proc/{pid}/exe")))
        {
            return Some(Download {
                path: exe.to_owned(),
                by_pid,
            });
        }
        if held_for & (held_for::INTERPRETER | held_for::DOWNLOAD) != 0
            && let Some(t) = crate::event::via::target(exe, argv)
            && t.via != crate::event::via::Via::Applet
        {
            let path = if t.target.starts_with('/') {
                std::path::PathBuf::from(&t.target)
            } else {
                Path::new(&format!("/proc/{pid}/cwd")).join(&t.target)
            };
            return lookup(&path).map(|by_pid| Download {
                path: t.target,
                by_pid,
            });
        }
        None
    }

    /// Lets `pid` run (SIGCONT; after a kill, nothing), and forgets its hold.
    pub fn release(&mut self, pid: u32) {
        if let Some(map) = &mut self.map {
            let _ = map.remove(&pid);
        }
        if let Err(e) = continue_process(pid) {
            tracing::warn!("cannot continue process {pid}, held at exec: {e}");
        }
    }

    /// The holds older than [`STALE_HOLD_NS`] at boot time `now_ns`: each
    /// process, and when (boot ns) the kernel held it.
    pub fn stale(&self, now_ns: u64) -> Vec<(u32, u64)> {
        let Some(map) = &self.map else {
            return Vec::new();
        };
        map.iter()
            .filter_map(Result::ok)
            .filter(|(_, at)| now_ns.saturating_sub(*at) >= STALE_HOLD_NS)
            .collect()
    }
}

/// SIGCONT by pidfd: a pid whose process is gone is no one's to wake.
fn continue_process(pid: u32) -> io::Result<()> {
    use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
    let Some(p) = Pid::from_raw(pid as i32) else {
        return Ok(());
    };
    match pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => match pidfd_send_signal(&fd, Signal::CONT) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_digest_is_its_sha256() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc")?;
        let (digest, size) = of_file(&path)?;
        // FIPS 180-2's example for "abc".
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(size, 3);
        Ok(())
    }

    #[test]
    fn a_process_program_is_hashed_once_until_it_changes() -> anyhow::Result<()> {
        let mut d = Digests::default();
        let me = std::process::id();
        let first = d.of_process(me)?;
        let again = d.of_process(me)?;
        assert_eq!(first, again);
        assert_eq!(d.hashed, 1, "the second lookup comes from the cache");
        let exe = std::fs::read_link(format!("/proc/{me}/exe"))?;
        assert_eq!(&*first, of_file(&exe)?.0);
        Ok(())
    }
}
