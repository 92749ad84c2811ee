//! The policy's sections beside its rules and sessions: `[fleet]` (with the names and
//! labels hosts and groups go by), `[audit]`, `[[anomaly]]`, `[export]`, `[redact]`,
//! `[report]` and `[limits]`.

use super::{Action, Pos};

/// Whether `name` may name a policy or a group in the fleet: 1 to 128 letters,
/// digits, `-`, `_` or `.`.
pub fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A host's labels, `KEY=VALUE` each (both [`valid_name`]s), in key order: as
/// text `env=ci,team=payments` (the export's `guard.fleet.labels`, the policy
/// pull's `labels`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub std::collections::BTreeMap<String, String>);

/// At most this many labels on a host.
pub const MAX_LABELS: usize = 16;

impl Labels {
    /// The assignment targets they name, `label:KEY=VALUE`, in the order a host
    /// takes them (byte order of the target).
    pub fn targets(&self) -> Vec<String> {
        let mut t: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("label:{k}={v}"))
            .collect();
        t.sort();
        t
    }
}

impl std::fmt::Display for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{k}={v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Labels {
    type Err = String;

    /// `env=ci,team=payments` (empty: none); a repeated key, a name that is not a
    /// [`valid_name`] or more than [`MAX_LABELS`] labels is an error.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut labels = std::collections::BTreeMap::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("label {pair:?} is not KEY=VALUE"))?;
            label_check(k, v)?;
            if labels.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(format!("label {k:?} is given twice"));
            }
        }
        if labels.len() > MAX_LABELS {
            return Err(format!("at most {MAX_LABELS} labels"));
        }
        Ok(Self(labels))
    }
}

/// Whether `key = value` may be a label (both [`valid_name`]s).
pub fn label_check(key: &str, value: &str) -> Result<(), String> {
    if valid_name(key) && valid_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label {key}={value}: a label's key and value are 1 to 128 letters, digits, `-`, \
             `_` or `.`"
        ))
    }
}

/// `[fleet]`: the host pulls the policy the fleet assigns to its group, signed by
/// the fleet's key (`crate::signed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// Where the assigned policy is pulled from (`https://fleet:4318/v1/policy`).
    pub policy_url: String,
    /// The fleet's Ed25519 policy key (32 bytes), pinned: only a policy it signed
    /// is applied.
    pub public_key: [u8; 32],
    /// The group whose assignment applies; `None`: the host's name.
    pub group: Option<String>,
    /// What the host says of itself (`env = "ci"`): an assignment to
    /// `label:env=ci` covers it when neither its group nor its credential has one.
    pub labels: Labels,
    /// How often the assignment is asked for.
    pub interval: std::time::Duration,
}

/// `[audit]`: the audit log's format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    pub format: Schema,
}

/// Which schema a record follows: guard's own event lines (docs/events.md), or
/// OCSF 1.7 (docs/export.md "OCSF": an activity record per event, and a Detection
/// Finding after each violation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schema {
    #[default]
    Guard,
    Ocsf,
}

/// One `[[anomaly]]`: a threshold on what a session sends or resolves.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    /// The rule id in events (`anomaly.bytes`, … unless `id` names it).
    pub id: String,
    pub check: Check,
    /// Destination classes it watches (`bytes`, `new-destination`); empty: all but
    /// `local`.
    pub classes: Vec<String>,
    /// `log`, `alert` or `kill`.
    pub action: Action,
    /// What `kill` kills.
    pub target: Target,
    pub pos: Pos,
}

/// What an [`Anomaly`] measures.
#[derive(Clone, Debug, PartialEq, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
pub enum Check {
    /// More than `bytes` sent (or received, or both: `direction`) to the classes
    /// within `window_ns`, per session.
    Bytes {
        bytes: u64,
        window_ns: u64,
        direction: Direction,
    },
    /// A destination (name, else address) the session had not connected or sent to.
    NewDestination,
    /// More than `queries` DNS queries within `window_ns`, per session.
    DnsVolume { queries: u64, window_ns: u64 },
    /// A queried name with a label of at least `label_length` characters whose
    /// Shannon entropy is at least `entropy` bits per character, or a name of at
    /// least `name_length` characters.
    DnsEntropy {
        label_length: usize,
        entropy: f64,
        name_length: usize,
    },
}

impl Check {
    /// The rule's name (`rule = "…"`) and default id suffix.
    pub fn name(&self) -> &'static str {
        self.into()
    }
}

/// Which bytes an `anomaly.bytes` rule counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Out,
    In,
    Both,
}

