//! guard's policy: parse and validate a policy file (`parse`, with diagnostics
//! that carry codes: `diag`), the built-in policies (`builtin`) and what they
//! answer (`coverage`), how path patterns read (`glob`), compile it to the
//! kernel's tables (`tables`, with the protected files by identity: `identity`),
//! and judge events against it (`matcher`, `judge`, `anomaly`, `dns`).
//!
//! No I/O and no daemon: the daemon (`guard`), its `guard policy` commands, the
//! fleet and the fuzz targets all use this same code. What it judges is the event
//! model (`event`): what the kernel reported and what user space derives, as the
//! daemon decodes and enriches it.

pub mod anomaly;
pub mod builtin;
pub mod container;
pub mod coverage;
pub mod diag;
pub mod dns;
pub mod event;
pub mod glob;
pub mod identity;
pub mod ignore;
pub mod judge;
pub mod matcher;
pub mod model;
pub mod packages;
pub mod parse;
pub mod profile;
pub mod replay;
pub mod signed;
pub mod tables;
mod wake;
