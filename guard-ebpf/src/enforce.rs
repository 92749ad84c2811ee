//! Enforcement the kernel decides itself: kill at exec, kill at open, refuse a
//! connect or send. User space compiles the policy's enforceable rules into these
//! maps; everything else about the policy (logging, alerts, globs the kernel cannot
//! express, argv conditions) is decided in user space.

use aya_ebpf::{
    helpers::generated::{
        bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user_str,
        bpf_send_signal,
    },
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
};
use guard_common::{
    AF_INET, AF_INET6, Config, IDENTITY_DEPTH, IdentityTail, NetData, PathData, RuleRef, counter,
    flags,
    rules::{
        IDENTITY_UNKNOWN_MAX, INODE_RULES_MAX, InodeKey, access, enforced, inode_kind, path_kind,
        rule_flags,
    },
};

use crate::{
    core_read,
    maps::{PATH_BUF, PATH_SCRATCH},
};

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Path and file-name rules (see `guard_common::rules::PathData`).
#[map]
pub static PATH_RULES: LpmTrie<PathData, RuleRef> = LpmTrie::with_max_entries(16384, 0);

/// Network rules by destination prefix.
#[map]
pub static NET_RULES: LpmTrie<NetData, RuleRef> = LpmTrie::with_max_entries(8192, 0);

/// The `[taint]` allowlist of tainted processes' egress, when the policy denies it
/// (see `guard_common::rules::NetData`).
#[map]
pub static TAINT_NET: LpmTrie<NetData, RuleRef> = LpmTrie::with_max_entries(4096, 0);

/// File rules on concrete files and directories by identity (see
/// `guard_common::rules::InodeKey`): two generations of each kind's entries.
#[map]
pub static INODE_RULES: HashMap<InodeKey, RuleRef> = HashMap::with_max_entries(INODE_RULES_MAX, 0);

/// Entries of `INODE_RULES` by generation: 0 for the generation in force means no
/// identity walk at all.
#[map]
pub static INODE_COUNT: Array<u32> = Array::with_max_entries(2, 0);

/// An open the BPF-LSM `file_open` hook refused by identity, by thread id, for the
/// open's exit to report (the refused open has no file to walk there). An LRU: an
/// entry left by an open that no syscall exit sees (io_uring) must not fill it.
#[map]
pub static IDENT_DENIED: LruHashMap<u32, IdentityTail> = LruHashMap::with_max_entries(4096, 0);

/// A lookup key built in place (260 bytes: too big for the stack), with slack so
/// that byte offsets masked with 255 past its data stay inside the map value.
#[repr(C)]
struct KeySlot {
    key: Key<PathData>,
    _slack: [u8; 256],
}

/// Slots: 0 whole path, 1 file name, 2 reversed file name, 3 component runs,
/// 4 whole-path exceptions.
#[map]
static KEYS: PerCpuArray<KeySlot> = PerCpuArray::with_max_entries(5, 0);

const KEY_BYTES: u32 = 253;
const SIGKILL: u32 = 9;
/// Bytes of a path the component scan looks at (the scratch path is never longer).
const SCAN_BYTES: u32 = 4096;

/// What a rule lookup found for one operation: whole path, file name, reversed file
/// name, a component run, and a whole-path exception.
pub type Matches = [RuleRef; 5];
const NONE: Matches = [RuleRef {
    rule: 0,
    access: 0,
    flags: 0,
    ports: [0; 8],
}; 5];

#[inline(always)]
pub fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

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

/// Sets the header of key `slot` and looks it up; its bytes are already in place.
/// No match is an all-zero `RuleRef` (no flags): an `Option` here lets LLVM read
/// the fields of `None` speculatively, which the verifier rejects as uninitialised.
#[inline(always)]
fn lookup_slot(slot: u32, generation: u8, kind: u8, len: u32, exact: bool) -> RuleRef {
    let Some(slot) = KEYS.get_ptr_mut(slot) else {
        return RuleRef::default();
    };
    // SAFETY: this CPU's scratch slot.
    let k = unsafe { &raw mut (*slot).key };
    let len = len.min(KEY_BYTES);
    // SAFETY: this CPU's scratch slot; indexes are below 256.
    unsafe {
        (*k).data[0] = generation;
        (*k).data[1] = kind;
        let mut bits = (2 + len) * 8;
        if exact {
            (*k).data[((2 + len) & 255) as usize] = 0;
            bits += 8;
        }
        (*k).prefix_len = bits;
        PATH_RULES.get(&*k).copied().unwrap_or_default()
    }
}

#[inline(always)]
fn slot_bytes(slot: u32) -> Option<*mut u8> {
    let k = KEYS.get_ptr_mut(slot)?;
    // SAFETY: pointer into this CPU's scratch slot, past the two header bytes.
    Some(unsafe { (*k).key.data.as_mut_ptr().add(2) })
}

/// Copies `len` bytes of `src` into key slot `slot` and looks it up. A string longer
/// than a key is looked up by its first bytes, as a prefix only.
#[inline(always)]
fn lookup_bytes(slot: u32, generation: u8, kind: u8, src: *const u8, len: u32) -> RuleRef {
    let Some(dst) = slot_bytes(slot) else {
        return RuleRef::default();
    };
    let exact = len <= KEY_BYTES;
    let n = len.min(KEY_BYTES) & 255;
    // SAFETY: bounded copy into the slot from a kernel-side scratch buffer.
    unsafe { bpf_probe_read_kernel(dst.cast(), n, src.cast()) };
    lookup_slot(slot, generation, kind, n, exact)
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
    if open_flags & 0o10000000 == 0 && (mode == 0 || mode == 2) {
        want |= access::READ;
    }
    if mode == 1 || mode == 2 || open_flags & (0o100 | 0o1000) != 0 {
        want |= access::WRITE;
    }
    want
}

