//! Enforcement the kernel decides itself: kill at exec, kill at open, refuse a
//! connect or send. User space compiles the policy's enforceable rules into these
//! maps; everything else about the policy (logging, alerts, globs the kernel cannot
//! express, argv conditions) is decided in user space.

use aya_ebpf::{
    helpers::generated::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user_str, bpf_send_signal,
    },
    macros::map,
    maps::{PerCpuArray, lpm_trie::Key},
};
use guard_common::{
    AF_INET, AF_INET6, Config, IDENTITY_DEPTH, IdentityTail, NetData, O_PATH, PathData, RuleRef,
    SIGKILL, counter, epoch, flags,
    rules::{IDENTITY_UNKNOWN_MAX, InodeKey, access, enforced, inode_kind, path_kind, rule_flags},
};

use crate::{
    core_read,
    each::each,
    maps::{
        IDENT_CLEAR, IDENT_DENIED, INODE_COUNT, INODE_RULES, NET_RULES, OPEN_EPOCH, PATH_BUF,
        PATH_CLEAR, PATH_KEY, PATH_KEY_BYTES, PATH_MASK, PATH_RULES, PATH_SCRATCH, PathClear,
        TAINT_NET, TREE_DIRS, TREE_EPOCH, TREE_MOUNTS, config,
    },
};

mod check;
mod exec;
mod identity;
mod net;

pub(crate) use check::before_walk;
use check::*;
pub(crate) use exec::*;
pub(crate) use identity::identity_tail;
use identity::*;
pub(crate) use net::*;

/// Whether an entry's scope (root/descendants, roles) takes in the process whose
/// Tracked flags are `who`.
#[inline(always)]
fn scope_ok(flags: u8, access: u8, who: u32) -> bool {
    guard_common::rules::scope_applies(flags, access, who)
}

/// Whether the rule set in force has entries of `kind`.
#[inline(always)]
fn has(cfg: &Config, kind: u8) -> bool {
    cfg.path_kinds & (1 << kind) != 0
}

/// Kills the current process; returns the event's `rule` field.
#[inline(always)]
fn kill(rule: u16) -> u16 {
    // SAFETY: signals the current task's process; acted on at return to user mode.
    let rc = unsafe { bpf_send_signal(SIGKILL) };
    let rule = (rule + 1) & enforced::RULE_MASK;
    if rc == 0 {
        rule | enforced::KILLED
    } else {
        rule
    }
}

/// The accesses an open with `open_flags` asks for.
#[inline(always)]
fn wanted(open_flags: u64) -> u8 {
    let mode = open_flags & 0o3;
    let mut want = 0u8;
    if open_flags & O_PATH == 0 && (mode == 0 || mode == 2) {
        want |= access::READ;
    }
    if mode == 1 || mode == 2 || open_flags & (0o100 | 0o1000) != 0 {
        want |= access::WRITE;
    }
    want
}

/// The rule a file operation on the path of `len` bytes at offset `at` of this
/// CPU's path scratch (`PATH_SCRATCH`, where every path a file check judges is
/// resolved), on the entry named like `dentry`, runs into: `want` accesses,
/// `verdict` KILL or DENY.
/// With `by_identity`, when no path entry enforces, the entry and its directories
/// are looked up by identity (`INODE_RULES`); the second value is then the
/// `Header::flags` bits the walk found (`identity_tail` has the match).
#[inline(always)]
fn file_pick(
    dentry: *const core::ffi::c_void,
    at: u32,
    len: u32,
    want: u8,
    verdict: u8,
    is_root: u32,
    by_identity: bool,
) -> (Option<u16>, u16) {
    file_pick_in(dentry, at, len, want, verdict, is_root, 0, by_identity)
}

