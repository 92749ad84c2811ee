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
//!
//! Gemini CLI (0.61.0) runs `BeforeTool` and `AfterTool` hooks with the same input
//! but no call id, and appends an `AfterTool` hook's `additionalContext` to the
//! tool's result for the model. Copilot CLI (1.0.102) runs `PreToolUse` and
//! `PostToolUse` hooks (its hooks files' PascalCase events) with Claude Code's
//! input, but no call id either. Their calls' ids are made from what both hooks of a
//! call share: the session, the tool and its input ([`made_id`]).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use guard_common::protocol::{CallPhase, Stop, ToolCall};

use crate::agents::calls::declared;

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

/// The id of a call of an agent whose hooks name none (Gemini CLI, Copilot CLI):
/// `AGENT-` and 16 hex digits of the SHA-256 of its session, tool and input (JSON,
/// keys in order), which the hooks of its start and end share. Two calls of one
/// session with the same tool and input while both run are one call to guard.
pub fn made_id(agent: &str, hook: &serde_json::Value) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for key in ["session_id", "tool_name", "tool_input"] {
        let value = hook.get(key).map(ToString::to_string).unwrap_or_default();
        h.update(value.len().to_le_bytes());
        h.update(value.as_bytes());
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{agent}-{hex}")
}

/// The call `agent`'s hook input declares at a call's start or end, when it names
/// one (`tool_use_id`), or when the agent names none at all (Gemini CLI's and
/// Copilot CLI's: [`made_id`]).
pub fn call_of(agent: &str, hook: &serde_json::Value) -> Option<ToolCall> {
    let text = |key: &str| hook.get(key).and_then(serde_json::Value::as_str);
    let phase = match text("hook_event_name")? {
        "PreToolUse" | "BeforeTool" => CallPhase::Start,
        "PostToolUse" | "PostToolUseFailure" | "AfterTool" => CallPhase::End,
        _ => return None,
    };
    let id = match (text("tool_use_id"), agent) {
        (Some(id), _) => id.to_owned(),
        (None, "gemini" | "copilot") => made_id(agent, hook),
        (None, _) => return None,
    };
    // Gemini CLI's session id is no thread its tools carry (docs/agents.md): the
    // call's id stands for it.
    let thread = agent != "gemini";
    Some(ToolCall {
        phase,
        id,
        thread: text("session_id").filter(|_| thread).map(str::to_owned),
        tool: text("tool_name").unwrap_or("").to_owned(),
        command: hook.get("tool_input").and_then(declared),
    })
}