/// The next stretch of the checked path, from the scan's position: up to 8 bytes
/// at a time from the path scratch, read by a plain load, up to and including the
/// first `/`, where the rest of the path is looked up among the component runs
/// (stored as prefixes `/a/b/`). A path of `n` bytes and `k` components takes about
/// `n / 8 + k` steps: each step is a call and a return, which is most of its cost on
/// a CPU whose every return goes through a mitigation thunk. Runs under `bpf_loop`,
/// so the verifier checks it once, whatever the path's length; it stops at the first
/// match, which it leaves in the check's component slot.
#[inline(never)]
extern "C" fn scan_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let (path, len, generation, base, at, pos) = unsafe {
        (
            (*c).path as *const u8,
            (*c).len,
            (*c).generation as u8,
            (*c).base as u8,
            (*c).scratch_at,
            (*c).scan_pos,
        )
    };
    if pos >= len {
        return 1;
    }
    let mut word = 0u64;
    let mut valid = 1u32;
    let idx = at.wrapping_add(pos) as usize;
    if at != NOT_IN_SCRATCH && idx <= PATH_BUF - 8 {
        let Some(scratch) = PATH_SCRATCH.get_ptr(0) else {
            return 1;
        };
        // SAFETY: idx + 8 <= PATH_BUF: inside this CPU's path scratch.
        word = unsafe {
            core::ptr::read_unaligned(
                (*scratch)
                    .bytes
                    .as_ptr()
                    .add(idx & (PATH_BUF - 1))
                    .cast::<u64>(),
            )
        };
        valid = (len - pos).min(8);
    } else {
        // Elsewhere, a byte at a time by the helper, which tolerates any address.
        // SAFETY: one byte into a local.
        unsafe {
            bpf_probe_read_kernel(
                (&raw mut word).cast(),
                1,
                path.wrapping_add(pos as usize).cast(),
            )
        };
    }
    let mut slash = 8u32;
    for j in 0..8u32 {
        if j < valid && (word >> (j * 8)) as u8 == b'/' {
            slash = j;
            break;
        }
    }
    if slash >= valid {
        // SAFETY: as above.
        unsafe { (*c).scan_pos = pos + valid };
        return 0;
    }
    let i = pos + slash;
    // SAFETY: as above.
    unsafe { (*c).scan_pos = i + 1 };
    let r = lookup_bytes(
        3,
        generation,
        path_kind::COMPONENTS.wrapping_add(base),
        path.wrapping_add(i as usize),
        len - i,
    );
    if r.flags == 0 {
        return 0;
    }
    // SAFETY: as above.
    unsafe { (*c).matches[3] = r };
    1
}

/// One decision: the operation's path and name, what it asks for, the matches
/// found and the rule picked. It lives in a per-CPU map, not on the stack: the
/// `bpf_loop` callbacks below find it there (their frames and the programs' own
/// must fit the 512 bytes of stack a call chain may use).
///
/// Why callbacks: every lookup is conditional (kinds the rule set has) and every
/// match is judged on scope, access and exceptions. Inlined, the verifier walks each
/// combination of those outcomes apart; Linux 6.1 then needs more than a million
/// instructions for a hook that checks two paths (see docs/kernels.md). A callback
/// body is checked once, whatever the iteration.
#[repr(C)]
struct Check {
    /// Address of the path (kept as a number: a map value holds no pointer type).
    path: u64,
    len: u32,
    /// Offset of the path in this CPU's path scratch, where it lies there (it
    /// always does today), else [`NOT_IN_SCRATCH`].
    scratch_at: u32,
    /// Where the component scan goes on from.
    scan_pos: u32,
    kinds: u32,
    generation: u32,
    name_len: u32,
    want: u32,
    verdict: u32,
    /// The process's Tracked flags (root bit, role).
    is_root: u32,
    /// The rule picked, plus one; 0 for none.
    picked: u32,
    /// The match `pick` took it from (an index into `matches`).
    picked_at: u32,
    /// Added to the file kinds looked up: 0 for kill and deny entries,
    /// `path_kind::TAINT_OFFSET` for taint entries.
    base: u32,
    matches: Matches,
    /// The entry whose name [`name_step`] looks up.
    dentry: u64,
    /// Identity walk: the dentry to look at next (0 once the root was passed).
    ident_d: u64,
    /// `flags::BY_IDENTITY` when `tail` holds a match.
    ident_flags: u32,
    /// An exception's rule plus one, found by identity on the file itself.
    ident_except: u32,
    tail: IdentityTail,
}

#[map]
static CHECKS: PerCpuArray<Check> = PerCpuArray::with_max_entries(1, 0);

const NOT_IN_SCRATCH: u32 = u32::MAX;

