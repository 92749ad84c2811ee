//! Matching events against a policy in user space. The kernel enforces the subset
//! it can express (see `kernel.rs`); this matcher sees every rule, so every event
//! is labelled with every rule it broke, whoever enforced it.

use std::{collections::HashMap, net::IpAddr};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use regex::Regex;

use super::{
    glob,
    model::{Action, Dest, Host, Kind, Mode, Policy},
};
use crate::event::{Detail, access};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("rule {rule}: bad glob {pattern:?}")]
    Glob {
        rule: String,
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("rule {rule}: bad argv_regex")]
    Regex {
        rule: String,
        #[source]
        source: regex::Error,
    },
}

fn glob(rule: &str, pattern: &str) -> Result<Glob, CompileError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|source| CompileError::Glob {
            rule: rule.to_owned(),
            pattern: pattern.to_owned(),
            source,
        })
}

fn globset(rule: &str, patterns: &[String], homes: &[String]) -> Result<GlobSet, CompileError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        for e in glob::expand(p, homes) {
            b.add(glob(rule, &e)?);
        }
    }
    b.build().map_err(|source| CompileError::Glob {
        rule: rule.to_owned(),
        pattern: patterns.join(", "),
        source,
    })
}

enum Matcher {
    /// Paths are matched for all file rules at once (`Compiled::file_paths`).
    File {
        except: GlobSet,
        read: bool,
        write: bool,
    },
    Exec {
        names: Vec<String>,
        name_globs: GlobSet,
        paths: GlobSet,
        /// SHA-256s (lowercase hex) of the programs named by digest.
        digests: Vec<String>,
        argv_contains: Vec<String>,
        argv_regex: Option<Regex>,
    },
    Network {
        allow: Vec<Dest>,
        deny: Vec<Dest>,
    },
    Route(Vec<super::model::Route>),
    TaintEgress {
        allow: Vec<Dest>,
    },
    /// `dns.names`: decided by [`Compiled::dns`].
    Dns,
    /// `delegation.spawner`: decided by the judge on the event's listener
    /// (`Judge::delegation`).
    Delegation,
    /// `packages.near-miss`: decided by the judge on a manifest's write
    /// (`Judge::package`).
    Packages,
}

/// A rule an event broke.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub rule: usize,
    pub action: Action,
}

/// Resolved addresses of the names in network rules, and names by address.
#[derive(Default, Clone, Debug)]
pub struct Hosts {
    pub by_name: HashMap<String, Vec<IpAddr>>,
    pub resolvers: Vec<IpAddr>,
}

impl Hosts {
    /// The policy names an address resolved from.
    pub fn name_of(&self, addr: IpAddr) -> Option<&str> {
        self.by_name
            .iter()
            .find(|(_, ips)| ips.contains(&addr))
            .map(|(n, _)| n.as_str())
    }

    fn addrs<'a>(&'a self, host: &'a Host) -> Box<dyn Iterator<Item = IpNet> + 'a> {
        match host {
            Host::Net(net) => Box::new(std::iter::once(*net)),
            Host::Name(name) => Box::new(
                self.by_name
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|ip| IpNet::from(*ip)),
            ),
            Host::Resolvers => Box::new(self.resolvers.iter().map(|ip| IpNet::from(*ip))),
        }
    }
}

fn listed(list: &[Dest], addr: IpAddr, port: u16, hosts: &Hosts) -> bool {
    // IPv4-mapped IPv6 compares as IPv4, as the kernel does.
    let addr = addr.to_canonical();
    list.iter().any(|d| {
        d.port.is_none_or(|p| p == port) && hosts.addrs(&d.host).any(|net| net.contains(&addr))
    })
}

/// A connect of a UDP socket to a port other than DNS's: no packet goes out, so no
/// rule on destinations judges it (its socket's first send is judged).
pub fn udp_connect(detail: &Detail) -> bool {
    matches!(detail, Detail::Connect { proto: crate::event::Proto::Udp, port, .. } if *port != guard_common::DNS_PORT)
}

/// The name a DNS query asks for (none for answers).
fn query_name(d: &crate::event::dns::Dns) -> Option<&str> {
    (d.direction == crate::event::dns::Direction::Query)
        .then_some(d.name.as_deref())
        .flatten()
}

