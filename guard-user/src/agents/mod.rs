//! What guard knows about the agents it follows beyond their names: for now the
//! MCP servers their configurations declare (the `mcp` role).

pub mod mcp;
