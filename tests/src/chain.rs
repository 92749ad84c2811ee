//! A fake Codex-like launch chain that needs no Codex (roles.rs, sandbox.rs): a
//! wrapper script named after a unique agent name (so it starts the session, like
//! npm's `codex` script; sessions are never chosen by the name `codex`) runs, as a
//! child, a copy of bash installed as `codex` (the name makes it a Codex-like agent
//! program) with the script it is given. The agent runs tools the way Codex does
//! through its own binary again (`/proc/self/exe`, the sandbox step).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use crate::{
    Daemon, Event, EventsTo, Finished, Running, TempDir, find, session_ended, session_of,
    unique_name, write_policy,
};

/// The fake launch chain: a wrapper script named `wrapper_name` (the policy's only
/// agent name) that runs `agent` (bash installed as `<dir>/bin/codex`) as a child with
/// the script `$1`.
pub struct Chain {
    pub dir: TempDir,
    pub wrapper: std::path::PathBuf,
    pub agent: String,
    pub daemon: Daemon,
    pub loaded: Event,
}

impl Chain {
    /// `rules` may use `{dir}` for the test directory.
    pub fn new(prefix: &str, rules: &str) -> Self {
        let dir = TempDir::new("guard-e2e-chain");
        let wrapper_name = unique_name(prefix);
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).expect("mkdir bin");
        let agent = bin.join("codex");
        fs::copy("/bin/bash", &agent).expect("copy bash");
        let agent = agent.display().to_string();
        let wrapper = dir.join(&wrapper_name);
        fs::write(
            &wrapper,
            format!("#!/bin/sh\n{agent} -c \"$1\"\necho wrapper-done $?\n"),
        )
        .expect("write wrapper");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod");
        let policy = dir.join("guard.toml");
        let rules = rules.replace("{dir}", &dir.path().display().to_string());
        write_policy(
            &policy,
            &format!("mode = \"enforce\"\n\n[agents]\nnames = [\"{wrapper_name}\"]\n\n{rules}"),
        );
        let mut daemon = Daemon::start_with_args(
            &[],
            EventsTo::File,
            &[OsStr::new("--policy"), policy.as_os_str()],
        );
        let events = daemon.wait_for("policy_loaded", |ev| {
            ev.iter().any(|e| e.kind() == "policy_loaded")
        });
        let loaded = find(&events, "policy_loaded", |e| e.kind() == "policy_loaded").clone();
        Self {
            dir,
            wrapper,
            agent,
            daemon,
            loaded,
        }
    }

    /// Runs the chain with the agent's `script`; returns the run and its session's events.
    pub fn run(&mut self, script: &str) -> (Finished, String, Vec<Event>) {
        let mut cmd = Command::new(&self.wrapper);
        cmd.arg(script);
        let run = Running::spawn_group(cmd).finish();
        let all = self.daemon.wait_for(
            "the end of the fake agent's session",
            session_ended(run.pid),
        );
        let session = session_of(&all, run.pid);
        let events = all
            .iter()
            .filter(|e| e.session() == Some(session.as_str()))
            .cloned()
            .collect();
        (run, session, events)
    }
}
