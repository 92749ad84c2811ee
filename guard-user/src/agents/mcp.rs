//! MCP servers from the agents' own configurations: Codex starts each server of
//! `[mcp_servers.NAME]` in `$CODEX_HOME/config.toml` (default `~/.codex`) at
//! start-up, as a direct child of its own process, exec'ing `command` with `args`
//! (measured with Codex 0.169.0: docs/codex.md). The kernel gives a program the
//! agent runs itself the role `mcp` when its name is such a command's
//! (`guard_common::role::PROGRAM_MCP`); this module finds those names.

use std::path::{Path, PathBuf};

/// The configuration files of Codex in `homes` (`<home>/.codex/config.toml`), and
/// in each `$CODEX_HOME` of `codex_homes`.
pub fn codex_configs(homes: &[String], codex_homes: &[PathBuf]) -> Vec<PathBuf> {
    homes
        .iter()
        .map(|h| Path::new(h).join(".codex"))
        .chain(codex_homes.iter().cloned())
        .map(|dir| dir.join("config.toml"))
        .collect()
}

/// The program names (file names, as the kernel sees an exec's: at most 15 bytes)
/// of the MCP servers `config` (a Codex `config.toml`) declares. An unreadable or
/// malformed file declares none (Codex would not start then either).
pub fn codex_servers(config: &str) -> Vec<String> {
    let Ok(doc) = config.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(servers) = doc.get("mcp_servers").and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    let mut names: Vec<String> = servers
        .values()
        .filter_map(|s| s.get("command")?.as_str())
        .filter_map(|command| {
            let name = Path::new(command).file_name()?.to_str()?;
            Some(name.chars().take(15).collect())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The MCP servers' program names of every Codex configuration in `configs`.
pub fn program_names(configs: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = configs
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| codex_servers(&text))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The agents' configuration files, watched by their modification times: the
/// daemon checks them on its beat and re-reads them when one changed.
#[derive(Debug, Default)]
pub struct Configs {
    paths: Vec<PathBuf>,
    seen: Vec<Option<std::time::SystemTime>>,
}

impl Configs {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let seen = vec![None; paths.len()];
        Self { paths, seen }
    }

    /// Whether a file appeared, changed or went since the last call (the first
    /// call says so when any exists).
    pub fn changed(&mut self) -> bool {
        let now: Vec<Option<std::time::SystemTime>> = self
            .paths
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect();
        let changed = now != self.seen;
        self.seen = now;
        changed
    }

    /// The MCP servers' program names they declare now.
    pub fn names(&self) -> Vec<String> {
        program_names(&self.paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_named_by_their_command_s_file_name() {
        let config = r#"
model = "gpt-5"
[mcp_servers.docs]
command = "npx"
args = ["-y", "@acme/docs-mcp"]
[mcp_servers.probe]
command = "/usr/bin/python3"
args = ["server.py"]
[mcp_servers.long]
command = "/opt/tools/a-very-long-server-name"
[mcp_servers.remote]
url = "https://mcp.example.com"
"#;
        assert_eq!(codex_servers(config), ["a-very-long-ser", "npx", "python3"]);
        assert!(codex_servers("not toml [").is_empty());
        assert!(codex_servers("model = \"x\"").is_empty());
    }
}
