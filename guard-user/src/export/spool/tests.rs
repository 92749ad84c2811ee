use redb::{Database, ReadableDatabase as _, TableHandle as _};

use super::migrate::{CHUNK_TABLES, RECORD_TABLES};
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
            let [(_, events), (_, summaries)] = RECORD_TABLES;
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

fn files(dir: &Path) -> Vec<(u64, u64)> {
    let mut files: Vec<(u64, u64)> = std::fs::read_dir(dir.join("chunks"))
        .expect("chunks")
        .filter_map(|e| {
            let e = e.expect("entry");
            let file = u64::from_str_radix(e.file_name().to_str()?, 16).ok()?;
            Some((file, e.metadata().expect("metadata").len()))
        })
        .collect();
    files.sort_unstable();
    files
}

#[test]
fn a_spool_of_chunks_in_the_database_moves_into_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // A spool as guard wrote it on 2026-11-29: chunks as the database's values.
        let db = Database::create(dir.path().join("spool.redb")).expect("create");
        let tx = db.begin_write().expect("begin");
        {
            let mut meta = tx.open_table(META).expect("meta");
            meta.insert(SPOOL_ID, 78).expect("id");
            meta.insert(NEXT_SEQ, 9).expect("seq");
            meta.insert(RECORDS, 8).expect("records");
            meta.insert(BYTES, 8 * 8).expect("bytes");
            meta.insert(DROPPED_EVENTS, 1).expect("dropped");
            let [(_, events, event_info), (_, summaries, summary_info)] = CHUNK_TABLES;
            for (data, info, seqs) in [
                (events, event_info, &[1u64, 2, 3, 6, 7, 8][..]),
                (summaries, summary_info, &[4, 5]),
            ] {
                let mut t = tx.open_table(data).expect("chunks");
                let mut figures = tx.open_table(info).expect("info");
                for part in seqs.chunk_by(|a, b| b == &(a + 1)) {
                    let mut chunk = Vec::new();
                    for &seq in part {
                        chunks::append(&mut chunk, seq, &seq.to_le_bytes());
                    }
                    t.insert(part[0], chunk.as_slice()).expect("insert");
                    let n = part.len() as u64;
                    figures
                        .insert(part[0], (part[0] + n - 1, n, n * 8))
                        .expect("insert");
                }
            }
        }
        tx.commit().expect("commit");
    }
    let s = Spool::open(dir.path(), 1 << 20).expect("open");
    assert_eq!(s.id(), 78, "the spool keeps its id");
    assert_eq!(seqs(&s), [1, 2, 3, 4, 5, 6, 7, 8]);
    let held = s.after(Some(3), 1, usize::MAX).expect("read");
    assert_eq!(
        held.iter().map(|h| (h.class, h.seq)).collect::<Vec<_>>(),
        [(Class::Summary, 4), (Class::Summary, 5)]
    );
    assert_eq!(
        s.stats().expect("stats"),
        SpoolStats {
            records: 8,
            bytes: 64,
            dropped_events: 1,
            dropped_summaries: 0,
            lost: 0
        }
    );
    assert_eq!(files(dir.path()).len(), 3, "a file per chunk");
    push(&s, Class::Event, 1, 8);
    assert_eq!(seqs(&s).last(), Some(&9), "numbering goes on");
    drop(s);
    let db = Database::open(dir.path().join("spool.redb")).expect("open");
    let tables: Vec<String> = db
        .begin_read()
        .expect("read")
        .list_tables()
        .expect("tables")
        .map(|t| t.name().to_owned())
        .collect();
    for (_, data, info) in CHUNK_TABLES {
        assert!(
            !tables.iter().any(|t| t == data.name() || t == info.name()),
            "{tables:?}"
        );
    }
}

#[test]
fn a_trickle_of_records_makes_few_files_and_reads_in_turn() {
    let (dir, s) = spool(1 << 30);
    let mut read = Vec::new();
    for i in 0..2_000 {
        push(&s, Class::Event, 1, 100);
        if i % 7 == 0 {
            // The sender reads as it goes: a growing chunk gives each record once.
            let more = s.after(read.last().copied(), 1, usize::MAX).expect("read");
            read.extend(more.iter().map(|h| h.seq));
        }
    }
    read.extend(
        s.after(read.last().copied(), usize::MAX, usize::MAX)
            .expect("read")
            .iter()
            .map(|h| h.seq),
    );
    assert!(
        read == (0..2_000).collect::<Vec<u64>>(),
        "each once, in order"
    );
    // 2,000 records of 112 bytes: chunks of about APPEND_BELOW, not a file each.
    let n = files(dir.path()).len();
    assert!((3..=5).contains(&n), "{n} files");
    // A chunk past APPEND_BELOW takes no more: the next commit starts another.
    push(&s, Class::Event, 1, APPEND_BELOW as usize);
    assert_eq!(files(dir.path()).len(), n);
    push(&s, Class::Event, 1, 8);
    assert_eq!(files(dir.path()).len(), n + 1);
}

#[test]
fn after_a_crash_the_files_and_the_database_agree() {
    let (dir, s) = spool(1 << 20);
    push(&s, Class::Event, 3, 16);
    push(&s, Class::Summary, 2, 16);
    let before = files(dir.path());
    assert_eq!(before.len(), 2);
    drop(s);
    // An append never committed (a torn tail), and a file no commit named.
    let chunks = dir.path().join("chunks");
    let first = chunks.join(format!("{:016x}", before[0].0));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&first)
        .expect("open");
    std::io::Write::write_all(&mut f, &[7; 20]).expect("write");
    drop(f);
    std::fs::write(chunks.join(format!("{:016x}", 999)), b"never committed").expect("write");
    std::fs::write(chunks.join("not-a-chunk"), b"left alone").expect("write");
    let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(seqs(&s), [0, 1, 2, 3, 4]);
    assert_eq!(
        files(dir.path()),
        before,
        "the torn tail cut, the stray chunk gone"
    );
    assert!(
        chunks.join("not-a-chunk").exists(),
        "not a chunk: left alone"
    );
    // And goes on.
    push(&s, Class::Event, 1, 16);
    assert_eq!(seqs(&s), [0, 1, 2, 3, 4, 5]);
    // A chunk whose file went: counted as lost, while the daemon runs …
    std::fs::remove_file(&first).expect("remove");
    assert_eq!(seqs(&s), [3, 4, 5]);
    assert_eq!(
        s.stats().expect("stats"),
        SpoolStats {
            records: 3,
            bytes: 48,
            dropped_events: 0,
            dropped_summaries: 0,
            lost: 3
        }
    );
    // … and when it starts.
    let last = files(dir.path()).last().copied().expect("a file");
    std::fs::remove_file(chunks.join(format!("{:016x}", last.0))).expect("remove");
    drop(s);
    let s = Spool::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(seqs(&s), [3, 4]);
    let stats = s.stats().expect("stats");
    assert_eq!((stats.records, stats.lost), (2, 4));
}
