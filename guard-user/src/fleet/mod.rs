//! Policy from the fleet: a task asks the fleet for the assignment of this host's
//! group (`[fleet]`: `GET policy_url?group=G&labels=K=V,…`, with `[export]`'s
//! credential and TLS), and hands each new answer to the daemon's loop, which verifies the
//! signature against the pinned key and applies the policy like a reload
//! (`daemon::handle`). The last applied answer is kept in the state directory, so a
//! restart without the fleet enforces it again; a fleet that cannot be reached
//! changes nothing (docs/fleet.md, "Policy from the fleet").
//!
//! When the policy in force sets `[packages] first_seen`, a second task pulls the
//! organisation's package names (`GET /v1/packages?since=MS`, a page at a time) into
//! the [`Names`] the pipeline judges against.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use guard_policy::{
    diag::Diagnostic,
    model::{Export, Fleet, Policy},
    packages::{Inventory, NamesPage},
    signed::{Envelope, Refused},
};
use tokio::{sync::mpsc, task::JoinHandle};

/// Where the applied assignment is kept, under the state directory.
pub const KEPT: &str = "fleet-policy.json";

/// The group this host asks for: `[fleet] group`, else the host's name.
pub fn group(fleet: &Fleet) -> String {
    fleet
        .group
        .clone()
        .unwrap_or_else(|| crate::host::uname().0)
}

/// The organisation's package names (`[packages] first_seen`): filled by the pull,
/// read and added to by the pipeline.
pub type Names = Arc<Mutex<Inventory>>;

/// The pulling tasks; they stop when this is dropped.
#[derive(Debug)]
pub struct Puller {
    tasks: Vec<JoinHandle<()>>,
    /// What it was started with, to restart it when that changes: the settings,
    /// and whether it pulls the package names.
    pub config: (Fleet, Export, bool),
}

impl Drop for Puller {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts asking the fleet every `[fleet] interval` (and now); each answer that
/// differs from the previous one goes to `tx`. With `names`, also pulls the
/// organisation's package names into it.
pub fn start(
    fleet: &Fleet,
    export: &Export,
    names: Option<Names>,
    tx: mpsc::Sender<Envelope>,
) -> anyhow::Result<Puller> {
    let (client, headers) = crate::export::sender::connection(export)?;
    let mut tasks = Vec::new();
    if let Some(names) = names.clone() {
        let packages_url = reqwest::Url::parse(&fleet.policy_url)
            .and_then(|u| u.join("packages"))
            .map_err(|e| anyhow::anyhow!("[fleet] policy_url: {e}"))?;
        tasks.push(tokio::spawn(pull_names(
            client.clone(),
            headers.clone(),
            packages_url,
            fleet.interval,
            names,
        )));
    }
    let url = fleet.policy_url.clone();
    let group = group(fleet);
    let mut query = vec![("group", group.clone())];
    if !fleet.labels.0.is_empty() {
        query.push(("labels", fleet.labels.to_string()));
    }
    let interval = fleet.interval;
    let task = tokio::spawn(async move {
        let mut last: Option<(u64, String)> = None;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let asked = client
                .get(&url)
                .query(&query)
                .headers(headers.clone())
                .send()
                .await;
            let envelope = match asked {
                Ok(r) if r.status() == reqwest::StatusCode::OK => r.json::<Envelope>().await,
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                    tracing::debug!(%group, "the fleet assigns this group no policy");
                    continue;
                }
                Ok(r) => {
                    tracing::warn!(%url, status = %r.status(), "the fleet did not serve a policy; the policy in force stays");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, "the fleet cannot be reached; the policy in force stays");
                    continue;
                }
            };
            let envelope = match envelope {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "the fleet's answer is not a policy; the policy in force stays");
                    continue;
                }
            };
            let key = (envelope.serial, envelope.signature.clone());
            if last.as_ref() == Some(&key) {
                continue;
            }
            last = Some(key);
            if tx.send(envelope).await.is_err() {
                return;
            }
        }
    });
    tasks.push(task);
    Ok(Puller {
        tasks,
        config: (fleet.clone(), export.clone(), names.is_some()),
    })
}

/// Pulls the organisation's package names into `names` every `interval` (and now):
/// each pull asks from where the last ended, page after page until the fleet has
/// no more; after the first whole pull `names` is ready. A fleet that cannot be
/// reached keeps what `names` holds (and, before the first whole pull, packages
/// are not judged).
async fn pull_names(
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    url: reqwest::Url,
    interval: std::time::Duration,
    names: Names,
) {
    let mut since = 0_i64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            let page = async {
                client
                    .get(url.clone())
                    .query(&[("since", since)])
                    .headers(headers.clone())
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<NamesPage>()
                    .await
            };
            let page = match page.await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "the fleet's package names cannot be read; packages are judged against the names this host has (none before the whole list arrived)");
                    break;
                }
            };
            let mut held = names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (ecosystem, name) in &page.names {
                held.insert(ecosystem, name);
            }
            // A full page that does not move the cursor would be asked again
            // forever: wait for the next tick.
            let stuck = page.more && page.until <= since;
            since = page.until;
            if !page.more || stuck {
                if !held.is_ready() {
                    tracing::info!(
                        names = held.len(),
                        "the organisation's package names arrived"
                    );
                }
                held.set_ready();
                break;
            }
        }
    }
}

/// What is in force on a host whose own policy is `local`, holding `envelope`
/// (the fleet's last applied assignment): that assignment, with its policy, when
/// `local` still names the fleet whose key signed it; else none, and `local`
/// (the log says why an assignment was left out).
pub fn choose(
    local: (Policy, Vec<Diagnostic>),
    envelope: Option<Envelope>,
) -> (Option<Envelope>, (Policy, Vec<Diagnostic>)) {
    let Some(envelope) = envelope.filter(|_| local.0.fleet.is_some()) else {
        return (None, local);
    };
    match served(&local.0, &envelope, None) {
        Ok(policy) => (Some(envelope), policy),
        Err(e) => {
            tracing::warn!(
                "the fleet's policy {} is left out under {}: {e}; the host's own policy is in \
                 force",
                envelope.name(),
                local.0.name
            );
            (None, local)
        }
    }
}

/// The assignment kept by the last run, if any (it is verified again before use).
pub fn kept(state_dir: &Path) -> Option<Envelope> {
    let text = std::fs::read_to_string(state_dir.join(KEPT)).ok()?;
    match serde_json::from_str(&text) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "the kept fleet policy is not readable; left out");
            None
        }
    }
}

/// Keeps `envelope` for the next start (written aside, then renamed over).
pub fn keep(state_dir: &Path, envelope: &Envelope) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let path: PathBuf = state_dir.join(KEPT);
    let tmp = state_dir.join(format!("{KEPT}.new"));
    let text = serde_json::to_vec(envelope).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// Removes the kept assignment (the host's own file no longer names a fleet).
pub fn forget(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(KEPT));
}

/// The policy in force under `envelope` on a host whose own policy is `local`:
/// refused unless `local` names a fleet whose key signed it, for this host's
/// group, no older than assignment `current`, and its text checks.
pub fn served(
    local: &Policy,
    envelope: &Envelope,
    current: Option<u64>,
) -> Result<(Policy, Vec<Diagnostic>), Refused> {
    let fleet = local.fleet.as_ref().ok_or(Refused::NoFleet)?;
    let mode = envelope.verify(&fleet.public_key, &group(fleet), current)?;
    envelope.policy(mode, local)
}