/// [`file_pick`] among the entries of kinds `base` above the file kinds (0: kill
/// and deny entries; `path_kind::TAINT_OFFSET`: taint entries).
#[inline(always)]
#[expect(
    clippy::too_many_arguments,
    reason = "inlined into the verifier's view: scalars, not a struct on the 512-byte stack"
)]
fn file_pick_in(
    dentry: *const core::ffi::c_void,
    at: u32,
    len: u32,
    want: u8,
    verdict: u8,
    is_root: u32,
    base: u8,
    by_identity: bool,
) -> (Option<u16>, u16) {
    let asks = u32::from(want)
        | u32::from(verdict) << 8
        | u32::from(base) << 16
        | u32::from(by_identity) << 24
        // The taint check comes right after the kill check of the same open, on the
        // same path ([`on_open`]): it reuses that check's key of `PATH_CLEAR`.
        | u32::from(base != 0) << 25;
    let found = guard_file_check(
        dentry as u64,
        at,
        u64::from(len) << 32 | u64::from(is_root),
        asks,
    ) as u64;
    let picked = (found & 0xffff) as u16;
    (picked.checked_sub(1), (found >> 16) as u16)
}

/// The file check behind [`file_pick_in`], its arguments packed into the five
/// registers a BPF call has (and no pointer: a global function's arguments are
/// numbers): `at` is the path's offset in this CPU's path scratch, `len_who` its
/// length (high half) and the process's Tracked flags (low half); `asks` the access
/// wanted (bits 0-7), the verdict (8-15), the kinds' base (16-23) and whether to look
/// by identity (bit 24), and whether the path is the one the check before it on
/// this CPU had (bit 25: an open's taint check). Returns the rule picked plus one (bits 0-15; 0: none) and the identity
/// walk's `Header::flags` bits (16-31).
///
/// Global (its own BTF function, not inlined): the verifier checks its body once
/// per program, with any arguments, instead of once for each state the caller
/// reaches it in. Inlined, the open's exit reached the lookups' `bpf_loop` calls
/// in some 60 states, and the callbacks were verified again for each: three
/// quarters of its verification (see docs/kernels.md).
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn guard_file_check(dentry: u64, at: u32, len_who: u64, asks: u32) -> i64 {
    let again = (asks >> 25) & 1 != 0;
    // Before the rules are read: what this check finds clear is remembered under
    // rules at least this old, so a change while it runs leaves it stale.
    note_rules(again);
    let dentry = dentry as *const core::ffi::c_void;
    let (want, verdict, base) = (asks as u8, (asks >> 8) as u8, (asks >> 16) as u8);
    let cfg = config();
    let file_kinds = ((1u32 << path_kind::FILE)
        | (1 << path_kind::FILE_NAME)
        | (1 << path_kind::FILE_NAME_REV)
        | (1 << path_kind::COMPONENTS)
        | (1 << path_kind::FILE_READ))
        << base;
    let by_path = cfg.path_kinds & file_kinds != 0;
    let by_identity = (asks >> 24) & 1 != 0 && identity_count(&cfg) != 0;
    if !by_path && !by_identity {
        return 0;
    }
    let Some(scratch) = PATH_SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: only the address is taken; the check reads the path in bounds.
    let path = unsafe { (*scratch).bytes.as_ptr() }.wrapping_add((at & PATH_MASK) as usize);
    // The length apart from the word it came in, as in `guard_exec_check`.
    let Some(c) = begin(
        path,
        core::hint::black_box((len_who >> 32) as u32),
        &cfg,
        want,
        verdict,
        len_who as u32,
    ) else {
        return 0;
    };
    // SAFETY: this CPU's check.
    unsafe { (*c).base = u32::from(base) };
    if by_path && !path_clear(c, again) {
        let names = ((1u32 << path_kind::FILE_NAME) | (1 << path_kind::FILE_NAME_REV)) << base;
        if cfg.path_kinds & names != 0 {
            // SAFETY: this CPU's check.
            unsafe { (*c).dentry = dentry as u64 };
            each!(1, name_step);
        }
        each!(5, lookup_step, guard_each_lookup, 1);
        if cfg.path_kinds & (1 << (path_kind::COMPONENTS.wrapping_add(base) & 31)) != 0 {
            // The scan leaves its match in matches[3] itself.
            // SAFETY: this CPU's check.
            unsafe { (*c).scan_pos = 0 };
            each!(SCAN_BYTES, scan_step, guard_each_scan, 8);
        }
        // Almost always nothing matched: then there is nothing to judge (the judging
        // is five calls).
        // SAFETY: this CPU's check.
        let any = unsafe {
            let m = &(*c).matches;
            m[0].flags | m[1].flags | m[2].flags | m[3].flags | m[4].flags
        };
        if any == 0 {
            remember_path(c);
        } else if let Some(rule) = pick(c) {
            return i64::from(rule) + 1;
        }
    }
    if !by_identity {
        return 0;
    }
    identity(c, dentry);
    // SAFETY: this CPU's check.
    let (picked, found) = unsafe { ((*c).picked, (*c).ident_flags) };
    i64::from(picked & 0xffff) | i64::from(found & 0xffff) << 16
}

