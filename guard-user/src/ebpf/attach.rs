//! Loading and attaching the programs of [`super::table`]: every program is loaded
//! (verified) first, several at a time, then each is attached in the table's order
//! with what its group's failure costs, and the result is the [`tiers::Probe`] the
//! tier report is built from.
//!
//! The verifier's time is most of a daemon's start (on this project's machines, the
//! open's exit program alone is half of it; in the software-emulated VMs of the
//! kernel matrix a start took 10 to 20 s). Loads of distinct programs are
//! independent system calls, so they run on as many threads as there are CPUs (up
//! to four).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Mutex;

use aya::{
    Btf, Ebpf,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, Lsm, Program,
        ProgramError, RawTracePoint, TracePoint, links::FdLink,
    },
};

use super::{
    Error,
    pins::Links,
    program_mut, short_chain,
    table::{Entry, Group, Hook, TABLE, optional_tracepoint},
    tiers::{Probe, Tier},
};

/// Most threads that load programs at once.
const MAX_LOADERS: usize = 4;

/// What [`all`] attached, for the tier report and the kernel's route-hook set.
pub(super) struct Attached {
    pub probe: Probe,
    /// Bits of `ROUTE_HOOKS`: the routes (and the Unix socket hooks) BPF-LSM refuses.
    pub route_hooks: u32,
    /// How long loading (the verifier) took.
    pub verified: std::time::Duration,
    /// The programs the verifier refused at one of its limits (instructions,
    /// states, stack), with its words: a fault of this build on this kernel, never
    /// of the host's configuration (`guard status`, the budget test).
    pub over_limits: std::collections::BTreeMap<String, String>,
}

/// Why BPF-LSM cannot run here, or the kernel's BTF it needs (`btf`, parsed once).
fn lsm_btf(btf: Option<&Btf>) -> Result<&Btf, String> {
    let active = std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.split(',').any(|m| m.trim() == "bpf"));
    if matches!(active, Ok(false)) {
        return Err("the kernel's active LSMs do not include bpf".to_owned());
    }
    btf.ok_or_else(|| "no kernel BTF (/sys/kernel/btf/vmlinux)".to_owned())
}

/// Notes the programs of `loaded` the verifier refused at a limit, each with an error
/// in the log: whatever the group does without it, the build is at fault.
fn note_limits(
    loaded: &HashMap<&'static str, Result<(), ProgramError>>,
    over: &mut std::collections::BTreeMap<String, String>,
) {
    for (program, result) in loaded {
        if let Some(limit) = result.as_ref().err().and_then(over_limit) {
            tracing::error!("the verifier refused {program} at a limit: {limit}");
            over.insert((*program).to_owned(), limit);
        }
    }
}

