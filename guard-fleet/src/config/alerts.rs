//! `[alerts]`: which events become alerts and where they go (docs/fleet.md).
//!
//! ```toml
//! [alerts]
//! dashboard_url = "https://fleet.example.org"   # the links in alerts
//! window = "1m"                                 # what follows a message waits, then goes as one
//!
//! [[alerts.destination]]
//! name = "secops"
//! kind = "slack"                                # webhook, slack, teams, pagerduty, email
//! url_file = "/etc/guard-fleet/slack-url"       # or `url`
//!
//! [[alerts.destination]]
//! name = "oncall-mail"
//! kind = "email"
//! url = "smtp://mail.example.org:587?tls=required"   # STARTTLS; smtps:// for TLS
//! from = "guard-fleet <guard@example.org>"
//! recipients = ["secops@example.org"]
//!
//! [[alerts.rule]]
//! name = "secret-reads-stopped"
//! rules = ["ssh-keys", "cloud-credentials"]     # policy rule ids; none: any rule
//! outcomes = ["killed", "denied"]               # none: any outcome
//! to = ["secops"]
//!
//! [[alerts.rule]]
//! name = "hosts"
//! kinds = ["host_silent", "policy_rejected"]    # event kinds; none: violations
//! to = ["secops"]
//! ```

use std::{fs, path::PathBuf, time::Duration};

use guard_common::protocol::Outcome;
use lettre::{
    AsyncSmtpTransport, Tokio1Executor,
    transport::smtp::client::{Certificate, Tls, TlsParameters},
};
use serde::{Deserialize, Serialize};

use super::{ConfigError, duration};

/// PagerDuty's Events API v2, where a `pagerduty` destination sends unless its
/// `url` says otherwise.
pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

/// The file's `[alerts]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsFile {
    dashboard_url: Option<String>,
    window: Option<String>,
    lease: Option<String>,
    retry: Option<String>,
    #[serde(default)]
    destination: Vec<DestinationFile>,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationFile {
    name: String,
    kind: Kind,
    url: Option<String>,
    url_file: Option<PathBuf>,
    /// `webhook`: the key of the HMAC-SHA256 signature header.
    secret_file: Option<PathBuf>,
    /// `pagerduty`: the integration's routing key.
    routing_key_file: Option<PathBuf>,
    /// `email`: the sender and the recipients.
    from: Option<String>,
    #[serde(default)]
    recipients: Vec<String>,
    /// `email`: a PEM file of the CAs that sign the SMTP server's certificate
    /// (added to the system's).
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    outcomes: Vec<String>,
    to: Vec<String>,
}

/// What a destination speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Kind {
    /// JSON of guard's own, signed (`X-Guard-Signature`).
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A Microsoft Teams webhook (a Workflows "post to a channel" URL): an Adaptive Card.
    Teams,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// E-mail over SMTP.
    Email,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The checked `[alerts]`.
#[derive(Clone, Debug)]
pub struct Alerts {
    /// The dashboard's address as people reach it, for the links to sessions.
    pub dashboard_url: Option<String>,
    /// After a message, what else an alert rule catches for the same destination
    /// waits this long and goes as one message with a count.
    pub window: Duration,
    /// How long a replica holds the rows it is sending; past it, another sends them.
    pub lease: Duration,
    /// The wait before the first retry of a failed delivery (doubling after).
    pub retry: Duration,
    pub destinations: Vec<Destination>,
    pub rules: Vec<AlertRule>,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            dashboard_url: None,
            window: Duration::from_secs(60),
            lease: Duration::from_secs(30),
            retry: Duration::from_secs(5),
            destinations: Vec::new(),
            rules: Vec::new(),
        }
    }
}

/// Where alerts go. Its secrets (URL, key) are read at start-up.
#[derive(Clone)]
pub struct Destination {
    pub name: String,
    pub kind: Kind,
    pub url: String,
    pub secret: Option<Vec<u8>>,
    pub routing_key: Option<String>,
    /// `email`: who sends and who receives.
    pub mail: Option<Mail>,
}

/// An `email` destination's envelope, and its SMTP client for `url`
/// (`smtp://[user:password@]host[:port][?tls=required|opportunistic]`, or `smtps://`).
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
    /// Made once at start-up: the URL checked, the system's CAs and `ca_file` read
    /// then, not at every alert.
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// A destination's answer, at most.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL of an incoming webhook is its credential.
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Which events an alert is about, and where it goes: from the configuration
/// file (`[[alerts.rule]]`), or kept in the fleet's database (made through the API,
/// with its author and time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    pub name: String,
    /// Event kinds (`policy_rejected`, `anomaly`, `tamper`, the fleet's own
    /// [`HOST_SILENT`]); empty: violations (events with a rule and an outcome).
    pub kinds: Vec<String>,
    /// Policy rule ids; empty: any.
    pub rules: Vec<String>,
    /// Outcomes (`killed`, `denied`, `alerted`, `logged`); empty: any.
    pub outcomes: Vec<String>,
    pub to: Vec<String>,
    /// Kept in the fleet: who made it last, and when (unix ms); `None`: the
    /// configuration file's.
    pub author: Option<String>,
    pub updated_ms: Option<i64>,
}

