//! The wire format between guard's eBPF programs and its daemon.
//!
//! Every record on the ring buffer starts with a [`Header`]; its [`EventKind`]
//! says which fixed body follows, and the body says how many payload bytes
//! (paths, argv) follow it. All types are `#[repr(C)]` and contain no padding
//! the kernel could leave uninitialised.
//!
//! Behind the `protocol` feature (user space only): the control protocol between
//! the daemon and its clients, [`protocol`], and the event line both the audit
//! log and the protocol carry, [`line`].
#![no_std]

pub mod event;
#[cfg(feature = "protocol")]
pub mod line;
pub mod maps;
#[cfg(feature = "ocsf")]
pub mod ocsf;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "protocol")]
pub mod protocol;
#[cfg(feature = "protocol")]
pub mod report;
pub mod rules;
#[cfg(feature = "protocol")]
pub mod story;

pub use event::*;
pub use maps::*;
pub use rules::{Config, NetData, PathData, RuleRef};
