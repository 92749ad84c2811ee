//! `guard top`: the live view of agent sessions (placeholder until the view lands).

use std::path::Path;

pub fn run(socket: &Path) -> anyhow::Result<()> {
    crate::clients::sessions(socket, false)
}
