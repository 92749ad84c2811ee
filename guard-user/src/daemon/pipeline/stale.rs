//! Holds whose exec record never came: the kernel held a process at its exec (for
//! a digest, or a download), and the record that would have had it judged was
//! lost or written while no daemon ran. Such a process is judged from `/proc`
//! (`crate::event::from_proc`), through the same pipeline as any record: the
//! judge decides, the actor kills, the audit log says what happened.

use guard_common::Tracked;

use super::{Outputs, Pipeline};
use crate::{audit, event::from_proc, host::clock};

impl Pipeline {
    /// Decides the execs the kernel has held for longer than
    /// [`crate::digest::STALE_HOLD_NS`] without their record reaching the
    /// pipeline; `tracked` reads the kernel's entry of a process (its session and
    /// role). On the daemon's beat.
    pub(in crate::daemon) fn release_stale_holds(
        &mut self,
        out: &mut Outputs,
        tracked: impl Fn(u32) -> Option<Tracked>,
    ) -> Result<(), audit::Error> {
        for (pid, held_at) in self.holds.stale(clock::boot_ns()) {
            self.decide_stale(pid, held_at, tracked(pid), out)?;
        }
        Ok(())
    }

    /// Judges process `pid`, held at boot time `held_at` with no record of it, as
    /// its exec record would have been (an exec event flagged `from_proc`): killed
    /// where a rule stops it, let go otherwise. A process gone meanwhile is only
    /// forgotten.
    pub(super) fn decide_stale(
        &mut self,
        pid: u32,
        held_at: u64,
        tracked: Option<Tracked>,
        out: &mut Outputs,
    ) -> Result<(), audit::Error> {
        let ts_ns = i128::from(held_at) + self.offset;
        let Some(mut ev) = from_proc::exec(pid, tracked.as_ref(), ts_ns) else {
            tracing::warn!("process {pid}, held at exec with no record of it, is gone");
            self.holds.release(pid);
            return Ok(());
        };
        tracing::warn!("process {pid}, held at exec with no record of it: judged from /proc");
        self.enricher.enrich(&mut ev);
        // Hashed, matched with downloads, judged, acted on and let go of (`ev.held`)
        // as a record is.
        self.process(ev, out)
    }
}
