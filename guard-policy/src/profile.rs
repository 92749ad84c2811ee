//! What guard knows about each coding agent, in one place per agent: the programs
//! that start it and that it is, how it runs its tools, the variable that carries
//! its session id into them, its credentials, configuration and model endpoints.
//!
//! The kernel gets the programs and session variables (`ebpf::agents`); user space
//! names each session's agent and version from them; the built-in policies' rules
//! and allowlists cover every profile's files and endpoints (checked by the tests
//! below). docs/agents.md has one table per agent, measured with its real CLI.

use std::sync::Arc;

use guard_common::role;

use crate::model::AgentProfile;

/// One agent, as guard recognises it.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    /// Its name in events (`agent`), reports, `guard sessions`, the export and
    /// `guard_agent_sessions_total`.
    pub id: &'static str,
    /// The npm package it is installed from (its version comes from the
    /// `package.json` above the program: `agents::version`).
    pub package: &'static str,
    /// Names whose exec starts a session (the built-in policies' `[agents] names`):
    /// what a user types.
    pub launchers: &'static [&'static str],
    /// Files that are the agent when exec'd (cut to 15 bytes, like `comm`): its native
    /// binaries. The npm shim is not one: the runtime it starts is a wrapper.
    pub programs: &'static [&'static str],
    /// Script names a JavaScript runtime runs the agent as (`node …/bin/gemini`).
    pub scripts: &'static [&'static str],
    /// Runs its tools through its own program (a sandbox step) and other programs
    /// directly as its own helpers (`role::STRUCTURED`).
    pub structured: bool,
    /// The environment variable that carries its session id into its tools (the
    /// events' `agent_thread`); None when it sets none.
    pub session_var: Option<&'static str>,
    /// Variables it sets in its tools' environment (for the docs and for users'
    /// scripts; guard decides roles by the process chain).
    pub markers: &'static [&'static str],
    /// Files holding its tokens: only the agent itself reads them.
    pub credentials: &'static [&'static str],
    /// Its settings, permissions and hooks: a write by its tools would change what
    /// the agent allows itself.
    pub config: &'static [&'static str],
    /// Where its model lives (`host:port`).
    pub endpoints: &'static [&'static str],
}

/// The JavaScript runtimes whose script names the agent (`role::PROGRAM_RUNTIME`).
pub const RUNTIMES: &[&str] = &["node", "nodejs", "bun", "deno"];

/// The agents guard knows.
pub const BUILTIN: &[Profile] = &[
    Profile {
        id: "codex",
        package: "@openai/codex",
        launchers: &["codex"],
        programs: &["codex"],
        scripts: &[],
        structured: true,
        session_var: Some("CODEX_THREAD_ID"),
        markers: &[
            "CODEX_THREAD_ID",
            "CODEX_SANDBOX",
            "CODEX_SANDBOX_NETWORK_DISABLED",
        ],
        credentials: &["~/.codex/auth.json", "~/.codex/.env"],
        config: &[
            "~/.codex/config.toml",
            "~/.codex/rules/**",
            "~/.codex/hooks.json",
            "~/.codex/AGENTS.md",
        ],
        endpoints: &[
            "api.openai.com:443",
            "chatgpt.com:443",
            "auth.openai.com:443",
        ],
    },
    Profile {
        id: "claude-code",
        package: "@anthropic-ai/claude-code",
        launchers: &["claude"],
        // The npm package's `bin/claude.exe` (a native Bun binary), also when run
        // through the `claude` symlink.
        programs: &["claude", "claude.exe"],
        scripts: &[],
        structured: false,
        session_var: Some("CLAUDE_CODE_SESSION_ID"),
        markers: &[
            "CLAUDECODE",
            "CLAUDE_CODE_SESSION_ID",
            "CLAUDE_PID",
            "AI_AGENT",
        ],
        credentials: &["~/.claude/.credentials.json"],
        config: &[
            "~/.claude/settings.json",
            "~/.claude/settings.local.json",
            "~/.claude.json",
            ".claude/settings.json",
            ".claude/settings.local.json",
            "/etc/claude-code/**",
        ],
        endpoints: &[
            "api.anthropic.com:443",
            "claude.ai:443",
            "platform.claude.com:443",
        ],
    },
    Profile {
        id: "gemini-cli",
        package: "@google/gemini-cli",
        launchers: &["gemini"],
        programs: &[],
        // `node …/.bin/gemini` (npm's symlink) or `node …/bundle/gemini.js`; the
        // agent relaunches itself as `node --max-old-space-size=N …/gemini`.
        scripts: &["gemini", "gemini.js"],
        structured: false,
        session_var: None,
        markers: &["GEMINI_CLI"],
        credentials: &["~/.gemini/oauth_creds.json", "~/.gemini/.env"],
        config: &[
            "~/.gemini/settings.json",
            "~/.gemini/trustedFolders.json",
            "~/.gemini/policies/**",
            ".gemini/settings.json",
            "/etc/gemini-cli/**",
        ],
        endpoints: &[
            "generativelanguage.googleapis.com:443",
            "cloudcode-pa.googleapis.com:443",
            "oauth2.googleapis.com:443",
        ],
    },
    Profile {
        id: "copilot-cli",
        package: "@github/copilot",
        launchers: &["copilot"],
        // The native binary of `@github/copilot-linux-x64` (its threads are named
        // `MainThread`: it is known by its file); `npm-loader.js` before it runs on
        // node, a wrapper.
        programs: &["copilot"],
        scripts: &[],
        structured: false,
        session_var: Some("COPILOT_AGENT_SESSION_ID"),
        markers: &[
            "COPILOT_CLI",
            "COPILOT_AGENT_SESSION_ID",
            "COPILOT_CLI_BINARY_VERSION",
        ],
        credentials: &["~/.copilot/config.json", "~/.config/github-copilot/**"],
        config: &[
            "~/.copilot/settings.json",
            "~/.copilot/permissions-config.json",
            "~/.copilot/mcp-config.json",
            "~/.copilot/hooks/**",
            ".github/hooks/**",
            "/etc/github-copilot/**",
        ],
        endpoints: &[
            "api.githubcopilot.com:443",
            "api.individual.githubcopilot.com:443",
            "api.business.githubcopilot.com:443",
            "api.enterprise.githubcopilot.com:443",
        ],
    },
];

