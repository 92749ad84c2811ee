//! Agent roles, decided at exec (see `guard_common::role` and docs/policy.md), and
//! the agent's session id, read from the new image's environment.
//!
//! Only execs of tracked processes get here, so the cost stays off every other
//! process's path.

use core::ffi::c_void;

use aya_ebpf::{macros::map, maps::PerCpuArray};
use guard_common::{
    PACKAGE_MARK, SESSION_VAR_LEN, SESSION_VARS_MAX, SessionVar, THREAD_ID_LEN, role,
};

use crate::{
    core_read,
    each::each,
    maps::{AGENT_PROGRAMS, SESSION_VARS},
};

/// Bytes of the environment searched for the session variables (agents put them
/// among the first variables they set; a bigger environment is searched this far
/// only).
pub(crate) const ENV_SCAN_MAX: u32 = 16384;
/// Bytes of a runtime's arguments searched for its script (`node`, its options, the
/// script's path).
pub(crate) const ARG_SCAN_MAX: u32 = 1024;
const VARS: usize = SESSION_VARS_MAX as usize;

#[repr(C)]
struct Scratch {
    /// The exec'd file's name, NUL padded (a key of `AGENT_PROGRAMS`), with slack
    /// for the shim's masked copy.
    name: [u8; 16],
    _slack: [u8; 256],
    /// A runtime's script's file name, NUL padded (a key of `AGENT_PROGRAMS`).
    script: [u8; 16],
    /// The scan (environment or arguments): user address and length.
    span: u64,
    span_len: u32,
    /// Whether the previous byte ended a variable (or an argument).
    at_start: u32,
    /// The environment scan: where the value starts (plus one), whether it is a
    /// package variable's, whether one is looked for, and each variable's match
    /// progress.
    found: u32,
    found_package: u32,
    packages: u32,
    pos: [u32; VARS],
    /// The argument scan: the argument being read, whether it is the script, and
    /// the bytes of its file name so far.
    arg: u32,
    in_script: u32,
    script_len: u32,
    vars: [SessionVar; VARS],
    chunk: [u8; 512],
}

#[map]
static ROLE_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch and the byte at `index` of the span being scanned, read from
/// user memory 256 bytes at a time (when `index` starts a chunk); None past the span
/// or when the read fails (the loop stops).
#[inline(always)]
fn scan_byte(index: u32) -> Option<(*mut Scratch, u8)> {
    let s = ROLE_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch, filled in before the loop; the read is bounded by
    // the chunk's size.
    unsafe {
        let len = (*s).span_len;
        if index >= len {
            return None;
        }
        if index & 255 == 0 {
            let mut n = len - index;
            if n > 256 {
                n = 256;
            }
            let rc = aya_ebpf::helpers::generated::bpf_probe_read_user(
                (*s).chunk.as_mut_ptr().cast(),
                n & 0x1ff,
                ((*s).span + u64::from(index)) as *const c_void,
            );
            if rc != 0 {
                return None;
            }
        }
        Some((s, (*s).chunk[(index & 255) as usize]))
    }
}

/// The file is named `bwrap` (a bit of [`program_of`]'s value, never of a map's).
const BWRAP: u32 = 1 << 31;

