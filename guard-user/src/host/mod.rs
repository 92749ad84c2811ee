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

/// Has every thread of this process allocate from one malloc arena (glibc's
/// `M_ARENA_MAX`), before any thread starts. glibc gives each thread an arena of its
/// own; the daemon's threads hand each other buffers (the ring buffer's reader, the
/// export's writer and sender), and their arenas held ~25 MiB more at 50,000
/// events/s exported (measured: 84-89 MiB peak against 58 MiB with one arena, the
/// same CPU).
pub fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt changes an allocator setting; called before other threads
    // exist, it races with no allocation.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The host's name and its kernel's release, as `uname` gives them.
pub fn uname() -> (String, String) {
    let u = rustix::system::uname();
    (
        u.nodename().to_string_lossy().into_owned(),
        u.release().to_string_lossy().into_owned(),
    )
}