/// The names whose exec starts a session, of every built-in profile (the default
/// of `[agents] names`).
pub fn launchers() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().flat_map(|p| p.launchers.iter().copied())
}

/// An agent as the kernel and user space recognise it: a built-in profile, or a
/// policy's (`[[agents.profile]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recognised {
    id: Arc<str>,
    programs: Vec<String>,
    scripts: Vec<String>,
    structured: bool,
    session_var: Option<String>,
}

/// The agents guard recognises: the built-in profiles, each replaced by a policy's of
/// the same id, then the policy's others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    agents: Vec<Recognised>,
}

impl Default for Known {
    /// The built-in profiles.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl Known {
    pub fn new(policy: &[AgentProfile]) -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        let of_policy = |p: &AgentProfile| Recognised {
            id: Arc::from(p.id.as_str()),
            programs: p.programs.clone(),
            scripts: p.scripts.clone(),
            structured: p.structured,
            session_var: p.session_var.clone(),
        };
        let mut agents: Vec<Recognised> = BUILTIN
            .iter()
            .map(|b| match policy.iter().find(|p| p.id == b.id) {
                Some(p) => of_policy(p),
                None => Recognised {
                    id: Arc::from(b.id),
                    programs: owned(b.programs),
                    scripts: owned(b.scripts),
                    structured: b.structured,
                    session_var: b.session_var.map(str::to_owned),
                },
            })
            .collect();
        for p in policy {
            if !agents.iter().any(|a| *a.id == *p.id) {
                agents.push(of_policy(p));
            }
        }
        Self { agents }
    }

    /// The `AGENT_PROGRAMS` entries: (file name, `role::PROGRAM_*`) for each agent's
    /// programs and scripts, and the runtimes.
    pub fn programs(&self) -> impl Iterator<Item = (&str, u32)> {
        self.agents
            .iter()
            .flat_map(|a| {
                let s = if a.structured {
                    role::PROGRAM_STRUCTURED
                } else {
                    0
                };
                a.programs
                    .iter()
                    .map(move |n| (n.as_str(), role::PROGRAM_AGENT | s))
                    .chain(
                        a.scripts
                            .iter()
                            .map(move |n| (n.as_str(), role::PROGRAM_SCRIPT | s)),
                    )
            })
            .chain(RUNTIMES.iter().map(|n| (*n, role::PROGRAM_RUNTIME)))
    }

    /// The agents' session variables, each once, in profile order.
    pub fn session_vars(&self) -> impl Iterator<Item = &str> {
        self.agents.iter().enumerate().filter_map(|(i, a)| {
            let var = a.session_var.as_deref()?;
            let earlier = self.agents[..i]
                .iter()
                .any(|e| e.session_var.as_deref() == Some(var));
            (!earlier).then_some(var)
        })
    }

    /// The agent that `exe` run with `argv` is: by the file's name, or by its
    /// script when a runtime runs it. What the kernel decided the role from, named.
    pub fn recognise(&self, exe: &str, argv: &[String]) -> Option<&Arc<str>> {
        let name = file_name(exe);
        if RUNTIMES.contains(&name) {
            let script = file_name(script_of(argv)?);
            return self
                .agents
                .iter()
                .find(|a| a.scripts.iter().any(|s| s == script))
                .map(|a| &a.id);
        }
        let key = |n: &str| guard_common::agent_key(n.as_bytes());
        self.agents
            .iter()
            .find(|a| a.programs.iter().any(|n| key(n) == key(name)))
            .map(|a| &a.id)
    }
}

