//! True denial through BPF-LSM, where the kernel loads it (`lsm=...,bpf` and BPF
//! trampolines): `file_open` refuses opens and `bprm_check_security` refuses execs
//! that a `deny` rule matches, with EPERM, before anything happens. Where these
//! programs cannot load, user space compiles `deny` rules as kills instead and says
//! so (see guard-user's `ebpf::Kernel::load`).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use guard_common::{EventKind, ExecBody, flags, rules::enforced};

use crate::{
    emit::{Draft, current_ids},
    enforce,
    kernel::{self, WALK_TRUNCATED},
    maps::{PATH_END, PATH_MASK, PATH_SCRATCH, TRACKED},
};

const EPERM: i32 = 1;

/// (is tracked, is the session root) of the current process.
#[inline(always)]
fn tracked() -> Option<bool> {
    let (tgid, _) = current_ids();
    // SAFETY: read-only copy of the map value.
    let t = unsafe { TRACKED.get(tgid) }.copied()?;
    Some(t.flags & flags::ROOT_PROCESS as u32 != 0)
}

/// Resolves `file`'s path into the path scratch; returns (pointer, length).
#[inline(always)]
fn path_of(file: *const core::ffi::c_void) -> Option<(*const u8, u32)> {
    let pbuf = PATH_SCRATCH.get_ptr_mut(0)?.cast::<u8>();
    let walk = kernel::file_path(file, pbuf, PATH_END, guard_common::PATH_DEPTH as u32);
    let start = walk & !WALK_TRUNCATED;
    Some((
        pbuf.wrapping_add((start & PATH_MASK) as usize),
        PATH_END - start,
    ))
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    // file_open(struct file *file), then the previous hooks' verdict.
    let (file, retval): (*const core::ffi::c_void, i32) = (ctx.arg(0), ctx.arg(1));
    if retval != 0 {
        return retval;
    }
    let Some(is_root) = tracked() else { return 0 };
    let Some((path, len)) = path_of(file) else {
        return 0;
    };
    let f_flags = u64::from(kernel::file_flags(file));
    if enforce::deny_open(file, path, len, f_flags, is_root).is_some() {
        -EPERM
    } else {
        0
    }
}

/// A refused exec never reaches sched_process_exec: report it here (no argv yet).
#[inline(always)]
fn report_denied_exec(path: *const u8, len: u32, rule: u16) {
    let (tgid, _) = current_ids();
    // SAFETY: read-only copy of the map value.
    let Some(t) = (unsafe { TRACKED.get(tgid) }).copied() else {
        return;
    };
    let Some(mut draft) = Draft::begin(EventKind::Exec, 0, t.session) else {
        return;
    };
    draft.header().rule = ((rule + 1) & enforced::RULE_MASK) | enforced::DENIED;
    let n = len.min(guard_common::PATH_MAX as u32) & 0xfff;
    // SAFETY: bounded copy from the path scratch into the event scratch.
    unsafe {
        let _ = aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            draft.payload_ptr::<ExecBody>(0).cast(),
            n,
            path.cast(),
        );
    }
    draft.body(ExecBody {
        start_ns: t.start_ns,
        exe_len: n,
        argv_len: 0,
    });
    draft.submit::<ExecBody>(n);
}

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    // bprm_check_security(struct linux_binprm *bprm), then the verdict.
    let (bprm, retval): (*const core::ffi::c_void, i32) = (ctx.arg(0), ctx.arg(1));
    if retval != 0 {
        return retval;
    }
    let Some(is_root) = tracked() else { return 0 };
    let file = kernel::binprm_file(bprm);
    let Some((path, len)) = path_of(file) else {
        return 0;
    };
    let comm = aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; 16]);
    match enforce::deny_exec(file, path, len, &comm, is_root) {
        Some(rule) => {
            report_denied_exec(path, len, rule);
            -EPERM
        }
        None => 0,
    }
}
