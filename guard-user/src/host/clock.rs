//! Kernel records carry CLOCK_BOOTTIME; people read wall-clock time.

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Nanoseconds since boot, as the kernel's `bpf_ktime_get_boot_ns`.
pub fn boot_ns() -> u64 {
    now(libc::CLOCK_BOOTTIME) as u64
}

/// Add to a boot-clock timestamp to get Unix-epoch nanoseconds.
pub fn boot_to_wall_offset() -> i128 {
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_BOOTTIME)
}

/// Wall-clock ns since the Unix epoch, now.
pub fn wall_ns() -> i128 {
    now(libc::CLOCK_REALTIME)
}
