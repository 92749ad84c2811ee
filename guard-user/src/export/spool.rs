//! The disk spool: what the endpoint has not acknowledged yet, in a redb database
//! under guard's state directory. Records are written in batches, each one commit
//! (fsync'd: a daemon killed by SIGKILL, or the machine losing power after the
//! commit, loses nothing of it), and leave only when the endpoint acknowledged them.
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
    Database, Durability, ReadableDatabase as _, ReadableTable, ReadableTableMetadata as _,
    TableDefinition,
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

/// Records by sequence number: the encoded `LogRecord` (its id attribute included).
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
const SUMMARIES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("summaries");
/// The spool's id, the next sequence number, the bytes held, and what was dropped.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The spool's page cache.
const CACHE_BYTES: usize = 8 << 20;

const SPOOL_ID: &str = "spool_id";
const NEXT_SEQ: &str = "next_seq";
const BYTES: &str = "bytes";
const DROPPED_EVENTS: &str = "dropped_events";
const DROPPED_SUMMARIES: &str = "dropped_summaries";

fn table(class: Class) -> TableDefinition<'static, u64, &'static [u8]> {
    match class {
        Class::Event => EVENTS,
        Class::Summary => SUMMARIES,
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
    pub bytes: Vec<u8>,
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
            tx.open_table(EVENTS).map_err(fail("open events"))?;
            tx.open_table(SUMMARIES).map_err(fail("open summaries"))?;
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

    /// Adds `records` of `class` in one commit: `encode` is given each record's
    /// sequence number and returns its bytes (with the id it makes of it). Drops
    /// the oldest events (then summaries) to stay within the bound; returns how
    /// many of each class it dropped.
    pub fn push<T>(
        &self,
        class: Class,
        records: impl IntoIterator<Item = T>,
        mut encode: impl FnMut(u64, T) -> Vec<u8>,
    ) -> Result<(u64, u64), Error> {
        let mut tx = self.db.begin_write().map_err(fail("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(fail("durability"))?;
        let dropped = {
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            let get = |meta: &redb::Table<'_, &str, u64>, key| -> Result<u64, Error> {
                Ok(meta
                    .get(key)
                    .map_err(fail("read meta"))?
                    .map_or(0, |v| v.value()))
            };
            let mut seq = get(&meta, NEXT_SEQ)?;
            let mut bytes = get(&meta, BYTES)?;
            let mut added = Vec::new();
            {
                let mut t = tx.open_table(table(class)).map_err(fail("open records"))?;
                for record in records {
                    let encoded = encode(seq, record);
                    bytes += encoded.len() as u64;
                    t.insert(seq, encoded.as_slice()).map_err(fail("insert"))?;
                    added.push(seq);
                    seq += 1;
                }
            }
            // Over the bound: the oldest events go first, summaries last.
            let mut dropped = (0u64, 0u64);
            for victim in [Class::Event, Class::Summary] {
                if bytes <= self.max_bytes {
                    break;
                }
                let mut t = tx.open_table(table(victim)).map_err(fail("open records"))?;
                while bytes > self.max_bytes {
                    let Some((_, v)) = t.pop_first().map_err(fail("drop"))? else {
                        break;
                    };
                    bytes = bytes.saturating_sub(v.value().len() as u64);
                    match victim {
                        Class::Event => dropped.0 += 1,
                        Class::Summary => dropped.1 += 1,
                    }
                }
            }
            let de = get(&meta, DROPPED_EVENTS)? + dropped.0;
            let ds = get(&meta, DROPPED_SUMMARIES)? + dropped.1;
            meta.insert(NEXT_SEQ, seq).map_err(fail("write meta"))?;
            meta.insert(BYTES, bytes).map_err(fail("write meta"))?;
            meta.insert(DROPPED_EVENTS, de)
                .map_err(fail("write meta"))?;
            meta.insert(DROPPED_SUMMARIES, ds)
                .map_err(fail("write meta"))?;
            dropped
        };
        tx.commit().map_err(fail("commit"))?;
        Ok(dropped)
    }

    /// The oldest records (by sequence number, both classes), up to `max_records`
    /// and about `max_bytes` (at least one record).
    pub fn oldest(&self, max_records: usize, max_bytes: usize) -> Result<Vec<Held>, Error> {
        let tx = self.db.begin_read().map_err(fail("begin read"))?;
        let mut out: Vec<Held> = Vec::new();
        for class in [Class::Event, Class::Summary] {
            let t = tx.open_table(table(class)).map_err(fail("open records"))?;
            for entry in t.iter().map_err(fail("iterate"))?.take(max_records) {
                let (k, v) = entry.map_err(fail("read"))?;
                out.push(Held {
                    class,
                    seq: k.value(),
                    bytes: v.value().to_vec(),
                });
            }
        }
        out.sort_by_key(|h| h.seq);
        let mut size = 0usize;
        let mut keep = 0usize;
        for h in out.iter().take(max_records) {
            if keep > 0 && size + h.bytes.len() > max_bytes {
                break;
            }
            size += h.bytes.len();
            keep += 1;
        }
        out.truncate(keep);
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
            let mut freed = 0u64;
            for class in [Class::Event, Class::Summary] {
                let mut t = tx.open_table(table(class)).map_err(fail("open records"))?;
                for (_, seq) in done.iter().filter(|(c, _)| *c == class) {
                    if let Some(v) = t.remove(seq).map_err(fail("remove"))? {
                        freed += v.value().len() as u64;
                    }
                }
            }
            let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
            let bytes = meta
                .get(BYTES)
                .map_err(fail("read meta"))?
                .map_or(0, |v| v.value());
            meta.insert(BYTES, bytes.saturating_sub(freed))
                .map_err(fail("write meta"))?;
        }
        tx.commit().map_err(fail("commit"))?;
        Ok(())
    }

    /// What it holds and dropped, as of the last commit.
    pub fn stats(&self) -> Result<SpoolStats, Error> {
        let tx = self.db.begin_read().map_err(fail("begin read"))?;
        let meta = tx.open_table(META).map_err(fail("open meta"))?;
        let get = |key| -> Result<u64, Error> {
            Ok(meta
                .get(key)
                .map_err(fail("read meta"))?
                .map_or(0, |v| v.value()))
        };
        let events = tx.open_table(EVENTS).map_err(fail("open records"))?;
        let summaries = tx.open_table(SUMMARIES).map_err(fail("open records"))?;
        Ok(SpoolStats {
            records: events.len().map_err(fail("count"))?
                + summaries.len().map_err(fail("count"))?,
            bytes: get(BYTES)?,
            dropped_events: get(DROPPED_EVENTS)?,
            dropped_summaries: get(DROPPED_SUMMARIES)?,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(max: u64) -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Spool::open(dir.path(), max).expect("open");
        (dir, s)
    }

    fn push(s: &Spool, class: Class, n: usize, size: usize) -> (u64, u64) {
        s.push(class, 0..n, |seq, _| {
            let mut v = seq.to_le_bytes().to_vec();
            v.resize(size, 0);
            v
        })
        .expect("push")
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
        let held = s.oldest(100, usize::MAX).expect("oldest");
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
        let last = s.oldest(100, usize::MAX).expect("oldest");
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
        let held = s.oldest(100, usize::MAX).expect("oldest");
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
    fn batches_are_bounded_by_count_and_bytes() {
        let (_dir, s) = spool(1 << 20);
        push(&s, Class::Event, 10, 100);
        assert_eq!(s.oldest(4, usize::MAX).expect("oldest").len(), 4);
        assert_eq!(s.oldest(100, 350).expect("oldest").len(), 3);
        // One record bigger than the byte bound still leaves, alone.
        assert_eq!(s.oldest(100, 10).expect("oldest").len(), 1);
    }
}
