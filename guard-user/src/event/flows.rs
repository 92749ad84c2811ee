//! Flow records carry each flow's totals since it started; the views that sum
//! bytes (sessions, metrics, anomaly windows) need what each record adds.
//! [`FlowDeltas`] keeps the latest totals of every open flow; the daemon's pipeline
//! writes what each record adds into it (`Flow::new_out`, `Flow::new_in`).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use super::Flow;

/// Open flows tracked at most; past it the oldest-known entries are forgotten (a
/// forgotten flow's next record counts its totals again: an over-count, never a
/// loss). Flows end at their `close`/`redirect` record, so only a host with this
/// many long-lived tagged sockets whose final records were lost gets here.
pub const MAX_OPEN: usize = 65_536;

/// The latest (out, in) totals of each open flow, by its identity: (socket
/// cookie, start) in the daemon, the `flow_id` of JSON records in the views that
/// read them (`guard report` from a log, `guard top`).
#[derive(Clone, Debug)]
pub struct FlowDeltas<K = (u64, u64)> {
    open: HashMap<K, (u64, u64)>,
}

impl<K> Default for FlowDeltas<K> {
    fn default() -> Self {
        Self {
            open: HashMap::new(),
        }
    }
}

impl FlowDeltas {
    /// The bytes (out, in) `flow`'s record adds to what its earlier records said.
    pub fn add(&mut self, flow: &Flow) -> (u64, u64) {
        self.add_totals(
            (flow.cookie, flow.start_boot_ns),
            (flow.bytes_out, flow.bytes_in),
            flow.is_final(),
        )
    }
}

impl<K: Hash + Eq> FlowDeltas<K> {
    /// The bytes (out, in) a record of flow `key` with these totals adds to what
    /// its earlier records said; `last` for its final record. Totals only grow: a
    /// record read twice (or out of order) adds nothing.
    pub fn add_totals(&mut self, key: K, (out, inb): (u64, u64), last: bool) -> (u64, u64) {
        let (was_out, was_in) = self.open.get(&key).copied().unwrap_or((0, 0));
        let (out, inb) = (out.max(was_out), inb.max(was_in));
        if last {
            self.open.remove(&key);
        } else {
            if self.open.len() >= MAX_OPEN && !self.open.contains_key(&key) {
                tracing::warn!("more than {MAX_OPEN} open flows: forgetting them");
                self.open.clear();
            }
            self.open.insert(key, (out, inb));
        }
        (out - was_out, inb - was_in)
    }

    /// Whether flow `key` had a record that was not its last.
    pub fn is_open<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.open.contains_key(key)
    }

    /// Open flows known.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FlowReason, Proto};

    fn flow(out: u64, inb: u64, reason: FlowReason) -> Flow {
        Flow {
            addr: "127.0.0.1".parse().expect("ip"),
            port: 80,
            proto: Proto::Tcp,
            bytes_out: out,
            bytes_in: inb,
            packets_out: 1,
            packets_in: 1,
            reason,
            cookie: 9,
            start_boot_ns: 5,
            start_ns: 0,
            new_out: 0,
            new_in: 0,
            accepted: false,
        }
    }

    #[test]
    fn records_add_what_is_new_and_the_final_one_closes() {
        let mut d = FlowDeltas::default();
        assert_eq!(d.add(&flow(100, 10, FlowReason::Periodic)), (100, 10));
        assert_eq!(d.add(&flow(100, 10, FlowReason::Periodic)), (0, 0));
        assert_eq!(d.add(&flow(250, 40, FlowReason::Close)), (150, 30));
        assert!(d.is_empty());
        // Another flow on the same socket (a new start) counts from zero.
        let mut again = flow(7, 0, FlowReason::Close);
        again.start_boot_ns = 6;
        assert_eq!(d.add(&again), (7, 0));
    }
}
