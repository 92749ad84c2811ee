//! guard-fleet's integration tests, in one binary: each file is a module here, so
//! the fleet's library and its dependencies' generic code are compiled and linked
//! once for all of them, not once per file (a third of the cold test build).

#[macro_use]
mod support;

mod alerts;
mod browser;
mod cli;
mod fault;
mod http;
mod policies;
mod tls;
