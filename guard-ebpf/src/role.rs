//! Agent roles, decided at exec (see `guard_common::role` and docs/policy.md), and
//! the agent's thread id, read from the new image's environment.
//!
//! Only execs of tracked processes get here, so the cost stays off every other
//! process's path.

use core::ffi::c_void;

use aya_ebpf::{helpers::generated::bpf_loop, macros::map, maps::PerCpuArray};
use guard_common::{THREAD_ID_LEN, role};

use crate::{core_read, maps::AGENT_PROGRAMS};

/// Bytes of the environment searched for `CODEX_THREAD_ID` (Codex puts it among the
/// first variables it sets; a bigger environment is searched this far only).
pub const ENV_SCAN_MAX: u32 = 16384;
const PATTERN: &[u8; 16] = b"CODEX_THREAD_ID=";

#[repr(C)]
struct Scratch {
    /// The exec'd file's name, NUL padded (a key of `AGENT_PROGRAMS`), with slack
    /// for the shim's masked copy.
    name: [u8; 16],
    _slack: [u8; 256],
    /// The environment scan: user address and length, match progress, whether the
    /// previous byte ended a variable, and where the value starts (plus one).
    env: u64,
    env_len: u32,
    pos: u32,
    at_start: u32,
    found: u32,
    chunk: [u8; 512],
}

#[map]
static ROLE_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The flags (`Tracked::flags`) a process has after exec'ing `file` (named `comm`
/// now): its role follows from the role it had (inherited at fork, or none at a
/// session's start) and whether the program is an agent's.
///
/// Not inlined: its frame is its own, not added to the exec program's, whose stack
/// with the rule checks' callback frames must stay within Linux 6.1's 512 bytes (each
/// frame rounded up to 32).
#[inline(never)]
pub fn at_exec(flags: u32, bprm: *const c_void, file: *const c_void, comm: &[u8; 16]) -> u32 {
    let Some(s) = ROLE_SCRATCH.get_ptr_mut(0) else {
        return flags;
    };
    // SAFETY: this CPU's scratch; programs on one CPU never interleave.
    let name = unsafe { &raw mut (*s).name };
    // SAFETY: as above; the shim writes at most 15 bytes (and the slack covers its
    // masked copy).
    unsafe {
        // Two volatile stores (the field is 8-aligned: the struct holds a u64), not
        // a `memset` call, which LLVM makes of plain ones and which would nest one
        // frame deeper.
        name.cast::<u64>().write_volatile(0);
        name.cast::<u64>().add(1).write_volatile(0);
        core_read::dentry_name(core_read::file_dentry(file), (*name).as_mut_ptr(), 15);
    }
    // The key stays in the scratch (the stack is short: see process.rs).
    // SAFETY: this CPU's scratch, just written.
    let key: &[u8; 16] = unsafe { &*name };
    // SAFETY: read-only lookup.
    let by_file = unsafe { AGENT_PROGRAMS.get(key) }.copied().unwrap_or(0);
    // SAFETY: read-only lookup.
    let by_name = unsafe { AGENT_PROGRAMS.get(comm) }.copied().unwrap_or(0);
    let mut program = by_file;
    // The name it was run as counts too (a symlink named like the agent), unless an
    // interpreter runs it: a `#!/usr/bin/env node` script named `codex` is a wrapper.
    if program == 0 && !core_read::binprm_interpreted(bprm) {
        program = by_name;
    }
    // An MCP server's command by either name: `/usr/bin/python3` runs the file
    // `python3.11`; `npx` is a script its interpreter runs.
    program |= (by_file | by_name) & role::PROGRAM_MCP;
    // The first 8 bytes at once: "bwrap" and NULs (the name was zeroed first).
    // SAFETY: this CPU's scratch; 16 bytes, read unaligned.
    let is_bwrap =
        unsafe { name.cast::<u64>().read_unaligned() } == u64::from_le_bytes(*b"bwrap\0\0\0");
    let is_agent = program & role::PROGRAM_AGENT != 0;
    let mut out = flags;
    let new = match role::of(flags) {
        role::UNKNOWN | role::WRAPPER => {
            if is_agent {
                out &= !role::STRUCTURED;
                if program & role::PROGRAM_STRUCTURED != 0 {
                    out |= role::STRUCTURED;
                }
                role::AGENT
            } else {
                role::WRAPPER
            }
        }
        role::AGENT => {
            if is_agent {
                role::SANDBOX
            } else if program & role::PROGRAM_MCP != 0 {
                role::MCP
            } else if flags & role::STRUCTURED != 0 {
                role::HELPER
            } else {
                role::TOOL
            }
        }
        role::SANDBOX => {
            if is_agent || is_bwrap {
                role::SANDBOX
            } else {
                role::TOOL
            }
        }
        other => other,
    };
    (out & !role::MASK) | (u32::from(new) << role::SHIFT)
}

/// One byte of the environment: finds `CODEX_THREAD_ID=` at the start of a variable.
/// Runs under `bpf_loop`, so the verifier checks it once, whatever the length.
#[inline(never)]
extern "C" fn env_step(index: u32, _ctx: *mut c_void) -> i64 {
    let Some(s) = ROLE_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch, filled in by `thread_id` before the loop.
    unsafe {
        let len = (*s).env_len;
        if index >= len {
            return 1;
        }
        if index & 255 == 0 {
            let mut n = len - index;
            if n > 256 {
                n = 256;
            }
            let rc = aya_ebpf::helpers::generated::bpf_probe_read_user(
                (*s).chunk.as_mut_ptr().cast(),
                n & 0x1ff,
                ((*s).env + u64::from(index)) as *const c_void,
            );
            if rc != 0 {
                return 1;
            }
        }
        let byte = (*s).chunk[(index & 255) as usize];
        let pos = (*s).pos;
        if pos > 0 {
            if byte == PATTERN[(pos & 15) as usize] {
                if pos + 1 == PATTERN.len() as u32 {
                    (*s).found = index + 2;
                    return 1;
                }
                (*s).pos = pos + 1;
            } else {
                (*s).pos = 0;
            }
        } else if (*s).at_start != 0 && byte == PATTERN[0] {
            (*s).pos = 1;
        }
        (*s).at_start = u32::from(byte == 0);
    }
    0
}

/// Copies the value of `CODEX_THREAD_ID` in the current (just exec'd) process's
/// environment to `dst` (THREAD_ID_LEN bytes, NUL ended); false when absent.
/// Inlined: its `bpf_loop` callback is then one call below the exec program, not two
/// (each level costs 32 bytes of Linux 6.1's 512).
#[inline(always)]
pub fn thread_id(task: *const core_read::Task, dst: *mut u8) -> bool {
    let Some(s) = ROLE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let (start, end) = core_read::env_span(task);
    let len = end.saturating_sub(start).min(u64::from(ENV_SCAN_MAX)) as u32;
    // SAFETY: this CPU's scratch.
    unsafe {
        (*s).env = start;
        (*s).env_len = len;
        (*s).pos = 0;
        (*s).at_start = 1;
        (*s).found = 0;
        bpf_loop(
            ENV_SCAN_MAX,
            env_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        let found = (*s).found;
        if found == 0 {
            return false;
        }
        let value = start + u64::from(found - 1);
        aya_ebpf::helpers::generated::bpf_probe_read_user_str(
            dst.cast(),
            THREAD_ID_LEN as u32,
            value as *const c_void,
        ) > 1
    }
}
