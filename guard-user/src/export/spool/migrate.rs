//! Spools written by earlier guards, moved into chunk files when opened, keeping
//! every record's sequence number (so its id) and the counters.

use redb::{ReadableTable as _, TableDefinition, TableHandle as _};

use super::chunks::{Pending, append};
use super::{Chunks, Class, Counts, Error, META, fail, store};

/// A record per entry (guard before 2026-11-29).
pub(super) const RECORD_TABLES: [(Class, TableDefinition<'_, u64, &[u8]>); 2] = [
    (Class::Event, TableDefinition::new("events")),
    (Class::Summary, TableDefinition::new("summaries")),
];
/// Records per chunk when a spool of one record per entry moves into chunks.
const MIGRATED_CHUNK: usize = 2_048;

/// A chunk per entry, the records in the database, and each chunk's figures
/// (guard of 2026-11-29).
type ChunkData = TableDefinition<'static, u64, &'static [u8]>;
type ChunkFigures = TableDefinition<'static, u64, (u64, u64, u64)>;
pub(super) const CHUNK_TABLES: [(Class, ChunkData, ChunkFigures); 2] = [
    (
        Class::Event,
        TableDefinition::new("event_chunks"),
        TableDefinition::new("event_chunk_info"),
    ),
    (
        Class::Summary,
        TableDefinition::new("summary_chunks"),
        TableDefinition::new("summary_chunk_info"),
    ),
];

/// Moves what earlier layouts hold into chunk files, and deletes their tables.
pub(super) fn older(tx: &redb::WriteTransaction, files: &mut Pending<'_>) -> Result<(), Error> {
    let names: Vec<String> = tx
        .list_tables()
        .map_err(fail("list tables"))?
        .map(|t| t.name().to_owned())
        .collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    let mut meta = tx.open_table(META).map_err(fail("open meta"))?;
    let mut counts = Counts::read(&meta)?;
    for (class, old) in RECORD_TABLES {
        if !has(old.name()) {
            continue;
        }
        {
            let from = tx.open_table(old).map_err(fail("open old records"))?;
            let mut to = Chunks::open(tx, class)?;
            // A chunk holds consecutive numbers (as the writer's do), so that no
            // chunk's range takes in another class's records.
            let mut chunk = Vec::new();
            let (mut first, mut last, mut n) = (0, None::<u64>, 0);
            for entry in from.iter().map_err(fail("iterate"))? {
                let (seq, bytes) = entry.map_err(fail("read"))?;
                let seq = seq.value();
                if n == MIGRATED_CHUNK || last.is_some_and(|l| seq != l + 1) {
                    store(&mut to, files, &mut counts, None, first, &chunk)?;
                    chunk.clear();
                    n = 0;
                }
                if n == 0 {
                    first = seq;
                }
                append(&mut chunk, seq, bytes.value());
                last = Some(seq);
                n += 1;
                // That layout did not count its records.
                counts.records += 1;
            }
            store(&mut to, files, &mut counts, None, first, &chunk)?;
        }
        tx.delete_table(old).map_err(fail("delete old records"))?;
    }
    for (class, data, figures) in CHUNK_TABLES {
        if has(data.name()) {
            let from = tx.open_table(data).map_err(fail("open old chunks"))?;
            let mut to = Chunks::open(tx, class)?;
            for entry in from.iter().map_err(fail("iterate"))? {
                let (key, chunk) = entry.map_err(fail("read"))?;
                store(
                    &mut to,
                    files,
                    &mut counts,
                    None,
                    key.value(),
                    chunk.value(),
                )?;
            }
        }
        for old in [data.name(), figures.name()] {
            if has(old) {
                tx.delete_table(TableDefinition::<u64, ()>::new(old))
                    .map_err(fail("delete old chunks"))?;
            }
        }
    }
    counts.write(&mut meta)
}
