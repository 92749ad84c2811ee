//! What the sender has read from the spool and not yet handed back: records
//! waiting for a batch, and records delivered (or refused for good) that the spool
//! has not been told of yet.
//!
//! The spool is read a chunk at a time and told of what left every
//! [`REMOVE_EVERY`] records (and whenever nothing is left to send): reading a batch
//! of 512 out of a chunk of thousands, and rewriting the chunk for each, made the
//! spool's file the export's main cost (measured at 50,000 events/s). A daemon
//! killed between a delivery and the next removal sends those records again on
//! its next start, under the same ids, which a receiver stores once
//! (docs/export.md).

use std::collections::VecDeque;

use super::spool::{Class, Error, Held, Spool};

/// Delivered records the spool is told of at once, at most.
const REMOVE_EVERY: usize = 8_192;
/// Bytes read from the spool at once, about (whole chunks, at least one).
const READ_BYTES: usize = 2 * 1024 * 1024;

#[derive(Default)]
pub(super) struct Ahead {
    waiting: VecDeque<Held>,
    /// The last sequence number read.
    read_to: Option<u64>,
    done: Vec<(Class, u64)>,
}

impl Ahead {
    /// Reads more from the spool when fewer than `want` records wait.
    pub(super) fn fill(&mut self, spool: &Spool, want: usize) -> Result<(), Error> {
        if self.waiting.len() >= want {
            return Ok(());
        }
        let more = spool.after(self.read_to, want, READ_BYTES)?;
        if let Some(last) = more.last() {
            self.read_to = Some(last.seq);
        }
        self.waiting.extend(more);
        Ok(())
    }

    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The next batch: the oldest waiting records, up to `max_records` and about
    /// `max_bytes` (at least one record).
    pub(super) fn batch(&mut self, max_records: usize, max_bytes: usize) -> Vec<Held> {
        let mut size = 0usize;
        let mut n = 0usize;
        for h in self.waiting.iter().take(max_records) {
            if n > 0 && size + h.bytes.len() > max_bytes {
                break;
            }
            size += h.bytes.len();
            n += 1;
        }
        self.waiting.drain(..n).collect()
    }

    /// Records of a batch that must wait (the endpoint failed): first again.
    pub(super) fn put_back(&mut self, held: Vec<Held>) {
        for h in held.into_iter().rev() {
            self.waiting.push_front(h);
        }
    }

    /// Records that left (delivered, or refused for good): the spool is told
    /// every [`REMOVE_EVERY`], or when nothing waits.
    pub(super) fn left(&mut self, spool: &Spool, held: &[Held]) -> Result<(), Error> {
        self.done.extend(held.iter().map(|h| (h.class, h.seq)));
        if self.done.len() >= REMOVE_EVERY || self.waiting.is_empty() {
            self.flush(spool)?;
        }
        Ok(())
    }

    /// Tells the spool of every record that left.
    pub(super) fn flush(&mut self, spool: &Spool) -> Result<(), Error> {
        if !self.done.is_empty() {
            spool.remove(&self.done)?;
            self.done.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_of(n: usize, size: usize) -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), 1 << 30).expect("open");
        s.push(Class::Event, 0..n, |seq, _, chunk| {
            let at = chunk.len();
            chunk.extend_from_slice(&seq.to_le_bytes());
            chunk.resize(at + size, 0);
            true
        })
        .expect("push");
        (dir, s)
    }

    #[test]
    fn batches_are_bounded_by_count_and_bytes() {
        let (_dir, s) = spool_of(10, 100);
        let mut a = Ahead::default();
        a.fill(&s, 4).expect("fill");
        assert_eq!(a.waiting(), 10, "a whole chunk is read");
        assert_eq!(a.batch(4, usize::MAX).len(), 4);
        assert_eq!(a.batch(100, 350).len(), 3);
        // One record bigger than the byte bound still leaves, alone.
        assert_eq!(a.batch(100, 10).len(), 1);
        let last = a.batch(100, usize::MAX);
        assert_eq!(last.iter().map(|h| h.seq).collect::<Vec<_>>(), [8, 9]);
    }

    #[test]
    fn what_left_leaves_the_spool_and_what_failed_goes_first_again() {
        let (_dir, s) = spool_of(10, 16);
        let mut a = Ahead::default();
        a.fill(&s, 4).expect("fill");
        let first = a.batch(4, usize::MAX);
        a.left(&s, &first).expect("left");
        assert_eq!(
            s.stats().expect("stats").records,
            10,
            "records still wait: the spool is told later"
        );
        let failed = a.batch(4, usize::MAX);
        a.put_back(failed);
        let again = a.batch(10, usize::MAX);
        assert_eq!(
            again.first().map(|h| h.seq),
            Some(4),
            "the failed batch first"
        );
        assert_eq!(again.len(), 6);
        // Nothing waits any more: the spool is told of everything that left.
        a.left(&s, &again).expect("left");
        assert_eq!(s.stats().expect("stats").records, 0);
        // Nothing new is read twice.
        a.fill(&s, 4).expect("fill");
        assert_eq!(a.waiting(), 0);
        s.push(Class::Summary, [()], |seq, (), chunk| {
            chunk.extend_from_slice(&seq.to_le_bytes());
            true
        })
        .expect("push");
        a.fill(&s, 4).expect("fill");
        assert_eq!(
            a.batch(10, usize::MAX)
                .iter()
                .map(|h| h.seq)
                .collect::<Vec<_>>(),
            [10]
        );
    }
}
