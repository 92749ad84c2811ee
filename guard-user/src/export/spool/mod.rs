//! The disk spool: what the endpoint has not acknowledged yet, under guard's state
//! directory. Records are written in batches, each one commit (fsync'd: a daemon
//! killed by SIGKILL, or the machine losing power after the commit, loses nothing
//! of it), and leave only when the endpoint acknowledged them.
//!
//! The records themselves are in chunk files ([`chunks`]), written once and read
//! once in the usual case; a redb database keeps which chunks there are, their
//! figures, and the spool's counters. Measured at 50,000 events/s, a spool holding
//! its chunks as redb values spent a fifth of the export's CPU copying, zeroing and
//! checksumming pages.
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

mod chunks;
mod migrate;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase as _, ReadableTable, TableDefinition};

use self::chunks::{Dir, Info, Pending, Records};

/// What a record is, for what goes first when the spool is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Class {
    Event,
    Summary,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The chunks of each class by the sequence number of their first record:
/// [`Info`]'s figures and file. A chunk is what one commit added (less what has
/// left since), or several small ones in a row (see [`APPEND_BELOW`]).
type ChunkTable = TableDefinition<'static, u64, (u64, u64, u64, u64)>;
const EVENT_CHUNKS: ChunkTable = TableDefinition::new("event_chunk_files");
const SUMMARY_CHUNKS: ChunkTable = TableDefinition::new("summary_chunk_files");

/// The spool's id, the next sequence number, the bytes held, and what was dropped.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The database's page cache: it holds only the chunks' figures and counters.
const CACHE_BYTES: usize = 1 << 20;

const SPOOL_ID: &str = "spool_id";
const NEXT_SEQ: &str = "next_seq";
const NEXT_FILE: &str = "next_file";
const RECORDS: &str = "records";
const BYTES: &str = "bytes";
const DROPPED_EVENTS: &str = "dropped_events";
const DROPPED_SUMMARIES: &str = "dropped_summaries";
const LOST: &str = "lost";

/// A chunk is closed past this many bytes (the next records start another).
const CHUNK_BYTES: usize = 1024 * 1024;

/// A commit's records go at the end of the newest chunk while that chunk is
/// smaller than this and nothing came after it: a trickle of events, spooled while
/// the endpoint is away for hours, makes a few files, not one per commit. (The
/// sender reads such a chunk again as it grows: at most this much each time.)
const APPEND_BELOW: u64 = 64 * 1024;

/// Times [`Spool::after`] reads again when a chunk went between reading the
/// database and its file (the writer dropped or rewrote it meanwhile).
const READ_TRIES: usize = 8;

fn chunk_table(class: Class) -> ChunkTable {
    match class {
        Class::Event => EVENT_CHUNKS,
        Class::Summary => SUMMARY_CHUNKS,
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
    #[error("spool chunk {path}")]
    Chunk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
    /// Records whose chunk file went missing or was cut short (not by guard).
    pub lost: u64,
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
    dir: Dir,
    path: PathBuf,
    id: u64,
    max_bytes: u64,
}

/// A class's chunks, in a write transaction.
struct Chunks<'t>(redb::Table<'t, u64, (u64, u64, u64, u64)>);

impl<'t> Chunks<'t> {
    fn open(tx: &'t redb::WriteTransaction, class: Class) -> Result<Self, Error> {
        tx.open_table(chunk_table(class))
            .map(Self)
            .map_err(fail("open chunks"))
    }

    fn get(&self, key: u64) -> Result<Option<Info>, Error> {
        Ok(self
            .0
            .get(key)
            .map_err(fail("read"))?
            .map(|v| Info::from_value(v.value())))
    }

    fn put(&mut self, key: u64, info: Info) -> Result<(), Error> {
        self.0.insert(key, info.value()).map_err(fail("insert"))?;
        Ok(())
    }

    fn delete(&mut self, key: u64) -> Result<(), Error> {
        self.0.remove(key).map_err(fail("remove"))?;
        Ok(())
    }

    /// The chunk with the highest key at most `key`, or the last with `None`.
    fn at_or_before(&self, key: Option<u64>) -> Result<Option<(u64, Info)>, Error> {
        let found = match key {
            Some(key) => self.0.range(..=key).map_err(fail("iterate"))?.next_back(),
            None => self.0.last().transpose(),
        };
        Ok(found
            .transpose()
            .map_err(fail("read"))?
            .map(|(k, v)| (k.value(), Info::from_value(v.value()))))
    }

