//! The `guard` binary's modules, as a library: `main.rs` dispatches to them, and the
//! fuzz targets (`fuzz/`) drive the parsers of untrusted input (ring-buffer records,
//! control messages) through them. Not a stable API. The policy (parse, validate,
//! compile, judge) and the event model it judges are the `guard-policy` crate.

pub mod action;
pub mod agents;
/// Anomaly detection: `guard_policy::anomaly`.
pub use guard_policy::anomaly;
pub mod audit;
pub mod cli;
pub mod confine;
pub mod container;
pub mod control;
pub mod daemon;
pub mod delegation;
pub mod digest;
pub mod dns;
pub mod ebpf;
pub mod event;
pub mod export;
pub mod fleet;
pub mod host;
pub mod identity;
pub mod ignore;
pub mod metrics;
pub mod packages;
pub mod policy;
pub mod report;
pub mod resolve;
pub mod session;
pub mod top;
