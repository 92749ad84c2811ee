//! The part of a policy the kernel enforces itself, as map entries: kill at exec
//! (program names, absolute paths), kill at open (directory prefixes, exact paths,
//! file names, name prefixes and suffixes), refuse connects and sends (CIDRs,
//! addresses, resolved names, ports). Everything else is decided in user space.

use std::collections::BTreeMap;

use guard_common::{
    AF_INET, AF_INET6, AgentName, Config, NetData, PathData, RuleRef,
    rules::{PATH_KEY_DATA, access, path_kind, rule_flags},
};
use ipnet::IpNet;

use super::{
    event::via::MULTICALL_PROGRAMS,
    glob::{self, FileShape, KernelShape, file_shape},
    matcher::Hosts,
    model::{Access, Action, Dest, Host, Kind, Mode, Policy, Scope},
};

/// Bytes of a string a path key holds (after its generation and kind bytes).
const KEY_BYTES: usize = PATH_KEY_DATA - 3;

/// What the rule maps hold, as the policy compiler made it: path and name rules,
/// destination rules (prefix bits, key, value; the generation byte is set at
/// install), and the config they come with.
#[derive(Clone, Copy, Debug)]
pub struct RuleTables<'a> {
    pub paths: &'a [(u32, PathData, RuleRef)],
    pub nets: &'a [(u32, NetData, RuleRef)],
    /// The `[taint]` allowlist when the policy denies tainted egress (`TAINT_NET`).
    pub taint_nets: &'a [(u32, NetData, RuleRef)],
    /// `DIGEST_SIZES`: the file sizes exec rules' digests name.
    pub digest_sizes: &'a [u64],
    /// `EXEC_WAKE`: programs whose exec records wake the daemon at once.
    pub exec_wake: &'a [AgentName],
    pub config: Config,
}

/// The rule maps' entries, without their generation byte (set at install), and
/// what the maps cannot hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tables {
    /// (prefix bits, data, value)
    pub paths: Vec<(u32, PathData, RuleRef)>,
    pub nets: Vec<(u32, NetData, RuleRef)>,
    /// `TAINT_NET`: the `[taint]` allowlist, when the policy denies tainted egress.
    pub taint_nets: Vec<(u32, NetData, RuleRef)>,
    pub config: Config,
    /// Rules with a kill or deny the kernel enforces only in part, or not at all:
    /// user space applies them after the fact.
    pub partial: Vec<usize>,
    /// The concrete files and directories file rules name, for matching by
    /// identity (`crate::identity`).
    pub identity: Vec<crate::identity::Target>,
    /// `DIGEST_SIZES`: the sizes of the files exec rules name by digest (every
    /// action, every mode: a log or alert needs the digest too).
    pub digest_sizes: Vec<u64>,
    /// `EXEC_WAKE`: the programs of the exec rules user space decides.
    pub exec_wake: Vec<AgentName>,
}

impl Tables {
    /// What the eBPF loader installs.
    pub fn maps(&self) -> RuleTables<'_> {
        RuleTables {
            paths: &self.paths,
            nets: &self.nets,
            taint_nets: &self.taint_nets,
            digest_sizes: &self.digest_sizes,
            exec_wake: &self.exec_wake,
            config: self.config,
        }
    }
}

/// A scope as the kernel reads it: [`rule_flags`] bits, and the role set as
/// [`RuleRef::access`] carries it beside the file accesses.
fn scope_flags(scope: Scope) -> (u8, u8) {
    match scope {
        Scope::All => (0, 0),
        Scope::Root => (rule_flags::ROOT_ONLY, 0),
        Scope::Descendants => (rule_flags::DESCENDANTS_ONLY, 0),
        Scope::Roles(set) => (rule_flags::ROLES, guard_common::rules::role_bits(set)),
    }
}

fn path_entry(
    kind: u8,
    bytes: &[u8],
    exact: bool,
    value: RuleRef,
) -> Option<(u32, PathData, RuleRef)> {
    if bytes.len() > KEY_BYTES || bytes.is_empty() {
        return None;
    }
    let mut data: PathData = [0; PATH_KEY_DATA];
    data[1] = kind;
    data[2..2 + bytes.len()].copy_from_slice(bytes);
    let len = 2 + bytes.len() + usize::from(exact); // data[2 + len] is already NUL
    Some(((len * 8) as u32, data, value))
}

/// The entries of a rule's pattern: [`file_entry`], and for a rule on reads a
/// whole-path entry under `path_kind::FILE_READ` too (see there why).
fn file_entries(
    shape: &FileShape,
    value: RuleRef,
    acc: Access,
) -> Option<Vec<(u32, PathData, RuleRef)>> {
    let entry = file_entry(shape, value)?;
    if entry.1[1] != path_kind::FILE || !acc.read {
        return Some(vec![entry]);
    }
    let mut read = entry;
    read.1[1] = path_kind::FILE_READ;
    Some(vec![entry, read])
}

fn file_entry(shape: &FileShape, value: RuleRef) -> Option<(u32, PathData, RuleRef)> {
    match shape {
        FileShape::Shape(s) => shape_entry(s, value),
        FileShape::Components(run) => {
            path_entry(path_kind::COMPONENTS, run.as_bytes(), false, value)
        }
        // Exact: the rest of the path from one of its `/` is this, and nothing more.
        FileShape::ComponentsEnd(end) => {
            path_entry(path_kind::COMPONENTS, end.as_bytes(), true, value)
        }
    }
}