/// A policy ready to match events.
pub struct Compiled {
    pub policy: Policy,
    /// Which names sessions may resolve (what guard's resolver answers).
    pub dns: std::sync::Arc<super::dns::DnsPolicy>,
    matchers: Vec<Matcher>,
    /// Every file rule's path patterns in one set, and the rule of each pattern:
    /// an open is matched once, not once per rule.
    file_paths: GlobSet,
    file_owner: Vec<usize>,
    /// The rules that are not file rules, in order: with the file rules whose paths
    /// matched, the only ones an event is judged against (a policy of a thousand
    /// file rules costs an exec no more than one of ten).
    others: Vec<usize>,
}

impl Compiled {
    pub fn new(policy: Policy, homes: &[String]) -> Result<Self, CompileError> {
        let mut matchers = Vec::with_capacity(policy.rules.len());
        for rule in &policy.rules {
            let id = rule.id.as_str();
            matchers.push(match &rule.kind {
                Kind::File { except, access, .. } => Matcher::File {
                    except: globset(id, except, homes)?,
                    read: access.read,
                    write: access.write,
                },
                Kind::Exec {
                    exe,
                    digests,
                    argv_contains,
                    argv_regex,
                } => {
                    let (names, paths): (Vec<&String>, Vec<&String>) =
                        exe.iter().partition(|e| !e.contains('/'));
                    let mut b = GlobSetBuilder::new();
                    for p in paths {
                        b.add(glob(id, p)?);
                    }
                    let mut name_globs = GlobSetBuilder::new();
                    for n in &names {
                        name_globs.add(glob(id, n)?);
                    }
                    let name_globs = name_globs.build().map_err(|source| CompileError::Glob {
                        rule: id.to_owned(),
                        pattern: exe.join(", "),
                        source,
                    })?;
                    Matcher::Exec {
                        // The kernel cuts comm to 15 bytes: compare names the same way.
                        names: names
                            .into_iter()
                            .map(|n| n.chars().take(15).collect())
                            .collect(),
                        name_globs,
                        paths: b.build().map_err(|source| CompileError::Glob {
                            rule: id.to_owned(),
                            pattern: exe.join(", "),
                            source,
                        })?,
                        digests: digests.iter().map(|d| d.sha256.clone()).collect(),
                        argv_contains: argv_contains.clone(),
                        argv_regex: argv_regex.as_deref().map(Regex::new).transpose().map_err(
                            |source| CompileError::Regex {
                                rule: id.to_owned(),
                                source,
                            },
                        )?,
                    }
                }
                Kind::Network { allow, deny } => Matcher::Network {
                    allow: allow.clone(),
                    deny: deny.clone(),
                },
                Kind::Route(routes) => Matcher::Route(routes.clone()),
                Kind::TaintEgress { allow } => Matcher::TaintEgress {
                    allow: allow.clone(),
                },
                Kind::Dns => Matcher::Dns,
                Kind::Delegation => Matcher::Delegation,
                Kind::Packages => Matcher::Packages,
            });
        }
        let mut all = GlobSetBuilder::new();
        let mut file_owner = Vec::new();
        for (i, rule) in policy.rules.iter().enumerate() {
            if let Kind::File { paths, .. } = &rule.kind {
                for e in paths.iter().flat_map(|p| glob::expand(p, homes)) {
                    all.add(glob(&rule.id, &e)?);
                    file_owner.push(i);
                }
            }
        }
        let file_paths = all.build().map_err(|source| CompileError::Glob {
            rule: "(all file rules)".into(),
            pattern: String::new(),
            source,
        })?;
        let others = matchers
            .iter()
            .enumerate()
            .filter(|(_, m)| !matches!(m, Matcher::File { .. }))
            .map(|(i, _)| i)
            .collect();
        Ok(Self {
            dns: std::sync::Arc::new(super::dns::DnsPolicy::new(&policy)),
            policy,
            matchers,
            file_paths,
            file_owner,
            others,
        })
    }

