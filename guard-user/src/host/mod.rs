//! The host under every other module: its mounts (tracefs, bpffs, cgroup2 and the
//! mount table) and its clocks. Reads the kernel's interfaces; imports no other
//! module of guard.

pub mod clock;
pub mod mounts;
