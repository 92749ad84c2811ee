//! The daemon's control socket: the protocol's types (`guard_common::protocol`),
//! the server that hands requests to the daemon's loop as [`Command`]s, the
//! client, subscriber fan-out and the status answer.

pub mod client;
pub mod fanout;
pub mod server;
pub mod status;
pub mod stops;

pub use guard_common::protocol::{DEFAULT_SOCKET, Request};

/// The hook socket by default: beside the control socket.
pub const DEFAULT_HOOK_SOCKET: &str = "/run/guard/hook.sock";
pub use server::{Command, Server};
