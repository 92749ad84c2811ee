//! What every handler shares: the configuration, the store, the tokens, and each
//! replica's own small caches. A leaf: the handlers (`web`, `ingest`, `policy`)
//! import it, and it imports none of them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    auth::source::TokenSource,
    config::{AlertRule, Config},
    signing::Signer,
    store::{Store, StoreError, read::Suggestions},
};

/// How long a replica uses the alert rules it read: a rule made or removed on
/// another replica is in force everywhere within this.
pub const ALERT_RULES_FRESH: Duration = Duration::from_secs(5);

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub store: Store,
    pub tokens: TokenSource,
    /// Ingest requests being decoded and written (`limits.max_concurrent`).
    pub ingest_slots: tokio::sync::Semaphore,
    /// The filters' suggestions, made at most once a minute (six scans of the
    /// rollup: 150 ms of the sessions page at a million sessions).
    pub suggestions: Cached<Suggestions>,
    /// The key policies served to hosts are signed with (`[policy] signing_key`).
    pub signer: Option<Signer>,
    /// The alert rules in force: the configuration file's, then the fleet's.
    pub alert_rules: Cached<Vec<AlertRule>>,
}

impl App {
    /// The alert rules in force ([`ALERT_RULES_FRESH`]): the configuration file's,
    /// then the ones kept in the fleet (a kept rule never has a file rule's name).
    pub async fn alert_rules(&self) -> Result<Arc<Vec<AlertRule>>, StoreError> {
        if let Some(rules) = self.alert_rules.fresh(ALERT_RULES_FRESH) {
            return Ok(rules);
        }
        let file = &self.config.alerts.rules;
        let kept = self.store.stored_alert_rules().await?;
        let kept = kept.into_iter().filter(|k| {
            let shadowed = file.iter().any(|r| r.name == k.name);
            if shadowed {
                tracing::warn!(rule = %k.name, "an alert rule kept in the fleet has a configuration file rule's name: the file's is in force");
            }
            !shadowed
        });
        let rules: Vec<AlertRule> = file.iter().cloned().chain(kept).collect();
        let rules = Arc::new(rules);
        self.alert_rules.put(Arc::clone(&rules));
        Ok(rules)
    }
}

/// A value this replica computed, and when.
#[derive(Debug)]
pub struct Cached<T>(Mutex<Option<(Instant, Arc<T>)>>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> Cached<T> {
    /// The value, when it was computed less than `within` ago.
    pub fn fresh(&self, within: Duration) -> Option<Arc<T>> {
        let cached = self.0.lock().ok()?;
        let (at, value) = cached.as_ref()?;
        (at.elapsed() < within).then(|| Arc::clone(value))
    }

    /// Forgets the value: the next use computes it again.
    pub fn forget(&self) {
        if let Ok(mut cached) = self.0.lock() {
            *cached = None;
        }
    }

    pub fn put(&self, value: Arc<T>) {
        if let Ok(mut cached) = self.0.lock() {
            *cached = Some((Instant::now(), value));
        }
    }
}
