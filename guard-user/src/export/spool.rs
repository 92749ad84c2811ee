//! The disk spool: what the endpoint has not acknowledged yet, in a redb database
//! under guard's state directory. Records are written in batches, each one commit
//! of one chunk (fsync'd: a daemon killed by SIGKILL, or the machine losing power
//! after the commit, loses nothing of it), and leave only when the endpoint
//! acknowledged them.
//!
//! Every record gets its id when it enters: the spool's own random id and the
//! record's sequence number (`guard_common::otlp::record_id`), kept with it, so a
//! record sent twice (a retry after a lost answer, a restart) has the same id and a
//! receiver stores it once.
//!
//! The spool is bounded in bytes. When a batch would not fit, the oldest events go
//! first, and session summaries only when no event is left: each dropped record is
//! counted by class, in the spool (so the counts survive a restart) and in
//! [`SpoolStats`].

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase as _, ReadableTable, TableDefinition, TableHandle as _,
};

/// What a record is, for what goes first when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Event,
    Summary,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Summary => "summary",
        }
    }
}

/// Chunks of records by the sequence number of their first: a chunk is the batch
/// one commit added (less what has left since), its records one after another,
/// each its sequence number, its length and its bytes (the encoded `LogRecord`,
/// its id attribute included). One entry per batch, not per record: measured at
/// 50,000 events/s, a B-tree entry per record was a fifth of the daemon's CPU.
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("event_chunks");
const SUMMARIES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("summary_chunks");
/// The tables of a spool written before chunks (a record per entry): what they
/// hold moves into chunks when the spool is opened.
const OLD_TABLES: [(Class, TableDefinition<'_, u64, &[u8]>); 2] = [
    (Class::Event, TableDefinition::new("events")),
    (Class::Summary, TableDefinition::new("summaries")),
];
/// Records per chunk when an old spool's records move into chunks.
const MIGRATED_CHUNK: usize = 2_048;
/// The spool's id, the next sequence number, the bytes held, and what was dropped.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The spool's page cache.
const CACHE_BYTES: usize = 1 << 20;

const SPOOL_ID: &str = "spool_id";
const NEXT_SEQ: &str = "next_seq";
const RECORDS: &str = "records";
const BYTES: &str = "bytes";
const DROPPED_EVENTS: &str = "dropped_events";
const DROPPED_SUMMARIES: &str = "dropped_summaries";

/// What each chunk holds, by the same key: its last sequence number, its records
/// and their bytes. A chunk whose records all left goes on these figures,
/// without being read again.
const EVENT_INFO: TableDefinition<'_, u64, (u64, u64, u64)> =
    TableDefinition::new("event_chunk_info");
const SUMMARY_INFO: TableDefinition<'_, u64, (u64, u64, u64)> =
    TableDefinition::new("summary_chunk_info");

fn table(class: Class) -> TableDefinition<'static, u64, &'static [u8]> {
    match class {
        Class::Event => EVENTS,
        Class::Summary => SUMMARIES,
    }
}

fn info(class: Class) -> TableDefinition<'static, u64, (u64, u64, u64)> {
    match class {
        Class::Event => EVENT_INFO,
        Class::Summary => SUMMARY_INFO,
    }
}

/// A class's chunks and their figures, kept together.
struct Chunks<'t> {
    data: redb::Table<'t, u64, &'static [u8]>,
    info: redb::Table<'t, u64, (u64, u64, u64)>,
}

impl<'t> Chunks<'t> {
    fn open(tx: &'t redb::WriteTransaction, class: Class) -> Result<Self, Error> {
        Ok(Self {
            data: tx.open_table(table(class)).map_err(fail("open records"))?,
            info: tx.open_table(info(class)).map_err(fail("open records"))?,
        })
    }

