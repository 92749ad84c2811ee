//! Agent roles and the agent's thread id, end to end, with a fake launch chain that
//! needs no Codex: a wrapper script (named after a unique agent name, so it starts the
//! session, like npm's `codex` script) runs, as a child, a copy of bash installed as
//! `codex` (the name makes it a Codex-like agent program; sessions are never chosen by
//! it). That agent reads a token itself, runs a helper directly, and runs a tool the
//! way Codex does: through its own binary again (`/proc/self/exe`, the sandbox step),
//! which execs `bash -lc` with `CODEX_THREAD_ID` in its environment.
//!
//! Checked: the role of each exec, a rule scoped to `tool` kills the tool's read in
//! the kernel and not the agent's or the helper's, and the tool's events (and those of
//! its child that cleared its environment) carry the thread id.

use std::fs;
use std::process::Command;
use std::time::SystemTime;

use guard_tests::chain::Chain;
use guard_tests::{Event, Finished, check_schema, dump, guard_bin, lsm_or_skip, unique_name};

/// `session` as `guard sessions --json` lists it.
fn listed(chain: &Chain, session: &str) -> serde_json::Value {
    let out = Command::new(guard_bin())
        .args(["sessions", "--json", "--socket"])
        .arg(chain.daemon.socket())
        .output()
        .expect("guard sessions");
    assert!(out.status.success(), "{out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    list.as_array()
        .and_then(|l| l.iter().find(|s| s["id"] == session))
        .cloned()
        .unwrap_or_else(|| panic!("session {session} not listed: {list}"))
}

/// What a failed check shows: the run's output and the session's events.
fn context(run: &Finished, events: &[Event]) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}\n{}",
        run.stdout,
        run.stderr,
        dump(events)
    )
}