/// Offset of `path[..len]` in this CPU's path scratch, or [`NOT_IN_SCRATCH`].
#[inline(always)]
fn scratch_offset(path: *const u8, len: u32) -> u32 {
    let Some(scratch) = PATH_SCRATCH.get_ptr(0) else {
        return NOT_IN_SCRATCH;
    };
    // Compared as numbers: the pointers are never dereferenced here.
    let at = (path as u64).wrapping_sub(scratch as u64);
    if at < PATH_BUF as u64 && at + u64::from(len) <= PATH_BUF as u64 {
        at as u32
    } else {
        NOT_IN_SCRATCH
    }
}

/// This CPU's check, reset for a new decision.
#[inline(always)]
fn begin(
    path: *const u8,
    len: u32,
    cfg: &Config,
    want: u8,
    verdict: u8,
    is_root: u32,
) -> Option<*mut Check> {
    let c = CHECKS.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch; programs on one CPU never interleave a check.
    unsafe {
        (*c).path = path as u64;
        (*c).len = len.min(SCAN_BYTES);
        (*c).scratch_at = scratch_offset(path, (*c).len);
        (*c).kinds = cfg.path_kinds;
        (*c).generation = cfg.generation;
        (*c).name_len = 0;
        (*c).want = u32::from(want);
        (*c).verdict = u32::from(verdict);
        (*c).is_root = is_root;
        (*c).picked = 0;
        (*c).picked_at = 0;
        (*c).base = 0;
        (*c).matches = NONE;
        (*c).dentry = 0;
        (*c).ident_d = 0;
        (*c).ident_flags = 0;
        (*c).ident_except = 0;
    }
    Some(c)
}

/// Runs `step` under `bpf_loop` for `n` iterations, on this CPU's check.
#[inline(always)]
fn each(n: u32, step: extern "C" fn(u32, *mut core::ffi::c_void) -> i64) {
    // SAFETY: the callbacks find their state in CHECKS; no context is passed.
    unsafe { bpf_loop(n, step as *mut core::ffi::c_void, core::ptr::null_mut(), 0) };
}

/// The rule to enforce among the check's matches: one with the verdict whose
/// scope and access apply, unless an exception of the same rule matched too.
#[inline(always)]
fn pick(c: *mut Check) -> Option<u16> {
    each(5, pick_step);
    // SAFETY: this CPU's check.
    let picked = unsafe { (*c).picked };
    u16::try_from(picked).ok()?.checked_sub(1)
}

/// Looks up kind `index` of a file check (0 whole path, 1 name, 2 reversed name,
/// 3 component runs, 4 whole-path exceptions) where the rule set has that kind.
#[inline(never)]
extern "C" fn lookup_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let (path, len, kinds, generation, name_len, base, want) = unsafe {
        (
            (*c).path as *const u8,
            (*c).len,
            (*c).kinds,
            (*c).generation as u8,
            (*c).name_len,
            (*c).base as u8 & 15,
            (*c).want,
        )
    };
    let i = index & 7;
    let has = |kind: u8| kinds & (1 << (kind & 31)) != 0;
    if i == 3 {
        if has(path_kind::COMPONENTS.wrapping_add(base)) {
            // The scan leaves its match in matches[3] itself.
            // SAFETY: as above.
            unsafe { (*c).scan_pos = 0 };
            each(SCAN_BYTES, scan_step);
        }
        return 0;
    }
    // One lookup for every step, not one inlined per kind: the verifier then walks
    // the lookup once per entry into this callback instead of once per kind.
    // An open that only reads looks whole paths up among the rules on reads
    // (`path_kind::FILE_READ`, kill and deny entries only), so a longer entry of a
    // rule on writes does not hide them; an open that writes, and an exec, among
    // every rule's.
    let reads_only = base == 0 && want & u32::from(access::WRITE) == 0 && want != 0;
    let kind = match i {
        0 if reads_only => path_kind::FILE_READ,
        0 => path_kind::FILE,
        1 => path_kind::FILE_NAME,
        2 => path_kind::FILE_NAME_REV,
        _ => path_kind::FILE_EXCEPT,
    }
    .wrapping_add(base);
    let r = if !has(kind) {
        RuleRef::default()
    } else if i == 1 || i == 2 {
        // The name and its reverse are in their slots already (`name_step`).
        lookup_slot(i, generation, kind, name_len, true)
    } else {
        lookup_bytes(i, generation, kind, path, len)
    };
    // SAFETY: as above.
    if let Some(m) = unsafe { (*c).matches.get_mut(i as usize) } {
        *m = r;
    }
    i64::from(i >= 4)
}

/// The file name of the check's entry and its reverse, into key slots 1 and 2; its
/// length into `name_len`. A callback, so that the name's length reaches the caller
/// as a number read from memory: inlined, each way the length was clamped is another
/// state for the verifier to carry through every lookup after it.
#[inline(never)]
extern "C" fn name_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(c), Some(name), Some(rev)) = (CHECKS.get_ptr_mut(0), slot_bytes(1), slot_bytes(2))
    else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let dentry = unsafe { (*c).dentry } as *const core::ffi::c_void;
    let name_len = core_read::dentry_name(dentry, name, KEY_BYTES);
    core_read::reverse(rev, name, name_len);
    // SAFETY: as above.
    unsafe { (*c).name_len = name_len };
    1
}

/// Judges match `index`: the first one to enforce ends the loop with `picked` set.
#[inline(never)]
extern "C" fn pick_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    let i = (index & 7) as usize;
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let Some(r) = (unsafe { (*c).matches.get(i) }).copied() else {
        return 1;
    };
    if !enforces(c, r) {
        return 0;
    }
    // SAFETY: as above.
    unsafe {
        (*c).picked = u32::from(r.rule) + 1;
        (*c).picked_at = i as u32;
    }
    1
}