/// The kind of the fleet's own event for a host that sent nothing (not even a
/// heartbeat) for `dashboard.stale_after`.
pub const HOST_SILENT: &str = "host_silent";

impl AlertRule {
    /// What is wrong with the rule, given the destinations it may name: none named,
    /// one unknown, an outcome no event has, an empty kind.
    pub fn check(&self, destinations: &[Destination]) -> Result<(), String> {
        let name = &self.name;
        if self.to.is_empty() {
            return Err(format!("rule {name:?}: `to` names no destination"));
        }
        if let Some(unknown) = self
            .to
            .iter()
            .find(|t| !destinations.iter().any(|d| &d.name == *t))
        {
            return Err(format!(
                "rule {name:?}: no destination is named {unknown:?}"
            ));
        }
        if let Some(bad) = self.outcomes.iter().find(|o| {
            serde_json::from_value::<Outcome>(serde_json::Value::String((*o).clone())).is_err()
        }) {
            return Err(format!(
                "rule {name:?}: {bad:?} is no outcome (killed, denied, alerted, logged, gone, \
                 not_denied, failed, deferred)"
            ));
        }
        if self.kinds.iter().chain(&self.rules).any(String::is_empty) {
            return Err(format!("rule {name:?}: an empty kind or rule id"));
        }
        Ok(())
    }

    fn matches(&self, kind: &str, rule: Option<&str>, outcome: Option<&str>) -> bool {
        let kind_ok = if self.kinds.is_empty() {
            rule.is_some() && outcome.is_some()
        } else {
            self.kinds.iter().any(|k| k == kind)
        };
        let among = |wanted: &[String], v: Option<&str>| {
            wanted.is_empty() || v.is_some_and(|v| wanted.iter().any(|w| w == v))
        };
        kind_ok && among(&self.rules, rule) && among(&self.outcomes, outcome)
    }
}

/// The (alert, destination) pairs of `rules` an event of `kind`, with its `rule`
/// and `outcome` when it has them, goes to.
pub fn routes<'a>(
    rules: &'a [AlertRule],
    kind: &'a str,
    rule: Option<&'a str>,
    outcome: Option<&'a str>,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    rules
        .iter()
        .filter(move |a| a.matches(kind, rule, outcome))
        .flat_map(|a| a.to.iter().map(move |d| (a.name.as_str(), d.as_str())))
}

impl Alerts {
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|d| d.name == name)
    }
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Alerts { reason }
}

fn secret(key: &str, name: &str, path: &PathBuf) -> Result<String, ConfigError> {
    let text = fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "destination {name:?}: {key}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid(format!(
            "destination {name:?}: {key}: {} is empty",
            path.display()
        )));
    }
    Ok(text.to_owned())
}

fn destination(mut d: DestinationFile) -> Result<Destination, ConfigError> {
    let name = std::mem::take(&mut d.name);
    let url = match (d.url.take(), &d.url_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "destination {name:?}: set url or url_file, not both"
            )));
        }
        (Some(url), None) => url,
        (None, Some(path)) => secret("url_file", &name, path)?,
        (None, None) if d.kind == Kind::Pagerduty => PAGERDUTY_EVENTS.to_owned(),
        (None, None) => return Err(invalid(format!("destination {name:?}: no url"))),
    };
    let mail = mail(&name, &d, &url)?;
    if d.kind != Kind::Email && !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(invalid(format!(
            "destination {name:?}: the url is not http(s)"
        )));
    }
    let secret_key = match &d.secret_file {
        Some(path) if d.kind == Kind::Webhook => {
            Some(secret("secret_file", &name, path)?.into_bytes())
        }
        Some(_) => {
            return Err(invalid(format!(
                "destination {name:?}: secret_file applies to a webhook"
            )));
        }
        None => None,
    };
    let routing_key = match (&d.routing_key_file, d.kind) {
        (Some(path), Kind::Pagerduty) => Some(secret("routing_key_file", &name, path)?),
        (None, Kind::Pagerduty) => {
            return Err(invalid(format!(
                "destination {name:?}: pagerduty needs routing_key_file"
            )));
        }
        (Some(_), _) => {
            return Err(invalid(format!(
                "destination {name:?}: routing_key_file applies to pagerduty"
            )));
        }
        (None, _) => None,
    };
    Ok(Destination {
        name,
        kind: d.kind,
        url,
        secret: secret_key,
        routing_key,
        mail,
    })
}

