//! Execs: kill at exec by path, name or identity, busybox-style applets, and the
//! programs the dynamic loader maps.

use super::*;

/// BPF-LSM `bprm_check_security`: whether a `deny` rule refuses this exec.
#[inline(always)]
pub(crate) fn deny_exec(
    file: *const core::ffi::c_void,
    at: u32,
    len: u32,
    comm: &[u8; 16],
    is_root: u32,
) -> Option<u16> {
    exec_pick(file, at, len, comm, rule_flags::DENY, is_root)
}

/// `comm` as the two numbers a global function can take.
#[inline(always)]
fn comm_words(comm: &[u8; 16]) -> (u64, u64) {
    // SAFETY: two 8-byte reads of the 16 bytes.
    unsafe {
        (
            core::ptr::read_unaligned(comm.as_ptr().cast::<u64>()),
            core::ptr::read_unaligned(comm.as_ptr().add(8).cast::<u64>()),
        )
    }
}

/// The rule an exec runs into. Matches: the resolved path (`len` bytes at `at` in
/// this CPU's path scratch), the name it was run as (`comm`), and the resolved
/// file's name (a symlink of another name must not get past a name rule).
#[inline(always)]
pub(super) fn exec_pick(
    file: *const core::ffi::c_void,
    at: u32,
    len: u32,
    comm: &[u8; 16],
    verdict: u8,
    is_root: u32,
) -> Option<u16> {
    let (lo, hi) = comm_words(comm);
    let how = u64::from(len) << 40 | u64::from(verdict) << 32 | u64::from(is_root);
    let picked = guard_exec_check(file as u64, at, how, lo, hi);
    u16::try_from(picked).ok()?.checked_sub(1)
}

/// [`exec_pick`] in the five registers of a BPF call: `how` is the path's length
/// (bits 40-63), the verdict (32-39) and the process's Tracked flags (0-31);
/// `comm_lo`/`comm_hi` the name's 16 bytes. Returns the rule picked plus one (0:
/// none). Global, as `guard_file_check`: verified once per program, not once per
/// state the program reaches it in.
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn guard_exec_check(
    file: u64,
    at: u32,
    how: u64,
    comm_lo: u64,
    comm_hi: u64,
) -> i64 {
    let file = file as *const core::ffi::c_void;
    let cfg = config();
    if cfg.path_kinds & ((1 << path_kind::EXEC) | (1 << path_kind::EXEC_NAME)) == 0 {
        return 0;
    }
    let Some(scratch) = PATH_SCRATCH.get_ptr(0) else {
        return 0;
    };
    // SAFETY: only the address is taken; the lookups read the path in bounds.
    let path = unsafe { (*scratch).bytes.as_ptr() }.wrapping_add((at & PATH_MASK) as usize);
    // The length apart from the word it came in (`black_box`): LLVM would otherwise
    // test `how` against the lookups' bounds, and Linux 6.1's verifier cannot carry
    // such a test over to the length (see docs/kernels.md, "umin 253 > umax 14").
    let len = core::hint::black_box((how >> 40) as u32);
    let (verdict, is_root) = ((how >> 32) as u8, how as u32);
    let comm = [comm_lo, comm_hi];
    let generation = cfg.generation as u8;
    // The name it was run as goes into key slot 1 by the string helper, whose count
    // (NUL included) is one unknown number to the verifier: a byte loop here would
    // fork the rest of the program into a path per possible length (the exec program
    // took 155,000 verified instructions that way, 0.6 s at every daemon start).
    let Some(run_as) = slot_bytes(1) else {
        return 0;
    };
    // SAFETY: at most 16 bytes into this CPU's key slot, from the name on the stack.
    let copied = unsafe { bpf_probe_read_kernel_str(run_as.cast(), 16, comm.as_ptr().cast()) };
    let comm_len = (copied.max(1) - 1) as u32 & 15;
    let Some(name) = slot_bytes(2) else {
        return 0;
    };
    // Names in exec rules are cut to 15 bytes, like comm; the shim makes the cut.
    let name_len = core_read::dentry_name(core_read::file_dentry(file), name, 15);
    let Some(c) = begin(path, len, &cfg, 0, verdict, is_root) else {
        return 0;
    };
    // Each match goes straight into the check: held in registers until the check
    // exists, three of them spill 60 bytes of stack, which Linux 6.1's 512 bytes for
    // the whole call chain cannot spare.
    // SAFETY: this CPU's check.
    unsafe {
        (*c).matches[0] = lookup_bytes(0, generation, path_kind::EXEC, path, len);
        (*c).matches[1] = lookup_slot(1, generation, path_kind::EXEC_NAME, comm_len, true);
        (*c).matches[2] = lookup_slot(2, generation, path_kind::EXEC_NAME, name_len, true);
    }
    exec_identity(c, &cfg, file);
    pick(c).map_or(0, |rule| i64::from(rule) + 1)
}

