//! What every handler shares: the configuration, the store, the tokens, and each
//! replica's own small caches. A leaf: the handlers (`web`, `ingest`, `policy`)
//! import it, and it imports none of them.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    auth::source::TokenSource,
    config::Config,
    signing::Signer,
    store::{Store, read::Suggestions},
};

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

    pub fn put(&self, value: Arc<T>) {
        if let Ok(mut cached) = self.0.lock() {
            *cached = Some((Instant::now(), value));
        }
    }
}
