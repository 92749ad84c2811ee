//! One decision of the kernel's rules: the per-CPU check, the lookup keys, and the
//! `bpf_loop` steps that look up the path's kinds and pick the rule to enforce.

use super::*;

/// A lookup key built in place (260 bytes: too big for the stack), with slack so
/// that byte offsets masked with 255 past its data stay inside the map value.
#[repr(C)]
pub(super) struct KeySlot {
    pub(super) key: Key<PathData>,
    pub(super) _slack: [u8; 256],
}

/// Slots: 0 whole path, 1 file name, 2 reversed file name, 3 component runs,
/// 4 whole-path exceptions.
#[map]
pub(super) static KEYS: PerCpuArray<KeySlot> = PerCpuArray::with_max_entries(5, 0);

pub(super) const KEY_BYTES: u32 = 253;

/// Bytes of a path the component scan looks at (the scratch path is never longer).
pub(super) const SCAN_BYTES: u32 = 4096;

/// What a rule lookup found for one operation: whole path, file name, reversed file
/// name, a component run, and a whole-path exception.
pub(super) type Matches = [RuleRef; 5];

pub(super) const NONE: Matches = [RuleRef {
    rule: 0,
    access: 0,
    flags: 0,
    ports: [0; 8],
}; 5];

/// Sets the header of key `slot` and looks it up; its bytes are already in place.
/// No match is an all-zero `RuleRef` (no flags): an `Option` here lets LLVM read
/// the fields of `None` speculatively, which the verifier rejects as uninitialised.
#[inline(always)]
pub(super) fn lookup_slot(slot: u32, generation: u8, kind: u8, len: u32, exact: bool) -> RuleRef {
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
pub(super) fn slot_bytes(slot: u32) -> Option<*mut u8> {
    let k = KEYS.get_ptr_mut(slot)?;
    // SAFETY: pointer into this CPU's scratch slot, past the two header bytes.
    Some(unsafe { (*k).key.data.as_mut_ptr().add(2) })
}

/// Copies `len` bytes of `src` into key slot `slot` and looks it up. A string longer
/// than a key is looked up by its first bytes, as a prefix only.
#[inline(always)]
pub(super) fn lookup_bytes(
    slot: u32,
    generation: u8,
    kind: u8,
    src: *const u8,
    len: u32,
) -> RuleRef {
    let Some(dst) = slot_bytes(slot) else {
        return RuleRef::default();
    };
    let exact = len <= KEY_BYTES;
    let n = len.min(KEY_BYTES) & 255;
    // SAFETY: bounded copy into the slot from a kernel-side scratch buffer.
    unsafe { bpf_probe_read_kernel(dst.cast(), n, src.cast()) };
    lookup_slot(slot, generation, kind, n, exact)
}

/// The epochs what the checks found clear is remembered under: the rules' (user
/// space moves it at every policy load and identity refresh, before and after; 0
/// before the first), as read before the check read the rules ([`note_rules`]), and
/// the file system's shape's entry `tree` as it is now (`TREE_DIRS` or `TREE_MOUNTS`,
/// `repeat::tree_change`, `repeat::mounts_change`). `None`: nothing is remembered.
#[inline(always)]
pub(super) fn clear_epoch(tree: u32) -> Option<u64> {
    // SAFETY: this CPU's key scratch.
    let rules = unsafe { (*PATH_KEY.get_ptr_mut(0)?).rules };
    if rules == 0 {
        return None;
    }
    let tree = *TREE_EPOCH.get(tree)?;
    Some(rules << 32 | (tree & 0xffff_ffff))
}

/// Notes the rules' epoch before a check reads the rules (see [`clear_epoch`]); a
/// check on another path than the last (`again` false) does not reuse its key.
#[inline(always)]
pub(super) fn note_rules(again: bool) {
    if let (Some(s), Some(rules)) = (PATH_KEY.get_ptr_mut(0), OPEN_EPOCH.get(epoch::RULES)) {
        // SAFETY: this CPU's key scratch.
        unsafe {
            (*s).rules = *rules;
            if !again {
                (*s).built = 0;
            }
        }
    }
}

/// Notes the mounts' epoch before a walk that gives a path for a check: a path is
/// remembered as clear under the mounts it was walked through (see [`path_clear`]).
#[inline(always)]
pub(crate) fn before_walk() {
    if let (Some(s), Some(mounts)) = (PATH_KEY.get_ptr_mut(0), TREE_EPOCH.get(TREE_MOUNTS)) {
        // SAFETY: this CPU's key scratch.
        unsafe { (*s).mounts = *mounts };
    }
}

/// Whether the check's path is known to match no entry of the kinds this check
/// looks up (`PATH_CLEAR`): a pure function of the path, the file's name (the path's
/// last component, but at a mount's root, hence the mounts' epoch) and the rules.
/// `again`: the same path as the check before it on this CPU (an open's taint check
/// after its kill check), whose key and value are reused. When not known, the key
/// and the epoch are left for [`remember_path`].
#[inline(always)]
pub(super) fn path_clear(c: *mut Check, again: bool) -> bool {
    // SAFETY: this CPU's check, filled in by `begin`.
    let (at, len, base, want) = unsafe { ((*c).scratch_at, (*c).len, (*c).base, (*c).want) };
    let Some(s) = PATH_KEY.get_ptr_mut(0) else {
        return false;
    };
    let Some(now) = clear_epoch(TREE_MOUNTS) else {
        return false;
    };
    // SAFETY: this CPU's key scratch.
    if !again || unsafe { (*s).built } == 0 {
        // SAFETY: as above.
        unsafe { (*s).built = 0 };
        if at == NOT_IN_SCRATCH || len > PATH_KEY_BYTES as u32 {
            return false;
        }
        let Some(scratch) = PATH_SCRATCH.get_ptr(0) else {
            return false;
        };
        // SAFETY: this CPU's key scratch; the copy is bounded by the key's bytes and
        // reads this CPU's path scratch.
        unsafe {
            (*s).key.len = u64::from(len);
            for w in (*s).key.bytes.iter_mut() {
                *w = 0;
            }
            let src = (*scratch)
                .bytes
                .as_ptr()
                .wrapping_add((at & PATH_MASK) as usize);
            // Read back through memory: the verifier needs the bound on the register.
            let n = core::hint::black_box(len);
            if n > PATH_KEY_BYTES as u32 {
                return false;
            }
            bpf_probe_read_kernel((*s).key.bytes.as_mut_ptr().cast(), n, src.cast());
            (*s).seen = PATH_CLEAR.get(&(*s).key).copied().unwrap_or(PathClear {
                epoch: 0,
                checks: 0,
            });
            (*s).built = 1;
        }
    }
    let check =
        1u64 << ((u32::from(base != 0) * 2 + u32::from(want & u32::from(access::WRITE) != 0)) & 3);
    // SAFETY: as above.
    let (seen, walked) = unsafe { ((*s).seen, (*s).mounts) };
    if seen.epoch == now && seen.checks & check != 0 {
        return true;
    }
    // Remembered under the mounts the path was walked through, not today's: a
    // mount between the walk and now leaves it stale at once. `mounts` is this CPU's
    // last reading ([`before_walk`]); where a walk did not take one (the BPF-LSM
    // path hooks), it is an older reading, and an older epoch is only staler: the
    // entry can then match only if no mount changed since, before that walk too.
    // SAFETY: this CPU's check.
    unsafe {
        (*c).path_epoch = (now & !0xffff_ffff) | (walked & 0xffff_ffff);
        (*c).path_check = check;
    }
    false
}

/// Remembers that the check's path matched nothing (see [`path_clear`]), under the
/// epochs read before its lookups: a change of the rules or the mounts since makes
/// it stale.
#[inline(always)]
pub(super) fn remember_path(c: *mut Check) {
    // SAFETY: this CPU's check.
    let (now, check) = unsafe { ((*c).path_epoch, (*c).path_check) };
    let Some(s) = PATH_KEY.get_ptr_mut(0) else {
        return;
    };
    if now == 0 {
        return;
    }
    // SAFETY: this CPU's key scratch, still the check's path (nothing else writes it).
    let seen = unsafe { (*s).seen };
    let checks = if seen.epoch == now {
        seen.checks | check
    } else {
        check
    };
    let clear = PathClear { epoch: now, checks };
    // SAFETY: as above.
    unsafe {
        (*s).seen = clear;
        let _ = PATH_CLEAR.insert(&(*s).key, clear, 0);
    }
}

/// The next stretch of the checked path, from the scan's position: up to 8 bytes
/// at a time from the path scratch, read by a plain load, up to and including the
/// first `/`, where the rest of the path is looked up among the component runs
/// (stored as prefixes `/a/b/`). A path of `n` bytes and `k` components takes about
/// `n / 8 + k` steps: each step is a call and a return, which is most of its cost on
/// a CPU whose every return goes through a mitigation thunk. Runs under `bpf_loop`,
/// so the verifier checks it once, whatever the path's length; it stops at the first
/// match, which it leaves in the check's component slot.
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn scan_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
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
pub(super) struct Check {
    /// Address of the path (kept as a number: a map value holds no pointer type).
    pub(super) path: u64,
    pub(super) len: u32,
    /// Offset of the path in this CPU's path scratch, where it lies there (it
    /// always does today), else [`NOT_IN_SCRATCH`].
    pub(super) scratch_at: u32,
    /// Where the component scan goes on from.
    pub(super) scan_pos: u32,
    pub(super) kinds: u32,
    pub(super) generation: u32,
    pub(super) name_len: u32,
    pub(super) want: u32,
    pub(super) verdict: u32,
    /// The process's Tracked flags (root bit, role).
    pub(super) is_root: u32,
    /// The rule picked, plus one; 0 for none.
    pub(super) picked: u32,
    /// The match `pick` took it from (an index into `matches`).
    pub(super) picked_at: u32,
    /// Added to the file kinds looked up: 0 for kill and deny entries,
    /// `path_kind::TAINT_OFFSET` for taint entries.
    pub(super) base: u32,
    pub(super) matches: Matches,
    /// The entry whose name [`name_step`] looks up.
    pub(super) dentry: u64,
    /// Identity walk: the dentry to look at next (0 once the root was passed).
    pub(super) ident_d: u64,
    /// `flags::BY_IDENTITY` when `tail` holds a match.
    pub(super) ident_flags: u32,
    /// An exception's rule plus one, found by identity on the file itself.
    pub(super) ident_except: u32,
    /// Some entry was met above the file itself (a directory's rule or exception).
    pub(super) ident_above: u32,
    /// The file's directory, when the walk went on past it for want of an entry in
    /// `IDENT_CLEAR`: its key there (the device and inode), and the epochs read
    /// before the walk (0: nothing to remember).
    pub(super) dir_dev: u32,
    pub(super) dir_ino: u64,
    pub(super) dir_epoch: u64,
    /// The epochs to remember the path under, when it was not known clear (0: not
    /// to be remembered), and the check's bit ([`path_clear`]).
    pub(super) path_epoch: u64,
    pub(super) path_check: u64,
    pub(super) tail: IdentityTail,
}

#[map]
pub(super) static CHECKS: PerCpuArray<Check> = PerCpuArray::with_max_entries(1, 0);

pub(super) const NOT_IN_SCRATCH: u32 = u32::MAX;

/// Offset of `path[..len]` in this CPU's path scratch, or [`NOT_IN_SCRATCH`].
#[inline(always)]
pub(super) fn scratch_offset(path: *const u8, len: u32) -> u32 {
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
pub(super) fn begin(
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
        (*c).ident_above = 0;
        (*c).dir_epoch = 0;
        (*c).path_epoch = 0;
    }
    Some(c)
}

/// The rule to enforce among the check's matches: one with the verdict whose
/// scope and access apply, unless an exception of the same rule matched too.
#[inline(always)]
pub(super) fn pick(c: *mut Check) -> Option<u16> {
    each!(5, pick_step);
    // SAFETY: this CPU's check.
    let picked = unsafe { (*c).picked };
    u16::try_from(picked).ok()?.checked_sub(1)
}

/// Looks up kind `index` of a file check (0 whole path, 1 name, 2 reversed name,
/// 4 whole-path exceptions; 3, the component runs, is [`scan_step`]'s) where the
/// rule set has that kind.
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn lookup_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
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
        // The component runs: `scan_step`'s loop, run after this one by the caller
        // (not from here: a loop in this callback would put a fourth frame on the
        // call chain, and Linux 6.1 allows the chain 512 bytes).
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
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn name_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
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
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn pick_step(index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
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
pub(super) fn enforces(c: *mut Check, r: RuleRef) -> bool {
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
