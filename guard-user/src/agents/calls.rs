//! What an agent says about its tool calls: a hook's `tool_input` ([`declared`]), and
//! Codex's rollout file ([`rollout`]), which lists every call a session made (its
//! id, its tool and input, when it was asked and when its output came back) whether
//! or not guard's hooks are installed.
//!
//! Codex writes one rollout per thread, `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-
//! <time>-<thread>.jsonl`, a JSON object a line: `{"timestamp", "type", "payload"}`.
//! The calls are `response_item` payloads: `function_call` (`name`, `arguments` as
//! a JSON string, `call_id`), `custom_tool_call` (`name`, `input`, `call_id`: a
//! free-form tool such as `apply_patch`), `local_shell_call` (`action.command`,
//! `call_id`), each answered by a `function_call_output` or
//! `custom_tool_call_output` with the same `call_id`. Each line's timestamp is when
//! Codex wrote it (milliseconds, UTC): a call's line is written as the model's
//! answer comes in, as its processes start, and its output's once they are done.

use std::io::{BufRead as _, Read as _};
use std::path::Path;

use guard_common::protocol::CALL_INPUT_MAX;
use serde_json::Value;

/// What a call declared, from its hook's `tool_input`: a shell tool's command line,
/// else the file or address it names (never a file's content, which a `Write`
/// tool's input carries), cut to [`CALL_INPUT_MAX`] bytes.
pub fn declared(input: &Value) -> Option<String> {
    let text = [
        "command",
        "cmd",
        "file_path",
        "absolute_path",
        "notebook_path",
        "path",
        "dir_path",
        "url",
    ]
    .iter()
    .find_map(|key| match input.get(key)? {
        Value::String(s) => Some(s.clone()),
        // Codex's `shell` tool: an argv, whose script is what it runs.
        Value::Array(words) => {
            let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
            Some(match words.as_slice() {
                [shell, "-c" | "-lc", script] if shell.ends_with("sh") => (*script).to_owned(),
                _ => words.join(" "),
            })
        }
        _ => None,
    })?;
    let mut end = text.len().min(CALL_INPUT_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

/// The agent whose rollout file is read: Codex's profile.
pub const ROLLOUT_AGENT: &str = "codex";
/// Rollout files read per session: Codex writes one per thread (its sub-agents
/// have threads of their own).
pub const ROLLOUTS_MAX: usize = 8;
/// How long before the session's start a call of its rollout may have started
/// (clocks to the millisecond); a resumed thread's rollout holds the calls of
/// earlier sessions too, which are not this session's.
pub const BEFORE_START_NS: i128 = 1_000_000_000;
/// A rollout file's size that is read at most: a long session's is a few MiB.
pub const ROLLOUT_MAX: u64 = 64 << 20;
/// Calls read from one rollout at most (the report keeps fewer).
pub const CALLS_MAX: usize = 4_096;

/// Whether `path` is a Codex rollout file: `rollout-*.jsonl` in a `sessions` tree.
pub fn is_rollout(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    name.starts_with("rollout-") && name.ends_with(".jsonl") && path.contains("/sessions/")
}

/// One call of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutCall {
    pub id: String,
    pub tool: String,
    /// What it declared ([`declared`]); none for a free-form tool (a patch).
    pub command: Option<String>,
    /// When its line was written (nanoseconds since the epoch).
    pub started_ns: i128,
    /// When its output's line was written; none when the rollout has none (the
    /// session ended during the call).
    pub ended_ns: Option<i128>,
}

/// The calls of the rollout at `path` that started from `since_ns` on (less
/// [`BEFORE_START_NS`]), in the order Codex asked for them. The file is opened
/// without following a symbolic link, must be a regular file, and is read up to
/// [`ROLLOUT_MAX`] bytes; lines that are not calls are skipped, and so are lines
/// that do not parse (a line being written when the session ended).
pub fn rollout(path: &Path, since_ns: i128) -> Result<Vec<RolloutCall>, String> {
    let file = crate::host::open_regular(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let reader = std::io::BufReader::new(file.take(ROLLOUT_MAX));
    let mut calls: Vec<RolloutCall> = Vec::new();
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // Most lines are messages, reasoning and events: parsed only when they
        // may be a call or its output.
        if !line.windows(9).any(|w| w == b"\"call_id\"") {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if v["type"] != "response_item" {
            continue;
        }
        let Some(at) = v["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| t.timestamp_nanos_opt())
        else {
            continue;
        };
        let p = &v["payload"];
        let Some(id) = p["call_id"].as_str() else {
            continue;
        };
        let text = |key: &str| p[key].as_str().unwrap_or_default().to_owned();
        let (tool, command) = match p["type"].as_str().unwrap_or_default() {
            "function_call" => {
                let args = serde_json::from_str::<Value>(p["arguments"].as_str().unwrap_or("{}"))
                    .unwrap_or(Value::Null);
                (text("name"), declared(&args))
            }
            "custom_tool_call" => (text("name"), None),
            "local_shell_call" => ("local_shell".to_owned(), declared(&p["action"])),
            "function_call_output" | "custom_tool_call_output" => {
                if let Some(c) = calls
                    .iter_mut()
                    .rev()
                    .find(|c| c.id == id && c.ended_ns.is_none())
                {
                    c.ended_ns = Some(i128::from(at));
                }
                continue;
            }
            _ => continue,
        };
        if calls.len() == CALLS_MAX
            || i128::from(at) < since_ns - BEFORE_START_NS
            || calls.iter().any(|c| c.id == id)
        {
            continue;
        }
        calls.push(RolloutCall {
            id: id.to_owned(),
            tool,
            command,
            started_ns: i128::from(at),
            ended_ns: None,
        });
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_what_a_tool_s_input_runs() {
        let of = |v: Value| declared(&v);
        assert_eq!(
            of(serde_json::json!({"command": "ls -a"})).as_deref(),
            Some("ls -a")
        );
        assert_eq!(
            of(serde_json::json!({"cmd": "git status"})).as_deref(),
            Some("git status")
        );
        assert_eq!(
            of(serde_json::json!({"command": ["bash", "-lc", "make -j2"]})).as_deref(),
            Some("make -j2")
        );
        assert_eq!(
            of(serde_json::json!({"command": ["git", "diff"]})).as_deref(),
            Some("git diff")
        );
        assert_eq!(
            of(serde_json::json!({"file_path": "/w/a.rs", "content": "secret"})).as_deref(),
            Some("/w/a.rs")
        );
        assert_eq!(of(serde_json::json!({"content": "x"})), None);
    }

    /// A real rollout of Codex 0.169.0 (the install session of the codex e2e, its
    /// messages and instructions left out): four `exec_command` calls.
    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/agents/fixtures/codex-0.169.0-rollout.jsonl"
    );

    #[test]
    fn a_rollout_gives_each_call_its_command_and_times() {
        let calls = rollout(Path::new(FIXTURE), 0).expect("the fixture reads");
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "guard_e2e_call_0",
                "guard_e2e_call_1",
                "guard_e2e_call_2",
                "guard_e2e_call_3"
            ]
        );
        assert!(calls.iter().all(|c| c.tool == "exec_command"));
        assert_eq!(calls[3].command.as_deref(), Some("touch go && sleep 1"));
        assert!(
            calls[0]
                .command
                .as_deref()
                .is_some_and(|c| c.starts_with("npm install --offline"))
        );
        // 10:39:42.460 to 10:39:43.497, UTC.
        assert_eq!(calls[3].started_ns, 1_795_862_382_460_000_000);
        assert_eq!(calls[3].ended_ns, Some(1_795_862_383_497_000_000));
        for pair in calls.windows(2) {
            assert!(
                pair[0]
                    .ended_ns
                    .is_some_and(|end| end <= pair[1].started_ns)
            );
        }
    }

    #[test]
    fn a_rollout_is_a_regular_file_named_as_given() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let link = dir.path().join("rollout-x.jsonl");
        std::os::unix::fs::symlink(FIXTURE, &link).expect("symlink");
        let e = rollout(&link, 0).expect_err("a link is not followed");
        assert!(e.contains("cannot open"), "{e}");
        let e = rollout(dir.path(), 0).expect_err("a directory");
        assert!(e.contains("not a regular file"), "{e}");
        // A call whose output never came (the session ended in it), and lines that
        // are not JSON (one being written), are a call without an end and nothing.
        let cut = dir.path().join("cut.jsonl");
        std::fs::write(
            &cut,
            concat!(
                r#"{"timestamp":"2026-11-28T10:00:00.001Z","type":"response_item","payload":{"type":"function_call","name":"shell","arguments":"{\"command\":[\"bash\",\"-lc\",\"make\"]}","call_id":"c1"}}"#,
                "\n",
                r#"{"timestamp":"2026-11-28T10:00:00.002Z","type":"response_item","payload":{"type":"custom_tool_call","name":"apply_patch","input":"*** Begin Patch","call_id":"c2"}}"#,
                "\n",
                r#"{"timestamp":"2026-11-28T10:00:00.003Z","type":"response_item","payload":{"type":"custom_tool_call_output","call_id":"c2","output":"ok"}}"#,
                "\n",
                r#"{"timestamp":"2026-11-28T10:00:00.004Z","type":"response_item","payload":{"type":"function_call_output","call_id":"c1"#,
            ),
        )
        .expect("write");
        let calls = rollout(&cut, 0).expect("reads");
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].command.as_deref(), calls[0].ended_ns),
            (Some("make"), None)
        );
        assert_eq!(
            (calls[1].tool.as_str(), calls[1].command.as_deref()),
            ("apply_patch", None),
            "a patch's content is never declared"
        );
        assert!(calls[1].ended_ns.is_some());
    }

    #[test]
    fn rollout_files_are_named_by_codex_s_layout() {
        assert!(is_rollout(
            "/home/u/.codex/sessions/2026/11/28/rollout-2026-11-28T10-00-00-0199.jsonl"
        ));
        assert!(!is_rollout("/home/u/.codex/history.jsonl"));
        assert!(!is_rollout("/w/rollout-x.jsonl"));
    }
}
