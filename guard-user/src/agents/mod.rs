//! What guard knows about the agents it follows beyond their names: for now the
//! MCP servers their configurations declare (the `mcp` role), and their versions.

pub mod mcp;
pub mod version;