/// An exception's entry: whole-path exceptions go to their own kind, so that a
/// longer entry of another rule never hides them from a longest-prefix lookup.
/// Component runs are never exceptions in the kernel (the scan stops at its first
/// match, which could be the rule's own pattern).
fn except_entry(shape: &FileShape, value: RuleRef) -> Option<(u32, PathData, RuleRef)> {
    match shape {
        FileShape::Shape(KernelShape::Prefix(p)) => {
            path_entry(path_kind::FILE_EXCEPT, p.as_bytes(), false, value)
        }
        FileShape::Shape(KernelShape::Exact(p)) => {
            path_entry(path_kind::FILE_EXCEPT, p.as_bytes(), true, value)
        }
        FileShape::Shape(s) => shape_entry(s, value),
        FileShape::Components(_) | FileShape::ComponentsEnd(_) => None,
    }
}

fn shape_entry(shape: &KernelShape, value: RuleRef) -> Option<(u32, PathData, RuleRef)> {
    match shape {
        KernelShape::Prefix(p) => path_entry(path_kind::FILE, p.as_bytes(), false, value),
        KernelShape::Exact(p) => path_entry(path_kind::FILE, p.as_bytes(), true, value),
        KernelShape::Name(n) => path_entry(path_kind::FILE_NAME, n.as_bytes(), true, value),
        KernelShape::NamePrefix(n) => path_entry(path_kind::FILE_NAME, n.as_bytes(), false, value),
        KernelShape::NameSuffix(s) => {
            let rev: Vec<u8> = s.bytes().rev().collect();
            path_entry(path_kind::FILE_NAME_REV, &rev, false, value)
        }
    }
}

fn net_entries(dest: &Dest, hosts: &Hosts, value: RuleRef) -> Vec<(u32, NetData, RuleRef)> {
    let nets: Vec<IpNet> = match &dest.host {
        Host::Net(n) => vec![*n],
        Host::Name(name) => hosts
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|ip| IpNet::from(*ip))
            .collect(),
        Host::Resolvers => hosts.resolvers.iter().map(|ip| IpNet::from(*ip)).collect(),
    };
    let mut value = value;
    if let Some(port) = dest.port {
        value.ports[0] = port;
    }
    nets.into_iter()
        .map(|net| {
            let mut data: NetData = [0; 18];
            // IPv4-mapped IPv6 networks are stored as IPv4, as the kernel looks them up.
            let net = match net {
                IpNet::V6(v6) if v6.prefix_len() >= 96 => {
                    match std::net::IpAddr::from(v6.addr()).to_canonical() {
                        std::net::IpAddr::V4(v4) => IpNet::V4(
                            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                                .unwrap_or_else(|_| ipnet::Ipv4Net::from(v4)),
                        ),
                        _ => net,
                    }
                }
                other => other,
            };
            let bits = match net {
                IpNet::V4(v4) => {
                    data[1] = AF_INET as u8;
                    data[2..6].copy_from_slice(&v4.network().octets());
                    16 + u32::from(v4.prefix_len())
                }
                IpNet::V6(v6) => {
                    data[1] = AF_INET6 as u8;
                    data[2..18].copy_from_slice(&v6.network().octets());
                    16 + u32::from(v6.prefix_len())
                }
            };
            (bits, data, value)
        })
        .collect()
}

/// Merges path entries of one key that differ only in the roles they cover: the
/// trie holds one value per key (the last written would win), so two rules on one
/// path for different roles with the same verdict and accesses (`[files]`: the
/// tools' deny beside the agent's own) become one entry for both role sets. It
/// carries the first rule; the judge reports the rule of the process's own role.
fn merge_role_scoped(entries: Vec<(u32, PathData, RuleRef)>) -> Vec<(u32, PathData, RuleRef)> {
    let accesses = access::READ | access::WRITE;
    let mut out: Vec<(u32, PathData, RuleRef)> = Vec::with_capacity(entries.len());
    let mut first: BTreeMap<(u32, PathData), usize> = BTreeMap::new();
    for (bits, data, entry) in entries {
        if let Some(prev) = first.get(&(bits, data)).map(|&i| &mut out[i].2)
            && prev.flags & rule_flags::ROLES != 0
            && prev.flags == entry.flags
            && prev.access & accesses == entry.access & accesses
        {
            prev.access |= entry.access;
            continue;
        }
        first.entry((bits, data)).or_insert(out.len());
        out.push((bits, data, entry));
    }
    out
}

/// Merges entries with the same key: a refusal wins over an allowance, ports are
/// united (more than 8 distinct ports become "any port").
fn merge_nets(entries: Vec<(u32, NetData, RuleRef)>) -> Vec<(u32, NetData, RuleRef)> {
    let mut by_key: BTreeMap<(u32, NetData), RuleRef> = BTreeMap::new();
    for (bits, data, v) in entries {
        by_key
            .entry((bits, data))
            .and_modify(|old| {
                let deny = rule_flags::DENY;
                if v.flags & deny != 0 && old.flags & deny == 0 {
                    *old = v;
                } else if v.flags & deny == old.flags & deny {
                    if old.ports == [0; 8] || v.ports == [0; 8] {
                        old.ports = [0; 8];
                    } else {
                        let mut ports: Vec<u16> = old
                            .ports
                            .iter()
                            .chain(v.ports.iter())
                            .copied()
                            .filter(|p| *p != 0)
                            .collect();
                        ports.sort_unstable();
                        ports.dedup();
                        old.ports = [0; 8];
                        if ports.len() <= 8 {
                            old.ports[..ports.len()].copy_from_slice(&ports);
                        }
                    }
                }
            })
            .or_insert(v);
    }
    by_key
        .into_iter()
        .map(|((bits, data), v)| (bits, data, v))
        .collect()
}

/// The `guard_common::route` number of a route, as a rule key's byte.
fn route_byte(r: super::model::Route) -> Option<u8> {
    use super::model::Route;
    let n = match r {
        Route::IoUring => guard_common::route::IO_URING,
        Route::OpenByHandleAt => guard_common::route::OPEN_BY_HANDLE,
        Route::FilelessExec => guard_common::route::FILELESS_EXEC,
        Route::RawSocket => guard_common::route::RAW_SOCKET,
        Route::PacketSocket => guard_common::route::PACKET_SOCKET,
        Route::Listen => guard_common::route::LISTEN,
        Route::ExecMapping | Route::Unknown => return None,
    };
    u8::try_from(n).ok()
}

