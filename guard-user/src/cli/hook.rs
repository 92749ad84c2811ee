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
//!
//! Both agents also run a `PreToolUse` hook before each call, and give each hook the
//! call's id (`tool_use_id`, the model's `call_id`) and input: installed for both,
//! `guard hook` declares each call's start and end, and the daemon ties the call's
//! processes to it (session/calls.rs).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use guard_common::protocol::{CALL_INPUT_MAX, CallPhase, Stop, ToolCall};

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

/// What a call declared, from its hook's `tool_input`: a shell tool's command line,
/// else the file or address it names (never a file's content, which a `Write`
/// tool's input carries), cut to [`CALL_INPUT_MAX`] bytes.
pub fn declared(input: &serde_json::Value) -> Option<String> {
    let text = ["command", "file_path", "notebook_path", "path", "url"]
        .iter()
        .find_map(|key| input.get(key).and_then(serde_json::Value::as_str))?;
    let mut end = text.len().min(CALL_INPUT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

/// The call a hook's input declares, when it names one (`tool_use_id`) at a call's
/// start or end.
pub fn call_of(hook: &serde_json::Value) -> Option<ToolCall> {
    let text = |key: &str| hook.get(key).and_then(serde_json::Value::as_str);
    let phase = match text("hook_event_name")? {
        "PreToolUse" => CallPhase::Start,
        "PostToolUse" | "PostToolUseFailure" => CallPhase::End,
        _ => return None,
    };
    Some(ToolCall {
        phase,
        id: text("tool_use_id")?.to_owned(),
        thread: text("session_id").map(str::to_owned),
        tool: text("tool_name").unwrap_or("").to_owned(),
        command: hook.get("tool_input").and_then(declared),
    })
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
    let event = hook
        .get("hook_event_name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("PostToolUse");
    let stops: Vec<Stop> = match call_of(&hook) {
        // The call, declared: its start before its processes run (nothing to tell
        // the model yet), its end with what guard stopped.
        Some(call) => client::call(socket, &Request::ToolCall(call))?,
        None => {
            let Some(thread) = hook.get("session_id").and_then(serde_json::Value::as_str) else {
                // Nothing to ask about: no output, and the agent carries on.
                return Ok(());
            };
            if event == "PreToolUse" {
                return Ok(());
            }
            client::call(
                socket,
                &Request::Stops {
                    thread: thread.to_owned(),
                },
            )?
        }
    };
    if stops.is_empty() {
        return Ok(());
    }
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
    use guard_common::protocol::{Action, CallPhase, Outcome, Stop};

    use super::{call_of, message};

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

    /// The input Codex 0.169.0 gives its `PreToolUse` hook (measured), and Claude
    /// Code's `PostToolUse` of a `Write`, whose content is never declared.
    #[test]
    fn a_hooks_input_declares_its_call() {
        let codex = serde_json::json!({"session_id": "01a21ec3-33bc-7f90-965e-02a479673433",
            "turn_id": "01a21ec3-345f-72b2-8166-0b3ee5c0430a", "cwd": "/w",
            "hook_event_name": "PreToolUse", "model": "gpt-5",
            "permission_mode": "bypassPermissions", "tool_name": "Bash",
            "tool_input": {"command": "npm install ./pkg"}, "tool_use_id": "call_0"});
        let call = call_of(&codex).expect("a call");
        assert_eq!(call.phase, CallPhase::Start);
        assert_eq!(call.id, "call_0");
        assert_eq!(call.tool, "Bash");
        assert_eq!(call.command.as_deref(), Some("npm install ./pkg"));
        assert_eq!(
            call.thread.as_deref(),
            Some("01a21ec3-33bc-7f90-965e-02a479673433")
        );
        let write = serde_json::json!({"session_id": "s", "hook_event_name": "PostToolUseFailure",
            "tool_name": "Write", "tool_use_id": "toolu_01",
            "tool_input": {"file_path": "/w/.env", "content": "TOKEN=secret"}});
        let call = call_of(&write).expect("a call");
        assert_eq!(call.phase, CallPhase::End);
        assert_eq!(
            call.command.as_deref(),
            Some("/w/.env"),
            "never the content"
        );
        // A hook without a call id (an older agent) declares nothing.
        let old = serde_json::json!({"session_id": "s", "hook_event_name": "PostToolUse"});
        assert_eq!(call_of(&old), None);
        let long = serde_json::json!({"hook_event_name": "PreToolUse", "tool_use_id": "c",
            "tool_input": {"command": "é".repeat(super::CALL_INPUT_MAX)}});
        let cut = call_of(&long).and_then(|c| c.command).expect("a command");
        assert!(
            cut.len() <= super::CALL_INPUT_MAX && cut.starts_with('é'),
            "{}",
            cut.len()
        );
    }
}