/// Match slot of the exec'd file's own identity (a slot no exec lookup uses).
pub(super) const EXEC_IDENT: usize = 3;

/// Looks the exec'd `file` up by identity (`inode_kind::EXEC`) into the check's
/// match [`EXEC_IDENT`], while identity entries exist: a hard link or bind mount of
/// a program an exec rule names, run under another name, is that program.
#[inline(always)]
pub(super) fn exec_identity(c: *mut Check, cfg: &Config, file: *const core::ffi::c_void) {
    if identity_count(cfg) == 0 {
        return;
    }
    // SAFETY: this CPU's check.
    unsafe { (*c).dentry = core_read::file_dentry(file) as u64 };
    each!(1, exec_ident_step);
}

/// The body of [`exec_identity`], in a callback so that its key and calls cost
/// the exec programs no stack (Linux 6.1 leaves `sched_process_exec` none to spare).
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
pub(super) extern "C" fn exec_ident_step(_index: u32, _ctx: *mut core::ffi::c_void) -> i64 {
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
pub(crate) fn exec_by_identity() -> bool {
    match CHECKS.get_ptr_mut(0) {
        // SAFETY: this CPU's check.
        Some(c) => unsafe { (*c).picked != 0 && (*c).picked_at == EXEC_IDENT as u32 },
        None => false,
    }
}

/// Exec of the file whose resolved path is `len` bytes at `at` in the path scratch,
/// by a process now named `comm`.
#[inline(always)]
pub(crate) fn on_exec(
    file: *const core::ffi::c_void,
    at: u32,
    len: u32,
    comm: &[u8; 16],
    is_root: u32,
) -> u16 {
    match exec_pick(file, at, len, comm, rule_flags::KILL, is_root) {
        Some(rule) => kill(rule),
        None => 0,
    }
}

/// Bytes of an argument's end an applet's name is looked for in (a file name
/// longer than this names no applet of a rule).
pub(super) const APPLET_TAIL: u32 = 64;

/// The argument at user address `at`: its length with its NUL (0: unreadable;
/// 256: too long to read whole), and its last [`APPLET_TAIL`] bytes reversed into
/// key slot 3: how many of them are its, and whether that is all of it.
#[inline(always)]
pub(super) fn read_arg(at: u64) -> (u32, u32, bool) {
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
pub(super) fn applet_entry(generation: u8, n: u32, whole: bool) -> RuleRef {
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
#[inline(always)]
pub(crate) fn on_applet(
    file: *const core::ffi::c_void,
    task: *const core_read::Task,
    comm: &[u8; 16],
    who: u32,
) -> u16 {
    let (lo, hi) = comm_words(comm);
    guard_applet(file as u64, task as u64, lo, hi, who) as u16
}

/// [`on_applet`] with its name as two numbers; global (verified once per program).
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn guard_applet(
    file: u64,
    task: u64,
    comm_lo: u64,
    comm_hi: u64,
    who: u32,
) -> i64 {
    let (file, task) = (
        file as *const core::ffi::c_void,
        task as *const core_read::Task,
    );
    let comm = [comm_lo, comm_hi];
    i64::from(applet(file, task, &comm, who))
}

#[inline(always)]
fn applet(
    file: *const core::ffi::c_void,
    task: *const core_read::Task,
    comm: &[u64; 2],
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
    // SAFETY: at most 16 bytes into this CPU's key slot, from the name on the stack.
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

/// A file mapped executable (`mmap` with `PROT_EXEC`): the exec rules that kill
/// or deny the program by path or by file name (not by `comm`: the mapping
/// process keeps its own name). Returns the event's `rule` field; the process is
/// killed before the mapping returns, so no instruction of the file runs.
#[inline(always)]
pub(crate) fn on_map(file: *const core::ffi::c_void, path: *const u8, len: u32, who: u32) -> u16 {
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