/// The `ROUTE` entries of a `[sessions]` rule (`access` bit 0 marks an entry
/// present; its role set, if any, sits above it as in every entry).
fn route_entries(
    routes: &[super::model::Route],
    rule: u16,
    (flags, roles): (u8, u8),
) -> Vec<(u32, PathData, RuleRef)> {
    let value = RuleRef {
        rule,
        access: 1 | roles,
        flags,
        ports: [0; 8],
    };
    routes
        .iter()
        .filter_map(|r| route_byte(*r))
        .filter_map(|byte| path_entry(path_kind::ROUTE, &[byte], true, value))
        .collect()
}

/// `Config::path_kinds` of a rule set's entries.
fn path_kinds(paths: &[(u32, PathData, RuleRef)]) -> u32 {
    paths
        .iter()
        .fold(0, |k, (_, data, _)| k | (1 << (data[1] & 31)))
}

/// The taint entries of the `secret = true` file rules whose action lets the open
/// happen (`log`, `alert`; every action in observe mode): their path shapes under
/// the `path_kind::TAINT_*` kinds, flagged [`rule_flags::TAINT`], with their
/// exceptions. A rule with an exception the kernel cannot express taints in user
/// space only (`tainted_by`), as do its patterns the kernel cannot express.
fn taint_entries(policy: &Policy, homes: &[String], lsm: bool) -> Vec<(u32, PathData, RuleRef)> {
    let mut out = Vec::new();
    let observe = policy.mode == Mode::Observe;
    for (i, rule) in policy.rules.iter().enumerate() {
        let Kind::File {
            paths,
            except,
            access: acc,
        } = &rule.kind
        else {
            continue;
        };
        if !rule.secret
            || !acc.read
            || !(observe || matches!(rule.acting(lsm), Action::Log | Action::Alert))
        {
            continue;
        }
        let (scope, roles) = scope_flags(rule.scope);
        let taint = RuleRef {
            rule: i as u16,
            access: access::READ | roles,
            flags: rule_flags::TAINT | scope,
            ports: [0; 8],
        };
        let exc = RuleRef {
            flags: rule_flags::EXCEPT,
            ..taint
        };
        let excepts: Option<Vec<(u32, PathData, RuleRef)>> = except
            .iter()
            .flat_map(|p| glob::expand(p, homes))
            .map(|e| file_shape(&e).and_then(|s| except_entry(&s, exc)))
            .collect();
        let Some(excepts) = excepts else {
            continue;
        };
        let entries = paths
            .iter()
            .flat_map(|p| glob::expand(p, homes))
            .filter_map(|e| file_shape(&e).and_then(|s| file_entry(&s, taint)))
            .chain(excepts);
        for (bits, mut data, value) in entries {
            data[1] += path_kind::TAINT_OFFSET;
            out.push((bits, data, value));
        }
    }
    out
}