    /// Every rule `detail` breaks, for a process that is (or is not) its session's
    /// root, of agent role `role`, tainted or not (it read a secret); an exec's
    /// program has `digest` when it was held for one.
    pub fn hits(
        &self,
        detail: &Detail,
        comm: &str,
        (is_root, role, tainted): (bool, u8, bool),
        hosts: &Hosts,
        digest: Option<&str>,
    ) -> Vec<Hit> {
        let mut out = Vec::new();
        // File rules whose patterns match the path (one pass over all of them).
        // The rules to judge, in the policy's order: the file rules whose paths
        // matched (no other file rule can), and every rule of another kind.
        let with_files: Vec<usize>;
        let candidates: &[usize] = match detail {
            Detail::Open { path, .. } | Detail::Unix { path, .. } => {
                let mut c: Vec<usize> = self
                    .file_paths
                    .matches(path)
                    .into_iter()
                    .map(|i| self.file_owner[i])
                    .chain(self.others.iter().copied())
                    .collect();
                c.sort_unstable();
                c.dedup();
                with_files = c;
                &with_files
            }
            _ => &self.others,
        };
        for &i in candidates {
            let (rule, m) = (&self.policy.rules[i], &self.matchers[i]);
            if !rule.scope.applies(is_root, role) {
                continue;
            }
            let hit = match (m, detail) {
                (
                    Matcher::File {
                        except,
                        read,
                        write,
                    },
                    Detail::Open {
                        path, flags, dir, ..
                    },
                ) => {
                    // A directory's open lists names: no file's data is read.
                    let wants_read = access::reads(*flags) && !dir;
                    let wants_write = access::changes(*flags);
                    // The paths matched already (candidates).
                    ((*read && wants_read) || (*write && wants_write)) && !except.is_match(path)
                }
                // Connecting or sending to a socket file is writing to it (the kernel
                // asks for write permission on it).
                (Matcher::File { except, write, .. }, Detail::Unix { path, .. }) => {
                    *write && !except.is_match(path)
                }
                (
                    Matcher::Exec {
                        names,
                        name_globs,
                        paths,
                        digests,
                        argv_contains,
                        argv_regex,
                    },
                    Detail::Exec { exe, argv, .. },
                ) => {
                    // By the name it was run as (comm: symlinks such as codex's arg0
                    // aliases keep their own name) or by the resolved file's name;
                    // and the program a loader or interpreter was given, by its
                    // name and (when absolute) its path.
                    let file_name = exe.rsplit('/').next().unwrap_or(exe);
                    let by_name = names.iter().any(|n| n == comm)
                        || name_globs.is_match(comm)
                        || name_globs.is_match(file_name);
                    let by_target = crate::event::via::target(exe, argv).is_some_and(|t| {
                        let name = t.target.rsplit('/').next().unwrap_or(&t.target);
                        let short: String = name.chars().take(15).collect();
                        names.contains(&short)
                            || name_globs.is_match(name)
                            || (t.target.starts_with('/') && paths.is_match(&t.target))
                    });
                    let by_digest = digest.is_some_and(|d| digests.iter().any(|x| x == d));
                    (by_name || by_target || by_digest || paths.is_match(exe))
                        && argv_contains.iter().all(|a| argv.iter().any(|x| x == a))
                        && argv_regex
                            .as_ref()
                            .is_none_or(|r| r.is_match(&argv.join(" ")))
                }
                // A UDP socket's connect sends nothing (glibc's address sorting
                // connects one to each candidate address): its first send is judged
                // instead (the kernel refuses it there).
                (Matcher::Network { .. } | Matcher::TaintEgress { .. }, Detail::Connect { .. })
                    if udp_connect(detail) =>
                {
                    false
                }
                (
                    Matcher::Network { allow, deny },
                    Detail::Connect { addr, port, .. } | Detail::Send { addr, port, .. },
                ) => {
                    listed(deny, *addr, *port, hosts)
                        || (!allow.is_empty() && !listed(allow, *addr, *port, hosts))
                }
                (Matcher::Route(routes), Detail::Route { route, .. }) => routes.contains(route),
                (
                    Matcher::TaintEgress { allow },
                    Detail::Connect { addr, port, .. } | Detail::Send { addr, port, .. },
                ) => tainted && !listed(allow, *addr, *port, hosts),
                // A query's name, as guard's resolver judged it (the answers repeat
                // the question: only queries are judged).
                (Matcher::TaintEgress { .. }, Detail::Dns(d)) => {
                    query_name(d).is_some_and(|n| self.dns.off_taint(n, tainted))
                }
                (Matcher::Dns, Detail::Dns(d)) => {
                    query_name(d).is_some_and(|n| self.dns.unknown(n))
                }
                _ => false,
            };
            if hit {
                out.push(Hit {
                    rule: i,
                    action: rule.action,
                });
            }
        }
        // Strongest action first: it is the one reported as the outcome.
        out.sort_by_key(|h| std::cmp::Reverse(h.action));
        out
    }

    pub fn mode(&self) -> Mode {
        self.policy.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Access, Pos, Rule, Scope};
    use guard_common::OpenCall;