/// What the program exec'd as `file` (named `comm` now) is, as `role::PROGRAM_*`
/// bits: by the file's name, or by the name it was run as when no interpreter runs
/// it; `role::PROGRAM_RUNTIME` for a runtime, whose script [`with_script`] names.
///
/// Not inlined, and neither is [`at_exec`]: each frame is its own, one call below the
/// exec program, whose stack with the callback frames of the scans must stay within
/// Linux 6.1's 512 bytes (each frame rounded up to 32).
#[inline(never)]
pub(crate) fn program_of(bprm: *const c_void, file: *const c_void, comm: &[u8; 16]) -> u32 {
    let Some(s) = ROLE_SCRATCH.get_ptr_mut(0) else {
        return 0;
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
    // A script's name is the agent's only when a runtime runs it (`with_script`).
    // Package managers and interpreters are no roles' business: their bits are
    // added apart (below).
    const FETCH: u32 = role::PROGRAM_INSTALLER | role::PROGRAM_INTERPRETER;
    const BY_NAME: u32 = !(role::PROGRAM_RUNTIME | role::PROGRAM_SCRIPT | FETCH);
    let mut program = by_file & BY_NAME;
    // The name it was run as counts too (a symlink named like the agent), unless an
    // interpreter runs it: a `#!/usr/bin/env node` script named `codex` is a wrapper.
    if program == 0 && !core_read::binprm_interpreted(bprm) {
        program = by_name & BY_NAME;
    }
    // A package manager by either name (`npm` is a script node runs); an
    // interpreter by its file's.
    program |= (by_file | by_name) & role::PROGRAM_INSTALLER;
    program |= by_file & role::PROGRAM_INTERPRETER;
    // An MCP server's command by either name: `/usr/bin/python3` runs the file
    // `python3.11`; `npx` is a script its interpreter runs.
    program |= (by_file | by_name) & role::PROGRAM_MCP;
    program |= by_file & role::PROGRAM_RUNTIME;
    // The first 8 bytes at once: "bwrap" and NULs (the name was zeroed first).
    // SAFETY: this CPU's scratch; 16 bytes, read unaligned.
    if unsafe { name.cast::<u64>().read_unaligned() } == u64::from_le_bytes(*b"bwrap\0\0\0") {
        program |= BWRAP;
    }
    program
}

/// `program` (from [`program_of`]) with, for a runtime, the bits of its script: a
/// runtime on an agent's script is that agent (`node …/bin/gemini`). Inlined into the
/// exec program: the scan's `bpf_loop` callback is then one frame below it.
#[inline(always)]
pub(crate) fn with_script(program: u32, task: *const core_read::Task) -> u32 {
    if program & role::PROGRAM_RUNTIME == 0 {
        return program;
    }
    let script = script_program(task) & (role::PROGRAM_SCRIPT | role::PROGRAM_STRUCTURED);
    if script & role::PROGRAM_SCRIPT != 0 {
        program | script | role::PROGRAM_AGENT
    } else {
        program
    }
}

/// The flags (`Tracked::flags`) a process has after exec'ing a program that is
/// `program` ([`with_script`]): its role follows from the role it had (inherited at
/// fork, or none at a session's start) and whether the program is an agent's.
#[inline(never)]
pub(crate) fn at_exec(flags: u32, program: u32) -> u32 {
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
            if program & role::PROGRAM_SCRIPT != 0 {
                // The agent relaunching itself on its own script (Gemini CLI's
                // `node --max-old-space-size=N …/gemini`): still the agent.
                role::AGENT
            } else if is_agent {
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
            if is_agent || program & BWRAP != 0 {
                role::SANDBOX
            } else {
                role::TOOL
            }
        }
        other => other,
    };
    (out & !role::MASK) | (u32::from(new) << role::SHIFT)
}

/// The `AGENT_PROGRAMS` bits of the script a runtime was just exec'd on: the file
/// name of its first argument that is not an option (0 when there is none, or it is
/// no key).
#[inline(always)]
fn script_program(task: *const core_read::Task) -> u32 {
    let Some(s) = ROLE_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let (start, end) = core_read::arg_span(task);
    let len = end.saturating_sub(start).min(u64::from(ARG_SCAN_MAX)) as u32;
    // SAFETY: this CPU's scratch.
    unsafe {
        (*s).span = start;
        (*s).span_len = len;
        (*s).at_start = 1;
        (*s).found = 0;
        (*s).arg = 0;
        (*s).in_script = 0;
        (*s).script_len = 0;
        let script = &raw mut (*s).script;
        script.cast::<u64>().write_volatile(0);
        script.cast::<u64>().add(1).write_volatile(0);
        each!(ARG_SCAN_MAX, arg_step, guard_each_arg);
        if (*s).found == 0 {
            return 0;
        }
        // The name's bytes after its end, left by an earlier path component, go.
        let n = (*s).script_len;
        let mut i = 0;
        while i < 16 {
            if i >= n || i == 15 {
                (*script)[i as usize] = 0;
            }
            i += 1;
        }
        // By reference: a copy of the key would take the exec program's stack.
        let key: &[u8; 16] = &*script;
        AGENT_PROGRAMS.get(key).copied().unwrap_or(0)
    }
}

/// One byte of a runtime's arguments: keeps the file name of the first argument
/// after the runtime's own name that is not an option. Runs under `bpf_loop`.
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
extern "C" fn arg_step(index: u32, _ctx: *mut c_void) -> i64 {
    let Some((s, byte)) = scan_byte(index) else {
        return 1;
    };
    // SAFETY: this CPU's scratch, filled in by `script_program` before the loop.
    unsafe {
        if (*s).at_start != 0 {
            (*s).at_start = 0;
            if (*s).arg > 0 && byte != b'-' {
                (*s).in_script = 1;
            }
        }
        if byte == 0 {
            if (*s).in_script != 0 {
                (*s).found = 1;
                return 1;
            }
            (*s).arg += 1;
            (*s).at_start = 1;
        } else if (*s).in_script != 0 {
            if byte == b'/' {
                (*s).script_len = 0;
            } else {
                let n = (*s).script_len;
                if n < 15 {
                    (*s).script[(n & 15) as usize] = byte;
                }
                (*s).script_len = n + 1;
            }
        }
    }
    0
}