#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one run of the fake launch chain, then each exec's role and each read of the token checked from its events"
)]
fn roles_are_decided_at_exec_and_scope_kernel_kills() {
    let since = SystemTime::now();
    let mut chain = Chain::new(
        "gw",
        "[[rule]]\nid = \"token-read-by-tools\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{dir}/token\"]\nscope = [\"tool\", \"mcp\"]\naction = \"kill\"\n",
    );
    let thread = format!("019a0000-{}", unique_name("t"));
    let secret = format!("{}-TOKEN", unique_name("s"));
    let token = chain.dir.join("token");
    fs::write(&token, format!("{secret}\n")).expect("write token");
    let token = token.display().to_string();
    let agent = chain.agent.clone();
    // The agent reads the token itself (a builtin: no child), runs a helper (`cat` of
    // the token, directly), then a tool through its own binary, as Codex's sandbox step.
    let tool = format!("cat {token}; echo tool-after-cat; env -i /bin/cat {token}; echo tool-done");
    let sandbox_step = format!("CODEX_THREAD_ID={thread} exec /bin/bash -lc '{tool}'");
    let agent_script = format!(
        "read -r own < {token}; echo agent-read-$((${{#own}} > 0)); \
         /bin/cat {token} > /dev/null && echo helper-read; \
         /proc/self/exe -c \"{sandbox_step}\"; echo agent-done"
    );
    let (run, session, events) = chain.run(&agent_script);
    let wrapper_name = chain
        .wrapper
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    let ctx = || context(&run, &events);

    // What the user sees: the agent and its helper read the token, the tool was killed
    // before it printed anything of it, and everything else went on.
    for line in [
        "agent-read-1",
        "helper-read",
        "tool-after-cat",
        "tool-done",
        "agent-done",
        "wrapper-done 0",
    ] {
        assert!(run.stdout.contains(line), "no {line:?}\n{}", ctx());
    }
    assert!(
        !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
        "the token reached the output\n{}",
        ctx()
    );

    let exec = |pred: &dyn Fn(&Event) -> bool, what: &str| -> Event {
        events
            .iter()
            .find(|e| e.kind() == "exec" && pred(e))
            .cloned()
            .unwrap_or_else(|| panic!("no exec of {what}\n{}", ctx()))
    };
    // The wrapper: the script (an interpreter runs it, named after the script).
    let w = exec(&|e| e.pid() == Some(run.pid), "the wrapper");
    assert_eq!(
        w.str("comm"),
        Some(&wrapper_name[..wrapper_name.len().min(15)])
    );
    assert_eq!(w.str("role"), Some("wrapper"), "{w}");
    // The agent: a child of the wrapper, running the agent program.
    let a = exec(
        &|e| e.str("exe") == Some(agent.as_str()) && e.str("comm") == Some("codex"),
        "the agent",
    );
    let agent_pid = a.pid().expect("pid");
    assert_ne!(agent_pid, run.pid, "the agent is a child of the wrapper");
    assert_eq!(a.str("role"), Some("agent"), "{a}");
    assert!(a.get("agent_thread").is_none(), "{a}");
    // The helper: the agent's own direct child.
    let h = exec(
        &|e| e.str("exe").is_some_and(|x| x.ends_with("/cat")) && e.int("ppid") == Some(agent_pid),
        "the helper",
    );
    assert_eq!(h.str("role"), Some("helper"), "{h}");
    // The sandbox step: the agent's program again, as /proc/self/exe.
    let s = exec(
        &|e| e.str("exe") == Some(agent.as_str()) && e.pid() != Some(agent_pid),
        "the sandbox step",
    );
    assert_eq!(s.str("role"), Some("sandbox"), "{s}");
    assert_eq!(s.str("comm"), Some("exe"), "{s}");
    let sandbox_pid = s.pid().expect("pid");
    // The tool: bash -lc, exec'd in place by the sandbox step, with the thread id.
    let t = exec(
        &|e| e.pid() == Some(sandbox_pid) && e.str("exe").is_some_and(|x| x.ends_with("/bash")),
        "the tool's bash",
    );
    assert_eq!(t.str("role"), Some("tool"), "{t}");
    assert_eq!(t.str("agent_thread"), Some(thread.as_str()), "{t}");

    // Opens of the token: the agent's and the helper's pass, the tool's are killed in the
    // kernel, the second by a child whose environment no longer has the thread id.
    let opens: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind() == "open" && e.str("path") == Some(token.as_str()))
        .collect();
    let by = |pid: i64| opens.iter().find(|e| e.pid() == Some(pid));
    let own = by(agent_pid).unwrap_or_else(|| panic!("the agent's read\n{}", ctx()));
    assert_eq!(own.str("role"), Some("agent"), "{own}");
    assert!(
        own.get("rule").is_none(),
        "the agent's own read broke a rule: {own}"
    );
    let helper =
        by(h.pid().expect("pid")).unwrap_or_else(|| panic!("the helper's read\n{}", ctx()));
    assert_eq!(helper.str("role"), Some("helper"), "{helper}");
    assert!(
        helper.get("rule").is_none(),
        "the helper's read broke a rule: {helper}"
    );
    let killed: Vec<&&Event> = opens
        .iter()
        .filter(|e| e.str("role") == Some("tool"))
        .collect();
    assert_eq!(killed.len(), 2, "two tool reads\n{}", ctx());
    for k in &killed {
        assert_eq!(k.str("rule"), Some("token-read-by-tools"), "{k}");
        assert_eq!(k.str("outcome"), Some("killed"), "{k}");
        assert!(
            k.get("kill_latency_us").is_none(),
            "the kernel killed it: {k}"
        );
        assert_eq!(k.str("agent_thread"), Some(thread.as_str()), "{k}");
    }
    // The `env -i` child: its exec carried no thread id of its own; it has its parent's.
    let cleared = exec(
        &|e| {
            e.str("exe").is_some_and(|x| x.ends_with("/cat"))
                && e.strings("argv")
                    .is_some_and(|a| a.first() == Some(&"/bin/cat"))
                && e.str("role") == Some("tool")
        },
        "the tool's env -i cat",
    );
    assert_eq!(
        cleared.str("agent_thread"),
        Some(thread.as_str()),
        "{cleared}"
    );

    // `guard sessions --json` names the agent's pid and the thread.
    let ours = listed(&chain, &session);
    assert_eq!(ours["agent_pid"], agent_pid, "{ours}");
    assert_eq!(ours["agent_threads"][0], thread.as_str(), "{ours}");

    let events = chain.daemon.stop_ok();
    check_schema(
        &events
            .into_iter()
            .filter(|e| !e.kind().starts_with("policy_"))
            .collect::<Vec<_>>(),
        since,
    );
}

