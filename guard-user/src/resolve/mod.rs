//! Names in network rules, resolved again as their records expire, so the kernel's
//! destination rules follow them. Runs as its own task and reports to the daemon's
//! loop through a channel.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};

/// Something the resolver learned: a name and its addresses.
pub type Resolved = (String, Vec<IpAddr>);

/// Name servers from /etc/resolv.conf (`@resolvers` in network rules).
pub fn resolvers() -> Vec<IpAddr> {
    parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// The running resolver task, replaced when the policy's names change.
pub struct Resolver {
    task: Option<JoinHandle<()>>,
    tx: mpsc::Sender<Resolved>,
}

impl Resolver {
    /// A resolver reporting on `tx`; nothing runs until [`Resolver::restart`].
    pub fn new(tx: mpsc::Sender<Resolved>) -> Self {
        Self { task: None, tx }
    }

    /// Resolves `names` from now on (none: stops).
    pub fn restart(&mut self, names: Vec<String>) {
        self.stop();
        if !names.is_empty() {
            self.task = Some(tokio::spawn(resolve_loop(names, self.tx.clone())));
        }
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Resolves `names`, again as each answer's records expire (at least every 5 s,
/// at most every 10 min; 30 s after a failure).
async fn resolve_loop(names: Vec<String>, tx: mpsc::Sender<Resolved>) {
    use hickory_resolver::TokioResolver;
    let resolver = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
        Ok(r) => r,
        Err(e) => {
            return tracing::warn!("no DNS resolver ({e}); names in network rules stay unresolved");
        }
    };
    let mut due: Vec<(String, Instant)> = names.into_iter().map(|n| (n, Instant::now())).collect();
    loop {
        let now = Instant::now();
        for (name, at) in due.iter_mut().filter(|(_, at)| *at <= now) {
            match tokio::time::timeout(Duration::from_secs(5), resolver.lookup_ip(name.as_str()))
                .await
            {
                Ok(Ok(answer)) => {
                    let addrs: Vec<IpAddr> = answer.iter().collect();
                    let ttl = answer
                        .valid_until()
                        .saturating_duration_since(Instant::now());
                    *at = Instant::now()
                        + ttl.clamp(Duration::from_secs(5), Duration::from_secs(600));
                    if tx.send((name.clone(), addrs)).await.is_err() {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("cannot resolve {name}: {e}");
                    *at = Instant::now() + Duration::from_secs(30);
                }
                Err(_) => {
                    tracing::warn!("resolving {name} timed out");
                    *at = Instant::now() + Duration::from_secs(30);
                }
            }
        }
        let next = due
            .iter()
            .map(|(_, at)| *at)
            .min()
            .unwrap_or(now + Duration::from_secs(600));
        tokio::time::sleep_until(next.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_servers_from_resolv_conf() {
        let text =
            "# comment\nnameserver 10.0.0.1\nsearch example\nnameserver ::1\nnameserver bogus\n";
        let want: Vec<IpAddr> = vec!["10.0.0.1".parse().expect("v4"), "::1".parse().expect("v6")];
        assert_eq!(parse_resolv_conf(text), want);
    }
}