pub fn run(agent: &str, socket: &Path) -> anyhow::Result<()> {
    if !matches!(agent, "codex" | "claude" | "gemini" | "copilot") {
        bail!(
            "guard hook knows Codex's, Claude Code's, Gemini CLI's and Copilot CLI's hooks \
             (`codex`, `claude`, `gemini`, `copilot`), not {agent:?}"
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
    // The daemon's answer. Its absence (guard stopped, or the agent runs outside
    // every session) stops nothing: the hook declares, the kernel enforces, and
    // Copilot CLI refuses the tool of a hook that fails. Said on stderr, which the
    // agents log.
    let asked = |request: Request| -> Option<Vec<Stop>> {
        client::call(socket, &request)
            .map_err(|e| eprintln!("guard hook: {e:#}; the call goes on undeclared"))
            .ok()
    };
    let stops: Vec<Stop> = match call_of(agent, &hook) {
        // The call, declared: its start before its processes run (nothing to tell
        // the model yet), its end with what guard stopped.
        Some(call) => asked(Request::ToolCall(call)).unwrap_or_default(),
        None => {
            let Some(thread) = hook.get("session_id").and_then(serde_json::Value::as_str) else {
                // Nothing to ask about: no output, and the agent carries on.
                return Ok(());
            };
            if matches!(event, "PreToolUse" | "BeforeTool") {
                return Ok(());
            }
            asked(Request::Stops {
                thread: thread.to_owned(),
            })
            .unwrap_or_default()
        }
    };
    if stops.is_empty() {
        return Ok(());
    }
    let text = message(&stops);
    let mut out = serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": event,
            "additionalContext": text,
        }
    });
    // Copilot CLI reads it at the top level.
    if agent == "copilot" {
        out["additionalContext"] = text.into();
    }
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
        let call = call_of("codex", &codex).expect("a call");
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
        let call = call_of("claude", &write).expect("a call");
        assert_eq!(call.phase, CallPhase::End);
        assert_eq!(
            call.command.as_deref(),
            Some("/w/.env"),
            "never the content"
        );
        // Gemini CLI's hooks name no call: both of a call get the same id, another
        // input another.
        let before = serde_json::json!({"session_id": "6a4e", "hook_event_name": "BeforeTool",
            "cwd": "/w", "timestamp": "2026-11-28T07:00:00.000Z", "tool_name": "run_shell_command",
            "tool_input": {"command": "npm test", "description": "tests"}});
        let mut after = before.clone();
        after["hook_event_name"] = "AfterTool".into();
        after["timestamp"] = "2026-11-28T07:00:03.000Z".into();
        after["tool_response"] = serde_json::json!({"llmContent": "ok"});
        let (start, end) = (
            call_of("gemini", &before).expect("a call"),
            call_of("gemini", &after).expect("a call"),
        );
        assert_eq!((start.phase, end.phase), (CallPhase::Start, CallPhase::End));
        assert_eq!(start.id, end.id);
        assert!(
            start.id.starts_with("gemini-") && start.id.len() == 23,
            "{}",
            start.id
        );
        assert_eq!(start.command.as_deref(), Some("npm test"));
        assert_eq!(start.thread, None, "no thread its tools carry");
        let mut other = before;
        other["tool_input"]["command"] = "npm run build".into();
        assert_ne!(call_of("gemini", &other).expect("a call").id, start.id);
        let read = serde_json::json!({"session_id": "6a4e", "hook_event_name": "BeforeTool",
            "tool_name": "read_file", "tool_input": {"absolute_path": "/w/src/main.rs"}});
        assert_eq!(
            call_of("gemini", &read).and_then(|c| c.command).as_deref(),
            Some("/w/src/main.rs")
        );
        // Copilot CLI 1.0.102's PreToolUse (measured): Claude Code's input, no id;
        // its session is the thread its tools carry.
        let copilot = serde_json::json!({"hook_event_name": "PreToolUse",
            "session_id": "15cc3605-a22d-4f18-9218-c2e0c9831904",
            "timestamp": "2026-11-28T07:41:27.995Z", "cwd": "/w", "tool_name": "Bash",
            "tool_input": {"command": "ls -a", "description": "step", "mode": "sync"}});
        let call = call_of("copilot", &copilot).expect("a call");
        assert!(call.id.starts_with("copilot-"), "{}", call.id);
        assert_eq!(
            call.thread.as_deref(),
            Some("15cc3605-a22d-4f18-9218-c2e0c9831904")
        );
        assert_eq!(call.command.as_deref(), Some("ls -a"));
        // A hook without a call id (an older Codex or Claude Code) declares nothing.
        let old = serde_json::json!({"session_id": "s", "hook_event_name": "PostToolUse"});
        assert_eq!(call_of("codex", &old), None);
        let long = serde_json::json!({"hook_event_name": "PreToolUse", "tool_use_id": "c",
            "tool_input": {"command": "é".repeat(guard_common::protocol::CALL_INPUT_MAX)}});
        let cut = call_of("codex", &long)
            .and_then(|c| c.command)
            .expect("a command");
        assert!(
            cut.len() <= guard_common::protocol::CALL_INPUT_MAX && cut.starts_with('é'),
            "{}",
            cut.len()
        );
    }
}