/// Where BPF-LSM runs, a `deny` scoped to tools refuses the tool's append with EPERM
/// (the file unchanged, the tool alive) and lets the agent's own append through.
#[test]
fn role_scoped_deny_refuses_the_tool_and_not_the_agent() {
    let mut chain = Chain::new(
        "gw",
        "[[rule]]\nid = \"notes-write-by-tools\"\nkind = \"file\"\naccess = [\"write\"]\n\
         paths = [\"{dir}/notes\"]\nscope = \"tool\"\naction = \"deny\"\n",
    );
    if !lsm_or_skip(
        "role_scoped_deny_refuses_the_tool_and_not_the_agent",
        &chain.loaded,
    ) {
        chain.daemon.stop_ok();
        return;
    }
    let notes = chain.dir.join("notes");
    fs::write(&notes, "orig\n").expect("write notes");
    let notes_s = notes.display().to_string();
    let script = format!(
        "/proc/self/exe -c \"exec /bin/bash -c \\\"echo tool >> {notes_s} || echo tool-refused; echo tool-lives\\\"\"; \
         echo agent >> {notes_s} && echo agent-wrote"
    );
    let (run, _, events) = chain.run(&script);
    let ctx = || context(&run, &events);
    for line in [
        "tool-refused",
        "tool-lives",
        "agent-wrote",
        "wrapper-done 0",
    ] {
        assert!(run.stdout.contains(line), "no {line:?}\n{}", ctx());
    }
    assert_eq!(
        fs::read_to_string(&notes).expect("notes"),
        "orig\nagent\n",
        "the tool's append changed the file, or the agent's did not\n{}",
        ctx()
    );
    let refused = events
        .iter()
        .find(|e| {
            e.kind() == "open"
                && e.str("path") == Some(notes_s.as_str())
                && e.str("role") == Some("tool")
        })
        .unwrap_or_else(|| panic!("no open of the notes by the tool\n{}", ctx()));
    assert_eq!(
        refused.str("rule"),
        Some("notes-write-by-tools"),
        "{refused}"
    );
    assert_eq!(refused.str("outcome"), Some("denied"), "{refused}");
    let own = events
        .iter()
        .find(|e| {
            e.kind() == "open"
                && e.str("path") == Some(notes_s.as_str())
                && e.str("role") == Some("agent")
        })
        .unwrap_or_else(|| panic!("no open of the notes by the agent\n{}", ctx()));
    assert!(
        own.get("rule").is_none(),
        "the agent's write broke a rule: {own}"
    );
    chain.daemon.stop_ok();
}

/// Agents known by their profile rather than a name: a JavaScript runtime (a copy of
/// bash installed as `node`) running a script named `gemini` is the agent, and so is
/// its relaunch of itself on the same script (Gemini CLI's `node
/// --max-old-space-size=N …/gemini`), not a sandbox; the shells it runs are tools,
/// and a tool whose environment holds another profile's session variable
/// (`CLAUDE_CODE_SESSION_ID`) carries it as `agent_thread`. The agent's exec names
/// the agent (`agent: "gemini-cli"`), and so do `guard sessions` and the session.
#[test]
fn a_runtime_s_script_names_the_agent_and_tools_carry_its_session_id() {
    let since = SystemTime::now();
    let mut chain = Chain::new(
        "gw",
        "[[rule]]\nid = \"token-read-by-tools\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{dir}/token\"]\nscope = [\"tool\", \"mcp\"]\naction = \"kill\"\n",
    );
    let bin = chain.dir.join("bin");
    let node = bin.join("node");
    fs::copy("/bin/bash", &node).expect("copy bash as node");
    let gemini = bin.join("gemini");
    let (node, gemini) = (node.display().to_string(), gemini.display().to_string());
    // The launcher relaunches itself as a child with an option first; the relaunch
    // runs the tool as a shell command.
    fs::write(
        &gemini,
        format!(
            "if [ -z \"$RELAUNCHED\" ]; then RELAUNCHED=1 {node} --norc {gemini} \"$1\"; \
             echo launcher-done $?; else /bin/bash -c \"$1\"; echo agent-done; fi\n"
        ),
    )
    .expect("write the gemini script");
    fs::write(
        &chain.wrapper,
        format!("#!/bin/sh\n{node} {gemini} \"$1\"\necho wrapper-done $?\n"),
    )
    .expect("write the wrapper");
    let token = chain.dir.join("token");
    fs::write(&token, "TOKEN\n").expect("write token");
    let token = token.display().to_string();
    let id = format!("c1a0de00-{}", unique_name("s"));
    let (run, session, events) = chain.run(&format!(
        "CLAUDE_CODE_SESSION_ID={id} /bin/bash -c 'cat {token}; echo tool-lives'"
    ));
    let ctx = || context(&run, &events);
    for line in [
        "tool-lives",
        "agent-done",
        "launcher-done 0",
        "wrapper-done 0",
    ] {
        assert!(run.stdout.contains(line), "no {line:?}\n{}", ctx());
    }
    let execs: Vec<&Event> = events.iter().filter(|e| e.kind() == "exec").collect();
    let agents: Vec<&&Event> = execs
        .iter()
        .filter(|e| e.str("exe") == Some(node.as_str()))
        .collect();
    assert_eq!(agents.len(), 2, "the launcher and its relaunch\n{}", ctx());
    for a in &agents {
        assert_eq!(a.str("role"), Some("agent"), "{a}");
        assert_eq!(a.str("agent"), Some("gemini-cli"), "{a}");
    }
    assert_ne!(agents[0].pid(), agents[1].pid(), "the relaunch is a child");
    let tools: Vec<&&Event> = execs
        .iter()
        .filter(|e| e.str("exe").is_some_and(|x| x.ends_with("/bash")))
        .collect();
    assert_eq!(tools.len(), 2, "the tool's two shells\n{}", ctx());
    for t in &tools {
        assert_eq!(t.str("role"), Some("tool"), "{t}");
        assert!(t.get("agent").is_none(), "{t}");
    }
    assert!(tools[0].get("agent_thread").is_none(), "{}", tools[0]);
    assert_eq!(
        tools[1].str("agent_thread"),
        Some(id.as_str()),
        "{}",
        tools[1]
    );
    let read = events
        .iter()
        .find(|e| e.kind() == "open" && e.str("path") == Some(token.as_str()))
        .unwrap_or_else(|| panic!("no read of the token\n{}", ctx()));
    assert_eq!(read.str("rule"), Some("token-read-by-tools"), "{read}");
    assert_eq!(read.str("outcome"), Some("killed"), "{read}");
    assert_eq!(read.str("agent_thread"), Some(id.as_str()), "{read}");

    let ours = listed(&chain, &session);
    assert_eq!(ours["agent"], "gemini-cli", "{ours}");
    assert_eq!(ours["agent_threads"][0], id.as_str(), "{ours}");
    let events = chain.daemon.stop_ok();
    check_schema(
        &events
            .into_iter()
            .filter(|e| !e.kind().starts_with("policy_"))
            .collect::<Vec<_>>(),
        since,
    );
}

