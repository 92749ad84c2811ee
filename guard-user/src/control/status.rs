//! The daemon's own resource use, for the `status` answer.

/// CPU seconds and resident bytes of this process.
pub fn self_usage() -> (f64, u64) {
    let Ok(me) = procfs::process::Process::myself() else {
        return (0.0, 0);
    };
    let tps = procfs::ticks_per_second() as f64;
    let cpu = me
        .stat()
        .map(|s| (s.utime + s.stime) as f64 / tps)
        .unwrap_or(0.0);
    let rss = me
        .statm()
        .map(|m| m.resident * procfs::page_size())
        .unwrap_or(0);
    (cpu, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_uses_memory() {
        let (_, rss) = self_usage();
        assert!(rss > 1 << 20, "rss {rss}");
    }
}
