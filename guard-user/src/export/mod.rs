//! The export: events and session summaries leave for the organisation's pipeline
//! as OpenTelemetry logs over OTLP/HTTP (docs/export.md).
//!
//! Data flows one way: the daemon's pipeline offers each audit-log line (and the
//! summaries it makes) through a bounded queue that never blocks it; a writer
//! thread turns them into log records and commits them to the disk [`spool`]; a
//! sender task reads the oldest records, sends them in batches, and removes them
//! once the endpoint has them. What cannot be queued, spooled or delivered is
//! counted ([`Stats`]), never silently lost.

mod ahead;
pub mod host;
pub mod record;
pub mod sender;
pub mod spool;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use guard_common::protocol::ExportStatus;

use self::ahead::Ahead;
use self::record::{Host, SummaryMeta};
use self::sender::{Sender, Sent};
use self::spool::{Class, Held, Spool};
use crate::policy::model::Export;

/// Records waiting between the pipeline and the writer thread: past this, the
/// pipeline counts what it could not hand over (`queue_full`) instead of waiting.
const QUEUE: usize = 65_536;
/// Records the writer commits to the spool at once, at most (a chunk).
const WRITE_BATCH: usize = 8_192;
/// How long the writer gathers records before a commit.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// A request body's size before compression, about at most (a batch is cut there).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Back-off after a failed send: from this, doubling, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a stopping daemon tries to deliver what it spooled.
const FLUSH_ON_STOP: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sender(#[from] sender::Error),
    #[error(transparent)]
    Spool(#[from] spool::Error),
}

/// What the export did, for `guard status` and the metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub queued: AtomicU64,
    pub spooled: AtomicU64,
    pub sent_records: AtomicU64,
    /// Bytes on the wire (request bodies as sent, compressed).
    pub sent_bytes: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    /// The pipeline's queue was full.
    pub dropped_queue: AtomicU64,
    /// The spool was full: the oldest events went, then summaries.
    pub dropped_spool_events: AtomicU64,
    pub dropped_spool_summaries: AtomicU64,
    /// The spool could not be written (a disk error).
    pub dropped_spool_error: AtomicU64,
    /// Records whose spool file went missing or was cut short (not by guard):
    /// the spool's own count.
    pub dropped_spool_lost: AtomicU64,
    /// An audit line the writer could not read back as JSON (never expected).
    pub dropped_unreadable: AtomicU64,
    /// The receiver refused them for good (400, or a record too big alone), or
    /// said in a partial success it could not take them.
    pub rejected: AtomicU64,
    pub spool_records: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// `ok`, `retrying` (the endpoint failed the last attempt) or `off`.
    pub state: Mutex<String>,
    pub last_error: Mutex<Option<String>>,
    pub last_success: Mutex<Option<String>>,
}

