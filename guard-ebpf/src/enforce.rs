//! Enforcement the kernel decides itself: kill at exec, kill at open, refuse a
//! connect or send. User space compiles the policy's enforceable rules into these
//! maps; everything else about the policy (logging, alerts, globs the kernel cannot
//! express, argv conditions) is decided in user space.

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_kernel, bpf_send_signal},
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray, lpm_trie::Key},
};
use guard_common::{
    AF_INET, AF_INET6, Config, NetData, PathData, RuleRef,
    rules::{access, enforced, path_kind, rule_flags},
};

use crate::kernel;

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Path and file-name rules (see `guard_common::rules::PathData`).
#[map]
pub static PATH_RULES: LpmTrie<PathData, RuleRef> = LpmTrie::with_max_entries(16384, 0);

/// Network rules by destination prefix.
#[map]
pub static NET_RULES: LpmTrie<NetData, RuleRef> = LpmTrie::with_max_entries(8192, 0);

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

#[inline(always)]
fn scope_ok(flags: u8, is_root: bool) -> bool {
    !(flags & rule_flags::ROOT_ONLY != 0 && !is_root
        || flags & rule_flags::DESCENDANTS_ONLY != 0 && is_root)
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

/// The rule to enforce among matches: a rule with `verdict` (KILL or DENY) whose
/// scope and access apply, unless an exception of the same rule matched too.
#[inline(always)]
fn pick(matches: &Matches, is_root: bool, want: u8, verdict: u8) -> Option<u16> {
    for r in matches.iter() {
        let kills = r.flags & verdict != 0 && r.flags & rule_flags::EXCEPT == 0;
        if kills && scope_ok(r.flags, is_root) && (want == 0 || r.access & want != 0) {
            let excepted = matches
                .iter()
                .any(|e| e.flags & rule_flags::EXCEPT != 0 && e.rule == r.rule);
            if !excepted {
                return Some(r.rule);
            }
        }
    }
    None
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

/// State of a component scan, shared with its `bpf_loop` callback.
#[repr(C)]
struct Scan {
    path: *const u8,
    len: u32,
    generation: u32,
    found: RuleRef,
}

/// One byte of the path: at a `/`, the rest of the path is looked up among the
/// component runs (stored as prefixes `/a/b/`). Runs under `bpf_loop`, so the
/// verifier checks it once, whatever the path's length; it stops at the first match.
#[inline(never)]
extern "C" fn scan_step(index: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let s = ctx.cast::<Scan>();
    // SAFETY: ctx is the caller's `Scan`, alive for the whole loop.
    let (path, len, generation) = unsafe { ((*s).path, (*s).len, (*s).generation) };
    let i = index & (SCAN_BYTES - 1);
    if i >= len {
        return 1;
    }
    let mut byte = 0u8;
    // SAFETY: one byte read by the helper, which tolerates any address.
    unsafe {
        bpf_probe_read_kernel(
            (&raw mut byte).cast(),
            1,
            path.wrapping_add(i as usize).cast(),
        )
    };
    if byte != b'/' {
        return 0;
    }
    let r = lookup_bytes(
        3,
        generation as u8,
        path_kind::COMPONENTS,
        path.wrapping_add(i as usize),
        len - i,
    );
    if r.flags == 0 {
        return 0;
    }
    // SAFETY: as above.
    unsafe { (*s).found = r };
    1
}

/// The first component run of `path[..len]` a rule names.
#[inline(always)]
fn components(path: *const u8, len: u32, generation: u8) -> RuleRef {
    let mut scan = Scan {
        path,
        len: len.min(SCAN_BYTES),
        generation: u32::from(generation),
        found: RuleRef::default(),
    };
    // SAFETY: the callback only reads `scan` and the path through the helper.
    unsafe {
        bpf_loop(
            SCAN_BYTES,
            scan_step as *mut core::ffi::c_void,
            (&raw mut scan).cast(),
            0,
        )
    };
    scan.found
}

/// Matches of a file at `path[..len]` whose name is that of `dentry`: whole path,
/// file name, reversed file name, component runs, whole-path exceptions.
#[inline(always)]
fn file_matches(dentry: *const core::ffi::c_void, path: *const u8, len: u32) -> Matches {
    let cfg = config();
    let mut out = NONE;
    if cfg.path_kinds
        & ((1 << path_kind::FILE)
            | (1 << path_kind::FILE_NAME)
            | (1 << path_kind::FILE_NAME_REV)
            | (1 << path_kind::COMPONENTS))
        == 0
    {
        return out;
    }
    let generation = cfg.generation as u8;
    if has(&cfg, path_kind::FILE) {
        out[0] = lookup_bytes(0, generation, path_kind::FILE, path, len);
    }
    if has(&cfg, path_kind::FILE_EXCEPT) {
        out[4] = lookup_bytes(4, generation, path_kind::FILE_EXCEPT, path, len);
    }
    if has(&cfg, path_kind::COMPONENTS) {
        out[3] = components(path, len, generation);
    }
    if !has(&cfg, path_kind::FILE_NAME) && !has(&cfg, path_kind::FILE_NAME_REV) {
        return out;
    }
    let (Some(name), Some(rev)) = (slot_bytes(1), slot_bytes(2)) else {
        return out;
    };
    let name_len = kernel::dentry_name(dentry, name, KEY_BYTES);
    if has(&cfg, path_kind::FILE_NAME) {
        out[1] = lookup_slot(1, generation, path_kind::FILE_NAME, name_len, true);
    }
    if has(&cfg, path_kind::FILE_NAME_REV) {
        kernel::reverse(rev, name, name_len);
        out[2] = lookup_slot(2, generation, path_kind::FILE_NAME_REV, name_len, true);
    }
    out
}

/// BPF-LSM `file_open`: whether a `deny` rule refuses this open.
#[inline(always)]
pub fn deny_open(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    open_flags: u64,
    is_root: bool,
) -> Option<u16> {
    pick(
        &file_matches(kernel::file_dentry(file), path, len),
        is_root,
        wanted(open_flags),
        rule_flags::DENY,
    )
}

/// BPF-LSM `path_*` hooks: whether a `deny` rule on writes refuses a change to the
/// entry `dentry` at `path[..len]` (create, mkdir, link, rename, unlink, truncate,
/// chmod, chown).
#[inline(always)]
pub fn deny_change(
    dentry: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    is_root: bool,
) -> Option<u16> {
    pick(
        &file_matches(dentry, path, len),
        is_root,
        access::WRITE,
        rule_flags::DENY,
    )
}

/// BPF-LSM `bprm_check_security`: whether a `deny` rule refuses this exec.
#[inline(always)]
pub fn deny_exec(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    comm: &[u8; 16],
    is_root: bool,
) -> Option<u16> {
    pick(
        &exec_matches(file, path, len, comm),
        is_root,
        0,
        rule_flags::DENY,
    )
}

#[inline(always)]
/// Matches of an exec: the resolved path, the name it was run as (`comm`), and the
/// resolved file's name (a symlink of another name must not get past a name rule).
fn exec_matches(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    comm: &[u8; 16],
) -> Matches {
    let cfg = config();
    let mut out = NONE;
    if cfg.path_kinds & ((1 << path_kind::EXEC) | (1 << path_kind::EXEC_NAME)) == 0 {
        return out;
    }
    let generation = cfg.generation as u8;
    out[0] = lookup_bytes(0, generation, path_kind::EXEC, path, len);
    let mut comm_len = 0u32;
    while comm_len < 16 && comm[comm_len as usize] != 0 {
        comm_len += 1;
    }
    out[1] = lookup_bytes(1, generation, path_kind::EXEC_NAME, comm.as_ptr(), comm_len);
    let Some(name) = slot_bytes(2) else {
        return out;
    };
    // Names in exec rules are cut to 15 bytes, like comm; the shim makes the cut.
    let name_len = kernel::dentry_name(kernel::file_dentry(file), name, 15);
    out[2] = lookup_slot(2, generation, path_kind::EXEC_NAME, name_len, true);
    out
}

/// Open of `file` (path in `path[..len]`) with open `flags`: kill when a kernel
/// rule says so. Returns the event's `rule` field (0: nothing enforced).
#[inline(always)]
pub fn on_open(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    open_flags: u64,
    is_root: bool,
) -> u16 {
    match pick(
        &file_matches(kernel::file_dentry(file), path, len),
        is_root,
        wanted(open_flags),
        rule_flags::KILL,
    ) {
        Some(rule) => kill(rule),
        None => 0,
    }
}

/// Exec of the file at `path` (resolved) by a process now named `comm`.
#[inline(always)]
pub fn on_exec(
    file: *const core::ffi::c_void,
    path: *const u8,
    len: u32,
    comm: &[u8; 16],
    is_root: bool,
) -> u16 {
    match pick(
        &exec_matches(file, path, len, comm),
        is_root,
        0,
        rule_flags::KILL,
    ) {
        Some(rule) => kill(rule),
        None => 0,
    }
}

/// Destination check for a connect or send. `Some(rule field)` means refuse.
#[inline(always)]
pub fn on_net(family: u16, addr: &[u8; 16], port: u16, is_root: bool) -> Option<u16> {
    let cfg = config();
    let mut data: NetData = [0; 18];
    data[0] = cfg.generation as u8;
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
    if let Some(r) = NET_RULES.get(Key::new(bits, data)) {
        let any_port = r.ports == [0; 8];
        if (any_port || r.ports.contains(&port)) && scope_ok(r.flags, is_root) {
            if r.flags & rule_flags::DENY != 0 {
                return Some(((r.rule + 1) & enforced::RULE_MASK) | enforced::DENIED);
            }
            if r.flags & rule_flags::ALLOW != 0 {
                return None;
            }
        }
    }
    if cfg.net_default_deny != 0 && scope_ok(cfg.net_default_flags as u8, is_root) {
        return Some((cfg.net_default_deny as u16 & enforced::RULE_MASK) | enforced::DENIED);
    }
    None
}
