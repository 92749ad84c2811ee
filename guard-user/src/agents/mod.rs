//! What guard knows about the agents it follows: their profiles (programs, session
//! variables, files, endpoints), the MCP servers their configurations declare (the
//! `mcp` role), and their versions.

pub mod calls;
pub mod mcp;
pub use guard_policy::profile;
pub mod version;