/// BPF-LSM `file_open`: whether a `deny` rule refuses this open.
#[inline(always)]
pub(crate) fn deny_open(
    file: *const core::ffi::c_void,
    at: u32,
    len: u32,
    open_flags: u64,
    is_root: u32,
) -> Option<u16> {
    // As at the open's exit: an open that neither reads nor writes is no rule's,
    // nor a directory's open for reading.
    let dentry = core_read::file_dentry(file);
    let mut want = wanted(open_flags);
    if want & access::READ != 0 && core_read::dentry_type(dentry) == core_read::TYPE_DIR {
        want &= !access::READ;
    }
    if want == 0 {
        return None;
    }
    let (rule, found) = file_pick(dentry, at, len, want, rule_flags::DENY, is_root, true);
    if let Some(rule) = rule {
        // The open's exit reports the refusal and what it matched: the entry, or
        // (inode 0) that the file could not be placed and the rule failed closed,
        // or (`up` BY_PATH) the rule's path. The exit has only the name the process
        // gave, which may be another name of the file (`/proc/self/root/…`, a
        // symbolic link): the rule comes from here.
        let tail = if found & flags::BY_IDENTITY != 0 {
            identity_tail()
        } else if found & flags::IDENTITY_UNKNOWN != 0 {
            IdentityTail {
                rule,
                ..IdentityTail::default()
            }
        } else {
            IdentityTail {
                rule,
                up: guard_common::DENIED_BY_PATH,
                ..IdentityTail::default()
            }
        };
        let (_, tid) = crate::emit::current_ids();
        let _ = IDENT_DENIED.insert(tid, tail, 0);
    }
    rule
}

/// BPF-LSM: whether a `deny` rule on writes refuses a change to the entry `dentry`
/// whose path is `len` bytes at `at` in the path scratch (the `path_*` hooks:
/// create, mkdir, link, rename, unlink, truncate, chmod, chown), or reaching the Unix socket bound to it
/// (`unix_stream_connect`, `unix_may_send`), by path and, `by_identity`, by the
/// entry's identity.
#[inline(always)]
pub(crate) fn deny_write(
    dentry: *const core::ffi::c_void,
    at: u32,
    len: u32,
    who: u32,
    by_identity: bool,
) -> Option<u16> {
    file_pick(
        dentry,
        at,
        len,
        access::WRITE,
        rule_flags::DENY,
        who,
        by_identity,
    )
    .0
}

/// What an open ran into: see [`on_open`].
#[derive(Clone, Copy, Default)]
pub(crate) struct OpenVerdict {
    /// The event's `rule` field (0: nothing enforced).
    pub rule: u16,
    /// The identity walk's `Header::flags` bits; with `flags::BY_IDENTITY`,
    /// [`identity_tail`] names the match.
    pub found: u16,
    /// The open taints the process (see [`taints`]).
    pub taints: bool,
}

