//! A restart on pinned state: the sessions the kernel kept tracking while no daemon
//! ran become this daemon's, with their ids, and the gap is reported as a
//! `daemon_resumed` event (how long, and what the kernel counted as lost meanwhile).

use std::collections::BTreeMap;

use guard_common::{counter, protocol::How};

use super::Daemon;
use crate::{
    event::from_proc::task as task_from_proc,
    event::{Detail, Resumed, SessionId, Task},
    host::clock,
};

impl Daemon {
    /// Adopts what an earlier daemon on the same pins left; nothing on a first start.
    pub(super) fn resume(&mut self) -> anyhow::Result<()> {
        let counters = self.probes.daemon.counters()?;
        let (by_kind, track_full) = crate::ebpf::lost_of(&counters);
        // The `lost` reports that follow count from here.
        self.lost_seen = by_kind.iter().map(|(_, n)| n).sum::<u64>() + track_full;
        let Some(prev) = self.probes.resumed else {
            self.probes.daemon.mark_reported(&counters);
            return Ok(());
        };
        let gap_ns = clock::boot_ns().saturating_sub(prev.alive_ns);
        let mut since = [0u64; counter::LEN as usize];
        for (i, n) in since.iter_mut().enumerate() {
            *n = counters[i].saturating_sub(prev.reported[i]);
        }
        let (by_kind, escaped) = crate::ebpf::lost_of(&since);
        let lost_by_kind: Vec<(String, u64)> = by_kind
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        let lost_total = lost_by_kind.iter().map(|(_, n)| n).sum();
        let sessions = self.adopt_tracked()?;
        let swaps = self.probes.swaps;
        let resumed = Resumed {
            previous_pid: prev.pid,
            clean_stop: prev.clean_stop,
            gap_ms: gap_ns / 1_000_000,
            lost_by_kind,
            lost_total,
            untracked_children: escaped,
            sessions,
            links_updated: swaps.updated,
            links_replaced: swaps.replaced,
            links_new: swaps.new,
        };
        tracing::info!(
            previous_pid = prev.pid,
            clean_stop = prev.clean_stop,
            gap_ms = resumed.gap_ms,
            lost = resumed.lost_total,
            sessions = resumed.sessions.len(),
            "took over the pinned programs and maps of the previous daemon"
        );
        self.out
            .write_daemon_event(self.pipe.offset(), Detail::Resumed(Box::new(resumed)))?;
        self.probes.daemon.mark_reported(&counters);
        Ok(())
    }

    /// Makes every session in the kernel's tracked set a session of this daemon,
    /// under the id the kernel keeps for it; returns the ids.
    fn adopt_tracked(&mut self) -> anyhow::Result<Vec<SessionId>> {
        let mut by_session: BTreeMap<u64, (u32, Vec<u32>)> = BTreeMap::new();
        for (pid, entry) in self.probes.tracked_all() {
            by_session
                .entry(entry.session)
                .or_insert((entry.root_pid, Vec::new()))
                .1
                .push(pid);
        }
        let now = self.pipe.now();
        let mut ids = Vec::new();
        for (id, (root, members)) in by_session {
            let id = SessionId(id);
            let mut task = task_from_proc(root).unwrap_or_else(|| Task {
                // The root is gone; its members still run.
                pid: root,
                ..Task::default()
            });
            self.pipe.enrich_task(&mut task);
            let start = self
                .pipe
                .sessions_mut()
                .start(id, How::Adopted, now, &task, None);
            for pid in members.into_iter().filter(|p| *p != root) {
                if let Some(t) = task_from_proc(pid) {
                    self.pipe.sessions_mut().adopt(id, pid, t.ppid, t.comm);
                }
            }
            self.out.write(&start)?;
            ids.push(id);
        }
        Ok(ids)
    }
}
