//! The host under every other module: its mounts (tracefs, bpffs, cgroup2 and the
//! mount table), its clocks and its name. Reads the kernel's interfaces; imports no other
//! module of guard.

pub mod clock;
pub mod mounts;

/// The host's name and its kernel's release, as `uname` gives them.
pub fn uname() -> (String, String) {
    let u = rustix::system::uname();
    (
        u.nodename().to_string_lossy().into_owned(),
        u.release().to_string_lossy().into_owned(),
    )
}