/// The file name of a path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The script a runtime runs: its first argument after its own name that is not an
/// option, as the kernel picks it.
pub fn script_of(argv: &[String]) -> Option<&str> {
    argv.iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    fn recognise(exe: &str, argv: &[String]) -> Option<String> {
        Known::default()
            .recognise(exe, argv)
            .map(|id| id.to_string())
    }

    #[test]
    fn each_agent_is_recognised_by_what_the_kernel_sees_at_its_exec() {
        let claude = "/w/node_modules/@anthropic-ai/claude-code/bin/claude.exe";
        assert_eq!(
            recognise(claude, &argv(&["claude", "-p"])).as_deref(),
            Some("claude-code")
        );
        let copilot = "/w/node_modules/@github/copilot-linux-x64/copilot";
        assert_eq!(
            recognise(copilot, &argv(&[copilot])).as_deref(),
            Some("copilot-cli")
        );
        let codex = "/w/vendor/x86_64-unknown-linux-musl/bin/codex";
        assert_eq!(
            recognise(codex, &argv(&["codex", "exec"])).as_deref(),
            Some("codex")
        );
        // Gemini: the launcher and its relaunch, by their script.
        let launcher = argv(&["node", "/w/node_modules/.bin/gemini", "-p", "x"]);
        let relaunch = argv(&[
            "/usr/bin/node",
            "--max-old-space-size=12052",
            "/w/.bin/gemini",
        ]);
        for a in [&launcher, &relaunch] {
            assert_eq!(recognise("/usr/bin/node", a).as_deref(), Some("gemini-cli"));
        }
        // Codex's and Copilot's npm loaders run on node: wrappers, not agents.
        for script in [
            "/w/@openai/codex/bin/codex.js",
            "/w/@github/copilot/npm-loader.js",
        ] {
            assert_eq!(recognise("/usr/bin/node", &argv(&["node", script])), None);
        }
        // A runtime with no script, and programs no profile names.
        assert_eq!(
            recognise("/usr/bin/node", &argv(&["node", "-e", "1"])),
            None
        );
        assert_eq!(
            recognise("/usr/bin/bash", &argv(&["bash", "-c", "gemini"])),
            None
        );
    }

    #[test]
    fn the_kernel_tables_hold_every_program_script_and_session_variable() {
        let known = Known::default();
        let programs: Vec<(&str, u32)> = known.programs().collect();
        for p in BUILTIN {
            for n in p.programs {
                assert!(
                    programs
                        .iter()
                        .any(|(k, b)| k == n && b & role::PROGRAM_AGENT != 0)
                );
            }
            for n in p.scripts {
                assert!(
                    programs
                        .iter()
                        .any(|(k, b)| k == n && b & role::PROGRAM_SCRIPT != 0)
                );
            }
            if let Some(var) = p.session_var {
                assert!(guard_common::SessionVar::new(var).is_some(), "{var} fits");
            }
        }
        assert_eq!(
            known.session_vars().collect::<Vec<_>>(),
            [
                "CODEX_THREAD_ID",
                "CLAUDE_CODE_SESSION_ID",
                "COPILOT_AGENT_SESSION_ID"
            ]
        );
        let codex = programs.iter().find(|(k, _)| *k == "codex").expect("codex");
        assert_eq!(codex.1, role::PROGRAM_AGENT | role::PROGRAM_STRUCTURED);
        let mut ids: Vec<&str> = BUILTIN.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), BUILTIN.len());
    }

    /// A policy's profile replaces the built-in of its id and adds its own; a
    /// session variable two agents share is searched for once.
    #[test]
    fn a_policy_s_profiles_replace_and_add_to_the_built_ins() {
        let profile = |id: &str, programs: &[&str], var: Option<&str>| AgentProfile {
            id: id.to_owned(),
            programs: programs.iter().map(|s| (*s).to_owned()).collect(),
            scripts: Vec::new(),
            structured: false,
            session_var: var.map(str::to_owned),
        };
        let known = Known::new(&[
            profile(
                "claude-code",
                &["claude-beta"],
                Some("CLAUDE_CODE_SESSION_ID"),
            ),
            profile("aider", &["aider"], Some("CODEX_THREAD_ID")),
        ]);
        let id = |exe: &str| known.recognise(exe, &[]).map(|a| a.to_string());
        assert_eq!(id("/opt/claude-beta").as_deref(), Some("claude-code"));
        assert_eq!(id("/opt/claude.exe"), None, "replaced, not added to");
        assert_eq!(id("/usr/local/bin/aider").as_deref(), Some("aider"));
        assert_eq!(id("/usr/bin/codex").as_deref(), Some("codex"));
        assert_eq!(
            known.session_vars().collect::<Vec<_>>(),
            [
                "CODEX_THREAD_ID",
                "CLAUDE_CODE_SESSION_ID",
                "COPILOT_AGENT_SESSION_ID"
            ]
        );
    }
}