/// Loads `programs` (name, hook), several at a time; returns each one's result.
fn load_all(
    bpf: &mut Ebpf,
    programs: &[(&'static str, Hook)],
    btf: Option<&Btf>,
) -> HashMap<&'static str, Result<(), ProgramError>> {
    let mut jobs: Vec<(&'static str, Hook, &mut Program)> = Vec::new();
    for (name, p) in bpf.programs_mut() {
        if let Some((wanted, hook)) = programs.iter().find(|(n, _)| *n == name) {
            jobs.push((wanted, *hook, p));
        }
    }
    // In the order asked: the table lists the costliest programs early, so that no
    // thread is left with one of them at the end.
    jobs.sort_by_key(|(name, _, _)| programs.iter().position(|(n, _)| n == name));
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_LOADERS)
        .min(jobs.len().max(1));
    let queue = Mutex::new(jobs.into_iter());
    let results = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .next();
                    let Some((name, hook, program)) = next else {
                        break;
                    };
                    let result = load_one(program, hook, btf);
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(name, result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether the verifier refused a program for its `bpf_loop` callbacks: a kernel
/// without the helper (before 5.17, unless backported: "invalid func unknown#181",
/// `bpf_loop` being helper 181), or one where a callback referenced as a function
/// (`BPF_PSEUDO_FUNC`) is no subprogram yet (before 5.13: the object's BTF lists more
/// functions than the kernel counts; measured on Debian 11's 5.10).
fn refuses_bpf_loop(e: &ProgramError) -> bool {
    matches!(e, ProgramError::LoadError { verifier_log, .. }
        if refuses_bpf_loop_in(&verifier_log.to_string()))
}

/// Where the verifier refused a program at one of its limits (the instructions it
/// processes, its states, a jump sequence, the stack of a call chain): the line of
/// its log that says so.
fn over_limit(e: &ProgramError) -> Option<String> {
    let ProgramError::LoadError { verifier_log, .. } = e else {
        return None;
    };
    over_limit_in(&verifier_log.to_string())
}

/// [`over_limit`], from the verifier's log.
fn over_limit_in(log: &str) -> Option<String> {
    // The kernel's own words (kernel/bpf/verifier.c); not "processed N insns (limit
    // M)", which ends every log, refused or not.
    const LIMITS: &[&str] = &[
        "BPF program is too large",
        "combined stack size",
        "is too complex",
        "frames is too deep",
        "is too large",
    ];
    log.lines()
        .find(|l| LIMITS.iter().any(|limit| l.contains(limit)))
        .map(|l| l.trim().to_owned())
}

/// [`refuses_bpf_loop`], from the verifier's log.
fn refuses_bpf_loop_in(log: &str) -> bool {
    log.contains("number of funcs in func_info doesn't match number of subprogs")
        || log.contains("invalid func unknown#181")
}

#[cfg(test)]
#[test]
fn a_kernel_without_bpf_loop_callbacks_is_named_as_such() {
    // The last lines of Debian 11's 5.10 verifier for `sched_process_exec`
    // (2026-11-28), and a kernel that lacks the helper.
    assert!(refuses_bpf_loop_in(
        "number of funcs in func_info doesn't match number of subprogs\nverification time 12 usec"
    ));
    assert!(refuses_bpf_loop_in(
        "0: (85) call unknown#181\ninvalid func unknown#181\n"
    ));
    assert!(!refuses_bpf_loop_in(
        "R1 invalid mem access 'scalar'\nprocessed 1000001 insns (limit 1000000)"
    ));
}

#[cfg(test)]
#[test]
fn a_program_refused_at_a_limit_of_the_verifier_is_named_with_the_limit() {
    // Linux 6.1's words for the open's exit chain of 2026-11-28 (544 bytes of stack).
    assert_eq!(
        over_limit_in("func#3 @412\ncombined stack size of 3 calls is 544. Too large\n").as_deref(),
        Some("combined stack size of 3 calls is 544. Too large")
    );
    assert_eq!(
        over_limit_in(
            "BPF program is too large. Processed 1000001 insn\nprocessed 1000001 insns \
             (limit 1000000) max_states_per_insn 40"
        )
        .as_deref(),
        Some("BPF program is too large. Processed 1000001 insn")
    );
    // A refusal for another reason (a kernel without bpf_loop) is no limit, though
    // its log ends with the count of what was processed, as every log does.
    assert_eq!(
        over_limit_in(
            "0: (85) call unknown#181\ninvalid func unknown#181\nprocessed 12 insns \
             (limit 1000000) max_states_per_insn 0"
        ),
        None
    );
}

fn load_one(program: &mut Program, hook: Hook, btf: Option<&Btf>) -> Result<(), ProgramError> {
    match (program, hook) {
        (Program::RawTracePoint(p), Hook::Raw(_)) => p.load(),
        (Program::TracePoint(p), Hook::Syscalls(_)) => p.load(),
        (Program::CgroupSockAddr(p), Hook::SockAddr) => p.load(),
        (Program::CgroupSkb(p), Hook::SkbEgress | Hook::SkbIngress) => p.load(),
        (Program::CgroupSock(p), Hook::SockRelease) => p.load(),
        (Program::Lsm(p), Hook::Lsm(hook)) => match btf {
            Some(btf) => p.load(hook, btf),
            None => Err(ProgramError::UnexpectedProgramType),
        },
        _ => Err(ProgramError::UnexpectedProgramType),
    }
}

/// Attaches the loaded program `entry` (or its `alt`, named by `program`) to its
/// hook, pinning each link; returns the names of what it attached (`kind/name`).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per kind of hook: each attaches and pins its links in its own way"
)]
fn attach_one(
    bpf: &mut Ebpf,
    entry: &Entry,
    program: &'static str,
    cgroup: &File,
    links: &mut Links,
) -> Result<Vec<String>, String> {
    let fail = |what: &str, e: &dyn std::error::Error| format!("{what}: {}", short_chain(e));
    match entry.hook {
        Hook::Raw(tp) => {
            let p: &mut RawTracePoint = program_mut(bpf, program).map_err(|e| e.to_string())?;
            let id = p
                .attach(tp)
                .map_err(|e| fail(&format!("cannot attach {program} to {tp}"), &e))?;
            let link = p
                .take_link(id)
                .map_err(|e| fail(&format!("cannot take the link of {program}"), &e))?;
            let name = if program == tp { tp } else { program };
            links
                .install(&format!("raw_tracepoint-{name}"), FdLink::from(link))
                .map_err(|e| short_chain(&e))?;
            Ok(vec![format!("raw_tracepoint/{name}")])
        }
        Hook::Syscalls(tracepoints) => {
            let p: &mut TracePoint = program_mut(bpf, program).map_err(|e| e.to_string())?;
            let mut attached = Vec::new();
            for tp in tracepoints {
                match p.attach("syscalls", tp) {
                    Ok(id) => {
                        let hook = format!("tracepoint-syscalls-{tp}");
                        let link = p
                            .take_link(id)
                            .map_err(|e| fail(&format!("cannot take the link of {tp}"), &e))?;
                        // Before Linux 5.15 a tracepoint is attached without a
                        // bpf_link: nothing to pin, the daemon holds it (docs/kernels.md).
                        if aya::features().bpf_perf_link() {
                            FdLink::try_from(link)
                                .map_err(|source| Error::Unpinnable {
                                    hook: hook.clone(),
                                    source,
                                })
                                .and_then(|link| links.install(&hook, link))
                                .map_err(|e| short_chain(&e))?;
                        } else {
                            links.hold(program, link);
                        }
                        attached.push(format!("tracepoint/syscalls/{tp}"));
                    }
                    Err(e) if optional_tracepoint(tp) => {
                        tracing::warn!("{tp} not attached ({e}); this architecture may lack it")
                    }
                    Err(e) => {
                        return Err(fail(
                            &format!("cannot attach {program} to syscalls/{tp}"),
                            &e,
                        ));
                    }
                }
            }
            Ok(attached)
        }
        Hook::SockAddr | Hook::SkbEgress | Hook::SkbIngress | Hook::SockRelease => {
            let hook = format!("cgroup-{program}");
            let kind = match entry.hook {
                Hook::SockAddr => "cgroup",
                Hook::SockRelease => "cgroup_sock",
                _ => "cgroup_skb",
            };
            let fd = |bpf: &mut Ebpf| -> Result<aya::programs::ProgramFd, String> {
                let p = bpf
                    .program(program)
                    .ok_or_else(|| Error::Missing(program).to_string())?;
                p.fd()
                    .and_then(|fd| fd.try_clone().map_err(ProgramError::from))
                    .map_err(|e| short_chain(&e))
            };
            if links.has(&hook) {
                // An earlier daemon's link on the cgroup: pointed at this program in
                // one step (cgroup links allow it), never a moment without one.
                let fd = fd(bpf)?;
                match links.update(&hook, &fd) {
                    Ok(()) => return Ok(vec![format!("{kind}/{program}")]),
                    // The kernel refused the update (EINVAL on 6.1 and 6.18
                    // since 2026-11-24; the cause is not found yet): a new link is
                    // attached beside the old one (cgroup links are always multi),
                    // then the old one goes, as for tracepoints: never a moment
                    // without a program, both for a moment.
                    Err(e) => tracing::info!(
                        "{}: attaching a new link before removing the old one",
                        short_chain(&e)
                    ),
                }
            }
            let link = match entry.hook {
                Hook::SockAddr => {
                    let p: &mut CgroupSockAddr =
                        program_mut(bpf, program).map_err(|e| e.to_string())?;
                    let id = p
                        .attach(cgroup, CgroupAttachMode::Single)
                        .map_err(|e| fail(&format!("cannot attach {program}"), &e))?;
                    p.take_link(id).map(FdLink::try_from)
                }
                Hook::SockRelease => {
                    let p: &mut CgroupSock =
                        program_mut(bpf, program).map_err(|e| e.to_string())?;
                    let id = p
                        .attach(cgroup, CgroupAttachMode::Single)
                        .map_err(|e| fail(&format!("cannot attach {program}"), &e))?;
                    p.take_link(id).map(FdLink::try_from)
                }
                _ => {
                    let way = if entry.hook == Hook::SkbEgress {
                        CgroupSkbAttachType::Egress
                    } else {
                        CgroupSkbAttachType::Ingress
                    };
                    let p: &mut CgroupSkb = program_mut(bpf, program).map_err(|e| e.to_string())?;
                    let id = p
                        .attach(cgroup, way, CgroupAttachMode::Single)
                        .map_err(|e| fail(&format!("cannot attach {program}"), &e))?;
                    p.take_link(id).map(FdLink::try_from)
                }
            };
            let link = link
                .map_err(|e| fail(&format!("cannot take the link of {program}"), &e))?
                .map_err(|e| e.to_string())?;
            links.install(&hook, link).map_err(|e| short_chain(&e))?;
            Ok(vec![format!("{kind}/{program}")])
        }
        Hook::Lsm(hook) => {
            let p: &mut Lsm = program_mut(bpf, program).map_err(|e| e.to_string())?;
            let id = p
                .attach()
                .map_err(|e| fail(&format!("cannot attach lsm/{hook}"), &e))?;
            let link = p
                .take_link(id)
                .map_err(|e| fail(&format!("cannot take the link of lsm/{hook}"), &e))?;
            let name = if program == hook {
                hook.to_owned()
            } else {
                format!("{hook}-{program}")
            };
            links
                .install(&format!("lsm-{name}"), FdLink::from(link))
                .map_err(|e| short_chain(&e))?;
            Ok(vec![format!("lsm/{name}")])
        }
    }
}

/// The hook names a link of `entry` is pinned under (for removing a group's links
/// when a later member fails).
fn link_names(entry: &Entry) -> Vec<String> {
    match entry.hook {
        Hook::SockAddr | Hook::SkbEgress | Hook::SkbIngress | Hook::SockRelease => {
            vec![format!("cgroup-{}", entry.program)]
        }
        _ => Vec::new(),
    }
}

/// Per-group results as the tier report wants them.
#[derive(Default)]
struct Results {
    attached: Vec<String>,
    opens: Option<String>,
    sock_addr: Option<String>,
    dns_restore: Option<String>,
    dns_installed: Vec<String>,
    unix: Option<String>,
    flows: Option<String>,
    /// Why BPF-LSM deny on opens and execs is missing (then no BPF-LSM group runs).
    lsm: Option<String>,
    lsm_paths: Vec<String>,
    lsm_unix: Option<String>,
    lsm_self: Vec<&'static str>,
    routes: Vec<(u32, Result<Tier, String>)>,
    route_hooks: u32,
}

/// Loads every program of the table and attaches it, group by group: a program
/// this kernel refuses costs its group (and says why), never the others, except
/// the process programs, without which guard cannot run (an error).
#[expect(
    clippy::too_many_lines,
    reason = "two passes over the program table, one arm per group's failure, filling one Probe"
)]
pub(super) fn all(
    bpf: &mut Ebpf,
    cgroup: &File,
    links: &mut Links,
    btf: Option<&Btf>,
) -> Result<Attached, Error> {
    let started = std::time::Instant::now();
    let btf = lsm_btf(btf);
    // The entries of this build: a compat-only program is in the compat object only.
    let table: Vec<&Entry> = TABLE
        .iter()
        .filter(|e| !e.compat_only || bpf.program(e.program).is_some())
        .collect();
    let first: Vec<(&'static str, Hook)> = table
        .iter()
        .filter(|e| !matches!(e.group, Group::SelfFallback { .. }))
        .filter(|e| !e.hook.is_lsm() || btf.is_ok())
        .map(|e| (e.program, e.hook))
        .collect();
    let mut loaded = load_all(bpf, &first, btf.as_ref().ok().copied());
    // A hook whose arguments changed between kernels: its other version.
    let alts: Vec<(&'static str, Hook)> = table
        .iter()
        .filter(|e| matches!(loaded.get(e.program), Some(Err(_))))
        .filter_map(|e| Some((e.alt?, e.hook)))
        .collect();
    loaded.extend(load_all(bpf, &alts, btf.as_ref().ok().copied()));
    let mut verified = started.elapsed();
    let mut over_limits = std::collections::BTreeMap::new();
    note_limits(&loaded, &mut over_limits);

    let mut r = Results {
        lsm: btf.as_ref().err().cloned(),
        ..Results::default()
    };
    let mut flows_installed: Vec<String> = Vec::new();
    for entry in table {
        if let Group::SelfFallback { .. } = entry.group {
            continue;
        }
        if entry.hook.is_lsm() && r.lsm.is_some() {
            continue;
        }
        if entry.group == Group::Flows && r.flows.is_some() {
            continue;
        }
        if entry.group == Group::DnsRestore && r.dns_restore.is_some() {
            continue;
        }
        // The program that loaded: the entry's, else its alternative.
        let program = match (loaded.remove(entry.program), entry.alt) {
            (Some(Ok(())), _) => Ok(entry.program),
            (Some(Err(e)), Some(alt)) if matches!(loaded.get(alt), Some(Ok(()))) => {
                tracing::debug!("{}: {}; loaded {alt}", entry.program, short_chain(&e));
                Ok(alt)
            }
            (Some(Err(source)), _) => Err((
                format!("cannot load {}: {}", entry.program, short_chain(&source)),
                Some(source),
            )),
            (None, _) => Err((Error::Missing(entry.program).to_string(), None)),
        };
        let result = program.and_then(|program| {
            attach_one(bpf, entry, program, cgroup, links).map_err(|why| (why, None))
        });
        match (entry.group, result) {
            (_, Ok(names)) => {
                if entry.group == Group::Flows {
                    flows_installed.extend(link_names(entry));
                }
                if entry.group == Group::DnsRestore {
                    r.dns_installed.extend(link_names(entry));
                }
                if let Group::LsmSelf = entry.group
                    && let Hook::Lsm(hook) = entry.hook
                {
                    r.lsm_self.push(hook);
                }
                if let Group::LsmRoute(routes) = entry.group {
                    r.route_hooks |= routes.iter().fold(0, |b, route| b | (1 << route));
                }
                if let Group::Route(route) = entry.group {
                    r.routes.push((route, Ok(Tier::TracepointKill)));
                }
                r.attached.extend(names);
            }
            (Group::Process, Err((why, source))) => {
                return Err(match source {
                    Some(source) if refuses_bpf_loop(&source) => Error::NoBpfLoop {
                        program: entry.program,
                        source,
                    },
                    Some(source) => Error::Program {
                        program: entry.program,
                        source,
                    },
                    None => Error::Startup(why),
                });
            }
            (group, Err((why, _))) => {
                tracing::warn!("{why}");
                match group {
                    Group::Opens => r.opens = Some(why),
                    Group::NetEvents => {}
                    Group::Unix => r.unix = Some(why),
                    Group::Route(route) => r.routes.push((route, Err(why))),
                    Group::SockAddr => r.sock_addr = Some(why),
                    Group::DnsRestore => {
                        // All or none: an answer whose source is not restored is
                        // dropped by the resolver library that asked.
                        for hook in r.dns_installed.drain(..) {
                            links.remove(&hook);
                            let name = hook.replacen("cgroup-", "cgroup/", 1);
                            r.attached.retain(|a| *a != name);
                        }
                        r.dns_restore = Some(why);
                    }
                    Group::Flows => {
                        // All or none: counts without their final records (or the
                        // reverse) would mislead.
                        for hook in flows_installed.drain(..) {
                            links.remove(&hook);
                        }
                        r.attached.retain(|a| {
                            !a.starts_with("cgroup_skb/") && !a.starts_with("cgroup_sock/")
                        });
                        r.flows = Some(why);
                    }
                    // The same cause would stop the other hooks: none of them runs.
                    Group::LsmOpenExec => {
                        r.lsm = Some(why);
                        for hook in r.attached.iter().filter(|a| a.starts_with("lsm/")) {
                            links.remove(&hook.replacen("lsm/", "lsm-", 1));
                        }
                        r.attached.retain(|a| !a.starts_with("lsm/"));
                    }
                    Group::LsmSelf => tracing::warn!("self-protection: {why}"),
                    Group::LsmRoute(_) => {}
                    Group::LsmPaths => r.lsm_paths.push(why),
                    Group::LsmUnix => r.lsm_unix = Some(why),
                    Group::Process | Group::SelfFallback { .. } => {}
                }
            }
        }
    }
    if r.lsm.is_none() && r.lsm_unix.is_none() {
        r.route_hooks |= 1 << guard_common::route::UNIX_SOCKET_HOOKS;
    }

    // Self-protection on the tracepoint tier where its BPF-LSM hook is not running.
    let fallbacks: Vec<&Entry> = TABLE
        .iter()
        .filter(|e| match e.group {
            Group::SelfFallback { unless_lsm } => !r.lsm_self.contains(&unless_lsm),
            _ => false,
        })
        .collect();
    let wanted: Vec<(&'static str, Hook)> = fallbacks.iter().map(|e| (e.program, e.hook)).collect();
    let at = std::time::Instant::now();
    let mut loaded = load_all(bpf, &wanted, None);
    verified += at.elapsed();
    note_limits(&loaded, &mut over_limits);
    let mut self_protection: Vec<(&'static str, Result<Tier, String>)> = Vec::new();
    for group in super::table::self_protection_groups() {
        let tier = if r.lsm_self.contains(&group) {
            Ok(Tier::BpfLsmDeny)
        } else {
            Ok(Tier::TracepointKill)
        };
        self_protection.push((group, tier));
    }
    for entry in fallbacks {
        let Group::SelfFallback { unless_lsm } = entry.group else {
            continue;
        };
        let result = match loaded.remove(entry.program) {
            Some(Ok(())) => attach_one(bpf, entry, entry.program, cgroup, links),
            Some(Err(e)) => Err(format!(
                "cannot load {}: {}",
                entry.program,
                short_chain(&e)
            )),
            None => Err(Error::Missing(entry.program).to_string()),
        };
        match result {
            Ok(names) => r.attached.extend(names),
            Err(why) => {
                tracing::warn!("self-protection: {why}");
                if let Some((_, tier)) = self_protection.iter_mut().find(|(g, _)| *g == unless_lsm)
                {
                    *tier = Err(why);
                }
            }
        }
    }

    let probe = Probe {
        open_tracepoints: r.opens.map_or(Ok(()), Err),
        dns_resolver: match (&r.sock_addr, &r.dns_restore) {
            (Some(why), _) | (None, Some(why)) => Err(why.clone()),
            (None, None) => Ok(()),
        },
        sock_addr: r.sock_addr.map_or(Ok(()), Err),
        lsm_open_exec: r.lsm.clone().map_or(Ok(()), Err),
        lsm_paths: match (&r.lsm, r.lsm_paths.is_empty()) {
            (Some(why), _) => Err(why.clone()),
            (None, true) => Ok(()),
            (None, false) => Err(r.lsm_paths.join("; ")),
        },
        self_protection,
        lsm_umount: r.lsm_self.contains(&"sb_umount"),
        flows: r.flows.map_or(Ok(()), Err),
        unix: r.unix.map_or(Ok(()), Err),
        lsm_unix: match (&r.lsm, r.lsm_unix) {
            (Some(why), _) => Err(why.clone()),
            (None, Some(why)) => Err(why),
            (None, None) => Ok(()),
        },
        routes: r.routes,
        route_hooks: r.route_hooks,
        attached: r.attached,
    };
    Ok(Attached {
        route_hooks: probe.route_hooks,
        probe,
        verified,
        over_limits,
    })
}