/// Compiles what the kernel can enforce. Observe mode enforces nothing but the
/// session limits (records dropped, counted; never a kill). With `lsm`
/// (the BPF-LSM hooks attached), `deny` on files and execs refuses the operation;
/// without, it kills like `kill`.
#[expect(
    clippy::too_many_lines,
    reason = "one pass, one arm per rule kind, all filling the same kernel tables and partial list"
)]
pub fn compile(policy: &Policy, homes: &[String], hosts: &Hosts, lsm: bool) -> Tables {
    let mut out = Tables::default();
    // Session limits hold in every mode: they protect the daemon and the kernel.
    out.config.limit_rate = policy.limits.rate;
    out.config.limit_burst = policy.limits.burst;
    // Taint entries never stop anything: observe mode has them too (where every
    // action is `log`, every secret rule taints).
    out.paths.extend(taint_entries(policy, homes, lsm));
    out.identity = identity_targets(policy, homes, lsm);
    out.digest_sizes = digest_sizes(policy);
    // Downloads are remembered, and the execs that could run one held, in every
    // mode (observe mode logs them).
    out.config.downloads = u32::from(policy.sessions.run_downloaded.is_some());
    // Held execs wait for the daemon: it must wake at once.
    let held = !out.digest_sizes.is_empty() || out.config.downloads != 0;
    if policy.mode == Mode::Observe {
        out.config.path_kinds = path_kinds(&out.paths);
        (out.config.exec_wakeup, out.exec_wake) = crate::wake::exec_wake(policy, &[], held);
        return out;
    }
    let mut nets = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        if let (Kind::Route(routes), Action::Log | Action::Alert) = (&rule.kind, rule.action) {
            // Present, enforced by nothing: the kernel reports the route (a fileless
            // exec) for user space to judge.
            out.paths
                .extend(route_entries(routes, i as u16, scope_flags(rule.scope)));
            continue;
        }
        // A `deny` with a `fallback` where BPF-LSM cannot refuse: its fallback.
        let action = rule.acting(lsm);
        if !matches!(action, Action::Kill | Action::Deny) {
            continue;
        }
        let index = i as u16;
        let (scope, roles) = scope_flags(rule.scope);
        let verdict = if action == Action::Deny && lsm {
            rule_flags::DENY
        } else {
            rule_flags::KILL
        };
        match &rule.kind {
            Kind::File {
                paths,
                except,
                access: acc,
            } => {
                let bits =
                    (u8::from(acc.read) * access::READ) | (u8::from(acc.write) * access::WRITE);
                let kill = RuleRef {
                    rule: index,
                    access: bits | roles,
                    flags: verdict | scope,
                    ports: [0; 8],
                };
                let exc = RuleRef {
                    flags: rule_flags::EXCEPT,
                    ..kill
                };
                let excepts: Vec<Option<FileShape>> = except
                    .iter()
                    .flat_map(|p| glob::expand(p, homes))
                    .map(|e| file_shape(&e).filter(|s| except_entry(s, exc).is_some()))
                    .collect();
                if excepts.iter().any(Option::is_none) {
                    // An exception the kernel cannot see would be overridden: leave
                    // the whole rule to user space.
                    out.partial.push(i);
                    continue;
                }
                let mut complete = true;
                for e in paths.iter().flat_map(|p| glob::expand(p, homes)) {
                    match file_shape(&e).and_then(|s| file_entries(&s, kill, *acc)) {
                        Some(entries) => out.paths.extend(entries),
                        None => complete = false,
                    }
                }
                out.paths.extend(
                    excepts
                        .iter()
                        .flatten()
                        .filter_map(|s| except_entry(s, exc)),
                );
                if !complete {
                    out.partial.push(i);
                }
            }
            Kind::Exec {
                exe,
                digests,
                argv_contains,
                argv_regex,
            } => {
                if !argv_contains.is_empty() || argv_regex.is_some() {
                    out.partial.push(i);
                    continue;
                }

                let kill = RuleRef {
                    rule: index,
                    access: roles,
                    flags: verdict | scope,
                    ports: [0; 8],
                };
                let mut complete = true;
                for e in exe {
                    let entry = if e.starts_with('/') && !e.contains(['*', '?', '[', '{']) {
                        path_entry(path_kind::EXEC, e.as_bytes(), true, kill)
                    } else if !e.contains('/') && !e.contains(['*', '?', '[', '{']) {
                        let comm: Vec<u8> = e.bytes().take(15).collect();
                        // The applet a multi-call binary runs under this name.
                        out.paths.extend(applet_entries(e, kill));
                        if out.config.applet_fallback == 0 && rule.scope == Scope::All {
                            out.config.applet_fallback = u32::from(index) + 1;
                        }
                        path_entry(path_kind::EXEC_NAME, &comm, true, kill)
                    } else {
                        None
                    };
                    match entry {
                        Some(entry) => out.paths.push(entry),
                        None => complete = false,
                    }
                }
                // The names go in; the digests are user space's, at a held exec.
                if !complete || !digests.is_empty() {
                    out.partial.push(i);
                }
            }
            Kind::Route(routes) => {
                out.paths
                    .extend(route_entries(routes, index, (verdict | scope, roles)));
            }
            Kind::TaintEgress { allow } => {
                // Only `deny` reaches here (kill is not a `[taint] egress` value).
                let permit = RuleRef {
                    rule: index,
                    access: 0,
                    flags: rule_flags::ALLOW,
                    ports: [0; 8],
                };
                let mut entries: Vec<(u32, NetData, RuleRef)> = allow
                    .iter()
                    .flat_map(|d| net_entries(d, hosts, permit))
                    .collect();
                // Every other destination: the generation byte alone.
                entries.push((
                    8,
                    [0; 18],
                    RuleRef {
                        flags: rule_flags::DENY,
                        ..permit
                    },
                ));
                out.taint_nets = merge_nets(entries);
            }
            // Names are guard's resolver's to judge (`crate::dns`): the kernel only
            // points DNS there. Spawners are the kernel's by process (`SPAWNERS`,
            // kept by `crate::delegation`).
            // Packages are named by the files an install writes, in user space.
            Kind::Dns | Kind::Delegation | Kind::Packages => {}
            Kind::Network { allow, deny } => {
                let base = RuleRef {
                    rule: index,
                    access: roles,
                    flags: scope,
                    ports: [0; 8],
                };
                let refuse = RuleRef {
                    flags: base.flags | rule_flags::DENY,
                    ..base
                };
                let permit = RuleRef {
                    flags: base.flags | rule_flags::ALLOW,
                    ..base
                };
                for d in deny {
                    nets.extend(net_entries(d, hosts, refuse));
                }
                if !allow.is_empty() {
                    for d in allow {
                        nets.extend(net_entries(d, hosts, permit));
                    }
                    if out.config.net_default_deny == 0 {
                        out.config.net_default_deny = u32::from(index) + 1;
                        out.config.net_default_flags = u32::from(scope) | u32::from(roles) << 8;
                    } else {
                        out.partial.push(i); // one default-deny rule in the kernel
                    }
                }
            }
        }
    }
    out.nets = merge_nets(nets);
    multicall_entries(&mut out.paths);
    out.paths = merge_role_scoped(std::mem::take(&mut out.paths));
    out.config.path_kinds = path_kinds(&out.paths);
    (out.config.exec_wakeup, out.exec_wake) = crate::wake::exec_wake(policy, &out.partial, held);
    out.config.limit_kill = u32::from(policy.limits.on_loss == crate::model::OnLoss::Kill);
    out
}