    fn first(&self) -> Result<Option<(u64, Info)>, Error> {
        Ok(self
            .0
            .first()
            .map_err(fail("read"))?
            .map(|(k, v)| (k.value(), Info::from_value(v.value()))))
    }
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, holding at most `max_bytes` of records.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let chunk_dir = Dir::open(dir)?;
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
        let tx = begin_write(&db)?;
        let mut files = Pending::new(&chunk_dir);
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
        migrate::older(&tx, &mut files)?;
        recover(&tx, &chunk_dir, &mut files)?;
        files.sync()?;
        tx.commit().map_err(fail("commit"))?;
        files.committed();
        Ok(Self {
            db,
            dir: chunk_dir,
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

    /// Adds `records` of `class` in one commit: `encode` is given each record's
    /// sequence number and appends its bytes (with the id it makes of it) to the
    /// chunk, or says it could not (it then appended nothing and the number goes to
    /// the next). Drops the oldest events (then summaries) to stay within the
    /// bound. Returns how many it added, and dropped of each class.
    pub fn push<T>(
        &self,
        class: Class,
        records: impl IntoIterator<Item = T>,
        mut encode: impl FnMut(u64, T, &mut Vec<u8>) -> bool,
    ) -> Result<Pushed, Error> {
        let tx = begin_write(&self.db)?;
        let mut files = Pending::new(&self.dir);
        let pushed = {
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            let mut counts = Counts::read(&meta)?;
            let mut t = Chunks::open(&tx, class)?;
            // The newest chunk, small, with nothing of either class after it.
            let mut open = t
                .at_or_before(None)?
                .filter(|(_, i)| i.last + 1 == counts.next_seq && i.len() < APPEND_BELOW);
            let mut first = counts.next_seq;
            let mut chunk = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
            let mut added = 0u64;
            for record in records {
                if chunk.len() >= CHUNK_BYTES {
                    store(&mut t, &mut files, &mut counts, open.take(), first, &chunk)?;
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
                let len = chunk.len() - at - chunks::HEADER;
                chunk[at + 8..at + chunks::HEADER].copy_from_slice(&(len as u32).to_le_bytes());
                counts.bytes += len as u64;
                counts.next_seq += 1;
                added += 1;
            }
            counts.records += added;
            if !chunk.is_empty() {
                store(&mut t, &mut files, &mut counts, open, first, &chunk)?;
            }
            drop(t);
            // Over the bound: the oldest events go first, summaries last.
            let mut dropped = [0u64; 2];
            for (victim, n) in [Class::Event, Class::Summary].into_iter().zip(&mut dropped) {
                let mut t = Chunks::open(&tx, victim)?;
                while counts.bytes > self.max_bytes {
                    let Some((key, info)) = t.first()? else {
                        break;
                    };
                    t.delete(key)?;
                    files.leave(info.file);
                    if counts.bytes.saturating_sub(info.bytes) >= self.max_bytes {
                        // All of it goes: on its figures, unread.
                        counts.bytes -= info.bytes;
                        counts.records = counts.records.saturating_sub(info.records);
                        *n += info.records;
                        continue;
                    }
                    let chunk = self.read(&info)?;
                    let mut rest = Vec::new();
                    for (seq, bytes) in Records(&chunk) {
                        if counts.bytes > self.max_bytes {
                            counts.bytes = counts.bytes.saturating_sub(bytes.len() as u64);
                            counts.records = counts.records.saturating_sub(1);
                            *n += 1;
                        } else {
                            chunks::append(&mut rest, seq, bytes);
                        }
                    }
                    store(&mut t, &mut files, &mut counts, None, key, &rest)?;
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
        files.sync()?;
        tx.commit().map_err(fail("commit"))?;
        files.committed();
        Ok(pushed)
    }

    fn read(&self, info: &Info) -> Result<bytes::Bytes, Error> {
        self.dir
            .read(info.file, info.len())
            .map_err(|source| self.dir.failed(info.file, source))
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
        for _ in 0..READ_TRIES {
            match self.read_after(after, min_records, max_bytes)? {
                Read::Held(out) => return Ok(out),
                Read::Gone { class, key, file } => self.lost(class, key, file)?,
            }
        }
        Err(Error::Db {
            what: "read: its chunks changed under every read",
            source: format!("{READ_TRIES} tries").into(),
        })
    }

    fn read_after(
        &self,
        after: Option<u64>,
        min_records: usize,
        max_bytes: usize,
    ) -> Result<Read, Error> {
        let tx = self.db.begin_read().map_err(fail("begin read"))?;
        let mut next = Vec::new();
        for class in [Class::Event, Class::Summary] {
            let t = tx
                .open_table(chunk_table(class))
                .map_err(fail("open chunks"))?;
            // From the chunk that holds the first record after `after`, found by
            // the chunks' figures.
            let from = match after {
                None => 0,
                Some(seq) => {
                    let before = t
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
            let (key, info) = entry.map_err(fail("read"))?;
            let (key, info) = (key.value(), Info::from_value(info.value()));
            // One read of the chunk; its records are views of it.
            let whole = match self.dir.read(info.file, info.len()) {
                Ok(whole) => whole,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(Read::Gone {
                        class: *class,
                        key,
                        file: info.file,
                    });
                }
                Err(source) => return Err(self.dir.failed(info.file, source)),
            };
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
        Ok(Read::Held(out))
    }

    /// A chunk whose file was not there (or shorter than its figures) when read:
    /// if the database still names that file, the chunk is lost (counted, and
    /// said); otherwise it was rewritten or dropped meanwhile.
    fn lost(&self, class: Class, key: u64, file: u64) -> Result<(), Error> {
        let tx = begin_write(&self.db)?;
        {
            let mut t = Chunks::open(&tx, class)?;
            let Some(info) = t.get(key)?.filter(|i| i.file == file) else {
                return Ok(());
            };
            if self.dir.len(file).is_some_and(|len| len >= info.len()) {
                return Ok(());
            }
            t.delete(key)?;
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            let mut counts = Counts::read(&meta)?;
            counts.lose(&info);
            counts.write(&mut meta)?;
            tracing::error!(
                "export: the spool's file {:016x} ({} {}s) is gone or cut short: counted as lost",
                file,
                info.records,
                class.as_str()
            );
        }
        tx.commit().map_err(fail("commit"))
    }

    /// Removes records the endpoint acknowledged (or refused for good).
    pub fn remove(&self, done: &[(Class, u64)]) -> Result<(), Error> {
        if done.is_empty() {
            return Ok(());
        }
        let tx = begin_write(&self.db)?;
        let mut files = Pending::new(&self.dir);
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
                let from = t.at_or_before(Some(seqs[0]))?.map_or(0, |(k, _)| k);
                let mut touched = Vec::new();
                for entry in t.0.range(from..=last).map_err(fail("iterate"))? {
                    let (key, info) = entry.map_err(fail("read"))?;
                    let (key, info) = (key.value(), Info::from_value(info.value()));
                    let done = seqs.partition_point(|q| *q <= info.last)
                        - seqs.partition_point(|q| *q < key);
                    if done > 0 {
                        touched.push((key, info, done as u64));
                    }
                }
                for (key, info, done) in touched {
                    t.delete(key)?;
                    files.leave(info.file);
                    // Numbers in a row, all done: the chunk goes on its figures.
                    if info.last - key + 1 == info.records && done == info.records {
                        counts.bytes = counts.bytes.saturating_sub(info.bytes);
                        counts.records = counts.records.saturating_sub(info.records);
                        continue;
                    }
                    let chunk = self.read(&info)?;
                    let mut rest = Vec::new();
                    for (seq, record) in Records(&chunk) {
                        if seqs.binary_search(&seq).is_ok() {
                            counts.bytes = counts.bytes.saturating_sub(record.len() as u64);
                            counts.records = counts.records.saturating_sub(1);
                        } else {
                            chunks::append(&mut rest, seq, record);
                        }
                    }
                    store(&mut t, &mut files, &mut counts, None, key, &rest)?;
                }
            }
            counts.write(&mut meta)?;
        }
        files.sync()?;
        tx.commit().map_err(fail("commit"))?;
        files.committed();
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
            lost: c.lost,
        })
    }
}

/// What [`Spool::read_after`] found.
enum Read {
    Held(Vec<Held>),
    /// A chunk's file was not there, or shorter than its figures.
    Gone {
        class: Class,
        key: u64,
        file: u64,
    },
}

/// Writes `chunk` (whole records) at the end of the chunk `open`, or as a new
/// chunk `key` (nothing when it is empty).
fn store(
    t: &mut Chunks<'_>,
    files: &mut Pending<'_>,
    counts: &mut Counts,
    open: Option<(u64, Info)>,
    key: u64,
    chunk: &[u8],
) -> Result<(), Error> {
    if chunk.is_empty() {
        return Ok(());
    }
    if let Some((key, mut info)) = open {
        files.append(info.file, info.len(), chunk)?;
        for (seq, record) in Records(chunk) {
            info.add(seq, record.len());
        }
        return t.put(key, info);
    }
    let file = counts.new_file();
    files.create(file, chunk)?;
    t.put(key, Info::of(key, chunk, file))
}

fn begin_write(db: &Database) -> Result<redb::WriteTransaction, Error> {
    let mut tx = db.begin_write().map_err(fail("begin"))?;
    tx.set_durability(Durability::Immediate)
        .map_err(fail("durability"))?;
    Ok(tx)
}

/// Makes the database and the chunk files agree after a daemon that stopped at
/// any point: a file no chunk names goes (written by a commit that never
/// happened, or forgotten by one that did); a file longer than its chunk's figures
/// is cut to them (an append that was never committed); a chunk whose file is
/// missing or short is lost, counted and said.
fn recover(tx: &redb::WriteTransaction, dir: &Dir, files: &mut Pending<'_>) -> Result<(), Error> {
    let mut on_disk: std::collections::HashMap<u64, u64> = dir.list()?.into_iter().collect();
    let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
    let mut counts = Counts::read(&meta)?;
    // No number a file there has is given again.
    let past_files = on_disk.keys().map(|f| f + 1).max().unwrap_or(0);
    for class in [Class::Event, Class::Summary] {
        let mut t = Chunks::open(tx, class)?;
        let mut lost = Vec::new();
        for entry in t.0.iter().map_err(fail("iterate"))? {
            let (key, info) = entry.map_err(fail("read"))?;
            let (key, info) = (key.value(), Info::from_value(info.value()));
            match on_disk.remove(&info.file) {
                Some(len) if len == info.len() => {}
                Some(len) if len > info.len() => dir.truncate(info.file, info.len())?,
                _ => lost.push((key, info)),
            }
        }
        for (key, info) in lost {
            tracing::error!(
                "export: the spool's file {:016x} ({} {}s) is gone or cut short: counted as lost",
                info.file,
                info.records,
                class.as_str()
            );
            t.delete(key)?;
            counts.lose(&info);
            files.leave(info.file);
        }
    }
    for (file, _) in on_disk {
        files.leave(file);
    }
    counts.next_file = counts.next_file.max(past_files);
    counts.write(&mut meta)
}

/// What one [`Spool::push`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub added: u64,
    pub dropped_events: u64,
    pub dropped_summaries: u64,
}

/// The spool's counters, as its meta table keeps them.
struct Counts {
    next_seq: u64,
    next_file: u64,
    records: u64,
    bytes: u64,
    dropped_events: u64,
    dropped_summaries: u64,
    lost: u64,
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
            next_file: get(NEXT_FILE)?,
            records: get(RECORDS)?,
            bytes: get(BYTES)?,
            dropped_events: get(DROPPED_EVENTS)?,
            dropped_summaries: get(DROPPED_SUMMARIES)?,
            lost: get(LOST)?,
        })
    }

    fn write(&self, meta: &mut redb::Table<'_, &'static str, u64>) -> Result<(), Error> {
        for (key, value) in [
            (NEXT_SEQ, self.next_seq),
            (NEXT_FILE, self.next_file),
            (RECORDS, self.records),
            (BYTES, self.bytes),
            (DROPPED_EVENTS, self.dropped_events),
            (DROPPED_SUMMARIES, self.dropped_summaries),
            (LOST, self.lost),
        ] {
            meta.insert(key, value).map_err(fail("write meta"))?;
        }
        Ok(())
    }

    /// A number for a new chunk file.
    fn new_file(&mut self) -> u64 {
        self.next_file += 1;
        self.next_file - 1
    }

    /// A chunk lost: its records counted.
    fn lose(&mut self, info: &Info) {
        self.records = self.records.saturating_sub(info.records);
        self.bytes = self.bytes.saturating_sub(info.bytes);
        self.lost += info.records;
    }
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
