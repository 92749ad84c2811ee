//! Alerts: events an `[alerts]` rule catches, delivered from the database's outbox
//! to webhooks, Slack, Teams, PagerDuty and e-mail (docs/fleet.md).
//!
//! Ingest queues a row per alert rule, destination and event in the batch's own
//! transaction (`store::alerts`). Every replica runs [`deliver`]: each second it
//! leases what is due, sends one message per alert and destination (a storm is one
//! message with a count: after a message, what follows waits out the alert's
//! window), and marks the rows sent, or due again after a back-off.

mod mail;
pub mod message;

use std::{sync::Arc, time::Duration};

use crate::app::App;
use crate::config::{Alerts, Destination, SEND_TIMEOUT};
use crate::store::{
    Store, StoreError,
    alerts::{Claim, Delivery},
    now_ms,
};

/// How often a replica looks for due alerts.
pub const TICK: Duration = Duration::from_secs(1);
/// How often a replica looks for hosts gone silent.
const SILENT_CHECK: Duration = Duration::from_secs(15);
/// Deliveries tried before the rows are given up (`failed`): with the default
/// first retry (5 s), about two hours of back-off, doubling to at most 15 minutes.
pub const ATTEMPTS: i64 = 14;

/// Delivers alerts until the task is dropped (nothing to do without
/// destinations). A host silent for `stale_after` is an alert of its own
/// ([`crate::config::HOST_SILENT`]).
pub async fn deliver(app: Arc<App>) {
    let (store, alerts) = (&app.store, &app.config.alerts);
    let stale_after = app.config.dashboard.stale_after;
    if alerts.destinations.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder().timeout(SEND_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "alerts: no HTTP client; alerts stay queued");
            return;
        }
    };
    let stale_ms = i64::try_from(stale_after.as_millis()).unwrap_or(i64::MAX);
    let silent_every = (stale_after / 4).min(SILENT_CHECK);
    let mut silent_checked: Option<std::time::Instant> = None;
    loop {
        let now = now_ms();
        // Silence is minutes long: looked for every SILENT_CHECK (a quarter of
        // `stale_after` when that is shorter), not every tick.
        if silent_checked.is_none_or(|t| t.elapsed() >= silent_every) {
            silent_checked = Some(std::time::Instant::now());
            let queued = match app.alert_rules().await {
                Ok(rules) => store.queue_silent_hosts(&rules, now - stale_ms, now).await,
                Err(e) => Err(e),
            };
            if let Err(e) = queued {
                tracing::warn!(error = %e, "alerts: silent hosts not checked");
            }
        }
        if let Err(e) = once(store, alerts, &client).await {
            tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "alerts: delivery failed");
        }
        tokio::time::sleep(TICK).await;
    }
}

/// One round: sends what is due now. Returns the messages sent.
pub async fn once(
    store: &Store,
    alerts: &Alerts,
    client: &reqwest::Client,
) -> Result<usize, StoreError> {
    let now = now_ms();
    let window = i64::try_from(alerts.window.as_millis()).unwrap_or(i64::MAX);
    let lease = i64::try_from(alerts.lease.as_millis()).unwrap_or(i64::MAX);
    let mut sent = 0;
    for (alert, name) in store.alerts_due(now, window).await? {
        // A destination taken out of the configuration: its rows wait for it.
        let Some(destination) = alerts.destination(&name) else {
            continue;
        };
        let Some(claim) = store.claim_alerts(&alert, &name, now, lease).await? else {
            continue;
        };
        let delivery = match send(client, destination, alerts, &claim).await {
            Ok(()) => {
                sent += 1;
                tracing::info!(
                    alert,
                    destination = name,
                    events = claim.rows.len(),
                    "alert sent"
                );
                Delivery::Sent
            }
            Err(error) => {
                let attempts = claim.rows.iter().map(|r| r.attempts).max().unwrap_or(1);
                let due_ms =
                    (attempts < ATTEMPTS).then(|| now_ms() + backoff(attempts, alerts.retry));
                tracing::warn!(
                    alert,
                    destination = name,
                    attempts,
                    error,
                    "alert not delivered"
                );
                Delivery::Failed { error, due_ms }
            }
        };
        store.finish_alerts(&claim, &delivery, now_ms()).await?;
    }
    Ok(sent)
}

/// The wait before the next try after `attempts` failed ones, from `first`.
fn backoff(attempts: i64, first: Duration) -> i64 {
    let first = i64::try_from(first.as_millis()).unwrap_or(i64::MAX);
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    first.saturating_mul(1 << doublings).min(15 * 60 * 1000)
}

async fn send(
    client: &reqwest::Client,
    destination: &Destination,
    alerts: &Alerts,
    claim: &Claim,
) -> Result<(), String> {
    let (body, headers) = match message::render(destination, alerts, claim, now_ms() / 1000) {
        message::Message::Post { body, headers } => (body, headers),
        message::Message::Mail { subject, text } => {
            let Some(mail) = &destination.mail else {
                return Err("email: no sender and recipients".to_owned());
            };
            return mail::send(mail, subject, text).await;
        }
    };
    let mut request = client
        .post(&destination.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| {
        // Not the URL: an incoming webhook's URL is its credential.
        format!("{}: {}", destination.kind.as_str(), e.without_url())
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{} answered {status}", destination.kind.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_to_a_ceiling() {
        let first = Duration::from_secs(5);
        assert_eq!(backoff(1, first), 5_000);
        assert_eq!(backoff(2, first), 10_000);
        assert_eq!(backoff(5, first), 80_000);
        assert_eq!(backoff(13, first), 15 * 60 * 1000);
    }
}
