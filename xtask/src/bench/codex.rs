//! The Codex workload: sessions of the real Codex CLI, the npm package pinned in
//! tests/codex (`target/codex`, installed by the set-up as for the e2e tests), started
//! by its npm wrapper as a user starts it. Its model is `guard-model` (guard-tests'
//! scripted Responses API) in a network namespace of its own, which the workload joins:
//! to each turn it answers with an `exec_command` call of the next command of
//! [`SCRIPT`], and once each has its output, with a final message. Codex runs the
//! commands in the bench's git repository through its Linux sandbox (`workspace-write`:
//! bubblewrap), as an agent exploring a project does; the workload checks that every
//! session ended with the script's last message.
//!
//! Codex keeps its state in `$CODEX_HOME`, here `codex-home` in the workload account's
//! home. Not `~/.codex`: in the built-in policies `~` is a home of /etc/passwd (root's
//! and those of uid 1000 and up), which the bench's account (a system one, its `HOME`
//! the bench's directory) is not, so a `.codex` there would be what `repo-hooks-write`
//! protects in a repository, and guard-enforce would stop Codex writing its own state.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::process::chown_tree;
use super::process::{Proc, file_for, path_str};
use crate::{setup, util};

/// The commands of one Codex session, one per model turn, run in the repository.
pub(super) const SCRIPT: [&str; 8] = [
    "git status --short | head -20",
    "git log --oneline -5",
    "ls src | head",
    "grep -rl 'line 7' src/m01 | wc -l",
    "cat src/m00/f00000.rs",
    "find src -name '*.rs' | wc -l",
    "git diff --stat a b | tail -1",
    "sed -n 1,5p src/m02/f00200.rs",
];

/// What the Codex workload runs with (empty where it does not run).
#[derive(Default)]
pub(super) struct CodexDay {
    /// `node_modules/.bin/codex`: the npm wrapper (node), which runs the native binary.
    pub(super) codex: PathBuf,
    /// `$CODEX_HOME`: its config and state.
    pub(super) home: PathBuf,
    /// Where each session's last message goes (the workload checks it).
    pub(super) last_message: PathBuf,
    /// Read before each timed run: the install (node's modules, the native binary).
    pub(super) warm: Vec<PathBuf>,
    /// The scripted model; stopped when this is dropped.
    model: Option<Proc>,
}

impl CodexDay {
    /// The model's process: the workload joins its network namespace.
    pub(super) fn model_pid(&self) -> u32 {
        self.model.as_ref().map_or(0, Proc::pid)
    }
}

/// Installs Codex (if the pinned version is not there yet), builds and starts the
/// scripted model, and points the workload account's Codex (`$CODEX_HOME`) at it;
/// with `hook`, Codex runs that command as its PreToolUse and PostToolUse hook.
pub(super) fn prepare(
    dir: &Path,
    home: &Path,
    uid: u32,
    gid: u32,
    hook: Option<&str>,
) -> Result<CodexDay> {
    setup::codex().context("the codex workload needs the Codex CLI from npm")?;
    util::run(util::cargo().args([
        "build",
        "--release",
        "-p",
        "guard-tests",
        "--bin",
        "guard-model",
    ]))
    .context("cannot build guard-model (the codex workload's model)")?;
    let model_bin = util::target_dir().join("release/guard-model");

    let script = dir.join("codex-script");
    fs::write(&script, SCRIPT.join("\n") + "\n")?;
    let port_file = dir.join("codex-model.port");
    let stderr = dir.join("guard-model.stderr");
    let mut model = Proc::spawn(
        "guard-model",
        Command::new(&model_bin)
            .arg("responses")
            .arg(&script)
            .arg(&port_file)
            .stderr(file_for(&stderr)?),
        Some(&stderr),
    )?;
    model.wait_ready(Duration::from_secs(30), || port_file.exists())?;
    let port: u16 = fs::read_to_string(&port_file)?
        .trim()
        .parse()
        .context("guard-model wrote no port")?;

    let codex_home = home.join("codex-home");
    fs::create_dir_all(&codex_home)?;
    fs::write(codex_home.join("config.toml"), config(port))?;
    if let Some(command) = hook {
        let hook = serde_json::json!([{"matcher": "*", "hooks": [{
            "type": "command", "command": command, "timeout": 10}]}]);
        fs::write(
            codex_home.join("hooks.json"),
            serde_json::json!({"hooks": {"PreToolUse": hook, "PostToolUse": hook}}).to_string(),
        )?;
    }
    chown_tree(&codex_home, uid, gid)?;

    let install = util::target_dir().join("codex");
    Ok(CodexDay {
        codex: install.join("node_modules/.bin/codex"),
        home: codex_home,
        last_message: home.join("codex-last-message"),
        warm: vec![install],
        model: Some(model),
    })
}

/// `~/.codex/config.toml`: the scripted model as the provider (no key: it asks for
/// none), no retries (a failure shows at once).
fn config(port: u16) -> String {
    format!(
        "model = \"gbench-model\"\n\
         model_provider = \"gbench\"\n\
         \n\
         [model_providers.gbench]\n\
         name = \"cargo xtask bench's scripted model\"\n\
         base_url = \"http://127.0.0.1:{port}/v1\"\n\
         wire_api = \"responses\"\n\
         request_max_retries = 0\n\
         stream_max_retries = 0\n"
    )
}

/// The workload program's arguments after `codex N`.
pub(super) fn args(day: &CodexDay, repo: &Path) -> [String; 4] {
    [
        path_str(repo),
        path_str(&day.codex),
        day.model_pid().to_string(),
        path_str(&day.last_message),
    ]
}