/// Whether entry `r` enforces the check's verdict on this process and access, and
/// no exception of its rule matched the path.
#[inline(always)]
fn enforces(c: *mut Check, r: RuleRef) -> bool {
    // SAFETY: this CPU's check, filled in by the caller.
    let (want, verdict, who) = unsafe { ((*c).want as u8, (*c).verdict as u8, (*c).is_root) };
    let applies = r.flags & verdict != 0
        && r.flags & rule_flags::EXCEPT == 0
        && scope_ok(r.flags, r.access, who)
        && (want == 0 || r.access & want != 0);
    if !applies {
        return false;
    }
    // Arithmetic, not comparisons: BPF has no set-on-condition, so each `==` or
    // `&&` here would be a branch, and the verifier would walk every combination
    // of the five matches (a tenth of the open exit's verification on Linux 6.1).
    let mut excepted = 0u32;
    // SAFETY: as above.
    for e in unsafe { (*c).matches.iter() } {
        let is_except = u32::from(e.flags & rule_flags::EXCEPT) / u32::from(rule_flags::EXCEPT);
        // 1 when the rules are the same: (0 - 1) has bit 31 set, (1..=65535) - 1 not.
        let same = (u32::from(e.rule ^ r.rule).wrapping_sub(1) >> 31) & 1;
        excepted |= is_except & same;
    }
    excepted == 0
}

/// Entries of `INODE_RULES` in force.
#[inline(always)]
fn identity_count(cfg: &Config) -> u32 {
    INODE_COUNT.get(cfg.generation & 1).copied().unwrap_or(0)
}

/// One level of the identity walk: level 0 is the opened file (looked up among
/// the rules on concrete files), every level above a directory (looked up among
/// the rules on concrete directories). Stops at the first entry that enforces, or
/// at the root of the file system; the first entry met is reported in any case.
#[inline(never)]
extern "C" fn ident_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let (d, generation) = unsafe { ((*c).ident_d as *const core::ffi::c_void, (*c).generation) };
    if d.is_null() {
        return 1;
    }
    let (dev, ino) = core_read::dentry_ident(d);
    let kind = if index == 0 {
        inode_kind::FILE
    } else {
        inode_kind::TREE
    };
    let key = InodeKey::new(generation as u8, kind, dev, ino);
    // SAFETY: read-only copy of the map value.
    let hit = if ino != 0 {
        unsafe { INODE_RULES.get(key) }.copied()
    } else {
        None
    };
    if let Some(r) = hit {
        if r.flags & rule_flags::EXCEPT != 0 {
            // SAFETY: as above.
            unsafe { (*c).ident_except = u32::from(r.rule) + 1 };
        } else {
            // SAFETY: as above.
            let (first, except) = unsafe {
                (
                    (*c).ident_flags & u32::from(flags::BY_IDENTITY) == 0,
                    (*c).ident_except,
                )
            };
            let enforce = enforces(c, r) && except != u32::from(r.rule) + 1;
            if first || enforce {
                // SAFETY: as above.
                unsafe {
                    (*c).tail = IdentityTail {
                        dev,
                        up: index as u16,
                        rule: r.rule,
                        ino,
                    };
                    (*c).ident_flags |= u32::from(flags::BY_IDENTITY);
                }
            }
            if enforce {
                // SAFETY: as above.
                unsafe { (*c).picked = u32::from(r.rule) + 1 };
                return 1;
            }
        }
    }
    // SAFETY: as above.
    unsafe { (*c).ident_d = core_read::dentry_up(d) as u64 };
    0
}

/// The identity walk from `dentry` up; leaves its result in the check.
#[inline(always)]
fn identity(c: *mut Check, dentry: *const core::ffi::c_void) {
    // SAFETY: this CPU's check.
    unsafe { (*c).ident_d = dentry as u64 };
    each(IDENTITY_DEPTH as u32 + 1, ident_step);
    // SAFETY: as above.
    let (left, picked, found) = unsafe {
        (
            (*c).ident_d,
            (*c).picked,
            (*c).ident_flags & u32::from(flags::BY_IDENTITY),
        )
    };
    if found != 0 {
        crate::maps::count(counter::IDENTITY_HITS);
    }
    if picked != 0 {
        return;
    }
    // The walk ran out of levels before the root: not known to be outside every
    // protected directory. Or no entry placed a file with several names while
    // some protected directory's files did not all fit in the set: it may be a
    // hard link to one of them. Either way, fail closed: the first rule on a
    // concrete directory that would enforce on this check decides.
    let unplaced = left != 0 || (found == 0 && linked_unplaced(c, dentry));
    if unplaced {
        // SAFETY: as above.
        unsafe { (*c).ident_flags |= u32::from(flags::IDENTITY_UNKNOWN) };
        crate::maps::count(counter::IDENTITY_UNKNOWN);
        each(IDENTITY_UNKNOWN_MAX as u32, unknown_step);
    }
}

/// Whether `dentry` is a regular file with several names while the generation in
/// force has its `MEMBERS_OVER` entry (the files of a protected directory did not
/// all fit in the identity set).
#[inline(always)]
fn linked_unplaced(c: *mut Check, dentry: *const core::ffi::c_void) -> bool {
    // SAFETY: this CPU's check.
    let generation = unsafe { (*c).generation };
    let key = InodeKey::new(generation as u8, inode_kind::MEMBERS_OVER, 0, 0);
    // The map's answer first: it is almost always no, and then the inode is not read.
    // SAFETY: presence only.
    unsafe { INODE_RULES.get(key) }.is_some() && core_read::dentry_links(dentry) >= 2
}

