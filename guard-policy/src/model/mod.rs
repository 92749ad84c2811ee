//! A validated policy: what `parse` produces and everything else consumes.

use ipnet::IpNet;

mod sections;

pub use self::sections::*;

pub use guard_common::protocol::{Action, Mode};

/// Which processes of a session a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every process of the session.
    #[default]
    All,
    /// Only the session's root process (the agent itself).
    Root,
    /// Every process but the root (its shells, helpers, MCP servers).
    Descendants,
    /// The processes whose agent role (`guard_common::role`) is in the set: bit
    /// `r - 1` for role `r`. A process of unknown role (tracked before roles were
    /// decided) is in every set.
    Roles(u8),
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => Self::All,
            "root" => Self::Root,
            "descendants" => Self::Descendants,
            role => Self::Roles(role_bit(role)?),
        })
    }

    /// Whether the rule applies to a process that is (or is not) its session's
    /// root, of agent role `role`.
    pub fn applies(self, is_root: bool, role: u8) -> bool {
        match self {
            Self::All => true,
            Self::Root => is_root,
            Self::Descendants => !is_root,
            Self::Roles(set) => role == 0 || role_bit_of(role) & set != 0,
        }
    }

    /// The role names of a `Roles` scope, in role order.
    pub fn role_names(self) -> Vec<&'static str> {
        let Self::Roles(set) = self else {
            return Vec::new();
        };
        (1..=guard_common::role::MAX)
            .filter(|r| set & role_bit_of(*r) != 0)
            .map(guard_common::role::name)
            .collect()
    }
}

/// The bit of role `role` (1..=6) in a [`Scope::Roles`] set.
pub fn role_bit_of(role: u8) -> u8 {
    if (1..=guard_common::role::MAX).contains(&role) {
        1 << (role - 1)
    } else {
        0
    }
}

/// The bit of the role named `name` in a [`Scope::Roles`] set.
pub fn role_bit(name: &str) -> Option<u8> {
    guard_common::role::parse(name).map(role_bit_of)
}

/// The role names a `scope` accepts, for messages.
pub const ROLE_NAMES: &str = "\"wrapper\", \"agent\", \"sandbox\", \"tool\", \"mcp\", \"helper\"";

/// File accesses a file rule covers. `write` covers create and truncate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

/// A destination in a network rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// An address or CIDR (`10.0.0.0/8`, `::1`, `169.254.169.254`).
    Net(IpNet),
    /// A DNS name, resolved when the policy loads and again as its records expire.
    Name(String),
    /// The name servers in /etc/resolv.conf (`@resolvers`).
    Resolvers,
}

/// `host[:port]` in a network rule; `port: None` is any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub host: Host,
    pub port: Option<u16>,
    /// As written in the policy, for messages.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Kind {
    /// Opens of paths matching `paths` (globs; `~` is a user's home; a pattern
    /// without `/` matches the file name in any directory; a relative pattern with
    /// `/` matches at any depth), but not `except`, for the given accesses.
    File {
        paths: Vec<String>,
        except: Vec<String>,
        access: Access,
    },
    /// Execs of programs named in `exe` (a file name matches in any directory, an
    /// absolute path that file, a glob by name or path) or whose file has one of
    /// the `digest`s (any name, any copy), optionally only when every
    /// `argv_contains` string is one of the arguments and `argv_regex` matches the
    /// command line (arguments joined by spaces).
    Exec {
        exe: Vec<String>,
        digests: Vec<Digest>,
        argv_contains: Vec<String>,
        argv_regex: Option<String>,
    },
    /// Connects and sends: a destination in `deny` matches; when `allow` is given,
    /// a destination in none of its entries matches.
    Network { allow: Vec<Dest>, deny: Vec<Dest> },
    /// A route around the open, exec and network hooks (`[sessions]`; the rule's
    /// id is `sessions.<key>`): its `route` events, and for `fileless_exec` the
    /// execs of a memfd or a deleted file.
    Route(Vec<Route>),
    /// Connects and sends of tainted processes (`[taint]`; the rule's id is
    /// `taint.egress`): a destination in none of `allow`'s entries matches.
    #[strum(serialize = "taint")]
    TaintEgress { allow: Vec<Dest> },
    /// DNS queries of session processes (`[dns] unknown`; the rule's id is
    /// `dns.names`): a name that neither `[dns] allow` nor the network rules'
    /// allowlists name matches (`crate::dns`).
    Dns,
    /// Connects of session processes to a known spawner outside every session
    /// (`[delegation]`; the rule's id is `delegation.spawner`).
    Delegation,
    /// Packages a session installs whose names are near misses of well-known
    /// packages (`[packages] near_miss`; the rule's id is `packages.near-miss`):
    /// decided by the judge on the manifest's write (`crate::packages`).
    Packages,
}

