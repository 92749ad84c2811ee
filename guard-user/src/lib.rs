//! The `guard` binary's modules, as a library: `main.rs` dispatches to them, and the
//! fuzz targets (`fuzz/`) drive the parsers of untrusted input (ring-buffer records,
//! policy files) through them. Not a stable API.

pub mod action;
pub mod agents;
pub mod anomaly;
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
pub mod identity;
pub mod ignore;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod resolve;
pub mod session;
pub mod top;