/// Fail-closed entry `index` (`inode_kind::UNKNOWN`): the first that enforces on
/// the check ends the loop with `picked` set; the first missing one ends it too.
#[inline(never)]
extern "C" fn unknown_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let generation = unsafe { (*c).generation };
    let key = InodeKey::new(generation as u8, inode_kind::UNKNOWN, 0, u64::from(index));
    // SAFETY: read-only copy of the map value.
    let Some(r) = (unsafe { INODE_RULES.get(key) }).copied() else {
        return 1;
    };
    if !enforces(c, r) {
        return 0;
    }
    // SAFETY: as above. The refusal is for want of a place, not a match: the
    // record says `IDENTITY_UNKNOWN` alone.
    unsafe {
        (*c).picked = u32::from(r.rule) + 1;
        (*c).ident_flags &= !u32::from(flags::BY_IDENTITY);
    }
    1
}

/// What the last identity walk on this CPU found: its `Header::flags` bits and,
/// with `flags::BY_IDENTITY`, the match.
#[inline(always)]
pub fn identity_tail() -> IdentityTail {
    match CHECKS.get_ptr_mut(0) {
        // SAFETY: this CPU's check.
        Some(c) => unsafe { (*c).tail },
        None => IdentityTail::default(),
    }
}

/// The rule a file operation at `path[..len]`, on the entry named like `dentry`,
/// runs into: `want` accesses, `verdict` KILL or DENY.
/// With `by_identity`, when no path entry enforces, the entry and its directories
/// are looked up by identity (`INODE_RULES`); the second value is then the
/// `Header::flags` bits the walk found (`identity_tail` has the match).
#[inline(always)]
fn file_pick(
    dentry: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    want: u8,
    verdict: u8,
    is_root: u32,
    by_identity: bool,
) -> (Option<u16>, u16) {
    file_pick_in(dentry, path, len, want, verdict, is_root, 0, by_identity)
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
    path: *const u8,
    len: u32,
    want: u8,
    verdict: u8,
    is_root: u32,
    base: u8,
    by_identity: bool,
) -> (Option<u16>, u16) {
    let cfg = config();
    let file_kinds = ((1u32 << path_kind::FILE)
        | (1 << path_kind::FILE_NAME)
        | (1 << path_kind::FILE_NAME_REV)
        | (1 << path_kind::COMPONENTS)
        | (1 << path_kind::FILE_READ))
        << base;
    let by_path = cfg.path_kinds & file_kinds != 0;
    let by_identity = by_identity && identity_count(&cfg) != 0;
    if !by_path && !by_identity {
        return (None, 0);
    }
    let Some(c) = begin(path, len, &cfg, want, verdict, is_root) else {
        return (None, 0);
    };
    // SAFETY: this CPU's check.
    unsafe { (*c).base = u32::from(base) };
    if by_path {
        let names = ((1u32 << path_kind::FILE_NAME) | (1 << path_kind::FILE_NAME_REV)) << base;
        if cfg.path_kinds & names != 0 {
            // SAFETY: this CPU's check.
            unsafe { (*c).dentry = dentry as u64 };
            each(1, name_step);
        }
        each(5, lookup_step);
        // Almost always nothing matched: then there is nothing to judge (the judging
        // is five calls).
        // SAFETY: this CPU's check.
        let any = unsafe {
            let m = &(*c).matches;
            m[0].flags | m[1].flags | m[2].flags | m[3].flags | m[4].flags
        };
        if any != 0
            && let Some(rule) = pick(c)
        {
            return (Some(rule), 0);
        }
    }
    if !by_identity {
        return (None, 0);
    }
    identity(c, dentry);
    // SAFETY: this CPU's check.
    let (picked, found) = unsafe { ((*c).picked, (*c).ident_flags as u16) };
    let rule = u16::try_from(picked).ok().and_then(|p| p.checked_sub(1));
    (rule, found)
}

