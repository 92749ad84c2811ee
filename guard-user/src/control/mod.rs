//! The daemon's control socket: the protocol's types (`guard_common::protocol`),
//! the server that hands requests to the daemon's loop as [`Command`]s, the
//! client, subscriber fan-out and the status answer.

pub mod client;
pub mod fanout;
pub mod server;
pub mod status;

pub use guard_common::protocol::{DEFAULT_SOCKET, Request};
pub use server::{Command, Server};
