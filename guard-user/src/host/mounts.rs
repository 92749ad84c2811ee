//! The filesystems the programs need: tracefs (for tracepoint attachment) and the
//! cgroup2 mount (for the sock_addr hooks), found wherever the host put them.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

/// What could not be read or mounted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no cgroup2 filesystem is mounted (needed for the network hooks)")]
    NoCgroup2,
}

const TRACEFS: &str = "/sys/kernel/tracing";

fn mount_points(fstype: &str) -> Result<Vec<(PathBuf, String)>, Error> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| Error::Io {
        what: "read /proc/self/mountinfo",
        source,
    })?;
    Ok(parse_mountinfo(&text, fstype))
}

/// Mount points of `fstype` in a mountinfo text, with the root of each mount.
pub fn parse_mountinfo(text: &str, fstype: &str) -> Vec<(PathBuf, String)> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fs = post.split_whitespace().next()?;
            let mut fields = pre.split_whitespace();
            let root = fields.nth(3)?;
            let point = fields.next()?;
            (fs == fstype).then(|| (unescape(point), root.to_owned()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`); the rest
/// is the path's bytes as they are, not necessarily UTF-8. (procfs 0.17 keeps the
/// escapes in `mount_point`, hence this.)
fn unescape(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Makes sure tracefs is mounted (many minimal hosts and containers lack it).
pub fn ensure_tracefs() -> Result<(), Error> {
    if !mount_points("tracefs")?.is_empty()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    tracing::info!("tracefs is not mounted; mounting it at {TRACEFS}");
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let (src, target, fstype) = (c("tracefs"), c(TRACEFS), c("tracefs"));
    // SAFETY: plain mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::Io {
            what: "mount tracefs at /sys/kernel/tracing",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The BPF file system's magic number (`statfs(2)`'s `f_type`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` is on a BPF file system.
pub fn on_bpffs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed plain-integer struct it is given; the path
    // outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st), st)
    };
    #[expect(
        clippy::useless_conversion,
        reason = "f_type is i64 on x86-64, a narrower type elsewhere"
    )]
    let f_type = i64::from(st.f_type);
    rc == 0 && f_type == BPF_FS_MAGIC
}

/// Makes sure a BPF file system is mounted at `/sys/fs/bpf`, where guard pins its
/// maps and links (many minimal hosts and containers lack it).
pub fn ensure_bpffs() -> Result<(), Error> {
    const BPFFS: &str = "/sys/fs/bpf";
    if on_bpffs(Path::new(BPFFS)) {
        return Ok(());
    }
    tracing::info!("no BPF file system at {BPFFS}; mounting one");
    std::fs::create_dir_all(BPFFS).map_err(|source| Error::Io {
        what: "create /sys/fs/bpf",
        source,
    })?;
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let (src, target, fstype) = (c("bpf"), c(BPFFS), c("bpf"));
    // SAFETY: plain mount(2) with NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(Error::Io {
            what: "mount a BPF file system at /sys/fs/bpf",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The cgroup2 mount: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones, or wherever mountinfo says.
pub fn cgroup2_root() -> Result<PathBuf, Error> {
    let mounts = mount_points("cgroup2")?;
    mounts
        .iter()
        .find(|(_, root)| root == "/")
        .or(mounts.first())
        .map(|(p, _)| p.clone())
        .ok_or(Error::NoCgroup2)
}

/// The cgroup v2 id of a process (what `bpf_get_current_cgroup_id` returns): the
/// inode number of its cgroup directory under the cgroup2 mount.
pub fn cgroup_id_of(cgroup2: &Path, pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = cgroup2.join(rel.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,name=systemd
40 25 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:20 - tracefs tracefs rw
";

    #[test]
    fn finds_cgroup2_on_a_hybrid_host() {
        let m = parse_mountinfo(HYBRID, "cgroup2");
        assert_eq!(
            m,
            vec![(PathBuf::from("/sys/fs/cgroup/unified"), "/".to_owned())]
        );
        assert_eq!(parse_mountinfo(HYBRID, "tracefs").len(), 1);
        assert!(parse_mountinfo(HYBRID, "bpf").is_empty());
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(
            unescape(r"/mnt/with\040space"),
            Path::new("/mnt/with space")
        );
        assert_eq!(unescape(r"/mnt/a\134b"), Path::new("/mnt/a\\b"));
        // Non-ASCII names come through byte for byte (they were mangled before).
        assert_eq!(
            unescape("/mnt/caf\u{e9}\\011x"),
            Path::new("/mnt/caf\u{e9}\tx")
        );
        assert_eq!(unescape(r"/mnt/end\04"), Path::new(r"/mnt/end\04"));
        assert_eq!(unescape(r"/mnt/last\040"), Path::new("/mnt/last "));
    }
}