/// BPF-LSM `file_open`: whether a `deny` rule refuses this open.
#[inline(always)]
pub fn deny_open(
    file: *const core::ffi::c_void,
    path: *const u8,
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
    let (rule, found) = file_pick(dentry, path, len, want, rule_flags::DENY, is_root, true);
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
/// at `path[..len]` (the `path_*` hooks: create, mkdir, link, rename, unlink,
/// truncate, chmod, chown), or reaching the Unix socket bound to it
/// (`unix_stream_connect`, `unix_may_send`), by path and, `by_identity`, by the
/// entry's identity.
#[inline(always)]
pub fn deny_write(
    dentry: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    who: u32,
    by_identity: bool,
) -> Option<u16> {
    file_pick(
        dentry,
        path,
        len,
        access::WRITE,
        rule_flags::DENY,
        who,
        by_identity,
    )
    .0
}

/// BPF-LSM `bprm_check_security`: whether a `deny` rule refuses this exec.
#[inline(always)]
pub fn deny_exec(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    comm: &[u8; 16],
    is_root: u32,
) -> Option<u16> {
    exec_pick(file, path, len, comm, rule_flags::DENY, is_root)
}

/// The rule an exec runs into. Matches: the resolved path, the name it was run as
/// (`comm`), and the resolved file's name (a symlink of another name must not get
/// past a name rule).
#[inline(always)]
fn exec_pick(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    comm: &[u8; 16],
    verdict: u8,
    is_root: u32,
) -> Option<u16> {
    let cfg = config();
    if cfg.path_kinds & ((1 << path_kind::EXEC) | (1 << path_kind::EXEC_NAME)) == 0 {
        return None;
    }
    let generation = cfg.generation as u8;
    // The name it was run as goes into key slot 1 by the string helper, whose count
    // (NUL included) is one unknown number to the verifier: a byte loop here would
    // fork the rest of the program into a path per possible length (the exec program
    // took 155,000 verified instructions that way, 0.6 s at every daemon start).
    let run_as = slot_bytes(1)?;
    // SAFETY: at most 16 bytes into this CPU's key slot, from the comm the caller holds.
    let copied = unsafe { bpf_probe_read_kernel_str(run_as.cast(), 16, comm.as_ptr().cast()) };
    let comm_len = (copied.max(1) - 1) as u32 & 15;
    let name = slot_bytes(2)?;
    // Names in exec rules are cut to 15 bytes, like comm; the shim makes the cut.
    let name_len = core_read::dentry_name(core_read::file_dentry(file), name, 15);
    let c = begin(path, len, &cfg, 0, verdict, is_root)?;
    // Each match goes straight into the check: held in registers until the check
    // exists, three of them spill 60 bytes of stack, and sched_process_exec has none
    // to spare on Linux 6.1 (512 bytes for the program and the memset it calls).
    // SAFETY: this CPU's check.
    unsafe {
        (*c).matches[0] = lookup_bytes(0, generation, path_kind::EXEC, path, len);
        (*c).matches[1] = lookup_slot(1, generation, path_kind::EXEC_NAME, comm_len, true);
        (*c).matches[2] = lookup_slot(2, generation, path_kind::EXEC_NAME, name_len, true);
    }
    exec_identity(c, &cfg, file);
    pick(c)
}

/// Match slot of the exec'd file's own identity (a slot no exec lookup uses).
const EXEC_IDENT: usize = 3;

/// Looks the exec'd `file` up by identity (`inode_kind::EXEC`) into the check's
/// match [`EXEC_IDENT`], while identity entries exist: a hard link or bind mount of
/// a program an exec rule names, run under another name, is that program.
#[inline(always)]
fn exec_identity(c: *mut Check, cfg: &Config, file: *const core::ffi::c_void) {
    if identity_count(cfg) == 0 {
        return;
    }
    // SAFETY: this CPU's check.
    unsafe { (*c).dentry = core_read::file_dentry(file) as u64 };
    each(1, exec_ident_step);
}

/// The body of [`exec_identity`], in a callback so that its key and calls cost
/// the exec programs no stack (Linux 6.1 leaves `sched_process_exec` none to spare).
#[inline(never)]
extern "C" fn exec_ident_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(c) = CHECKS.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's check, filled in by the caller before the loop.
    let (d, generation) = unsafe { ((*c).dentry as *const core::ffi::c_void, (*c).generation) };
    let (dev, ino) = core_read::dentry_ident(d);
    if ino == 0 {
        return 1;
    }
    let key = InodeKey::new(generation as u8, inode_kind::EXEC, dev, ino);
    // SAFETY: read-only copy of the map value; this CPU's check.
    unsafe {
        if let Some(r) = INODE_RULES.get(key).copied() {
            (*c).matches[EXEC_IDENT] = r;
        }
    }
    1
}

/// Whether the last exec check on this CPU (`on_exec`, `deny_exec`, `on_map`)
/// picked its rule by the file's identity, not by a path or a name.
#[inline(always)]
pub fn exec_by_identity() -> bool {
    match CHECKS.get_ptr_mut(0) {
        // SAFETY: this CPU's check.
        Some(c) => unsafe { (*c).picked != 0 && (*c).picked_at == EXEC_IDENT as u32 },
        None => false,
    }
}

/// What an open ran into: see [`on_open`].
#[derive(Clone, Copy, Default)]
pub struct OpenVerdict {
    /// The event's `rule` field (0: nothing enforced).
    pub rule: u16,
    /// The identity walk's `Header::flags` bits; with `flags::BY_IDENTITY`,
    /// [`identity_tail`] names the match.
    pub found: u16,
    /// The open taints the process (see [`taints`]).
    pub taints: bool,
}

/// Open of `file` (path in `path[..len]`) with open `flags` by a process whose
/// Tracked flags are `who` (and `dir`: the file is a directory): kill when a kernel
/// rule says so, by path or by identity; else, unless the process is `tainted`
/// already, whether the open taints it.
#[inline(always)]
pub fn on_open(
    file: *const core::ffi::c_void,
    path: *const u8,
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
        path,
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
        && taints(file, path, len, open_flags, who);
    OpenVerdict {
        rule,
        found,
        taints,
    }
}