    fn rule(id: &str, kind: Kind, action: Action, scope: Scope) -> Rule {
        Rule {
            id: id.into(),
            description: None,
            kind,
            action,
            scope,
            secret: false,
            fallback: None,
            pos: Pos::default(),
        }
    }

    fn policy(rules: Vec<Rule>) -> Compiled {
        let p = Policy {
            name: "t".into(),
            anomalies: vec![],
            mode: Mode::Enforce,
            agents: vec![],
            profiles: Vec::new(),
            containers: vec![],
            cgroups: vec![],
            kill_stragglers: false,
            homes: Vec::new(),
            limits: crate::model::Limits::default(),
            report: Default::default(),
            sessions: Default::default(),
            taint: Default::default(),
            files: Default::default(),
            dns: Default::default(),
            delegation: Default::default(),
            packages: Default::default(),
            rules,
            export: Default::default(),
            redact: Default::default(),
            audit: Default::default(),
            fleet: None,
        };
        Compiled::new(p, &["/root".to_owned(), "/home/ada".to_owned()]).expect("compiles")
    }

    fn open(path: &str, flags: u64) -> Detail {
        Detail::Open {
            path: path.into(),
            resolved: true,
            truncated: false,
            flags,
            call: OpenCall::Openat,
            ret: 3,
            repeats: 0,
            dir: false,
        }
    }

    fn file(paths: &[&str], except: &[&str], read: bool, write: bool) -> Kind {
        Kind::File {
            paths: paths.iter().map(|s| s.to_string()).collect(),
            except: except.iter().map(|s| s.to_string()).collect(),
            access: Access { read, write },
        }
    }

    #[test]
    fn file_globs_table() {
        let p = policy(vec![
            rule(
                "ssh",
                file(&["~/.ssh/**"], &[], true, false),
                Action::Kill,
                Scope::All,
            ),
            rule(
                "env",
                file(&[".env", ".env.*"], &["*.example"], true, false),
                Action::Kill,
                Scope::All,
            ),
            rule(
                "pem",
                file(&["*.pem", "id_rsa*"], &[], true, false),
                Action::Kill,
                Scope::All,
            ),
            rule(
                "hooks",
                file(&[".git/hooks/**"], &[], false, true),
                Action::Alert,
                Scope::All,
            ),
        ]);
        let h = Hosts::default();
        let ids = |d: &Detail| {
            p.hits(d, "cat", (false, 0, false), &h, None)
                .iter()
                .map(|x| p.policy.rules[x.rule].id.clone())
                .collect::<Vec<_>>()
        };
        let rd = 0;
        let wr = 0o1 | 0o100 | 0o1000;
        let cases: &[(&str, u64, &[&str])] = &[
            ("/root/.ssh/id_ed25519", rd, &["ssh"]),
            ("/home/ada/.ssh/config", rd, &["ssh"]),
            ("/home/bob/.ssh/config", rd, &[]),
            ("/root/.ssh/known_hosts", wr, &[]),
            ("/work/app/.env", rd, &["env"]),
            ("/work/app/.env.local", rd, &["env"]),
            ("/work/app/.env.example", rd, &[]),
            ("/work/app/env", rd, &[]),
            ("/etc/ssl/private/server.pem", rd, &["pem"]),
            ("/tmp/id_rsa.pub", rd, &["pem"]),
            ("/repo/.git/hooks/pre-commit", wr, &["hooks"]),
            ("/repo/.git/hooks/pre-commit", rd, &[]),
            ("/repo/sub/.git/hooks/x", wr, &["hooks"]),
        ];
        for (path, flags, want) in cases {
            assert_eq!(ids(&open(path, *flags)), *want, "{path} flags {flags:o}");
        }
    }

    fn exec(exe: &str, argv: &[&str]) -> Detail {
        crate::event::test_support::exec(exe, argv, false)
    }