/// An agent guard has no profile for, described by the policy (`[[agents.profile]]`):
/// its program is the agent, the programs it runs are tools, and its own session
/// variable reaches the tools' events as `agent_thread`; the session is named by the
/// profile's id.
#[test]
fn a_policy_s_agent_profile_gives_its_roles_and_session_id() {
    let mut chain = Chain::new(
        "gw",
        "[[rule]]\nid = \"token-read-by-tools\"\nkind = \"file\"\naccess = [\"read\"]\n\
         paths = [\"{dir}/token\"]\nscope = \"tool\"\naction = \"kill\"\n\n\
         [[agents.profile]]\nid = \"acme-agent\"\nprograms = [\"acme\"]\n\
         session_var = \"ACME_SESSION_ID\"\n",
    );
    let acme = chain.dir.join("bin/acme");
    fs::copy("/bin/bash", &acme).expect("copy bash as acme");
    let acme = acme.display().to_string();
    fs::write(
        &chain.wrapper,
        format!("#!/bin/sh\n{acme} -c \"$1\"\necho wrapper-done $?\n"),
    )
    .expect("write the wrapper");
    let token = chain.dir.join("token");
    fs::write(&token, "TOKEN\n").expect("write token");
    let token = token.display().to_string();
    let id = format!("acme-{}", unique_name("s"));
    let (run, session, events) = chain.run(&format!(
        "read -r own < {token}; echo agent-read; \
         ACME_SESSION_ID={id} /bin/bash -c 'cat {token}; echo tool-lives'; echo agent-done"
    ));
    let ctx = || context(&run, &events);
    for line in ["agent-read", "tool-lives", "agent-done", "wrapper-done 0"] {
        assert!(run.stdout.contains(line), "no {line:?}\n{}", ctx());
    }
    let agent = events
        .iter()
        .find(|e| e.kind() == "exec" && e.str("exe") == Some(acme.as_str()))
        .unwrap_or_else(|| panic!("no exec of the agent\n{}", ctx()));
    assert_eq!(agent.str("role"), Some("agent"), "{agent}");
    assert_eq!(agent.str("agent"), Some("acme-agent"), "{agent}");
    let tool = events
        .iter()
        .find(|e| e.kind() == "exec" && e.str("exe").is_some_and(|x| x.ends_with("/bash")))
        .unwrap_or_else(|| panic!("no exec of the tool\n{}", ctx()));
    assert_eq!(tool.str("role"), Some("tool"), "{tool}");
    assert_eq!(tool.str("agent_thread"), Some(id.as_str()), "{tool}");
    let opens: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind() == "open" && e.str("path") == Some(token.as_str()))
        .collect();
    let by = |role: &str| opens.iter().find(|e| e.str("role") == Some(role));
    let own = by("agent").unwrap_or_else(|| panic!("the agent's read\n{}", ctx()));
    assert!(own.get("rule").is_none(), "{own}");
    let killed = by("tool").unwrap_or_else(|| panic!("the tool's read\n{}", ctx()));
    assert_eq!(killed.str("rule"), Some("token-read-by-tools"), "{killed}");
    assert_eq!(killed.str("outcome"), Some("killed"), "{killed}");
    assert_eq!(killed.str("agent_thread"), Some(id.as_str()), "{killed}");
    let ours = listed(&chain, &session);
    assert_eq!(ours["agent"], "acme-agent", "{ours}");
    chain.daemon.stop_ok();
}