/// Whether an open of `file` (at `path[..len]`) with open `flags`, which no kernel
/// rule stopped, taints the process: it reads a file a `secret = true` rule with a
/// `log` or `alert` action covers (a taint entry whose scope takes in `who`, not
/// excepted by its rule).
#[inline(always)]
fn taints(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    open_flags: u64,
    who: u32,
) -> bool {
    let want = wanted(open_flags) & access::READ;
    if want == 0 {
        return false;
    }
    file_pick_in(
        core_read::file_dentry(file),
        path,
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

/// A connect or send to the Unix socket file at `path[..len]` (its entry `dentry`)
/// by a process whose Tracked flags are `who`: kill when a kernel file rule on
/// writes covers the file, by path or by identity (connecting to a socket file is
/// writing to it: the kernel asks for write permission on it). Returns the event's
/// `rule` field and the identity walk's `Header::flags` bits, as [`on_open`].
#[inline(always)]
pub fn on_unix(
    dentry: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    who: u32,
) -> (u16, u16) {
    // Where the BPF-LSM Unix hooks do not run, a `deny` rule acts as kill here (its
    // entries carry DENY when the other BPF-LSM hooks loaded).
    let verdict = if crate::route::lsm_hook_runs(guard_common::route::UNIX_SOCKET_HOOKS) {
        rule_flags::KILL
    } else {
        rule_flags::KILL | rule_flags::DENY
    };
    let (rule, found) = file_pick(dentry, path, len, access::WRITE, verdict, who, true);
    (rule.map_or(0, kill), found)
}

/// Exec of the file at `path` (resolved) by a process now named `comm`.
#[inline(always)]
pub fn on_exec(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    comm: &[u8; 16],
    is_root: u32,
) -> u16 {
    match exec_pick(file, path, len, comm, rule_flags::KILL, is_root) {
        Some(rule) => kill(rule),
        None => 0,
    }
}

/// Bytes of an argument's end an applet's name is looked for in (a file name
/// longer than this names no applet of a rule).
const APPLET_TAIL: u32 = 64;

/// The argument at user address `at`: its length with its NUL (0: unreadable;
/// 256: too long to read whole), and its last [`APPLET_TAIL`] bytes reversed into
/// key slot 3: how many of them are its, and whether that is all of it.
#[inline(always)]
fn read_arg(at: u64) -> (u32, u32, bool) {
    let (Some(raw), Some(rev)) = (slot_bytes(4), slot_bytes(3)) else {
        return (0, 0, false);
    };
    // SAFETY: at most 256 bytes into this CPU's key slot 4 (its data and slack hold
    // 510); the source is the new image's memory, read with its helper.
    let got = unsafe { bpf_probe_read_user_str(raw.cast(), 256, at as *const core::ffi::c_void) };
    if got <= 1 {
        return (0, 0, false);
    }
    let got = (got as u32) & 511;
    let len = got - 1;
    // Every byte, whatever the length: no branch in the loop, so the verifier walks
    // it once (bytes past the argument's start are read, and never looked up).
    let mut i = 0u32;
    while i < APPLET_TAIL {
        // SAFETY: both indexes are masked inside the slots' 510 bytes.
        unsafe { *rev.add(i as usize) = *raw.add((len.wrapping_sub(1 + i) & 255) as usize) };
        i += 1;
    }
    let n = len.min(APPLET_TAIL);
    (got, n, n == len)
}

/// The `EXEC_NAME_REV` entry of the file name ending the argument [`read_arg`]
/// just reversed: an exec rule's, or a multi-call binary's marker (`access` 1).
#[inline(always)]
fn applet_entry(generation: u8, n: u32, whole: bool) -> RuleRef {
    lookup_slot(3, generation, path_kind::EXEC_NAME_REV, n, whole)
}

/// An exec of a multi-call binary (`busybox`, `toybox`: its file's name starts
/// with a `MULTICALL` entry) is also the applet it runs: the file name of its
/// `argv[0]`, or of its first argument when it was run by its own name or its
/// `argv[0]` names it (`busybox nc`). An exec rule that kills or denies that name
/// kills it here, before its first instruction (`deny` too: the BPF-LSM exec hook
/// saw only the binary). An argument too long to read whole (255 bytes or more),
/// or the binary named again (`busybox busybox nc`), cannot be named: while the
/// policy kills programs by name, such an exec is killed under
/// `Config::applet_fallback` (fail closed). Returns the event's `rule` field.
#[inline(never)]
pub fn on_applet(
    file: *const core::ffi::c_void,
    task: *const core_read::Task,
    comm: &[u8; 16],
    who: u32,
) -> u16 {
    let cfg = config();
    if !has(&cfg, path_kind::MULTICALL) {
        return 0;
    }
    let generation = cfg.generation as u8;
    let (Some(name), Some(run_as)) = (slot_bytes(2), slot_bytes(1)) else {
        return 0;
    };
    let name_len = core_read::dentry_name(core_read::file_dentry(file), name, 15);
    if lookup_slot(2, generation, path_kind::MULTICALL, name_len, true).access == 0 {
        return 0;
    }
    // SAFETY: at most 16 bytes into this CPU's key slot, from the comm the caller holds.
    let copied = unsafe { bpf_probe_read_kernel_str(run_as.cast(), 16, comm.as_ptr().cast()) };
    let comm_len = (copied.max(1) - 1) as u32 & 15;
    let by_own_name = lookup_slot(1, generation, path_kind::MULTICALL, comm_len, true).access != 0;
    let verdict = rule_flags::KILL | rule_flags::DENY;
    let enforces = |r: RuleRef| r.flags & verdict != 0 && scope_ok(r.flags, r.access, who);
    let (start, _) = core_read::arg_span(task);
    let (got, n, whole) = read_arg(start);
    if got == 0 {
        return 0;
    }
    if got < 256 {
        let r = applet_entry(generation, n, whole);
        if enforces(r) {
            return kill(r.rule);
        }
        if !by_own_name && r.access & 1 == 0 {
            return 0;
        }
        // The binary's own name: its first argument is the applet.
        let (got1, n1, whole1) = read_arg(start + u64::from(got));
        if got1 == 0 {
            return 0;
        }
        if got1 < 256 {
            let r1 = applet_entry(generation, n1, whole1);
            if enforces(r1) {
                return kill(r1.rule);
            }
            if r1.access & 1 == 0 {
                return 0;
            }
        }
    }
    // An argument too long to name, or the binary named again (`busybox busybox
    // nc` runs nc too): fail closed.
    match cfg.applet_fallback {
        0 => 0,
        rule => kill((rule - 1) as u16),
    }
}

/// The `[sessions]` rule on `route` (a `guard_common::route` number) when the
/// policy has one with a `verdict` bit whose scope covers the process.
#[inline(always)]
pub fn route_pick(route: u8, verdict: u8, who: u32) -> Option<u16> {
    let r = route_rule(route);
    (r.flags & verdict != 0 && scope_ok(r.flags, r.access, who)).then_some(r.rule)
}

/// The `[sessions]` entry of `route`: every rule on a route has one (`access` 1),
/// with a KILL or DENY flag when the kernel enforces it; all zero when the policy
/// allows the route.
#[inline(always)]
pub fn route_rule(route: u8) -> RuleRef {
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
pub fn kill_for(rule: u16) -> u16 {
    kill(rule)
}

/// A file mapped executable (`mmap` with `PROT_EXEC`): the exec rules that kill
/// or deny the program by path or by file name (not by `comm`: the mapping
/// process keeps its own name). Returns the event's `rule` field; the process is
/// killed before the mapping returns, so no instruction of the file runs.
#[inline(always)]
pub fn on_map(file: *const core::ffi::c_void, path: *const u8, len: u32, who: u32) -> u16 {
    let cfg = config();
    if cfg.path_kinds & ((1 << path_kind::EXEC) | (1 << path_kind::EXEC_NAME)) == 0 {
        return 0;
    }
    let generation = cfg.generation as u8;
    let whole = lookup_bytes(0, generation, path_kind::EXEC, path, len);
    let Some(name) = slot_bytes(2) else {
        return 0;
    };
    let name_len = core_read::dentry_name(core_read::file_dentry(file), name, 15);
    let by_file = lookup_slot(2, generation, path_kind::EXEC_NAME, name_len, true);
    let Some(c) = begin(path, len, &cfg, 0, rule_flags::KILL | rule_flags::DENY, who) else {
        return 0;
    };
    // SAFETY: this CPU's check.
    unsafe {
        (*c).matches[0] = whole;
        (*c).matches[2] = by_file;
    }
    exec_identity(c, &cfg, file);
    match pick(c) {
        Some(rule) => kill(rule),
        None => 0,
    }
}

/// The lookup key of a destination in the rule set of `generation`.
#[inline(always)]
fn net_key(generation: u8, family: u16, addr: &[u8; 16]) -> Key<NetData> {
    let mut data: NetData = [0; 18];
    data[0] = generation;
    let mapped =
        family == AF_INET6 && addr[..10] == [0; 10] && addr[10] == 0xff && addr[11] == 0xff;
    let bits = if family == AF_INET || mapped {
        data[1] = AF_INET as u8;
        let at = if mapped { 12 } else { 0 };
        data[2..6].copy_from_slice(&addr[at..at + 4]);
        (2 + 4) * 8
    } else {
        data[1] = AF_INET6 as u8;
        data[2..18].copy_from_slice(addr);
        (2 + 16) * 8
    };
    Key::new(bits, data)
}

/// Destination check for a connect or send of a tainted process, after the
/// policy's own network rules let it through: `Some(rule field)` means refuse (off
/// the `[taint]` allowlist, when the policy denies tainted egress).
#[inline(always)]
pub fn on_tainted_net(family: u16, addr: &[u8; 16], port: u16) -> Option<u16> {
    let cfg = config();
    let r = TAINT_NET.get(net_key(cfg.generation as u8, family, addr))?;
    if r.flags & rule_flags::ALLOW != 0 && (r.ports == [0; 8] || r.ports.contains(&port)) {
        return None;
    }
    Some(((r.rule + 1) & enforced::RULE_MASK) | enforced::DENIED)
}

/// Destination check for a connect or send. `Some(rule field)` means refuse.
#[inline(always)]
pub fn on_net(family: u16, addr: &[u8; 16], port: u16, is_root: u32) -> Option<u16> {
    let cfg = config();
    if let Some(r) = NET_RULES.get(net_key(cfg.generation as u8, family, addr)) {
        let any_port = r.ports == [0; 8];
        if (any_port || r.ports.contains(&port)) && scope_ok(r.flags, r.access, is_root) {
            if r.flags & rule_flags::DENY != 0 {
                return Some(((r.rule + 1) & enforced::RULE_MASK) | enforced::DENIED);
            }
            if r.flags & rule_flags::ALLOW != 0 {
                return None;
            }
        }
    }
    if cfg.net_default_deny != 0
        && scope_ok(
            cfg.net_default_flags as u8,
            (cfg.net_default_flags >> 8) as u8,
            is_root,
        )
    {
        return Some((cfg.net_default_deny as u16 & enforced::RULE_MASK) | enforced::DENIED);
    }
    None
}