/// `path_kind::EXEC_NAME_REV` entries of an exec rule's program `name`: reversed,
/// exact and after a `/`.
fn applet_entries(name: &str, value: RuleRef) -> Vec<(u32, PathData, RuleRef)> {
    let rev: Vec<u8> = name.bytes().rev().collect();
    let mut after_slash = rev.clone();
    after_slash.push(b'/');
    [
        path_entry(path_kind::EXEC_NAME_REV, &rev, true, value),
        path_entry(path_kind::EXEC_NAME_REV, &after_slash, false, value),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Where exec rules name programs the kernel kills by name: the multi-call
/// binaries, as name prefixes (`path_kind::MULTICALL`; `access` 1 marks an entry;
/// busybox takes any name that starts with `busybox` for itself), and their own
/// names among the reversed ones, marked (`access` 1, no verdict) unless a rule
/// names them itself: an `argv[0]` naming the binary.
fn multicall_entries(paths: &mut Vec<(u32, PathData, RuleRef)>) {
    if !paths
        .iter()
        .any(|(_, d, _)| d[1] == path_kind::EXEC_NAME_REV)
    {
        return;
    }
    let marker = RuleRef {
        rule: 0,
        access: 1,
        flags: 0,
        ports: [0; 8],
    };
    for name in MULTICALL_PROGRAMS {
        paths.extend(path_entry(
            path_kind::MULTICALL,
            name.as_bytes(),
            false,
            marker,
        ));
        for entry in applet_entries(name, marker) {
            if !paths.iter().any(|(b, d, _)| (*b, d) == (entry.0, &entry.1)) {
                paths.push(entry);
            }
        }
    }
}

/// What of a file or exec rule only user space matches (after the fact), as written:
/// its patterns the kernel has no shape for, or, where one exception or condition
/// leaves the whole rule to user space, that exception or condition. Empty: the
/// kernel matches all of it.
pub fn user_space_patterns(kind: &Kind) -> Vec<String> {
    // Any home stands for every home: `~/x` has the shape of `/home/user/x`.
    let homes = ["/home/user".to_owned()];
    let value = RuleRef::default();
    match kind {
        Kind::File { paths, except, .. } => {
            let kernel = |p: &String, exception: bool| {
                glob::expand(p, &homes).iter().all(|e| {
                    file_shape(e).is_some_and(|s| {
                        if exception {
                            except_entry(&s, value).is_some()
                        } else {
                            file_entry(&s, value).is_some()
                        }
                    })
                })
            };
            if let Some(e) = except.iter().find(|e| !kernel(e, true)) {
                return vec![format!(
                    "the whole rule (its exception {e:?} is a shape the kernel cannot match)"
                )];
            }
            paths
                .iter()
                .filter(|p| !kernel(p, false))
                .map(|p| format!("{p:?}"))
                .collect()
        }
        Kind::Exec {
            exe,
            digests,
            argv_contains,
            argv_regex,
        } => {
            if !argv_contains.is_empty() || argv_regex.is_some() {
                return vec!["the whole rule (an argv condition)".to_owned()];
            }
            let mut out: Vec<String> = exe
                .iter()
                .filter(|e| e.contains(['*', '?', '[', '{']))
                .map(|e| format!("{e:?}"))
                .collect();
            if !digests.is_empty() {
                out.push("its digests".to_owned());
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The sizes of the files exec rules name by digest, each once.
fn digest_sizes(policy: &Policy) -> Vec<u64> {
    let mut sizes: Vec<u64> = policy
        .rules
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Exec { digests, .. } => Some(digests.iter().map(|d| d.size)),
            _ => None,
        })
        .flatten()
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// Where a program named without a directory in an exec rule (`sudo`) is looked
/// for by identity: the standard `PATH` of Debian's root and login shells.
const PROGRAM_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The concrete files (`/etc/shadow`) and directories (`~/.ssh/**`, one per home)
/// every file rule and exception names, with the value their identity entry
/// carries: the rule's verdict where the kernel enforces it, none (reported only)
/// for `log`/`alert` rules and in observe mode. And the programs every exec rule
/// the kernel enforces names: its absolute paths, and its bare names in each of
/// [`PROGRAM_DIRS`] (optional: most are in one or none).
fn identity_targets(policy: &Policy, homes: &[String], lsm: bool) -> Vec<crate::identity::Target> {
    use guard_common::rules::inode_kind;
    let mut out = Vec::new();
    let concrete = |expanded: &str| -> Option<(std::path::PathBuf, u8)> {
        match glob::kernel_shape(expanded)? {
            KernelShape::Prefix(p) => {
                let dir = p.trim_end_matches('/');
                (!dir.is_empty()).then(|| (dir.into(), inode_kind::TREE))
            }
            KernelShape::Exact(p) => Some((p.into(), inode_kind::FILE)),
            _ => None,
        }
    };
    for (i, rule) in policy.rules.iter().enumerate() {
        let (scope, roles) = scope_flags(rule.scope);
        let verdict = match rule.acting(lsm) {
            _ if policy.mode == Mode::Observe => 0,
            Action::Deny if lsm => rule_flags::DENY,
            Action::Kill | Action::Deny => rule_flags::KILL,
            Action::Log | Action::Alert => 0,
        };
        if let Kind::Exec {
            exe,
            argv_contains,
            argv_regex,
            ..
        } = &rule.kind
        {
            // The programs a kernel-enforced exec rule names, by identity: a hard
            // link or bind mount of one, run under another name, is that program.
            if verdict == 0 || !argv_contains.is_empty() || argv_regex.is_some() {
                continue;
            }
            let value = RuleRef {
                rule: i as u16,
                access: roles,
                flags: verdict | scope,
                ports: [0; 8],
            };
            for e in exe.iter().filter(|e| !e.contains(['*', '?', '[', '{'])) {
                if e.starts_with('/') {
                    out.push(crate::identity::Target {
                        path: e.into(),
                        kind: inode_kind::EXEC,
                        value,
                        optional: false,
                        except: Vec::new(),
                    });
                } else if !e.contains('/') {
                    out.extend(PROGRAM_DIRS.iter().map(|dir| crate::identity::Target {
                        path: std::path::Path::new(dir).join(e),
                        kind: inode_kind::EXEC,
                        value,
                        optional: true,
                        except: Vec::new(),
                    }));
                }
            }
            continue;
        }
        let Kind::File {
            paths,
            except,
            access: acc,
        } = &rule.kind
        else {
            continue;
        };
        let bits = (u8::from(acc.read) * access::READ) | (u8::from(acc.write) * access::WRITE);
        let value = RuleRef {
            rule: i as u16,
            access: bits | roles,
            flags: verdict | scope,
            ports: [0; 8],
        };
        let except_value = RuleRef {
            flags: rule_flags::EXCEPT,
            ..value
        };
        // A directory's files are indexed as its members, but for those the rule
        // excepts by name.
        let excepted: Vec<String> = except.iter().flat_map(|p| glob::expand(p, homes)).collect();
        for (patterns, value) in [(paths, value), (except, except_value)] {
            for e in patterns.iter().flat_map(|p| glob::expand(p, homes)) {
                if let Some((path, kind)) = concrete(&e) {
                    let except =
                        if kind == inode_kind::TREE && value.flags & rule_flags::EXCEPT == 0 {
                            excepted.clone()
                        } else {
                            Vec::new()
                        };
                    out.push(crate::identity::Target {
                        path,
                        kind,
                        value,
                        optional: false,
                        except,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pos, Rule};
    use guard_common::rules::EXEC_WAKE_NAMED;

    fn rule(kind: Kind, action: Action) -> Rule {
        Rule {
            id: "r".into(),
            description: None,
            kind,
            action,
            scope: Scope::All,
            secret: false,
            fallback: None,
            pos: Pos::default(),
        }
    }

    fn policy(rules: Vec<Rule>, mode: Mode) -> Policy {
        Policy {
            name: "t".into(),
            anomalies: vec![],
            mode,
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
        }
    }

    fn text(data: &PathData, bits: u32) -> String {
        String::from_utf8_lossy(&data[2..(bits / 8) as usize]).into_owned()
    }

    #[test]
    fn file_rules_become_trie_entries() {
        let kind = Kind::File {
            paths: vec![
                "~/.ssh/**".into(),
                ".env.*".into(),
                "*.pem".into(),
                "/etc/shadow".into(),
            ],
            except: vec!["*.example".into()],
            access: Access {
                read: true,
                write: false,
            },
        };
        let k = compile(
            &policy(vec![rule(kind, Action::Kill)], Mode::Enforce),
            &["/root".into()],
            &Hosts::default(),
            false,
        );
        let got: Vec<(u8, String)> = k
            .paths
            .iter()
            .map(|(b, d, _)| (d[1], text(d, *b)))
            .collect();
        assert_eq!(
            got,
            [
                (path_kind::FILE, "/root/.ssh/".to_owned()),
                (path_kind::FILE_READ, "/root/.ssh/".to_owned()),
                (path_kind::FILE_NAME, ".env.".to_owned()),
                (path_kind::FILE_NAME_REV, "mep.".to_owned()),
                (path_kind::FILE, "/etc/shadow\0".to_owned()),
                (path_kind::FILE_READ, "/etc/shadow\0".to_owned()),
                (path_kind::FILE_NAME_REV, "elpmaxe.".to_owned()),
            ]
        );
        assert!(k.paths[6].2.flags & rule_flags::EXCEPT != 0);
        assert!(k.partial.is_empty());
    }

    #[test]
    fn two_rules_on_one_path_for_different_roles_share_its_entry() {
        use guard_common::role;
        use guard_common::rules::scope_applies;
        let read = || Kind::File {
            paths: vec!["/srv/app/private/**".into()],
            except: vec![],
            access: Access {
                read: true,
                write: false,
            },
        };
        let agent = crate::model::role_bit("agent").expect("agent");
        let tools = crate::model::role_bit("tool").expect("tool");
        let mut for_tools = rule(read(), Action::Deny);
        for_tools.scope = Scope::Roles(tools);
        let mut for_agent = rule(read(), Action::Deny);
        for_agent.scope = Scope::Roles(agent);
        let k = compile(
            &policy(vec![for_tools, for_agent], Mode::Enforce),
            &["/root".into()],
            &Hosts::default(),
            true,
        );
        // One entry per key (the trie keeps one value per key), refusing both roles.
        let keys: std::collections::BTreeSet<_> = k
            .paths
            .iter()
            .map(|(bits, data, _)| (*bits, *data))
            .collect();
        assert_eq!(keys.len(), k.paths.len(), "{:?}", k.paths);
        assert!(!k.paths.is_empty());
        let who = |r: u8| u32::from(r) << role::SHIFT;
        for (_, _, entry) in &k.paths {
            for r in [role::TOOL, role::AGENT] {
                assert!(scope_applies(entry.flags, entry.access, who(r)), "{r}");
            }
            assert!(!scope_applies(entry.flags, entry.access, who(role::HELPER)));
        }
    }

    #[test]
    fn role_scopes_reach_the_kernel_beside_the_accesses() {
        use guard_common::role;
        use guard_common::rules::scope_applies;
        let kind = Kind::File {
            paths: vec!["/srv/token".into()],
            except: vec![],
            access: Access {
                read: true,
                write: false,
            },
        };
        let set = crate::model::role_bit("tool").expect("tool")
            | crate::model::role_bit("mcp").expect("mcp");
        let mut r = rule(kind, Action::Kill);
        r.scope = Scope::Roles(set);
        let net = Rule {
            scope: Scope::Roles(set),
            ..rule(
                Kind::Network {
                    allow: vec![],
                    deny: vec![Dest {
                        host: Host::Net("10.1.2.3/32".parse().expect("net")),
                        port: None,
                        text: "10.1.2.3".into(),
                    }],
                },
                Action::Deny,
            )
        };
        let k = compile(
            &policy(vec![r, net], Mode::Enforce),
            &["/root".into()],
            &Hosts::default(),
            false,
        );
        let entry = k.paths[0].2;
        assert_eq!(entry.flags, rule_flags::KILL | rule_flags::ROLES);
        assert_eq!(
            entry.access & 3,
            access::READ,
            "the accesses stay in the low bits"
        );
        // What the kernel decides with it: tools and MCP servers match, the agent and
        // its helpers do not, a process of unknown role does (fail closed).
        let who = |r: u8| u32::from(r) << role::SHIFT;
        for (r, applies) in [
            (role::TOOL, true),
            (role::MCP, true),
            (role::UNKNOWN, true),
            (role::AGENT, false),
            (role::HELPER, false),
            (role::SANDBOX, false),
            (role::WRAPPER, false),
        ] {
            assert_eq!(
                scope_applies(entry.flags, entry.access, who(r)),
                applies,
                "{}",
                role::name(r)
            );
        }
        let n = k.nets[0].2;
        assert_eq!(n.flags, rule_flags::DENY | rule_flags::ROLES);
        assert!(scope_applies(n.flags, n.access, who(role::TOOL)));
        assert!(!scope_applies(n.flags, n.access, who(role::AGENT)));
    }

    #[test]
    fn component_runs_and_whole_path_exceptions_have_kinds_of_their_own() {
        let kind = Kind::File {
            paths: vec![
                ".git/hooks/**".into(),
                "**/.github/workflows/**".into(),
                ".codex/**".into(),
            ],
            except: vec!["*.sample".into(), "~/.codex/**".into()],
            access: Access {
                read: false,
                write: true,
            },
        };
        let k = compile(
            &policy(vec![rule(kind, Action::Deny)], Mode::Enforce),
            &["/root".into()],
            &Hosts::default(),
            true,
        );
        let got: Vec<(u8, String)> = k
            .paths
            .iter()
            .map(|(b, d, _)| (d[1], text(d, *b)))
            .collect();
        assert_eq!(
            got,
            [
                (path_kind::COMPONENTS, "/.git/hooks/".to_owned()),
                (path_kind::COMPONENTS, "/.github/workflows/".to_owned()),
                (path_kind::COMPONENTS, "/.codex/".to_owned()),
                (path_kind::FILE_NAME_REV, "elpmas.".to_owned()),
                (path_kind::FILE_EXCEPT, "/root/.codex/".to_owned()),
            ]
        );
        assert!(k.partial.is_empty(), "all of it is decided in the kernel");
        assert!(k.paths[0].2.flags & rule_flags::DENY != 0);
        assert!(k.paths[4].2.flags & rule_flags::EXCEPT != 0);
        assert_ne!(k.config.path_kinds & (1 << path_kind::COMPONENTS), 0);

        // Wildcards inside the run, or a run that ends in a file name, stay in user space.
        for pattern in [".git/*/x/**", "**/.github/workflows/*.yml", "a/../b/**"] {
            let kind = Kind::File {
                paths: vec![pattern.into()],
                except: vec![],
                access: Access {
                    read: false,
                    write: true,
                },
            };
            let k = compile(
                &policy(vec![rule(kind, Action::Kill)], Mode::Enforce),
                &[],
                &Hosts::default(),
                false,
            );
            assert!(k.paths.is_empty(), "{pattern}");
            assert_eq!(k.partial, [0], "{pattern}");
        }
        // A component run as an exception is left to user space, whole rule.
        let kind = Kind::File {
            paths: vec!["*.yml".into()],
            except: vec![".github/**".into()],
            access: Access {
                read: false,
                write: true,
            },
        };
        let k = compile(
            &policy(vec![rule(kind, Action::Kill)], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert_eq!(k.partial, [0]);
    }

    #[test]
    fn what_the_kernel_cannot_express_is_left_to_user_space() {
        let kind = Kind::File {
            paths: vec!["src/*.rs".into()],
            except: vec![],
            access: Access {
                read: false,
                write: true,
            },
        };
        let k = compile(
            &policy(vec![rule(kind, Action::Kill)], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert!(k.paths.is_empty());
        assert_eq!(k.partial, [0]);
        assert_eq!(k.config.exec_wakeup, 0, "no exec decided in user space");
        let argv = Kind::Exec {
            exe: vec!["git".into()],
            digests: vec![],
            argv_contains: vec!["push".into()],
            argv_regex: None,
        };
        let k = compile(
            &policy(vec![rule(argv, Action::Kill)], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert!(k.paths.is_empty());
        assert_eq!(k.partial, [0]);
        assert_eq!(
            (k.config.exec_wakeup, k.exec_wake),
            (EXEC_WAKE_NAMED, vec![guard_common::agent_key(b"git")]),
            "git's execs must wake the daemon at once for its argv decision"
        );
        let by_name = Kind::Exec {
            exe: vec!["sudo".into()],
            digests: vec![],
            argv_contains: vec![],
            argv_regex: None,
        };
        let k = compile(
            &policy(vec![rule(by_name, Action::Kill)], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert_eq!(k.config.exec_wakeup, 0, "the kernel kills by name itself");
    }

    #[test]
    fn deny_is_a_refusal_with_bpf_lsm_and_a_kill_without() {
        let kind = Kind::Exec {
            exe: vec!["sudo".into()],
            digests: vec![],
            argv_contains: vec![],
            argv_regex: None,
        };
        let p = policy(vec![rule(kind, Action::Deny)], Mode::Enforce);
        let with = compile(&p, &[], &Hosts::default(), true);
        assert_eq!(
            with.paths[0].2.flags & (rule_flags::DENY | rule_flags::KILL),
            rule_flags::DENY
        );
        let without = compile(&p, &[], &Hosts::default(), false);
        assert_eq!(
            without.paths[0].2.flags & (rule_flags::DENY | rule_flags::KILL),
            rule_flags::KILL
        );
    }

    #[test]
    fn observe_mode_and_log_rules_install_nothing() {
        let kind = Kind::Exec {
            exe: vec!["sudo".into()],
            digests: vec![],
            argv_contains: vec![],
            argv_regex: None,
        };
        // Only the session limits, which hold in every mode (they protect the daemon).
        let mut limits_only = Tables::default();
        let defaults = crate::model::Limits::default();
        limits_only.config.limit_rate = defaults.rate;
        limits_only.config.limit_burst = defaults.burst;
        let p = policy(vec![rule(kind.clone(), Action::Kill)], Mode::Observe);
        assert_eq!(compile(&p, &[], &Hosts::default(), false), limits_only);
        let p = policy(vec![rule(kind, Action::Alert)], Mode::Enforce);
        assert_eq!(compile(&p, &[], &Hosts::default(), false), limits_only);
    }

    #[test]
    fn secret_log_rules_taint_under_kinds_of_their_own_and_never_kill() {
        let read = Access {
            read: true,
            write: false,
        };
        let mut secret = rule(
            Kind::File {
                paths: vec!["/srv/secrets/**".into(), ".env".into()],
                except: vec!["*.example".into()],
                access: read,
            },
            Action::Alert,
        );
        secret.secret = true;
        // A kill rule on the same prefix keeps its own entry: no shadowing either way.
        let kill = rule(
            Kind::File {
                paths: vec!["/srv/secrets/**".into()],
                except: vec![],
                access: read,
            },
            Action::Kill,
        );
        let mut not_secret = secret.clone();
        not_secret.secret = false;
        let k = compile(
            &policy(vec![secret.clone(), kill, not_secret], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        let got: Vec<(u8, String, u8, u16)> = k
            .paths
            .iter()
            .map(|(b, d, v)| (d[1], text(d, *b), v.flags, v.rule))
            .collect();
        assert_eq!(
            got,
            [
                (
                    path_kind::TAINT_FILE,
                    "/srv/secrets/".to_owned(),
                    rule_flags::TAINT,
                    0
                ),
                (
                    path_kind::TAINT_FILE_NAME,
                    ".env\0".to_owned(),
                    rule_flags::TAINT,
                    0
                ),
                (
                    path_kind::TAINT_FILE_NAME_REV,
                    "elpmaxe.".to_owned(),
                    rule_flags::EXCEPT,
                    0
                ),
                (
                    path_kind::FILE,
                    "/srv/secrets/".to_owned(),
                    rule_flags::KILL,
                    1
                ),
                (
                    path_kind::FILE_READ,
                    "/srv/secrets/".to_owned(),
                    rule_flags::KILL,
                    1
                ),
            ]
        );
        assert!(
            k.paths
                .iter()
                .filter(
                    |(_, d, _)| (path_kind::TAINT_FILE..=path_kind::TAINT_FILE_EXCEPT)
                        .contains(&d[1])
                )
                .all(|(_, _, v)| v.flags & (rule_flags::KILL | rule_flags::DENY) == 0),
            "taint entries never kill or refuse"
        );
        assert_ne!(k.config.path_kinds & (1 << path_kind::TAINT_FILE), 0);
        // A secret kill rule does not taint (the process dies); in observe mode every
        // secret rule taints, and nothing kills.
        let mut secret_kill = secret;
        secret_kill.action = Action::Kill;
        let k = compile(
            &policy(vec![secret_kill.clone()], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert!(
            k.paths
                .iter()
                .all(|(_, d, _)| d[1] < path_kind::TAINT_OFFSET || d[1] == path_kind::FILE_READ)
        );
        let k = compile(
            &policy(vec![secret_kill], Mode::Observe),
            &[],
            &Hosts::default(),
            false,
        );
        assert!(!k.paths.is_empty());
        assert!(
            k.paths
                .iter()
                .all(|(_, d, v)| d[1] > path_kind::TAINT_OFFSET && v.flags & rule_flags::KILL == 0)
        );
    }

    #[test]
    fn taint_deny_compiles_an_allowlist_with_a_catch_all_refusal() {
        let taint = Rule {
            id: "taint.egress".into(),
            ..rule(
                Kind::TaintEgress {
                    allow: vec![Dest {
                        host: Host::Net("127.0.0.1/32".parse().expect("net")),
                        port: Some(8443),
                        text: "127.0.0.1:8443".into(),
                    }],
                },
                Action::Deny,
            )
        };
        let k = compile(
            &policy(vec![taint.clone()], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert_eq!(k.taint_nets.len(), 2);
        let (bits, data, all) = k.taint_nets[0];
        assert_eq!((bits, data), (8, [0; 18]), "every destination");
        assert_eq!(all.flags, rule_flags::DENY);
        let lo = k.taint_nets[1].2;
        assert_eq!(lo.flags, rule_flags::ALLOW);
        assert_eq!(lo.ports[0], 8443);
        assert!(
            k.nets.is_empty(),
            "the policy's own network rules are apart"
        );
        // Alert and log are decided in user space: no kernel entry.
        let mut alert = taint;
        alert.action = Action::Alert;
        let k = compile(
            &policy(vec![alert], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert!(k.taint_nets.is_empty());
    }

    #[test]
    fn network_rules_and_default_deny() {
        let d = |s: &str, port: Option<u16>| Dest {
            host: Host::Net(s.parse().expect("net")),
            port,
            text: s.into(),
        };
        let kind = Kind::Network {
            allow: vec![
                d("10.0.0.0/8", Some(443)),
                d("10.0.0.0/8", Some(22)),
                d("::ffff:127.0.0.1/128", None),
            ],
            deny: vec![d("169.254.169.254/32", None)],
        };
        let k = compile(
            &policy(vec![rule(kind, Action::Deny)], Mode::Enforce),
            &[],
            &Hosts::default(),
            false,
        );
        assert_eq!(k.config.net_default_deny, 1);
        let allow10 = k
            .nets
            .iter()
            .find(|(b, d, _)| *b == 24 && d[2] == 10)
            .expect("10/8 entry");
        assert_eq!(&allow10.2.ports[..2], &[22, 443]);
        assert!(allow10.2.flags & rule_flags::ALLOW != 0);
        let lo = k
            .nets
            .iter()
            .find(|(b, d, _)| *b == 48 && d[1] == AF_INET as u8 && d[2] == 127)
            .expect("mapped loopback stored as v4");
        assert_eq!(lo.2.ports, [0; 8]);
        let meta = k
            .nets
            .iter()
            .find(|(b, d, _)| *b == 48 && d[2] == 169)
            .expect("metadata");
        assert!(meta.2.flags & rule_flags::DENY != 0);
    }
}