    #[test]
    fn exec_and_argv_table() {
        let k = |exe: &[&str], contains: &[&str], re: Option<&str>| Kind::Exec {
            exe: exe.iter().map(|s| s.to_string()).collect(),
            digests: vec![],
            argv_contains: contains.iter().map(|s| s.to_string()).collect(),
            argv_regex: re.map(String::from),
        };
        let p = policy(vec![
            rule(
                "sudo",
                k(&["sudo", "/usr/bin/pkexec"], &[], None),
                Action::Kill,
                Scope::All,
            ),
            rule(
                "push",
                k(&["git"], &["push", "--force"], None),
                Action::Kill,
                Scope::All,
            ),
            rule(
                "pipe",
                k(&["sh", "bash"], &[], Some(r"(curl|wget)[^|]*\|\s*(ba)?sh")),
                Action::Kill,
                Scope::All,
            ),
        ]);
        let h = Hosts::default();
        let ids = |d: &Detail, comm: &str| {
            p.hits(d, comm, (false, 0, false), &h, None)
                .iter()
                .map(|x| p.policy.rules[x.rule].id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&exec("/usr/bin/sudo", &["sudo", "id"]), "sudo"),
            ["sudo"]
        );
        assert_eq!(
            ids(&exec("/usr/bin/pkexec", &["pkexec"]), "pkexec"),
            ["sudo"]
        );
        assert_eq!(
            ids(
                &exec("/usr/bin/git", &["git", "push", "--force", "origin"]),
                "git"
            ),
            ["push"]
        );
        assert!(ids(&exec("/usr/bin/git", &["git", "push", "origin"]), "git").is_empty());
        assert_eq!(
            ids(
                &exec("/usr/bin/dash", &["sh", "-c", "curl -s x | sh"]),
                "sh"
            ),
            ["pipe"]
        );
        assert!(ids(&exec("/usr/bin/dash", &["sh", "-c", "curl -o f x"]), "sh").is_empty());
    }

    #[test]
    fn network_cidr_port_and_mapped_v6() {
        let d = |s: &str, port: Option<u16>| Dest {
            host: Host::Net(s.parse().expect("net")),
            port,
            text: s.into(),
        };
        let p = policy(vec![
            rule(
                "meta",
                Kind::Network {
                    allow: vec![],
                    deny: vec![d("169.254.169.254/32", None)],
                },
                Action::Deny,
                Scope::All,
            ),
            rule(
                "egress",
                Kind::Network {
                    allow: vec![
                        d("10.0.0.0/8", None),
                        d("::1/128", Some(8080)),
                        d("127.0.0.0/8", None),
                    ],
                    deny: vec![],
                },
                Action::Deny,
                Scope::Descendants,
            ),
        ]);
        let h = Hosts::default();
        let net = |a: &str, port: u16| Detail::Connect {
            addr: a.parse().expect("ip"),
            port,
            proto: crate::event::Proto::Tcp,
            ret: 0,
        };
        let ids = |d: &Detail, root: bool| {
            p.hits(d, "curl", (root, 0, false), &h, None)
                .iter()
                .map(|x| p.policy.rules[x.rule].id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&net("169.254.169.254", 80), false), ["meta", "egress"]);
        assert_eq!(
            ids(&net("::ffff:169.254.169.254", 80), false),
            ["meta", "egress"]
        );
        assert!(ids(&net("10.1.2.3", 443), false).is_empty());
        assert!(
            ids(&net("::ffff:10.1.2.3", 443), false).is_empty(),
            "v4-mapped v6 is matched as v4"
        );
        assert!(ids(&net("::1", 8080), false).is_empty());
        assert_eq!(ids(&net("::1", 22), false), ["egress"]);
        assert_eq!(ids(&net("8.8.8.8", 53), false), ["egress"]);
        assert!(
            ids(&net("8.8.8.8", 53), true).is_empty(),
            "egress is scoped to descendants"
        );
    }

    #[test]
    fn names_match_their_resolved_addresses() {
        let p = policy(vec![rule(
            "egress",
            Kind::Network {
                allow: vec![Dest {
                    host: Host::Name("api.openai.com".into()),
                    port: Some(443),
                    text: "api.openai.com:443".into(),
                }],
                deny: vec![],
            },
            Action::Deny,
            Scope::All,
        )]);
        let mut h = Hosts::default();
        h.by_name.insert(
            "api.openai.com".into(),
            vec!["162.159.140.245".parse().expect("ip")],
        );
        let net = |a: &str, port: u16| Detail::Connect {
            addr: a.parse().expect("ip"),
            port,
            proto: crate::event::Proto::Tcp,
            ret: 0,
        };
        assert!(
            p.hits(
                &net("162.159.140.245", 443),
                "x",
                (false, 0, false),
                &h,
                None
            )
            .is_empty()
        );
        assert_eq!(
            p.hits(
                &net("162.159.140.245", 80),
                "x",
                (false, 0, false),
                &h,
                None
            )
            .len(),
            1
        );
        assert_eq!(
            h.name_of("162.159.140.245".parse().expect("ip")),
            Some("api.openai.com")
        );
    }
}
