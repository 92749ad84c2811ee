//! `guard-model`: a scripted model API (guard_tests::model) in a network namespace of
//! its own, for the bench's agent workloads (and for trying an agent by hand).
//!
//! `guard-model API SCRIPT PORT_FILE`
//!
//! - `API`: `responses` (OpenAI Responses: Codex), `anthropic` (Claude Code), `gemini`
//!   (Gemini CLI) or `chat` (OpenAI Chat Completions: Copilot CLI).
//! - `SCRIPT`: the commands the model has the agent run, one per line and one per turn.
//! - `PORT_FILE`: where the port is written once the server listens on 127.0.0.1.
//!
//! The server listens in a new network namespace with only a loopback device: an agent
//! joins it through `/proc/<pid>/ns/net` of this process, and nothing it does reaches
//! another host. It serves until it is killed; the namespace goes with it.

use std::process::{Command, ExitCode};
use std::{env, fs, thread};

use anyhow::{Context as _, Result, bail};
use guard_tests::model::{Api, ModelServer};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guard-model: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let [api, script, port_file] = args.as_slice() else {
        bail!("usage: guard-model responses|anthropic|gemini|chat SCRIPT PORT_FILE");
    };
    let api = match api.as_str() {
        "responses" => Api::OpenAiResponses,
        "anthropic" => Api::Anthropic,
        "gemini" => Api::Gemini,
        "chat" => Api::OpenAiChat,
        other => bail!("no model API {other:?} (responses, anthropic, gemini or chat)"),
    };
    let commands: Vec<String> = fs::read_to_string(script)
        .with_context(|| format!("cannot read the script {script}"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();

    // SAFETY: no other thread exists yet; the namespace becomes this process's own.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        bail!(
            "cannot make a network namespace (unshare: {}); guard-model needs root",
            std::io::Error::last_os_error()
        );
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("cannot run `ip link set lo up` (iproute2)")?;
    if !up.success() {
        bail!("`ip link set lo up` failed: {up}");
    }
    let server = ModelServer::start_here(api, commands).context("cannot listen")?;
    let tmp = format!("{port_file}.tmp");
    fs::write(&tmp, format!("{}\n", server.port()))
        .and_then(|()| fs::rename(&tmp, port_file))
        .with_context(|| format!("cannot write {port_file}"))?;
    loop {
        thread::park();
    }
}