/// Open of `file` (its path: `len` bytes at `at` in the path scratch) with open
/// `flags` by a process whose Tracked flags are `who` (and `dir`: the file is a directory): kill when a kernel
/// rule says so, by path or by identity; else, unless the process is `tainted`
/// already, whether the open taints it.
#[inline(always)]
pub(crate) fn on_open(
    file: *const core::ffi::c_void,
    at: u32,
    len: u32,
    open_flags: u64,
    (who, dir): (u32, bool),
    tainted: bool,
) -> OpenVerdict {
    // An open that neither reads nor writes (`O_PATH`: a handle to stat, to reopen or
    // to exec through, each of which is judged itself) breaks no file rule; a `want`
    // of 0 would match every access. Nor does a directory's open for reading: it
    // lists names (`find ~`, `ls -R`), and each file it holds is judged at its own
    // open.
    let want = wanted(open_flags) & !(u8::from(dir) * access::READ);
    if want == 0 {
        return OpenVerdict::default();
    }
    let (rule, found) = file_pick(
        core_read::file_dentry(file),
        at,
        len,
        want,
        rule_flags::KILL,
        who,
        true,
    );
    let rule = match rule {
        Some(rule) => kill(rule),
        None => 0,
    };
    let taints = rule & enforced::KILLED == 0
        && !tainted
        && want & access::READ != 0
        && taints(file, at, len, open_flags, who);
    OpenVerdict {
        rule,
        found,
        taints,
    }
}

/// Whether an open of `file` (its path of `len` bytes at `at` in the path scratch) with open `flags`, which no kernel
/// rule stopped, taints the process: it reads a file a `secret = true` rule with a
/// `log` or `alert` action covers (a taint entry whose scope takes in `who`, not
/// excepted by its rule).
#[inline(always)]
fn taints(file: *const core::ffi::c_void, at: u32, len: u32, open_flags: u64, who: u32) -> bool {
    let want = wanted(open_flags) & access::READ;
    if want == 0 {
        return false;
    }
    file_pick_in(
        core_read::file_dentry(file),
        at,
        len,
        want,
        rule_flags::TAINT,
        who,
        path_kind::TAINT_OFFSET,
        false,
    )
    .0
    .is_some()
}

/// A connect or send to the Unix socket file whose path of `len` bytes is at `at`
/// in the path scratch (its entry `dentry`)
/// by a process whose Tracked flags are `who`: kill when a kernel file rule on
/// writes covers the file, by path or by identity (connecting to a socket file is
/// writing to it: the kernel asks for write permission on it). Returns the event's
/// `rule` field and the identity walk's `Header::flags` bits, as [`on_open`].
#[inline(always)]
pub(crate) fn on_unix(dentry: *const core::ffi::c_void, at: u32, len: u32, who: u32) -> (u16, u16) {
    // Where the BPF-LSM Unix hooks do not run, a `deny` rule acts as kill here (its
    // entries carry DENY when the other BPF-LSM hooks loaded).
    let verdict = if crate::hooks::lsm_hook_runs(guard_common::route::UNIX_SOCKET_HOOKS) {
        rule_flags::KILL
    } else {
        rule_flags::KILL | rule_flags::DENY
    };
    let (rule, found) = file_pick(dentry, at, len, access::WRITE, verdict, who, true);
    (rule.map_or(0, kill), found)
}

/// The `[sessions]` rule on `route` (a `guard_common::route` number) when the
/// policy has one with a `verdict` bit whose scope covers the process.
#[inline(always)]
pub(crate) fn route_pick(route: u8, verdict: u8, who: u32) -> Option<u16> {
    let r = route_rule(route);
    (r.flags & verdict != 0 && scope_ok(r.flags, r.access, who)).then_some(r.rule)
}

/// The `[sessions]` entry of `route`: every rule on a route has one (`access` 1),
/// with a KILL or DENY flag when the kernel enforces it; all zero when the policy
/// allows the route.
#[inline(always)]
pub(crate) fn route_rule(route: u8) -> RuleRef {
    let cfg = config();
    if !has(&cfg, path_kind::ROUTE) {
        return RuleRef::default();
    }
    let Some(dst) = slot_bytes(0) else {
        return RuleRef::default();
    };
    // SAFETY: this CPU's scratch slot, one byte past its header.
    unsafe { *dst = route };
    lookup_slot(0, cfg.generation as u8, path_kind::ROUTE, 1, true)
}

/// Kills the current process for rule `rule`; returns the event's `rule` field.
#[inline(always)]
pub(crate) fn kill_for(rule: u16) -> u16 {
    kill(rule)
}