impl Stats {
    fn set(&self, state: &str, error: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            state.clone_into(&mut s);
        }
        if let Some(e) = error
            && let Ok(mut last) = self.last_error.lock()
        {
            *last = Some(e);
        }
    }

    /// What the spool holds, and lost.
    fn held(&self, s: &spool::SpoolStats) {
        self.spool_records.store(s.records, Ordering::Relaxed);
        self.spool_bytes.store(s.bytes, Ordering::Relaxed);
        self.dropped_spool_lost.store(s.lost, Ordering::Relaxed);
    }

    /// Dropped records by reason, for status and metrics.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("queue_full", load(&self.dropped_queue)),
            ("spool_full_events", load(&self.dropped_spool_events)),
            ("spool_full_summaries", load(&self.dropped_spool_summaries)),
            ("spool_error", load(&self.dropped_spool_error)),
            ("spool_lost", load(&self.dropped_spool_lost)),
            ("unreadable", load(&self.dropped_unreadable)),
            ("rejected", load(&self.rejected)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

enum Item {
    Event(Arc<str>),
    Summary(serde_json::Value, SummaryMeta),
    /// The daemon is alive and had nothing else to send (docs/export.md).
    Heartbeat,
}

/// The running export: the daemon's handle on it.
pub struct Exporter {
    tx: Option<mpsc::SyncSender<Item>>,
    kinds: Option<Vec<String>>,
    stats: Arc<Stats>,
    host: Arc<Mutex<Host>>,
    endpoint: String,
    writer: Option<std::thread::JoinHandle<()>>,
    stop: Arc<tokio::sync::Notify>,
    /// Closed when the sender thread ends.
    sent: Option<mpsc::Receiver<()>>,
    /// Summaries: how many of each session were sent (their `seq`).
    summaries: std::collections::HashMap<String, u64>,
    summary_items: usize,
    /// When something was last offered (a heartbeat goes when nothing was), in
    /// milliseconds since `started`: an atomic, as every event stores it.
    started: Instant,
    last_offer_ms: AtomicU64,
}

impl Exporter {
    /// Opens the spool in `spool_dir` and starts the writer and sender threads (the
    /// sender on a runtime of its own: no request ever runs on the thread that
    /// reads the ring buffer). `endpoint` overrides the config's.
    pub fn start(
        config: &Export,
        endpoint: Option<&str>,
        host: Host,
        spool_dir: &std::path::Path,
    ) -> Result<Self, Error> {
        let sender = Sender::new(config, endpoint)?;
        let spool = Arc::new(Spool::open(spool_dir, config.spool_max)?);
        let stats = Arc::new(Stats::default());
        stats.set("ok", None);
        let held = spool.stats()?;
        stats.held(&held);
        stats
            .dropped_spool_events
            .store(held.dropped_events, Ordering::Relaxed);
        stats
            .dropped_spool_summaries
            .store(held.dropped_summaries, Ordering::Relaxed);
        let host = Arc::new(Mutex::new(host));
        let ocsf = config.schema == crate::policy::model::Schema::Ocsf;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let wake = Arc::new(tokio::sync::Notify::new());
        let writer = {
            let (spool, stats, host, wake) = (
                Arc::clone(&spool),
                Arc::clone(&stats),
                Arc::clone(&host),
                Arc::clone(&wake),
            );
            std::thread::Builder::new()
                .name("guard-export".to_owned())
                .spawn(move || write_loop(&rx, &spool, &stats, &host, &wake, ocsf))
                .map_err(|source| spool::Error::Dir {
                    path: spool_dir.to_owned(),
                    source,
                })?
        };
        let stop = Arc::new(tokio::sync::Notify::new());
        let endpoint = sender.endpoint().to_owned();
        let (done, sent) = mpsc::channel::<()>();
        {
            let (stats, host, stop) = (Arc::clone(&stats), Arc::clone(&host), Arc::clone(&stop));
            let options = SendOptions {
                batch_records: config.batch_records,
                batch_interval: config.batch_interval,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| spool::Error::Dir {
                    path: spool_dir.to_owned(),
                    source,
                })?;
            std::thread::Builder::new()
                .name("guard-export-send".to_owned())
                .spawn(move || {
                    runtime.block_on(send_loop(sender, spool, stats, host, options, wake, stop));
                    drop(done);
                })
                .map_err(|source| spool::Error::Dir {
                    path: spool_dir.to_owned(),
                    source,
                })?;
        }
        tracing::info!(endpoint, spool = %spool_dir.display(), "exporting events and session summaries");
        Ok(Self {
            tx: Some(tx),
            kinds: config.kinds.clone(),
            stats,
            host,
            endpoint,
            writer: Some(writer),
            stop,
            sent: Some(sent),
            summaries: Default::default(),
            summary_items: config.summary_items,
            started: Instant::now(),
            last_offer_ms: AtomicU64::new(0),
        })
    }

    /// Offers one audit-log line of kind `kind`. Never waits: a full queue counts
    /// the line as dropped.
    pub fn offer_event(&self, kind: &str, line: &Arc<str>) {
        if self
            .kinds
            .as_ref()
            .is_some_and(|k| !k.iter().any(|x| x == kind))
        {
            return;
        }
        self.offer(Item::Event(Arc::clone(line)));
    }

    /// Offers a session's summary (its report as JSON); `ended` for the last.
    pub fn offer_summary(&mut self, session: &str, report: serde_json::Value, ended: bool) {
        let seq = self.summaries.entry(session.to_owned()).or_insert(0);
        *seq += 1;
        let meta = SummaryMeta {
            session: session.to_owned(),
            ended,
            seq: *seq,
        };
        if ended {
            self.summaries.remove(session);
        }
        self.offer(Item::Summary(report, meta));
    }

    /// Entries per list of a summary.
    pub fn summary_items(&self) -> usize {
        self.summary_items
    }

    /// Offers a heartbeat if nothing was offered for `every`: an idle host still
    /// reports, so the fleet tells it from a host whose guard stopped.
    pub fn heartbeat_due(&self, every: Duration) {
        let last = Duration::from_millis(self.last_offer_ms.load(Ordering::Relaxed));
        let idle = self.started.elapsed().saturating_sub(last) >= every;
        if idle {
            self.offer(Item::Heartbeat);
        }
    }

    fn offer(&self, item: Item) {
        let Some(tx) = &self.tx else { return };
        let now = self.started.elapsed().as_millis() as u64;
        self.last_offer_ms.store(now, Ordering::Relaxed);
        match tx.try_send(item) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped_queue.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The host as the next batches describe it (after a policy reload).
    pub fn set_host(&self, host: Host) {
        if let Ok(mut h) = self.host.lock() {
            *h = host;
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// What `guard status` shows.
    pub fn status(&self) -> ExportStatus {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let s = &self.stats;
        ExportStatus {
            endpoint: self.endpoint.clone(),
            state: s.state.lock().map(|s| s.clone()).unwrap_or_default(),
            pending: load(&s.queued)
                .saturating_sub(load(&s.spooled))
                .saturating_sub(load(&s.dropped_spool_error))
                .saturating_sub(load(&s.dropped_unreadable)),
            spool_records: load(&s.spool_records),
            spool_bytes: load(&s.spool_bytes),
            sent_records: load(&s.sent_records),
            sent_bytes: load(&s.sent_bytes),
            retries: load(&s.retries),
            dropped: s.dropped(),
            last_error: s.last_error.lock().ok().and_then(|e| e.clone()),
            last_success: s.last_success.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Stops: the queue is written to the spool, then the sender has a few seconds
    /// to deliver what it can (the rest waits in the spool for the next daemon).
    pub fn stop(mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.stop.notify_one();
        if let Some(sent) = self.sent.take()
            && sent.recv_timeout(FLUSH_ON_STOP) == Err(mpsc::RecvTimeoutError::Timeout)
        {
            tracing::info!(
                records = self.stats.spool_records.load(Ordering::Relaxed),
                "export: records left in the spool for the next start"
            );
        }
    }
}

/// `ocsf`: event records carry the event's OCSF records as bodies (`[export]
/// schema = "ocsf"`).
fn write_loop(
    rx: &mpsc::Receiver<Item>,
    spool: &Spool,
    stats: &Stats,
    host: &Mutex<Host>,
    wake: &tokio::sync::Notify,
    ocsf: bool,
) {
    let mut encoder = wire::Encoder::default();
    loop {
        let first = match rx.recv() {
            Ok(item) => item,
            Err(_) => return,
        };
        // Then what is queued; short of a full batch, what comes in the next
        // WRITE_EVERY too, taken at once: waiting on the queue instead would have
        // every offer wake this thread (measured: a context switch per event, a
        // tenth of the daemon's CPU at 50,000/s). A writer behind does not sleep.
        let mut items = vec![first];
        items.extend(rx.try_iter().take(WRITE_BATCH - 1));
        if items.len() < WRITE_BATCH {
            std::thread::sleep(WRITE_EVERY);
            let room = WRITE_BATCH - items.len();
            items.extend(rx.try_iter().take(room));
        }
        let host = host.lock().map(|h| h.clone()).unwrap_or_default();
        let mut events = Vec::new();
        let mut summaries = Vec::new();
        for item in items {
            match item {
                Item::Event(line) if ocsf => match serde_json::from_str::<serde_json::Value>(&line)
                {
                    Ok(v) => events.extend(
                        record::ocsf_events(&v, &host)
                            .into_iter()
                            .map(Spooled::Record),
                    ),
                    Err(e) => unreadable(stats, &e),
                },
                Item::Event(line) => events.push(Spooled::Line(line)),
                Item::Summary(report, meta) => {
                    summaries.push(Spooled::Record(record::summary(&report, &meta, &host)))
                }
                Item::Heartbeat => events.push(Spooled::Record(record::heartbeat())),
            }
        }
        let id = spool.id();
        for (class, records) in [(Class::Event, events), (Class::Summary, summaries)] {
            if records.is_empty() {
                continue;
            }
            let n = records.len() as u64;
            let pushed = spool.push(class, records, |seq, r, chunk| match r {
                Spooled::Line(line) => match encoder.event(&line, &host, id, seq, chunk) {
                    Ok(()) => true,
                    Err(e) => {
                        unreadable(stats, &e);
                        false
                    }
                },
                Spooled::Record(r) => {
                    chunk.extend_from_slice(&record::encode_with_id(r, id, seq));
                    true
                }
            });
            match pushed {
                Ok(p) => {
                    stats.spooled.fetch_add(p.added, Ordering::Relaxed);
                    let (de, ds) = (p.dropped_events, p.dropped_summaries);
                    stats.dropped_spool_events.fetch_add(de, Ordering::Relaxed);
                    stats
                        .dropped_spool_summaries
                        .fetch_add(ds, Ordering::Relaxed);
                    if de + ds > 0 {
                        tracing::warn!(
                            events = de,
                            summaries = ds,
                            "export spool full: dropped the oldest records"
                        );
                    }
                }
                Err(e) => {
                    stats.dropped_spool_error.fetch_add(n, Ordering::Relaxed);
                    stats.set("ok", Some(format!("spool: {e:#}")));
                    tracing::error!("export: cannot spool {n} records: {e:#}");
                }
            }
        }
        show(spool, stats);
        wake.notify_one();
    }
}

/// A record on its way into the spool: an audit line the encoder writes straight
/// to its bytes, or a record already built (a summary, a heartbeat, OCSF's).
enum Spooled {
    Line(Arc<str>),
    Record(opentelemetry_proto::tonic::logs::v1::LogRecord),
}

fn unreadable(stats: &Stats, e: &serde_json::Error) {
    stats.dropped_unreadable.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("export: an audit line is not JSON ({e}): dropped");
}

struct SendOptions {
    batch_records: usize,
    batch_interval: Duration,
}

async fn send_loop(
    sender: Sender,
    spool: Arc<Spool>,
    stats: Arc<Stats>,
    host: Arc<Mutex<Host>>,
    options: SendOptions,
    wake: Arc<tokio::sync::Notify>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut last_send = Instant::now();
    let mut stopping = false;
    let mut ahead = Ahead::default();
    let spool_failed = |e: spool::Error| stats.set("retrying", Some(format!("spool: {e:#}")));
    loop {
        if let Err(e) = ahead.fill(&spool, options.batch_records) {
            spool_failed(e);
        }
        let waiting = ahead.waiting();
        let full = waiting >= options.batch_records;
        let due = last_send.elapsed() >= options.batch_interval;
        if waiting == 0 || (!full && !due && !stopping) {
            if waiting == 0 {
                if let Err(e) = ahead.flush(&spool) {
                    spool_failed(e);
                }
                show(&spool, &stats);
                if stopping {
                    return;
                }
            }
            let wait = if waiting == 0 {
                Duration::from_secs(3600)
            } else {
                options.batch_interval.saturating_sub(last_send.elapsed())
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = stop.notified() => stopping = true,
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        last_send = Instant::now();
        let resource = host.lock().map(|h| h.resource()).unwrap_or_default();
        let held = ahead.batch(options.batch_records, MAX_BODY);
        let (left, failed) = deliver(&sender, &stats, resource, held).await;
        if let Err(e) = ahead.left(&spool, &left) {
            spool_failed(e);
        }
        match failed {
            None => {
                backoff = FIRST_BACKOFF;
                stats.set("ok", None);
                if let Ok(mut t) = stats.last_success.lock() {
                    *t = Some(crate::event::rfc3339(crate::host::clock::wall_ns()));
                }
                show(&spool, &stats);
            }
            Some(Failed { why, after, held }) => {
                ahead.put_back(held);
                if let Err(e) = ahead.flush(&spool) {
                    spool_failed(e);
                }
                show(&spool, &stats);
                stats.retries.fetch_add(1, Ordering::Relaxed);
                stats.set("retrying", Some(why.clone()));
                let wait = after.unwrap_or(backoff).min(Duration::from_secs(300));
                tracing::warn!(endpoint = sender.endpoint(), retry_in = ?wait, "export failed: {why}");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The spool's figures in the status.
fn show(spool: &Spool, stats: &Stats) {
    if let Ok(s) = spool.stats() {
        stats.held(&s);
    }
}

/// A delivery that must wait: why, when the endpoint said to retry, and the
/// records not delivered.
struct Failed {
    why: String,
    after: Option<Duration>,
    held: Vec<Held>,
}

/// Sends `held` (splitting it where the receiver says it is too large): the
/// records that left (delivered, or refused for good), and what must wait.
async fn deliver(
    sender: &Sender,
    stats: &Stats,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    held: Vec<Held>,
) -> (Vec<Held>, Option<Failed>) {
    let mut left = Vec::new();
    let mut queue = vec![held];
    while let Some(batch) = queue.pop() {
        let records: Vec<&[u8]> = batch.iter().map(|h| h.bytes.as_ref()).collect();
        let (body, content_type, n) = sender.body(&resource, &records);
        let size = body.len() as u64;
        match sender.send(body, content_type).await {
            Sent::Stored { rejected, message } => {
                stats
                    .sent_records
                    .fetch_add(n - rejected.min(n), Ordering::Relaxed);
                stats.sent_bytes.fetch_add(size, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
                if rejected > 0 {
                    stats.rejected.fetch_add(rejected, Ordering::Relaxed);
                    tracing::warn!(rejected, "the receiver refused some records: {message}");
                }
                left.extend(batch);
            }
            Sent::TooLarge if batch.len() > 1 => {
                let mut first = batch;
                let second = first.split_off(first.len() / 2);
                queue.push(second);
                queue.push(first);
            }
            Sent::TooLarge => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("the receiver refused a record as too large: dropped");
                left.extend(batch);
            }
            Sent::Refused { why } => {
                stats.rejected.fetch_add(n, Ordering::Relaxed);
                stats.set("retrying", Some(why.clone()));
                tracing::error!(
                    records = n,
                    "the receiver refused a batch for good ({why}): dropped"
                );
                left.extend(batch);
            }
            Sent::Retry { why, after } => {
                // This batch and the rest of the queue (in order: the queue is a
                // stack) wait.
                let held = std::iter::once(batch)
                    .chain(queue.into_iter().rev())
                    .flatten()
                    .collect();
                return (left, Some(Failed { why, after, held }));
            }
        }
    }
    (left, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat goes only when nothing else was offered for the interval: an
    /// idle daemon still reports, a busy one sends no more than it did.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_goes_when_nothing_else_did() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Export {
            // Nothing listens there: records wait in the spool.
            endpoint: Some("http://127.0.0.1:9/v1/logs".into()),
            ..Export::default()
        };
        let exporter =
            Exporter::start(&config, None, Host::default(), dir.path()).expect("an exporter");
        let queued = || exporter.stats.queued.load(Ordering::Relaxed);
        exporter.heartbeat_due(Duration::from_secs(60));
        assert_eq!(queued(), 0, "just started: not idle for a minute yet");
        exporter.heartbeat_due(Duration::ZERO);
        assert_eq!(queued(), 1, "idle for the interval: a heartbeat");
        exporter.offer_event("exec", &Arc::from(r#"{"kind":"exec","ts":"t"}"#));
        exporter.heartbeat_due(Duration::from_secs(60));
        assert_eq!(queued(), 2, "an event just went: no heartbeat");
        let record = record::heartbeat();
        assert_eq!(record.event_name, guard_common::otlp::HEARTBEAT_EVENT);
        assert!(record.body.is_none(), "the resource is the news");
        exporter.stop();
    }
}
