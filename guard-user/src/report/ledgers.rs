//! Every session's ledger: the daemon's, live and for the last ended sessions, and
//! one folded from an audit log (`guard report --log`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use guard_common::line::{EventDetail, EventLine};

use super::{KEEP_ENDED, Ledger, Report};

/// Sessions whose reports the daemon builds at once, as many as the kernel's
/// per-session limits track; past it, a new session gets no report (counted).
pub const MAX_LIVE: usize = 8_192;

/// The daemon's ledgers: one per running session, and the last [`KEEP_ENDED`]
/// ended ones (their stragglers' later events still go into them).
#[derive(Debug, Default)]
pub struct Ledgers {
    live: HashMap<String, Ledger>,
    ended: VecDeque<(String, Ledger)>,
    /// Sessions left without a report because [`MAX_LIVE`] were being built.
    pub refused: u64,
}

impl Ledgers {
    /// Adds an event of `session`; returns the finished report when it ends it, and
    /// again when a `flow` record comes after the end (a socket is released after
    /// its process's exit, the root's included): the report written at the end is
    /// then written again with the bytes.
    pub fn add(&mut self, session: &str, ev: &EventLine) -> Option<Report> {
        // A running session's first: nearly every event is one's.
        let ledger = match self.live.get_mut(session) {
            Some(ledger) => ledger,
            None => {
                if let Some((_, ledger)) = self.ended.iter_mut().find(|(id, _)| id == session) {
                    ledger.add(ev);
                    return matches!(ev.detail, EventDetail::Flow { .. }).then(|| ledger.report());
                }
                if self.live.len() >= MAX_LIVE {
                    self.refused += 1;
                    return None;
                }
                self.live
                    .entry(session.to_owned())
                    .or_insert_with(|| Ledger::new(session))
            }
        };
        ledger.add(ev);
        if !ledger.ended() {
            return None;
        }
        let mut ledger = self.live.remove(session)?;
        ledger.read_package_versions();
        let report = ledger.report();
        if self.ended.len() == KEEP_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back((session.to_owned(), ledger));
        Some(report)
    }

    /// The sessions running now.
    pub fn running(&self) -> Vec<String> {
        self.live.keys().cloned().collect()
    }

    /// The report of `session` (its whole id), running or ended and kept.
    pub fn report_of(&self, session: &str) -> Option<Report> {
        self.live
            .get(session)
            .or_else(|| {
                self.ended
                    .iter()
                    .find(|(id, _)| id == session)
                    .map(|(_, l)| l)
            })
            .map(Ledger::report)
    }

    /// Whether `session` is running or among the ended sessions kept.
    pub fn knows(&self, session: &str) -> bool {
        self.live.contains_key(session) || self.ended.iter().any(|(id, _)| id == session)
    }

    /// Records of `session` the kernel dropped in all.
    pub fn dropped(&mut self, session: &str, total: u64) {
        let ledger = self.live.get_mut(session).or_else(|| {
            self.ended
                .iter_mut()
                .find(|(id, _)| id == session)
                .map(|(_, l)| l)
        });
        if let Some(l) = ledger {
            l.dropped(total);
        }
    }

    /// The report of a running or recently ended session; `session` may be a unique
    /// prefix of its id.
    pub fn get(&self, session: &str) -> Result<Report, String> {
        let mut found: Vec<&Ledger> = self
            .live
            .iter()
            .chain(self.ended.iter().map(|(id, l)| (id, l)))
            .filter(|(id, _)| id.starts_with(session))
            .map(|(_, l)| l)
            .collect();
        match found.len() {
            0 => Err(format!(
                "no session {session:?} (the daemon keeps reports of running sessions and of \
                 the last {KEEP_ENDED} ended ones; older ones: guard report --log FILE)"
            )),
            1 => Ok(found.remove(0).report()),
            n => Err(format!(
                "{n} sessions start with {session:?}: give more of the id"
            )),
        }
    }
}

/// Folds every line of an audit log that belongs to `session` (a unique prefix of its
/// id) into its report.
pub fn from_log(text: impl std::io::BufRead, session: &str) -> Result<Report, String> {
    let mut ledgers: BTreeMap<String, Ledger> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.map_err(|e| format!("reading the log: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: EventLine = serde_json::from_str(&line)
            .map_err(|e| format!("line {}: not an event: {e}", n + 1))?;
        let Some(id) = ev.session.as_deref().filter(|id| id.starts_with(session)) else {
            continue;
        };
        let ledger = ledgers
            .entry(id.to_owned())
            .or_insert_with(|| Ledger::new(id));
        ledger.add(&ev);
        if let Some(total) = dropped_total(&line) {
            ledger.dropped(total);
        }
    }
    let n = ledgers.len();
    let mut found = ledgers.into_values();
    match (found.next(), n) {
        (Some(mut l), 1) => {
            l.read_package_versions();
            Ok(l.report())
        }
        (None, _) => Err(format!("no event of a session {session:?} in the log")),
        (Some(_), n) => Err(format!(
            "{n} sessions in the log start with {session:?}: give more of the id"
        )),
    }
}

/// The `dropped_total` of a `limit` event line (records of its session dropped in
/// all).
pub fn dropped_total(line: &str) -> Option<u64> {
    if !line.contains("\"kind\":\"limit\"") {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("dropped_total")?
        .as_u64()
}