pub use guard_common::protocol::Route;

/// A program by its content, as an exec rule's `digest` names it:
/// `sha256:<64 hex digits>:<size in bytes>` (`guard policy digest FILE` prints it).
/// The size lets the kernel hold only execs of files that could match.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    pub size: u64,
}

impl Digest {
    /// Reads `sha256:HEX:SIZE`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let (Some(algo), Some(hex), Some(size), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "digest {text:?} is not `sha256:<64 hex digits>:<size in bytes>` (`guard policy \
                 digest FILE` prints it)"
            ));
        };
        if algo != "sha256" {
            return Err(format!(
                "digest {text:?}: only sha256 is supported, not {algo:?}"
            ));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "digest {text:?}: a SHA-256 is 64 hex digits (this has {} characters)",
                hex.len()
            ));
        }
        let size = size.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            format!("digest {text:?}: the size {size:?} is not a number of bytes above 0")
        })?;
        Ok(Self {
            sha256: hex.to_ascii_lowercase(),
            size,
        })
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}:{}", self.sha256, self.size)
    }
}

/// `[taint]`: what a process that read a secret (a `secret = true` rule let the
/// read happen) may still connect and send to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// What tainted egress off `allow` gets (`egress`); `None` (`"allow"`): nothing.
    pub egress: Option<Action>,
    /// Destinations tainted processes may reach (`allow`), as network rules write
    /// them.
    pub allow: Vec<Dest>,
}

impl Default for Taint {
    /// Every tainted connect or send is an alert.
    fn default() -> Self {
        Self {
            egress: Some(Action::Alert),
            allow: Vec::new(),
        }
    }
}

impl Taint {
    /// The id of the rule `[taint]` makes.
    pub const RULE: &'static str = "taint.egress";
}

/// `[files]`: a repository's ignore files that agents honour (`.codexignore`, …)
/// and the policy's own patterns, made binding for every process of a session
/// (`crate::ignore`): read from the committed tree when a session starts in the
/// repository, they become the rules [`Files::IGNORE`], [`Files::IGNORE_BY_AGENT`]
/// and [`Files::IGNORE_FILES`], appended after the policy's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    /// Ignore files read from the root of each session's repository at `HEAD`
    /// (`ignore_files`).
    pub ignore_files: Vec<String>,
    /// Patterns (gitignore's) ignored in every session's repository (`ignore`).
    pub ignore: Vec<String>,
    /// What a read of an ignored file gets by every process but the agent
    /// (`action`); the agent's own read is refused where the kernel can refuse
    /// without a kill, else alerted. `None` (`"allow"`): nothing is made binding.
    pub action: Option<Action>,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            ignore_files: [
                ".codexignore",
                ".aiignore",
                ".geminiignore",
                ".cursorignore",
            ]
            .map(str::to_owned)
            .to_vec(),
            ignore: Vec::new(),
            action: Some(Action::Deny),
        }
    }
}

/// `[dns]`: sessions' DNS goes through guard's resolver, which answers the names the
/// policy allows and refuses the rest (docs/policy.md, "DNS").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns {
    /// Sessions' DNS (port 53 at any address) goes to guard's resolver
    /// (`resolver`); `false`: where it was sent, judged by the network rules.
    pub resolver: bool,
    /// Names sessions may resolve besides those the network rules' allowlists and
    /// `[taint] allow` name: lower case, without the trailing dot; `*.example.com`
    /// is every name below example.com (not example.com itself).
    pub allow: Vec<String>,
    /// What a query for any other name gets (`unknown`): `deny` and `kill`
    /// refuse it (NXDOMAIN; `kill` kills the process too), `alert` and `log`
    /// answer it and report it; `None` (`"allow"`): answered, not reported. Unset
    /// in the policy: `deny` where a network rule makes egress an allowlist (its
    /// action `deny` or `kill`), else `None`.
    pub unknown: Option<Action>,
    /// Where the resolver sends the queries it answers when the network rules do
    /// not let the session reach the server it asked (`upstream`); empty: the
    /// name servers of the host's /etc/resolv.conf.
    pub upstream: Vec<std::net::SocketAddr>,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            resolver: true,
            allow: Vec::new(),
            unknown: None,
            upstream: Vec::new(),
        }
    }
}

impl Files {
    /// The rule on reads of ignored files by every process but the agent.
    pub const IGNORE: &'static str = "files.ignore";
    /// The rule on the agent's own reads of them.
    pub const IGNORE_BY_AGENT: &'static str = "files.ignore-by-agent";
    /// The rule on writes to the ignore files themselves.
    pub const IGNORE_FILES: &'static str = "files.ignore-files";
    /// The ids of the rules `[files]` makes.
    pub const RULES: [&'static str; 3] = [Self::IGNORE, Self::IGNORE_BY_AGENT, Self::IGNORE_FILES];

    /// The rules for repositories whose ignored files are `paths` but `except`
    /// (globs), and whose ignore files are `files` (paths): none when nothing is
    /// ignored and `action` allows.
    pub fn rules(&self, paths: Vec<String>, except: Vec<String>, files: Vec<String>) -> Vec<Rule> {
        let Some(action) = self.action else {
            return Vec::new();
        };
        let all = (1..=guard_common::role::MAX).fold(0, |set, r| set | role_bit_of(r));
        let agent = role_bit_of(guard_common::role::AGENT);
        let rule = |id: &str, description: &str, kind: Kind, action, scope, fallback| Rule {
            id: id.to_owned(),
            description: Some(description.to_owned()),
            kind,
            action,
            scope,
            secret: true,
            fallback,
            pos: Pos::default(),
        };
        let read = Kind::File {
            paths,
            except,
            access: Access {
                read: true,
                write: false,
            },
        };
        // The agent's own read: refused where the kernel can refuse without a kill,
        // else at most an alert (a kill would end the user's session).
        let (by_agent, fallback) = match action {
            Action::Kill | Action::Deny => (Action::Deny, Some(Action::Alert)),
            other => (other, None),
        };
        let mut out = Vec::new();
        if matches!(&read, Kind::File { paths, .. } if !paths.is_empty()) {
            out.push(rule(
                Self::IGNORE,
                "a file the repository's ignore files (or [files] ignore) keep from agents",
                read.clone(),
                action,
                Scope::Roles(all & !agent),
                None,
            ));
            out.push(rule(
                Self::IGNORE_BY_AGENT,
                "the agent's own read of a file the repository's ignore files keep from agents",
                read,
                by_agent,
                Scope::Roles(agent),
                fallback,
            ));
        }
        if !files.is_empty() {
            let mut r = rule(
                Self::IGNORE_FILES,
                "the repository's ignore files: guard reads them from the committed tree, an edit changes nothing",
                Kind::File {
                    paths: files,
                    except: Vec::new(),
                    access: Access {
                        read: false,
                        write: true,
                    },
                },
                Action::Deny,
                Scope::All,
                Some(Action::Alert),
            );
            r.secret = false;
            out.push(r);
        }
        out
    }
}

impl Dns {
    /// The id of the rule `[dns] unknown` makes.
    pub const RULE: &'static str = "dns.names";
}

/// `[delegation]`: a session's connects to known spawners outside every session
/// (docs/policy.md, "Delegation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delegation {
    /// What such a connect gets (`action`), under the rule `delegation.spawner`;
    /// `None` (`"allow"`): no rule (the connect's event still names the listener).
    pub action: Option<Action>,
    /// The known spawners: the built-in list (guard-policy/data/spawners.toml),
    /// replaced by `spawners` or extended by `also`.
    pub spawners: Vec<Spawner>,
}

/// `[packages]`: packages sessions install (docs/policy.md, "Packages").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packages {
    /// What a package whose name is a near miss of a well-known package's gets
    /// (`near_miss`), under the rule `packages.near-miss`; `None` (`"allow"`): no
    /// rule.
    pub near_miss: Option<Action>,
    /// What a package's script that reaches the network beyond the package
    /// registries gets (`script_network`), under the rule `packages.script-network`.
    pub script_network: Option<Action>,
    /// What a package whose name the organisation had never seen gets
    /// (`first_seen`: the fleet's inventory has no package of that name), under the
    /// rule `packages.first-seen`; `None` (`"allow"`): no rule.
    pub first_seen: Option<Action>,
}

impl Packages {
    /// The id of the rule `[packages] near_miss` makes.
    pub const NEAR_MISS: &'static str = "packages.near-miss";
    /// The id of the rule `[packages] script_network` makes.
    pub const SCRIPT_NETWORK: &'static str = "packages.script-network";
    /// The id of the rule `[packages] first_seen` makes.
    pub const FIRST_SEEN: &'static str = "packages.first-seen";
}

/// A kind of known spawner and the programs that are one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Spawner {
    pub name: String,
    /// Executable file names (`/proc/PID/exe`), else command names.
    pub programs: Vec<String>,
    #[serde(default)]
    pub what: String,
}

impl Delegation {
    /// The id of the rule `[delegation] action` makes.
    pub const RULE: &'static str = "delegation.spawner";

    /// The built-in known spawners.
    pub fn builtin_spawners() -> Vec<Spawner> {
        #[derive(serde::Deserialize)]
        struct List {
            spawner: Vec<Spawner>,
        }
        // Checked by a unit test: the file ships with the binary.
        toml::from_str::<List>(include_str!("../../data/spawners.toml"))
            .map(|l| l.spawner)
            .unwrap_or_default()
    }

    /// The kind of spawner `program` (an executable's file name or a command name)
    /// is.
    pub fn kind_of(&self, program: &str) -> Option<&str> {
        self.spawners
            .iter()
            .find(|s| s.programs.iter().any(|p| p == program))
            .map(|s| s.name.as_str())
    }
}

impl Default for Delegation {
    /// Alert on every connect to a built-in spawner.
    fn default() -> Self {
        Self {
            action: Some(Action::Alert),
            spawners: Self::builtin_spawners(),
        }
    }
}

/// `[sessions]`: what session processes may do by routes around the open, exec
/// and network hooks. `None` allows the route; an action makes it a rule
/// (`sessions.<key>`), appended after the policy's own rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sessions {
    /// `io_uring`: io_uring_setup (its operations bypass every system-call hook).
    pub io_uring: Option<Action>,
    /// `open_by_handle_at`: opens by file handle.
    pub open_by_handle_at: Option<Action>,
    /// `fileless_exec`: execs of a memfd or a deleted file.
    pub fileless_exec: Option<Action>,
    /// `raw_sockets`: raw IPv4/IPv6 and packet sockets.
    pub raw_sockets: Option<Action>,
    /// `listen`: listening beyond loopback (a TCP socket, or a UDP socket bound to
    /// a port, on an address that is not a loopback one).
    pub listen: Option<Action>,
    /// `unsandboxed_tools`: a tool that runs outside the sandbox the session's
    /// other tools ran in (not a route: judged in user space at the tool's exec).
    pub unsandboxed_tools: Option<Action>,
    /// `run_downloaded`: an exec of a file the session downloaded, or an
    /// interpreter given one (not a route: the kernel holds the exec, user space
    /// judges it before it runs; `deny` acts as `kill`).
    pub run_downloaded: Option<Action>,
    /// `undeclared`: a process that works on after the tool call its agent declared
    /// for it ended (left behind in the background), once the agent declares its
    /// calls through guard's hook (not a route: judged in user space at its execs
    /// and connects; `deny` is refused, `kill` kills it).
    pub undeclared: Option<Action>,
}

impl Default for Sessions {
    /// Refuse io_uring, opens by handle and raw sockets; alert on fileless execs.
    fn default() -> Self {
        Self {
            io_uring: Some(Action::Deny),
            open_by_handle_at: Some(Action::Deny),
            fileless_exec: Some(Action::Alert),
            raw_sockets: Some(Action::Deny),
            listen: None,
            unsandboxed_tools: None,
            run_downloaded: None,
            undeclared: None,
        }
    }
}

impl Sessions {
    /// The keys of `[sessions]`, in order.
    pub const KEYS: [&'static str; 8] = [
        "io_uring",
        "open_by_handle_at",
        "fileless_exec",
        "raw_sockets",
        "listen",
        "unsandboxed_tools",
        "run_downloaded",
        "undeclared",
    ];

    /// The setting of `key` (one of [`Self::KEYS`]).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Option<Action>> {
        Some(match key {
            "io_uring" => &mut self.io_uring,
            "open_by_handle_at" => &mut self.open_by_handle_at,
            "fileless_exec" => &mut self.fileless_exec,
            "raw_sockets" => &mut self.raw_sockets,
            "listen" => &mut self.listen,
            "unsandboxed_tools" => &mut self.unsandboxed_tools,
            "run_downloaded" => &mut self.run_downloaded,
            "undeclared" => &mut self.undeclared,
            _ => return None,
        })
    }

    /// The rules these settings make: (key, action, routes). `unsandboxed_tools`,
    /// `run_downloaded` and `undeclared` make none (the judge's
    /// [`super::judge::Judge::unsandboxed`], `downloaded` and `undeclared`).
    pub fn rules(&self) -> Vec<(&'static str, Action, Vec<Route>)> {
        [
            ("io_uring", self.io_uring, vec![Route::IoUring]),
            (
                "open_by_handle_at",
                self.open_by_handle_at,
                vec![Route::OpenByHandleAt],
            ),
            (
                "fileless_exec",
                self.fileless_exec,
                vec![Route::FilelessExec],
            ),
            (
                "raw_sockets",
                self.raw_sockets,
                vec![Route::RawSocket, Route::PacketSocket],
            ),
            ("listen", self.listen, vec![Route::Listen]),
        ]
        .into_iter()
        .filter_map(|(key, action, routes)| action.map(|a| (key, a, routes)))
        .collect()
    }
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// Where something is in the policy source (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: String,
    pub description: Option<String>,
    pub kind: Kind,
    pub action: Action,
    pub scope: Scope,
    /// File rules: what they protect is a secret (credentials, keys, dotenv files):
    /// session reports list its reads apart, and a read the rule lets happen (`log`,
    /// `alert`) taints the process (`secret = true`).
    pub secret: bool,
    /// `deny` file and exec rules: what the rule does where the kernel cannot refuse
    /// the operation without killing (no BPF-LSM here, or a pattern only user space
    /// matches): `fallback = "alert"` (or `log`, `kill`). `None`: `deny` acts as
    /// `kill` there.
    pub fallback: Option<Action>,
    /// Where the rule's table starts.
    pub pos: Pos,
}

impl Rule {
    /// The action the rule has where a refusal is (`refusable`) or is not possible:
    /// a `deny` that cannot refuse acts as its `fallback` when it has one (and as
    /// `deny`, which kills, when it has none); every other action is itself.
    pub fn acting(&self, refusable: bool) -> Action {
        match (self.action, self.fallback) {
            (Action::Deny, Some(fallback)) if !refusable => fallback,
            (action, _) => action,
        }
    }
}

/// A container chosen as agent territory (`[agents] containers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerSelector {
    /// `"*"`: every container (any cgroup holding a container id).
    Any,
    /// `"key=value,key=value"` (or a bare id prefix): containers for which every term
    /// holds.
    All(Vec<(ContainerField, String)>),
}

pub use crate::container::ContainerField;

/// An agent's profile written in a policy (`[[agents.profile]]`): added to the
/// built-in ones (`agents::profile`), or replacing the one with the same `id`. What
/// the kernel recognises the agent by; docs/agents.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProfile {
    pub id: String,
    /// Files that are the agent when exec'd (native binaries).
    pub programs: Vec<String>,
    /// Script names a JavaScript runtime runs the agent as.
    pub scripts: Vec<String>,
    /// Runs its tools through its own program and other programs as its helpers.
    pub structured: bool,
    /// The variable that carries its session id into its tools.
    pub session_var: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The file it came from, or the built-in's name (`workstation`, `ci`).
    pub name: String,
    pub mode: Mode,
    /// Program names whose exec starts a session (`[agents] names`).
    pub agents: Vec<String>,
    /// Agents' profiles of the policy's own (`[[agents.profile]]`).
    pub profiles: Vec<AgentProfile>,
    /// Containers whose processes start a session at exec (`[agents] containers`).
    pub containers: Vec<ContainerSelector>,
    /// cgroup path globs, from the cgroup2 root, whose processes (and those of every
    /// cgroup below) start a session at exec (`[agents] cgroups`).
    pub cgroups: Vec<String>,
    /// CI mode: kill every process of a session when its root exits.
    pub kill_stragglers: bool,
    /// Home directories `~` stands for besides those of the host's users
    /// (`[agents] homes`): the job users of CI pods, whom guard's own container
    /// does not list.
    pub homes: Vec<String>,
    /// Record budgets per session and what a loss means (`[limits]`).
    pub limits: Limits,
    /// Where session reports go (`[report]`).
    pub report: ReportConfig,
    /// Routes around the hooks (`[sessions]`); its rules are in `rules` too.
    pub sessions: Sessions,
    /// Egress of tainted processes (`[taint]`); its rule is in `rules` too.
    pub taint: Taint,
    /// Repositories' ignore files made binding (`[files]`); its rules are added to
    /// `rules` as sessions start in repositories (`policy::judge`).
    pub files: Files,
    /// Sessions' DNS through guard's resolver, and the names it answers
    /// (`[dns]`); its rule is in `rules` too.
    pub dns: Dns,
    /// Connects to known spawners outside every session (`[delegation]`); its rule
    /// is in `rules` too.
    pub delegation: Delegation,
    /// Packages sessions install (`[packages]`); its rule is in `rules` too.
    pub packages: Packages,
    pub rules: Vec<Rule>,
    /// Egress and DNS anomaly thresholds (`[[anomaly]]`), judged in user space.
    pub anomalies: Vec<Anomaly>,
    /// Where events and session summaries go beyond this host (`[export]`).
    pub export: Export,
    /// What is redacted before anything is written (`[redact]`).
    pub redact: Redact,
    /// How the audit log is written (`[audit]`).
    pub audit: Audit,
    /// Where the policy in force comes from when the fleet assigns one (`[fleet]`):
    /// read from the host's own file only, never from a policy the fleet serves.
    pub fleet: Option<Fleet>,
}

impl Policy {
    /// How many `[[rule]]`s the policy has of its own: `rules` less the ones its
    /// settings make (`[sessions]`, `[taint]`, `[dns]`, `[delegation]`), which every
    /// policy has (the count `guard policy check` prints and `policy_loaded` writes).
    pub fn own_rules(&self) -> usize {
        self.rules
            .iter()
            .filter(|r| {
                !matches!(
                    r.kind,
                    Kind::Route(_)
                        | Kind::TaintEgress { .. }
                        | Kind::Dns
                        | Kind::Delegation
                        | Kind::Packages
                )
            })
            .count()
    }
}