/// An `email` destination's sender, recipients and server, checked; `None` for
/// the other kinds, which must not set them.
fn mail(name: &str, d: &DestinationFile, url: &str) -> Result<Option<Mail>, ConfigError> {
    if d.kind != Kind::Email {
        if d.from.is_some() || !d.recipients.is_empty() || d.ca_file.is_some() {
            return Err(invalid(format!(
                "destination {name:?}: from, recipients and ca_file apply to email"
            )));
        }
        return Ok(None);
    }
    let mailbox = |key: &str, text: &str| {
        text.parse::<lettre::message::Mailbox>().map_err(|e| {
            invalid(format!(
                "destination {name:?}: {key}: {text:?} is no address: {e}"
            ))
        })
    };
    let from = mailbox(
        "from",
        d.from
            .as_deref()
            .ok_or_else(|| invalid(format!("destination {name:?}: email needs from")))?,
    )?;
    if d.recipients.is_empty() {
        return Err(invalid(format!(
            "destination {name:?}: email needs recipients"
        )));
    }
    let to = d
        .recipients
        .iter()
        .map(|r| mailbox("recipients", r))
        .collect::<Result<_, _>>()?;
    // The server: plain SMTP only to this host itself (a relay on loopback); elsewhere
    // the alert and the password would cross the network in clear.
    let server =
        url::Url::parse(url).map_err(|e| invalid(format!("destination {name:?}: the url: {e}")))?;
    let tls = server
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let loopback = match server.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        // smtp:// is no scheme the URL standard knows: its host is opaque text, an
        // address included.
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback())
        }
        None => false,
    };
    // What the URL asks for: TLS from the start, STARTTLS required or when offered,
    // or none (loopback only).
    let wrap: Option<fn(TlsParameters) -> Tls> = match (server.scheme(), tls.as_deref()) {
        ("smtps", None) => Some(Tls::Wrapper),
        ("smtp", Some("required")) => Some(Tls::Required),
        ("smtp", Some("opportunistic")) => Some(Tls::Opportunistic),
        ("smtp", None) if loopback => None,
        ("smtp", None) => {
            return Err(invalid(format!(
                "destination {name:?}: plain SMTP to another host; add ?tls=required \
                 (STARTTLS) or use smtps://"
            )));
        }
        _ => {
            return Err(invalid(format!(
                "destination {name:?}: the url is not smtp://…[?tls=required|opportunistic] \
                 or smtps://…"
            )));
        }
    };
    let Some(host) = server.host_str() else {
        return Err(invalid(format!(
            "destination {name:?}: the url names no host"
        )));
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| invalid(format!("destination {name:?}: the url: {e}")))?
        .timeout(Some(SEND_TIMEOUT));
    if let Some(path) = &d.ca_file {
        let Some(wrap) = wrap else {
            return Err(invalid(format!(
                "destination {name:?}: ca_file needs TLS (?tls=… or smtps://)"
            )));
        };
        let params = fs::read(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()))
            .and_then(|ca| {
                TlsParameters::builder(host.to_owned())
                    .add_root_certificate(ca)
                    .build_rustls()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| invalid(format!("destination {name:?}: ca_file: {e}")))?;
        builder = builder.tls(wrap(params));
    }
    Ok(Some(Mail {
        from,
        to,
        transport: builder.build(),
    }))
}

