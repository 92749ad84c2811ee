//! The daemon's own state in the pinned maps (`DAEMON`) and the kernel's counters
//! (`COUNTERS`): signs of life and what was reported, so that the next daemon on the
//! same pins reports the gap and what the kernel lost meanwhile.

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray},
};
use guard_common::{EventKind, counter, daemon_state};

use super::{Error, take};

/// `counter::LEN` before egress accounting raised it to 24: pinned `COUNTERS` and
/// `DAEMON` maps an older daemon created keep their smaller size (a pinned map is
/// adopted as it is), so the slots past it may be missing and read as zero; the
/// kernel's counts there are then lost (`count` finds no slot).
pub(super) const LEN_BEFORE_FLOWS: usize = 16;

/// Lost records by kind, and children that escaped tracking (map full).
pub type Lost = (Vec<(&'static str, u64)>, u64);

/// What the previous daemon on this pin directory left behind.
#[derive(Clone, Copy, Debug)]
pub struct Resumed {
    /// Its pid.
    pub pid: u32,
    /// `CLOCK_BOOTTIME` ns of its last sign of life (within 10 ms of its end).
    pub alive_ns: u64,
    /// Whether it stopped cleanly (SIGTERM/SIGINT) rather than died.
    pub clean_stop: bool,
    /// `COUNTERS` as it last reported them.
    pub reported: [u64; counter::LEN as usize],
}

/// Lost records by kind (plus those over sessions' limits and those the pending maps
/// had no room for), and children that escaped tracking because the map was full, out
/// of `COUNTERS` values.
pub fn lost_of(counters: &[u64; counter::LEN as usize]) -> Lost {
    let at = |i: u32| counters.get(i as usize).copied().unwrap_or(0);
    let mut by_kind: Vec<(&'static str, u64)> = EventKind::ALL
        .iter()
        .map(|kind| (kind.name(), at(counter::lost(*kind as u16))))
        .collect();
    // Plain records dropped by sessions' `[limits]`, and system calls of tracked
    // threads the full pending maps could not hold.
    by_kind.push(("over_session_limit", at(counter::OVER_LIMIT)));
    by_kind.push(("pending_full", at(counter::PENDING_FULL)));
    by_kind.push(("dns_unread", at(counter::DNS_UNREAD)));
    // Repeated opens counted for a thread that was gone when they were due.
    by_kind.push(("repeats_unreported", at(counter::REPEATS_UNREPORTED)));
    (by_kind, at(counter::TRACK_FULL))
}

fn daemon_get(daemon: &Array<MapData, u64>, slot: u32) -> Result<u64, Error> {
    daemon.get(&slot, 0).map_err(|source| Error::Map {
        map: "DAEMON",
        source,
    })
}

fn daemon_set(daemon: &mut Array<MapData, u64>, slot: u32, value: u64) -> Result<(), Error> {
    daemon.set(slot, value, 0).map_err(|source| Error::Map {
        map: "DAEMON",
        source,
    })
}

fn read_resumed(daemon: &Array<MapData, u64>) -> Result<Resumed, Error> {
    let mut reported = [0u64; counter::LEN as usize];
    for (i, slot) in reported.iter_mut().enumerate() {
        *slot = match daemon_get(daemon, daemon_state::COUNTED_BASE + i as u32) {
            Ok(v) => v,
            // Pins of a daemon from before the counters grew: those slots never existed.
            Err(_) if i >= LEN_BEFORE_FLOWS => 0,
            Err(e) => return Err(e),
        };
    }
    Ok(Resumed {
        pid: daemon_get(daemon, daemon_state::PID)? as u32,
        alive_ns: daemon_get(daemon, daemon_state::ALIVE_NS)?,
        clean_stop: daemon_get(daemon, daemon_state::CLEAN_STOP)? == 1,
        reported,
    })
}

/// The daemon's maps (`DAEMON`, `COUNTERS`): what it tells the next daemon on the
/// same pins, and what the kernel counted. The maps of held execs and downloads are
/// not here: the pipeline takes those.
pub struct DaemonMaps {
    daemon: Array<MapData, u64>,
    counters: PerCpuArray<MapData, u64>,
}

impl DaemonMaps {
    pub(super) fn take(bpf: &mut Ebpf) -> Result<Self, Error> {
        Ok(Self {
            daemon: take(bpf, "DAEMON")?,
            counters: take(bpf, "COUNTERS")?,
        })
    }

    /// Marks this daemon's start (its pid, not stopped cleanly yet, one start more)
    /// and, when `adopting` an earlier daemon's pins, returns what it left behind.
    pub(super) fn start(&mut self, adopting: bool) -> Result<Option<Resumed>, Error> {
        let resumed = if adopting {
            Some(read_resumed(&self.daemon)?)
        } else {
            None
        };
        let starts = daemon_get(&self.daemon, daemon_state::STARTS)?;
        daemon_set(
            &mut self.daemon,
            daemon_state::PID,
            u64::from(std::process::id()),
        )?;
        daemon_set(&mut self.daemon, daemon_state::CLEAN_STOP, 0)?;
        daemon_set(&mut self.daemon, daemon_state::STARTS, starts + 1)?;
        Ok(resumed)
    }

    /// Records a sign of life for the next daemon's gap report (cheap: one map
    /// write; done at each drain of the ring buffer).
    pub fn alive(&mut self) {
        let _ = daemon_set(
            &mut self.daemon,
            daemon_state::ALIVE_NS,
            crate::host::clock::boot_ns(),
        );
    }

    /// A clean stop: the last sign of life, and the mark the next daemon reports.
    pub fn stopped(&mut self) {
        self.alive();
        let _ = daemon_set(&mut self.daemon, daemon_state::CLEAN_STOP, 1);
    }

    /// `COUNTERS`, each summed over CPUs.
    pub fn counters(&self) -> Result<[u64; counter::LEN as usize], Error> {
        let mut out = [0u64; counter::LEN as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let v = match self.counters.get(&(i as u32), 0) {
                Ok(v) => v,
                // Pins of a daemon from before the counters grew have fewer slots.
                Err(_) if i >= LEN_BEFORE_FLOWS => continue,
                Err(source) => {
                    return Err(Error::Map {
                        map: "COUNTERS",
                        source,
                    });
                }
            };
            *slot = v.iter().sum();
        }
        Ok(out)
    }

    /// Notes `counters` as reported (the next daemon counts only what comes after
    /// them as lost in its gap).
    pub fn mark_reported(&mut self, counters: &[u64; counter::LEN as usize]) {
        for (i, v) in counters.iter().enumerate() {
            let _ = daemon_set(&mut self.daemon, daemon_state::COUNTED_BASE + i as u32, *v);
        }
    }
}