    /// Writes the chunk `key` (a new one, or one that lost records).
    fn put(&mut self, key: u64, chunk: &[u8]) -> Result<(), Error> {
        let (mut last, mut records, mut bytes) = (key, 0u64, 0u64);
        for (seq, record) in Records(chunk) {
            last = seq;
            records += 1;
            bytes += record.len() as u64;
        }
        self.data.insert(key, chunk).map_err(fail("insert"))?;
        self.info
            .insert(key, (last, records, bytes))
            .map_err(fail("insert"))?;
        Ok(())
    }

    fn delete(&mut self, key: u64) -> Result<(), Error> {
        self.data.remove(key).map_err(fail("remove"))?;
        self.info.remove(key).map_err(fail("remove"))?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the spool directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the spool {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("spool {what}")]
    Db {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn fail<E: std::error::Error + Send + Sync + 'static>(
    what: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| Error::Db {
        what,
        source: Box::new(e),
    }
}

/// What the spool holds and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub records: u64,
    pub bytes: u64,
    pub dropped_events: u64,
    pub dropped_summaries: u64,
}

/// One record read for sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub class: Class,
    pub seq: u64,
    pub bytes: bytes::Bytes,
}

pub struct Spool {
    db: Database,
    path: PathBuf,
    id: u64,
    max_bytes: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes` of records.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("spool.redb");
        // redb caches up to 1 GiB of pages by default: the daemon's memory, for a
        // queue read once, oldest first (measured: 372 MiB peak at 50,000 events/s).
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|source| Error::Open {
                path: path.clone(),
                source,
            })?;
        let mut tx = db.begin_write().map_err(fail("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(fail("durability"))?;
        let id = {
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            for class in [Class::Event, Class::Summary] {
                Chunks::open(&tx, class)?;
            }
            let existing = meta
                .get(SPOOL_ID)
                .map_err(fail("read id"))?
                .map(|v| v.value());
            match existing {
                Some(id) => id,
                None => {
                    let id = random_u64();
                    meta.insert(SPOOL_ID, id).map_err(fail("write id"))?;
                    id
                }
            }
        };
        migrate(&tx)?;
        tx.commit().map_err(fail("commit"))?;
        Ok(Self {
            db,
            path,
            id,
            max_bytes,
        })
    }

    /// The spool's own id: the first half of every record id.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `records` of `class` in one commit, as one chunk: `encode` is given each
    /// record's sequence number and appends its bytes (with the id it makes of it)
    /// to the chunk, or says it could not (it then appended nothing and the number
    /// goes to the next). Drops the oldest events (then summaries) to stay within
    /// the bound. Returns how many it added, and dropped of each class.
    pub fn push<T>(
        &self,
        class: Class,
        records: impl IntoIterator<Item = T>,
        mut encode: impl FnMut(u64, T, &mut Vec<u8>) -> bool,
    ) -> Result<Pushed, Error> {
        let mut tx = self.db.begin_write().map_err(fail("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(fail("durability"))?;
        let pushed = {
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            let mut counts = Counts::read(&meta)?;
            let mut t = Chunks::open(&tx, class)?;
            let mut first = counts.next_seq;
            let mut chunk = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
            let mut added = 0u64;
            for record in records {
                if chunk.len() >= CHUNK_BYTES {
                    t.put(first, &chunk)?;
                    chunk.clear();
                    first = counts.next_seq;
                }
                let at = chunk.len();
                chunk.extend_from_slice(&counts.next_seq.to_le_bytes());
                chunk.extend_from_slice(&[0; 4]);
                if !encode(counts.next_seq, record, &mut chunk) {
                    chunk.truncate(at);
                    continue;
                }
                let len = chunk.len() - at - HEADER;
                chunk[at + 8..at + HEADER].copy_from_slice(&(len as u32).to_le_bytes());
                counts.bytes += len as u64;
                counts.next_seq += 1;
                added += 1;
            }
            counts.records += added;
            if !chunk.is_empty() {
                t.put(first, &chunk)?;
            }
            drop(t);
            // Over the bound: the oldest events go first, summaries last.
            let mut dropped = [0u64; 2];
            for (victim, n) in [Class::Event, Class::Summary].into_iter().zip(&mut dropped) {
                let mut t = Chunks::open(&tx, victim)?;
                while counts.bytes > self.max_bytes {
                    let Some((key, chunk)) = t
                        .data
                        .pop_first()
                        .map_err(fail("drop"))?
                        .map(|(k, v)| (k.value(), v.value().to_vec()))
                    else {
                        break;
                    };
                    t.info.remove(key).map_err(fail("drop"))?;
                    let mut rest = Vec::new();
                    for (seq, bytes) in Records(&chunk) {
                        if counts.bytes > self.max_bytes {
                            counts.bytes = counts.bytes.saturating_sub(bytes.len() as u64);
                            counts.records = counts.records.saturating_sub(1);
                            *n += 1;
                        } else {
                            append(&mut rest, seq, bytes);
                        }
                    }
                    if !rest.is_empty() {
                        t.put(key, &rest)?;
                    }
                }
            }
            counts.dropped_events += dropped[0];
            counts.dropped_summaries += dropped[1];
            counts.write(&mut meta)?;
            Pushed {
                added,
                dropped_events: dropped[0],
                dropped_summaries: dropped[1],
            }
        };
        tx.commit().map_err(fail("commit"))?;
        Ok(pushed)
    }

    /// The records after sequence number `after` (all, with `None`), oldest first
    /// across both classes, in whole chunks: at least one, then more while fewer
    /// than `min_records` and `max_bytes` were read.
    pub fn after(
        &self,
        after: Option<u64>,
        min_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Held>, Error> {
        let tx = self.db.begin_read().map_err(fail("begin read"))?;
        let mut next = Vec::new();
        for class in [Class::Event, Class::Summary] {
            let t = tx.open_table(table(class)).map_err(fail("open records"))?;
            // From the chunk that holds the first record after `after`, found by
            // the chunks' figures (reading a chunk to learn where it ends would
            // read it twice).
            let from = match after {
                None => 0,
                Some(seq) => {
                    let info = tx.open_table(info(class)).map_err(fail("open records"))?;
                    let before = info
                        .range(..=seq.saturating_add(1))
                        .map_err(fail("iterate"))?
                        .next_back()
                        .transpose()
                        .map_err(fail("read"))?
                        .map(|(k, v)| (k.value(), v.value().0));
                    match before {
                        Some((key, end)) if end <= seq => key + 1,
                        Some((key, _)) => key,
                        None => 0,
                    }
                }
            };
            let chunks = t.range(from..).map_err(fail("iterate"))?.peekable();
            next.push((class, chunks));
        }
        let mut out: Vec<Held> = Vec::new();
        let mut bytes = 0usize;
        while out.is_empty() || (out.len() < min_records && bytes < max_bytes) {
            // The class whose next chunk comes first.
            let mut first: Option<(usize, u64)> = None;
            for (i, (_, chunks)) in next.iter_mut().enumerate() {
                if let Some(entry) = chunks.peek() {
                    let key = entry.as_ref().map_or(0, |(k, _)| k.value());
                    if first.is_none_or(|(_, k)| key < k) {
                        first = Some((i, key));
                    }
                }
            }
            let Some((i, _)) = first else { break };
            let (class, chunks) = &mut next[i];
            let Some(entry) = chunks.next() else { break };
            let (_, chunk) = entry.map_err(fail("read"))?;
            // One copy of the chunk; its records are views of it.
            let whole = bytes::Bytes::copy_from_slice(chunk.value());
            for (seq, record) in Records(&whole) {
                if after.is_some_and(|a| seq <= a) {
                    continue;
                }
                bytes += record.len();
                out.push(Held {
                    class: *class,
                    seq,
                    bytes: whole.slice_ref(record),
                });
            }
        }
        Ok(out)
    }

    /// Removes records the endpoint acknowledged (or refused for good).
    pub fn remove(&self, done: &[(Class, u64)]) -> Result<(), Error> {
        if done.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().map_err(fail("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(fail("durability"))?;
        {
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            let mut counts = Counts::read(&meta)?;
            for class in [Class::Event, Class::Summary] {
                let mut seqs: Vec<u64> = done
                    .iter()
                    .filter(|(c, _)| *c == class)
                    .map(|(_, s)| *s)
                    .collect();
                let Some(&last) = seqs.iter().max() else {
                    continue;
                };
                seqs.sort_unstable();
                seqs.dedup();
                let mut t = Chunks::open(&tx, class)?;
                // The chunks that can hold them: from the one holding the first on.
                let from = t
                    .info
                    .range(..=seqs[0])
                    .map_err(fail("iterate"))?
                    .next_back()
                    .transpose()
                    .map_err(fail("read"))?
                    .map_or(0, |(k, _)| k.value());
                let mut touched = Vec::new();
                for entry in t.info.range(from..=last).map_err(fail("iterate"))? {
                    let (key, info) = entry.map_err(fail("read"))?;
                    let (key, (end, records, bytes)) = (key.value(), info.value());
                    let done =
                        seqs.partition_point(|q| *q <= end) - seqs.partition_point(|q| *q < key);
                    if done > 0 {
                        touched.push((key, end, records, bytes, done as u64));
                    }
                }
                for (key, end, records, bytes, done) in touched {
                    // Numbers in a row, all done: the chunk goes on its figures.
                    if end - key + 1 == records && done == records {
                        t.delete(key)?;
                        counts.bytes = counts.bytes.saturating_sub(bytes);
                        counts.records = counts.records.saturating_sub(records);
                        continue;
                    }
                    let chunk = t
                        .data
                        .get(key)
                        .map_err(fail("read"))?
                        .map(|v| v.value().to_vec())
                        .unwrap_or_default();
                    let mut rest = Vec::new();
                    for (seq, record) in Records(&chunk) {
                        if seqs.binary_search(&seq).is_ok() {
                            counts.bytes = counts.bytes.saturating_sub(record.len() as u64);
                            counts.records = counts.records.saturating_sub(1);
                        } else {
                            append(&mut rest, seq, record);
                        }
                    }
                    if rest.is_empty() {
                        t.delete(key)?;
                    } else {
                        t.put(key, &rest)?;
                    }
                }
            }
            counts.write(&mut meta)?;
        }
        tx.commit().map_err(fail("commit"))?;
        Ok(())
    }

    /// What it holds and dropped, as of the last commit.
    pub fn stats(&self) -> Result<SpoolStats, Error> {
        let tx = self.db.begin_read().map_err(fail("begin read"))?;
        let meta = tx.open_table(META).map_err(fail("open meta"))?;
        let c = Counts::read(&meta)?;
        Ok(SpoolStats {
            records: c.records,
            bytes: c.bytes,
            dropped_events: c.dropped_events,
            dropped_summaries: c.dropped_summaries,
        })
    }
}

/// What one [`Spool::push`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub added: u64,
    pub dropped_events: u64,
    pub dropped_summaries: u64,
}

/// A chunk is closed past this many bytes (the next records start another).
const CHUNK_BYTES: usize = 1024 * 1024;

/// A record's header in a chunk: its sequence number, then its length (LE).
const HEADER: usize = 12;

fn append(chunk: &mut Vec<u8>, seq: u64, bytes: &[u8]) {
    chunk.extend_from_slice(&seq.to_le_bytes());
    chunk.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    chunk.extend_from_slice(bytes);
}

/// The records of a chunk: (sequence number, bytes). A chunk cut short (redb checks
/// its pages, so never expected) ends where it is cut.
struct Records<'a>(&'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.0.split_at_checked(HEADER)?;
        let seq = u64::from_le_bytes(head[..8].try_into().ok()?);
        let len = u32::from_le_bytes(head[8..].try_into().ok()?) as usize;
        let (bytes, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((seq, bytes))
    }
}

/// The spool's counters, as its meta table keeps them.
struct Counts {
    next_seq: u64,
    records: u64,
    bytes: u64,
    dropped_events: u64,
    dropped_summaries: u64,
}

impl Counts {
    fn read(meta: &impl ReadableTable<&'static str, u64>) -> Result<Self, Error> {
        let get = |key| -> Result<u64, Error> {
            Ok(meta
                .get(key)
                .map_err(fail("read meta"))?
                .map_or(0, |v| v.value()))
        };
        Ok(Self {
            next_seq: get(NEXT_SEQ)?,
            records: get(RECORDS)?,
            bytes: get(BYTES)?,
            dropped_events: get(DROPPED_EVENTS)?,
            dropped_summaries: get(DROPPED_SUMMARIES)?,
        })
    }

    fn write(&self, meta: &mut redb::Table<'_, &'static str, u64>) -> Result<(), Error> {
        for (key, value) in [
            (NEXT_SEQ, self.next_seq),
            (RECORDS, self.records),
            (BYTES, self.bytes),
            (DROPPED_EVENTS, self.dropped_events),
            (DROPPED_SUMMARIES, self.dropped_summaries),
        ] {
            meta.insert(key, value).map_err(fail("write meta"))?;
        }
        Ok(())
    }
}

/// Moves the records of a spool written before chunks into chunks, keeping their
/// sequence numbers (so their ids), and counts them.
fn migrate(tx: &redb::WriteTransaction) -> Result<(), Error> {
    let names: Vec<String> = tx
        .list_tables()
        .map_err(fail("list tables"))?
        .map(|t| t.name().to_owned())
        .collect();
    for (class, old) in OLD_TABLES {
        if !names.iter().any(|n| n == old.name()) {
            continue;
        }
        let mut moved = 0u64;
        {
            let from = tx.open_table(old).map_err(fail("open old records"))?;
            let mut to = Chunks::open(tx, class)?;
            // A chunk holds consecutive numbers (as the writer's do), so that no
            // chunk's range takes in another class's records.
            let mut chunk = Vec::new();
            let mut first = 0;
            let mut last: Option<u64> = None;
            let mut n = 0;
            for entry in from.iter().map_err(fail("iterate"))? {
                let (seq, bytes) = entry.map_err(fail("read"))?;
                let seq = seq.value();
                if n == MIGRATED_CHUNK || last.is_some_and(|l| seq != l + 1) {
                    to.put(first, &chunk)?;
                    chunk.clear();
                    moved += n as u64;
                    n = 0;
                }
                if n == 0 {
                    first = seq;
                }
                append(&mut chunk, seq, bytes.value());
                last = Some(seq);
                n += 1;
            }
            if n > 0 {
                to.put(first, &chunk)?;
                moved += n as u64;
            }
        }
        tx.delete_table(old).map_err(fail("delete old records"))?;
        let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
        let mut counts = Counts::read(&meta)?;
        counts.records += moved;
        counts.write(&mut meta)?;
    }
    Ok(())
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        // No /dev/urandom: the clock, which differs between spools all the same.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(max: u64) -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), max).expect("open");
        (dir, s)
    }

    fn push(s: &Spool, class: Class, n: usize, size: usize) -> (u64, u64) {
        let pushed = s
            .push(class, 0..n, |seq, _, chunk| {
                let at = chunk.len();
                chunk.extend_from_slice(&seq.to_le_bytes());
                chunk.resize(at + size, 0);
                true
            })
            .expect("push");
        assert_eq!(pushed.added, n as u64);
        (pushed.dropped_events, pushed.dropped_summaries)
    }

    fn seqs(s: &Spool) -> Vec<u64> {
        let held = s.after(None, usize::MAX, usize::MAX).expect("read");
        for h in &held {
            assert_eq!(
                h.bytes[..8],
                h.seq.to_le_bytes(),
                "each record its own bytes"
            );
        }
        held.iter().map(|h| h.seq).collect()
    }

    #[test]
    fn records_leave_one_by_one_from_anywhere_in_their_chunk() {
        let (dir, s) = spool(1 << 20);
        push(&s, Class::Event, 5, 16);
        push(&s, Class::Event, 5, 16);
        // From the middle of the first chunk and across into the second.
        s.remove(&[(Class::Event, 2), (Class::Event, 4), (Class::Event, 5)])
            .expect("remove");
        assert_eq!(seqs(&s), [0, 1, 3, 6, 7, 8, 9]);
        // A record not held (already gone) changes nothing.
        s.remove(&[(Class::Event, 2), (Class::Summary, 3)])
            .expect("remove");
        assert_eq!(s.stats().expect("stats").records, 7);
        // As many done in the first chunk's range as it holds, one of them already
        // gone: the chunk is read, not taken whole.
        s.remove(&[0, 2, 3].map(|q| (Class::Event, q)))
            .expect("remove");
        assert_eq!(seqs(&s), [1, 6, 7, 8, 9]);
        s.remove(&[0, 1, 3, 6].map(|q| (Class::Event, q)))
            .expect("remove");
        assert_eq!(seqs(&s), [7, 8, 9]);
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        let stats = s.stats().expect("stats");
        assert_eq!((stats.records, stats.bytes), (3, 3 * 16));
        s.remove(&[7, 8, 9].map(|q| (Class::Event, q)))
            .expect("remove");
        assert_eq!(seqs(&s), Vec::<u64>::new());
        assert_eq!(s.stats().expect("stats"), SpoolStats::default());
    }

    #[test]
    fn a_record_that_cannot_be_encoded_takes_no_number() {
        let (_dir, s) = spool(1 << 20);
        let pushed = s
            .push(Class::Event, [true, false, true], |seq, ok, chunk| {
                if ok {
                    chunk.extend_from_slice(&seq.to_le_bytes());
                }
                ok
            })
            .expect("push");
        assert_eq!(pushed.added, 2);
        assert_eq!(seqs(&s), [0, 1]);
        assert_eq!(s.stats().expect("stats").bytes, 16);
    }

    #[test]
    fn a_spool_of_one_record_per_entry_moves_into_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // A spool as guard wrote it before chunks.
            let db = Database::create(dir.path().join("spool.redb")).expect("create");
            let tx = db.begin_write().expect("begin");
            {
                let mut meta = tx.open_table(META).expect("meta");
                meta.insert(SPOOL_ID, 77).expect("id");
                meta.insert(NEXT_SEQ, 3_000).expect("seq");
                meta.insert(BYTES, 2_999 * 8).expect("bytes");
                let [(_, events), (_, summaries)] = OLD_TABLES;
                let mut t = tx.open_table(events).expect("events");
                for seq in (1..3_000).filter(|q| q % 1_000 != 0) {
                    t.insert(seq, seq.to_le_bytes().as_slice()).expect("insert");
                }
                let mut t = tx.open_table(summaries).expect("summaries");
                for seq in [1_000, 2_000] {
                    t.insert(seq, seq.to_le_bytes().as_slice()).expect("insert");
                }
            }
            tx.commit().expect("commit");
        }
        let s = Spool::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(s.id(), 77, "the spool keeps its id");
        let all = seqs(&s);
        assert!(
            all == (1..3_000).collect::<Vec<u64>>(),
            "in order, all there"
        );
        // Read as the sender reads, a little at a time: in order too.
        let mut read = Vec::new();
        loop {
            let more = s.after(read.last().copied(), 1, 1).expect("read");
            if more.is_empty() {
                break;
            }
            read.extend(more.iter().map(|h| h.seq));
        }
        assert!(read == all, "read in turn, the same");
        let stats = s.stats().expect("stats");
        assert_eq!((stats.records, stats.bytes), (2_999, 2_999 * 8));
        push(&s, Class::Event, 1, 8);
        assert_eq!(seqs(&s).last(), Some(&3_000), "numbering goes on");
        drop(s);
        // Opened again: nothing moves twice.
        let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(s.stats().expect("stats").records, 3_000);
    }

    #[test]
    fn records_keep_their_order_and_survive_a_reopen() {
        let (dir, s) = spool(1 << 20);
        push(&s, Class::Event, 3, 16);
        push(&s, Class::Summary, 1, 16);
        push(&s, Class::Event, 1, 16);
        let id = s.id();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(s.id(), id, "the spool keeps its id");
        let held = s.after(None, 100, usize::MAX).expect("read");
        let seqs: Vec<(Class, u64)> = held.iter().map(|h| (h.class, h.seq)).collect();
        assert_eq!(
            seqs,
            [
                (Class::Event, 0),
                (Class::Event, 1),
                (Class::Event, 2),
                (Class::Summary, 3),
                (Class::Event, 4)
            ]
        );
        s.remove(&seqs[..2]).expect("remove");
        let stats = s.stats().expect("stats");
        assert_eq!((stats.records, stats.bytes), (3, 48));
        // New records continue the numbering: ids are never reused.
        push(&s, Class::Event, 1, 16);
        let last = s.after(None, 100, usize::MAX).expect("read");
        assert_eq!(last.last().map(|h| h.seq), Some(5));
    }

    #[test]
    fn a_full_spool_drops_the_oldest_events_first_and_counts_them() {
        let (_dir, s) = spool(100);
        push(&s, Class::Summary, 2, 20);
        push(&s, Class::Event, 3, 20);
        // 100 bytes held; 40 more: the two oldest events go.
        let dropped = push(&s, Class::Event, 2, 20);
        assert_eq!(dropped, (2, 0));
        let held = s.after(None, 100, usize::MAX).expect("read");
        let summaries = held.iter().filter(|h| h.class == Class::Summary).count();
        assert_eq!(summaries, 2, "summaries are kept while events can go");
        // Summaries go last, when nothing else is left to drop.
        let dropped = push(&s, Class::Summary, 5, 20);
        assert_eq!(dropped, (3, 2));
        let stats = s.stats().expect("stats");
        assert_eq!((stats.dropped_events, stats.dropped_summaries), (5, 2));
        assert!(stats.bytes <= 100, "{stats:?}");
    }

    #[test]
    fn reads_go_by_whole_chunks_in_order_across_classes() {
        let (_dir, s) = spool(1 << 30);
        push(&s, Class::Event, 3, 16);
        push(&s, Class::Summary, 2, 16);
        push(&s, Class::Event, 3, 16);
        let seqs = |held: Vec<Held>| held.iter().map(|h| h.seq).collect::<Vec<_>>();
        assert_eq!(seqs(s.after(None, 1, usize::MAX).expect("read")), [0, 1, 2]);
        assert_eq!(seqs(s.after(Some(1), 1, usize::MAX).expect("read")), [2]);
        assert_eq!(
            seqs(s.after(Some(2), 3, usize::MAX).expect("read")),
            [3, 4, 5, 6, 7]
        );
        assert_eq!(seqs(s.after(Some(2), 100, 20).expect("read")), [3, 4]);
        assert_eq!(
            seqs(s.after(Some(7), 100, usize::MAX).expect("read")),
            Vec::<u64>::new()
        );
        // A batch larger than a chunk's bound is cut into several.
        let (_dir, s) = spool(1 << 30);
        push(&s, Class::Event, 3, CHUNK_BYTES / 2 + 1);
        assert_eq!(seqs(s.after(None, 1, usize::MAX).expect("read")), [0, 1]);
        assert_eq!(seqs(s.after(Some(1), 1, usize::MAX).expect("read")), [2]);
    }
}