/// What an anomaly's `kill` kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every process of the session.
    Session,
    /// The process the event is about (for flows and DNS, the one that tagged the
    /// socket: its connect or first send).
    Process,
}

/// How records leave for the endpoint (`[export] protocol`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportProtocol {
    #[default]
    Protobuf,
    Json,
}

/// `[export]`: the daemon sends its events and session summaries as OTLP/HTTP logs
/// (docs/export.md). No endpoint: nothing leaves (unless `--export-endpoint`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The OTLP/HTTP logs URL (`http://host:4318/v1/logs`).
    pub endpoint: Option<String>,
    pub protocol: ExportProtocol,
    /// Header name and value; `${VAR}` in a value is read from the daemon's
    /// environment when it sends.
    pub headers: Vec<(String, String)>,
    /// A file holding the bearer token (`Authorization: Bearer <content>`).
    pub token_file: Option<std::path::PathBuf>,
    /// Trust this CA (PEM) instead of the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Mutual TLS: this client certificate (PEM chain) and key.
    pub client_cert: Option<std::path::PathBuf>,
    pub client_key: Option<std::path::PathBuf>,
    /// Event kinds exported; `None`: every kind.
    pub kinds: Option<Vec<String>>,
    /// A running session's summary this often, and once more at its end.
    pub summary_interval: std::time::Duration,
    /// Entries per list of a summary.
    pub summary_items: usize,
    pub batch_records: usize,
    pub batch_interval: std::time::Duration,
    /// How long one request may take before it counts as failed and is retried
    /// (OTLP's default: 10 s).
    pub timeout: std::time::Duration,
    pub gzip: bool,
    /// Where the spool lives (default `/var/lib/guard/spool`).
    pub spool_dir: Option<std::path::PathBuf>,
    pub spool_max: u64,
    /// Extra resource attributes (`k8s.cluster.name = "…"`).
    pub resource: Vec<(String, String)>,
    /// What an event record's body is (`schema`): the event, or its OCSF records.
    pub schema: Schema,
}

impl Default for Export {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: ExportProtocol::Protobuf,
            headers: Vec::new(),
            token_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            kinds: None,
            summary_interval: std::time::Duration::from_secs(60),
            summary_items: 50,
            batch_records: 512,
            batch_interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(10),
            gzip: true,
            spool_dir: None,
            spool_max: 256 * 1024 * 1024,
            resource: Vec::new(),
            schema: Schema::Guard,
        }
    }
}

/// `[redact]`: what is taken out of command lines and other free text before an
/// event is written anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redact {
    /// On by default.
    pub enabled: bool,
    /// Regular expressions whose matches are redacted too (a capture group named
    /// `secret`, else the whole match).
    pub patterns: Vec<String>,
}

impl Default for Redact {
    fn default() -> Self {
        Self {
            enabled: true,
            patterns: Vec::new(),
        }
    }
}

/// `[report]`: the daemon writes each session's report when the session ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportConfig {
    /// Directory for `<session>.md` and `<session>.json` (`dir`); none: reports are
    /// only asked for (`guard report`).
    pub dir: Option<std::path::PathBuf>,
}

/// How many records a session may send the daemon, and what guard does when the
/// kernel drops some or cannot track a child (`[limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Plain records per second per session (`rate`); 0: no limit.
    pub rate: u32,
    /// Records a session may send at once above the rate (`burst`).
    pub burst: u32,
    /// What a loss means (`on_loss`).
    pub on_loss: OnLoss,
}

impl Limits {
    /// Records per second a session may send at most (`rate`'s upper bound).
    pub const MAX_RATE: u32 = 1_000_000;
    /// The largest `burst`.
    pub const MAX_BURST: u32 = 10_000_000;
    /// The default burst for a rate: five seconds' worth.
    pub fn default_burst(rate: u32) -> u32 {
        rate.saturating_mul(5).clamp(1, Self::MAX_BURST)
    }
}

impl Default for Limits {
    /// Far above a busy session's steady rate (the bench's git workload sends some
    /// 35,000 records/s) and below what the daemon drains without loss (over
    /// 260,000/s): the budget stops storms, not builds.
    fn default() -> Self {
        Self {
            rate: 100_000,
            burst: 500_000,
            on_loss: OnLoss::Alert,
        }
    }
}

/// What a session's lost records mean (`[limits] on_loss`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum OnLoss {
    /// A `limit` event is written; nothing else.
    Log,
    /// The `limit` event is a violation with an alert.
    Alert,
    /// The whole session is killed: what it did can no longer be fully seen.
    Kill,
}

impl OnLoss {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
