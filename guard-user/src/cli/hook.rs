//! `guard hook AGENT`: an agent's hook that tells the agent what guard stopped and
//! why, so that it does not try another way around a rule it cannot see.
//!
//! Codex (0.169.0) runs a `PostToolUse` hook after each tool call, with the call's
//! JSON on stdin (`session_id` is the thread, Codex's `CODEX_THREAD_ID`; its tools
//! carry it too), and puts the hook's `additionalContext` in the next request to the
//! model as a developer message, just before the tool's output. A managed
//! `/etc/codex/hooks.json` runs it with no review (docs/agents.md). Claude Code's
//! `PostToolUse` hook (its settings' `hooks`) takes the same input and output
//! (`session_id` is its `CLAUDE_CODE_SESSION_ID`, which its tools carry). The hook
//! asks the daemon through the hook socket, which answers only about the caller's own
//! sessions, and never with a file's content (names, commands and rules only): what
//! was stopped of the tools working for the thread, and of the agent's own process.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use guard_common::protocol::Stop;

use crate::control::{Request, client};

/// The message the agent's model reads about what guard stopped.
pub fn message(stops: &[Stop]) -> String {
    let mut out = String::from(
        "guard, the host's security monitor, stopped what this tool call did (the agent's \
         policy forbids it; do not try another way to do it, ask the user instead):",
    );
    for s in stops {
        let done = match s.outcome {
            guard_common::protocol::Outcome::Denied => "refused",
            _ => "killed",
        };
        out.push_str(&format!(
            "\n- {done} `{}` ({}, pid {}): rule {}",
            s.what, s.comm, s.pid, s.rule
        ));
        if let Some(d) = &s.description {
            out.push_str(&format!(": {d}"));
        }
    }
    out
}

pub fn run(agent: &str, socket: &Path) -> anyhow::Result<()> {
    if !matches!(agent, "codex" | "claude") {
        bail!(
            "guard hook knows Codex's and Claude Code's hooks (`codex`, `claude`), not {agent:?}"
        );
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the hook's input")?;
    let hook: serde_json::Value =
        serde_json::from_str(&input).context("the hook's input is not JSON")?;
    let Some(thread) = hook.get("session_id").and_then(serde_json::Value::as_str) else {
        // Nothing to ask about: no output, and the agent carries on.
        return Ok(());
    };
    let stops: Vec<Stop> = client::call(
        socket,
        &Request::Stops {
            thread: thread.to_owned(),
        },
    )?;
    if stops.is_empty() {
        return Ok(());
    }
    let event = hook
        .get("hook_event_name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("PostToolUse");
    let out = serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": event,
            "additionalContext": message(&stops),
        }
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use guard_common::protocol::{Action, Outcome, Stop};

    use super::message;

    /// The text between `open` and the next fence after it, in `docs`.
    fn block<'d>(docs: &'d str, open: &str) -> &'d str {
        let start = docs.find(open).map(|at| at + open.len()).expect(open);
        let end = docs[start..].find("\n```").expect("a closing fence");
        &docs[start..start + end]
    }

    /// docs/agents.md shows the hook as Codex's hooks file takes it, and what the
    /// model reads as `message` writes it.
    #[test]
    fn the_docs_show_the_hook_and_its_message_as_they_are() {
        let docs = include_str!("../../../docs/agents.md");
        let (_, section) = docs
            .split_once("## Telling the agent what guard stopped: `guard hook`")
            .expect("docs/agents.md has the guard hook section");
        let hooks: serde_json::Value =
            serde_json::from_str(block(section, "```json\n")).expect("hooks.json is JSON");
        let hook = &hooks["hooks"]["PostToolUse"][0]["hooks"][0];
        assert_eq!(hook["type"], "command", "{hooks}");
        assert!(
            hook["command"]
                .as_str()
                .is_some_and(|c| c.ends_with("guard hook codex")),
            "{hooks}"
        );
        let stop =
            |what: &str, comm: &str, pid, rule: &str, description: Option<&str>, outcome| Stop {
                ts: String::new(),
                pid,
                comm: comm.to_owned(),
                what: what.to_owned(),
                rule: rule.to_owned(),
                description: description.map(str::to_owned),
                action: Action::Kill,
                outcome,
            };
        let stops = [
            stop(
                "open /home/alice/.ssh/id_rsa",
                "cat",
                4242,
                "ssh-keys",
                Some("SSH keys and .env files"),
                Outcome::Killed,
            ),
            stop(
                "connect 169.254.169.254:80",
                "curl",
                4250,
                "cloud-metadata",
                None,
                Outcome::Denied,
            ),
        ];
        assert_eq!(message(&stops), block(section, "```text\n"));
    }
}
