//! guard's fleet server (docs/fleet.md).

pub mod auth;
pub mod config;
pub mod ingest;
pub mod store;
