//! Containers on this host: what the policy crate reads from cgroup paths
//! (`guard_policy::container`), and the runtimes' state (`runtime`).

pub use guard_policy::container::*;

pub mod runtime;
