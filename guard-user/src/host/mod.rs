//! The host under every other module: its mounts (tracefs, bpffs, cgroup2 and the
//! mount table), its clocks and its name. Reads the kernel's interfaces; imports no other
//! module of guard.

pub mod clock;
pub mod mounts;

/// Opens for reading a file whose path a session's process controls (the daemon
/// reads it as root): not through a symbolic link at its end, without blocking on a
/// FIFO, and only a regular file.
pub fn open_regular(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// The host's name and its kernel's release, as `uname` gives them.
pub fn uname() -> (String, String) {
    let u = rustix::system::uname();
    (
        u.nodename().to_string_lossy().into_owned(),
        u.release().to_string_lossy().into_owned(),
    )
}