/// One byte of the environment: finds a session variable (`SESSION_VARS`) at the
/// start of a variable. Runs under `bpf_loop`, so the verifier checks it once,
/// whatever the length.
#[cfg_attr(not(feature = "compat"), inline(never))]
#[cfg_attr(feature = "compat", inline(always))]
extern "C" fn env_step(index: u32, _ctx: *mut c_void) -> i64 {
    let Some((s, byte)) = scan_byte(index) else {
        return 1;
    };
    // SAFETY: this CPU's scratch, filled in by `thread_id` before the loop.
    unsafe {
        let at_start = (*s).at_start != 0;
        let mut v = 0;
        while v < VARS {
            let var = &(*s).vars[v];
            let pos = (*s).pos[v];
            if pos > 0 {
                if byte == var.name[(pos as usize) & (SESSION_VAR_LEN - 1)] {
                    if pos + 1 == var.len {
                        // A package's script: its name wins, the scan ends.
                        if var.kind == SessionVar::PACKAGE {
                            (*s).found = index + 2;
                            (*s).found_package = 1;
                            return 1;
                        }
                        // The first session variable; the scan goes on for the
                        // package variable where there is one.
                        if (*s).found == 0 {
                            (*s).found = index + 2;
                        }
                        if (*s).packages == 0 {
                            return 1;
                        }
                        (*s).pos[v] = 0;
                    } else {
                        (*s).pos[v] = pos + 1;
                    }
                } else {
                    (*s).pos[v] = 0;
                }
            } else if at_start && var.len > 1 && byte == var.name[0] {
                (*s).pos[v] = 1;
            }
            v += 1;
        }
        (*s).at_start = u32::from(byte == 0);
    }
    0
}

/// Copies the value of the first session variable (`SESSION_VARS`) in the current
/// (just exec'd) process's environment to `dst` (THREAD_ID_LEN bytes, NUL ended), or
/// [`PACKAGE_MARK`] and the package variable's value when the environment has that;
/// false when there is neither. Inlined: its `bpf_loop` callback is then one call below
/// the exec program, not two (each level costs 32 bytes of Linux 6.1's 512).
#[inline(always)]
pub(crate) fn thread_id(task: *const core_read::Task, dst: *mut u8) -> bool {
    let Some(s) = ROLE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let (start, end) = core_read::env_span(task);
    let len = end.saturating_sub(start).min(u64::from(ENV_SCAN_MAX)) as u32;
    // SAFETY: this CPU's scratch.
    unsafe {
        // Copied map to scratch through pointers: a copy by value would go through
        // the exec program's stack, which has no room for it.
        let mut any = 0;
        let mut packages = 0;
        let mut v = 0;
        while v < VARS {
            let dst = &raw mut (*s).vars[v];
            match SESSION_VARS.get_ptr(v as u32) {
                Some(src) => {
                    core::ptr::copy_nonoverlapping(src, dst, 1);
                    any |= (*dst).len;
                    if (*dst).len != 0 && (*dst).kind == SessionVar::PACKAGE {
                        packages = 1;
                    }
                }
                None => (*dst).len = 0,
            }
            (*s).pos[v] = 0;
            v += 1;
        }
        if any == 0 {
            return false;
        }
        (*s).span = start;
        (*s).span_len = len;
        (*s).at_start = 1;
        (*s).found = 0;
        (*s).found_package = 0;
        (*s).packages = packages;
        each!(ENV_SCAN_MAX, env_step, guard_each_env);
        let found = (*s).found;
        if found == 0 {
            return false;
        }
        let value = start + u64::from(found - 1);
        if (*s).found_package != 0 {
            *dst = PACKAGE_MARK;
            return aya_ebpf::helpers::generated::bpf_probe_read_user_str(
                dst.add(1).cast(),
                THREAD_ID_LEN as u32 - 1,
                value as *const c_void,
            ) > 1;
        }
        aya_ebpf::helpers::generated::bpf_probe_read_user_str(
            dst.cast(),
            THREAD_ID_LEN as u32,
            value as *const c_void,
        ) > 1
    }
}