pub(super) fn alerts(file: AlertsFile) -> Result<Alerts, ConfigError> {
    let defaults = Alerts::default();
    let mut destinations: Vec<Destination> = Vec::new();
    for d in file.destination {
        let d = destination(d)?;
        if destinations.iter().any(|o| o.name == d.name) {
            return Err(invalid(format!("destination {:?} is named twice", d.name)));
        }
        destinations.push(d);
    }
    let mut rules: Vec<AlertRule> = Vec::new();
    for r in file.rule {
        if rules.iter().any(|o| o.name == r.name) {
            return Err(invalid(format!("rule {:?} is named twice", r.name)));
        }
        let rule = AlertRule {
            name: r.name,
            kinds: r.kinds,
            rules: r.rules,
            outcomes: r.outcomes,
            to: r.to,
            author: None,
            updated_ms: None,
        };
        rule.check(&destinations).map_err(invalid)?;
        rules.push(rule);
    }
    let dashboard_url = file
        .dashboard_url
        .map(|u| u.trim_end_matches('/').to_owned());
    Ok(Alerts {
        dashboard_url,
        window: duration("alerts.window", file.window, defaults.window)?,
        lease: duration("alerts.lease", file.lease, defaults.lease)?,
        retry: duration("alerts.retry", file.retry, defaults.retry)?,
        destinations,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Alerts, ConfigError> {
        alerts(toml::from_str(text).expect("toml"))
    }

    #[test]
    fn a_rule_routes_matching_events_to_its_destinations() {
        let a = parse(
            "[[destination]]\nname = \"s\"\nkind = \"slack\"\nurl = \"http://127.0.0.1:1/x\"\n\
             [[destination]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/y\"\n\
             [[rule]]\nname = \"stopped\"\noutcomes = [\"killed\", \"denied\"]\nto = [\"s\", \"w\"]\n\
             [[rule]]\nname = \"keys\"\nrules = [\"ssh-keys\"]\nto = [\"w\"]\n\
             [[rule]]\nname = \"hosts\"\nkinds = [\"host_silent\", \"policy_rejected\"]\n\
             to = [\"s\"]\n",
        )
        .expect("valid");
        let violation =
            |rule, outcome| routes(&a.rules, "open", Some(rule), Some(outcome)).collect::<Vec<_>>();
        assert_eq!(
            violation("ssh-keys", "killed"),
            [("stopped", "s"), ("stopped", "w"), ("keys", "w")]
        );
        assert!(violation("other", "alerted").is_empty());
        assert_eq!(violation("ssh-keys", "logged"), [("keys", "w")]);
        // Kinds: only the rules that name them, and never a plain event.
        assert_eq!(
            routes(&a.rules, HOST_SILENT, None, None).collect::<Vec<_>>(),
            [("hosts", "s")]
        );
        assert_eq!(routes(&a.rules, "exec", None, None).count(), 0);
    }

    #[test]
    fn plain_smtp_goes_to_this_host_only() {
        let mail = |url: &str| {
            parse(&format!(
                "[[destination]]\nname = \"m\"\nkind = \"email\"\nurl = \"{url}\"\n\
                 from = \"g@example.org\"\nrecipients = [\"s@example.org\"]\n"
            ))
        };
        for local in [
            "smtp://127.0.0.1:2525",
            "smtp://localhost",
            "smtp://[::1]:25",
        ] {
            mail(local).unwrap_or_else(|e| panic!("{local}: {e}"));
        }
        for secured in [
            "smtps://mail.example.org",
            "smtp://mail.example.org?tls=required",
        ] {
            mail(secured).unwrap_or_else(|e| panic!("{secured}: {e}"));
        }
        for remote in ["smtp://10.0.0.25", "smtp://mail.example.org:587"] {
            assert!(mail(remote).is_err(), "{remote}");
        }
    }

    #[test]
    fn mistakes_are_refused_with_what_is_wrong() {
        let dest = "[[destination]]\nname = \"s\"\nkind = \"slack\"\nurl = \"http://h/x\"\n";
        let mail = "[[destination]]\nname = \"m\"\nkind = \"email\"\nfrom = \"g@example.org\"\n\
                    recipients = [\"secops@example.org\"]\n";
        for (text, wanted) in [
            (
                format!("{dest}[[rule]]\nname = \"r\"\nto = [\"nope\"]\n"),
                "no destination is named \"nope\"",
            ),
            (format!("{dest}{dest}"), "named twice"),
            (
                format!("{dest}[[rule]]\nname = \"r\"\noutcomes = [\"stopped\"]\nto = [\"s\"]\n"),
                "\"stopped\" is no outcome",
            ),
            (
                "[[destination]]\nname = \"p\"\nkind = \"pagerduty\"\n".to_owned(),
                "needs routing_key_file",
            ),
            (
                "[[destination]]\nname = \"s\"\nkind = \"slack\"\nurl = \"ftp://h\"\n".to_owned(),
                "not http(s)",
            ),
            (
                "[[destination]]\nname = \"s\"\nkind = \"slack\"\n".to_owned(),
                "no url",
            ),
            (
                format!("{mail}url = \"smtp://mail.example.org\"\n"),
                "plain SMTP to another host",
            ),
            (
                format!("{mail}url = \"http://mail.example.org\"\n"),
                "is not smtp://",
            ),
            (
                "[[destination]]\nname = \"m\"\nkind = \"email\"\nurl = \"smtps://h\"\n\
                 from = \"not an address\"\nrecipients = [\"a@example.org\"]\n"
                    .to_owned(),
                "from: \"not an address\" is no address",
            ),
            (
                format!("{dest}from = \"g@example.org\"\n"),
                "apply to email",
            ),
            (
                format!("{mail}url = \"smtp://127.0.0.1:25\"\nca_file = \"/nonexistent.pem\"\n"),
                "ca_file needs TLS",
            ),
        ] {
            let e = parse(&text).expect_err(&text).to_string();
            assert!(e.contains(wanted), "{e} (wanted {wanted})");
        }
    }
}
