//! guard's eBPF programs.
//!
//! The kernel side follows each agent's process tree, reports what its processes
//! do, and enforces what it can decide from the rule maps user space fills: kills
//! at exec and open (`bpf_send_signal`), refusals of connects and sends (cgroup
//! sock_addr), and where BPF-LSM runs, refusals of opens, execs and path changes.
//! Everything else (argv rules, globs it cannot match) user space decides. A process is tracked when its tgid is
//! in [`maps::TRACKED`]; everything else pays one hash lookup per hook and
//! produces no event.
#![no_std]
#![no_main]
// `atomic_xadd` for the byte counters (flow.rs); the eBPF build is on the stable
// toolchain with RUSTC_BOOTSTRAP=1 already (for `-Z build-std`).
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "core_intrinsics, for the atomic add the BPF target has (see above)"
)]

mod core_read;
mod dns;
mod each;
mod emit;
mod enforce;
mod fetched;
mod file;
mod floor;
mod flow;
mod hooks;
mod limit;
mod lsm;
mod maps;
mod net;
mod process;
mod repeat;
mod role;
mod route;
mod tamper;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // Never reached: the verifier rejects programs that could panic.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
