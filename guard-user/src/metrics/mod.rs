//! Prometheus metrics and the health endpoint (`guard daemon --metrics ADDR`).
//!
//! [`Metrics`] holds the registry; the daemon updates it as it goes (every method takes
//! `&self`) and [`serve`] exposes it over HTTP:
//!
//! - `GET /metrics`: the OpenMetrics text exposition (which Prometheus, the OpenTelemetry
//!   collector, Vector and Datadog all scrape);
//! - `GET /healthz`: `200 ok` once every kernel program is attached, `503` with the
//!   reason otherwise (for Kubernetes probes and load balancers);
//! - anything else: 404.
//!
//! The metrics (all prefixed `guard_`):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `guard_events_total` | counter | `kind` |
//! | `guard_violations_total` | counter | `rule`, `action`, `outcome` |
//! | `guard_lost_events_total` | counter | `kind` |
//! | `guard_egress_bytes_total` | counter | `direction` (`out`, `in`), `dest_class` |
//! | `guard_flows_total` | counter | `dest_class` (flows ended) |
//! | `guard_dns_messages_total` | counter | `direction` (`query`, `answer`) |
//! | `guard_active_sessions` | gauge | |
//! | `guard_sessions_total` | counter | `agent` (sessions started, by the name that started them) |
//! | `guard_agent_sessions_total` | counter | `agent` (sessions whose agent program was recognised, by its profile: `codex`, `claude-code`, `gemini-cli`, `copilot-cli`) |
//! | `guard_policy_reloads_total` | counter | `result` (`ok`, `rejected`) |
//! | `guard_program_run_time_seconds_total` | counter | `program` |
//! | `guard_program_runs_total` | counter | `program` |
//! | `guard_programs_attached`, `guard_programs_expected` | gauge | |
//! | `guard_identity_opens_total` | counter | `result` (`matched`, `unknown`) |
//! | `guard_export_records_total`, `guard_export_bytes_total`, `guard_export_dropped_total`, `guard_export_retries_total`, `guard_export_spool_records` | counter, gauge | `state`, `what`, `reason`, `endpoint` (while an export runs) |
//! | `guard_build_info` | info | `version` |
//!
//! docs/deploy.md's table is the users' list; a test holds it (and every metric the
//! docs name) to what `render` writes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guard_common::line::DestClass;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use strum::VariantArray as _;
use tokio::net::TcpListener;

/// The content type of the OpenMetrics text format that `render` produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabels {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    rule: String,
    action: String,
    outcome: String,
}

/// Bounded: two directions times the six destination classes
/// (`event::DEST_CLASSES`), never an address.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EgressLabels {
    direction: &'static str,
    dest_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    dest_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Values the daemon copies from the kernel (counters it sets rather than increments):
/// encoded at each scrape by [`KernelCollector`].
#[derive(Debug, Default)]
struct KernelTotals {
    /// Lost records by event kind.
    lost: BTreeMap<String, u64>,
    /// Run time (ns) and run count by program (with `kernel.bpf_stats_enabled`).
    programs: BTreeMap<String, (u64, u64)>,
    /// Session opens judged by identity: matched, and too deep to place.
    identity: Option<(u64, u64)>,
    /// The export, when one runs.
    export: Option<guard_common::protocol::ExportStatus>,
    /// guard's resolver: queries by outcome, and the network namespaces it runs in.
    resolver: Option<([u64; 4], usize)>,
}

#[derive(Debug, Clone, Default)]
struct KernelCollector(Arc<Mutex<KernelTotals>>);

impl KernelCollector {
    fn lock(&self) -> std::sync::MutexGuard<'_, KernelTotals> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Encodes one counter family whose samples are `(label value, counter value)`.
fn encode_const_counters<N: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    samples: impl IntoIterator<Item = (String, N)>,
) -> Result<(), fmt::Error> {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, unit, ConstCounter::<N>::TYPE)?;
    for (value, count) in samples {
        let labels = [(label, value.as_str())];
        ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let totals = self.lock();
        encode_const_counters(
            &mut encoder,
            "guard_lost_events",
            "Records the kernel programs could not deliver (ring buffer full), by event kind",
            None,
            "kind",
            totals.lost.iter().map(|(k, v)| (k.clone(), *v)),
        )?;
        encode_const_counters(
            &mut encoder,
            "guard_identity_opens",
            "Session opens judged by identity: matched (a rule matched the file by device \
             and inode, not by path) and unknown (too deep to place: failed closed)",
            None,
            "result",
            totals.identity.iter().flat_map(|(matched, unknown)| {
                [
                    ("matched".to_owned(), *matched),
                    ("unknown".to_owned(), *unknown),
                ]
            }),
        )?;
        encode_const_counters(
            &mut encoder,
            "guard_program_run_time",
            "Time the kernel spent running each guard program (needs kernel.bpf_stats_enabled)",
            Some(&Unit::Seconds),
            "program",
            totals
                .programs
                .iter()
                .map(|(p, (ns, _))| (p.clone(), *ns as f64 / 1e9)),
        )?;
        if let Some(x) = &totals.export {
            encode_const_counters(
                &mut encoder,
                "guard_export_records",
                "Records the export endpoint took (events and session summaries)",
                None,
                "state",
                [(x.state.clone(), x.sent_records)],
            )?;
            encode_const_counters(
                &mut encoder,
                "guard_export",
                "Request bytes sent to the export endpoint (compressed, as on the wire)",
                Some(&Unit::Bytes),
                "what",
                [("sent".to_owned(), x.sent_bytes)],
            )?;
            encode_const_counters(
                &mut encoder,
                "guard_export_dropped",
                "Records that will never reach the export endpoint, by reason (queue_full, \
                 spool_full_events, spool_full_summaries, spool_error, spool_lost, unreadable, rejected)",
                None,
                "reason",
                x.dropped.iter().map(|(k, v)| (k.clone(), *v)),
            )?;
            encode_const_counters(
                &mut encoder,
                "guard_export_retries",
                "Failed attempts to deliver a batch (sent again after a back-off)",
                None,
                "endpoint",
                [(x.endpoint.clone(), x.retries)],
            )?;
            let mut spool = encoder.encode_descriptor(
                "guard_export_spool_records",
                "Records waiting in the export's disk spool",
                None,
                prometheus_client::metrics::gauge::ConstGauge::<i64>::TYPE,
            )?;
            prometheus_client::metrics::gauge::ConstGauge::new(x.spool_records as i64)
                .encode(spool.encode_family(&[("endpoint", x.endpoint.as_str())])?)?;
        }
        if let Some((counts, namespaces)) = &totals.resolver {
            encode_const_counters(
                &mut encoder,
                "guard_dns_resolver_queries",
                "Queries guard's resolver got from sessions, by outcome: forwarded (answered \
                 by the server), refused (NXDOMAIN, never forwarded), failed (no server \
                 answered: SERVFAIL), dropped (unreadable, or past the queries in flight)",
                None,
                "outcome",
                ["forwarded", "refused", "failed", "dropped"]
                    .into_iter()
                    .zip(counts.iter().copied())
                    .map(|(k, v)| (k.to_owned(), v)),
            )?;
            let resolvers = encoder.encode_descriptor(
                "guard_dns_resolvers",
                "Network namespaces guard's resolver runs in",
                None,
                prometheus_client::metrics::gauge::ConstGauge::<i64>::TYPE,
            )?;
            prometheus_client::metrics::gauge::ConstGauge::new(*namespaces as i64)
                .encode(resolvers)?;
        }
        encode_const_counters(
            &mut encoder,
            "guard_program_runs",
            "Times the kernel ran each guard program (needs kernel.bpf_stats_enabled)",
            None,
            "program",
            totals
                .programs
                .iter()
                .map(|(p, (_, runs))| (p.clone(), *runs)),
        )
    }
}

/// How many kernel programs should be attached, and how many are.
#[derive(Debug, Default, Clone, Copy)]
struct Attachment {
    expected: usize,
    attached: usize,
}

/// The daemon's metrics. Cheap to update from any thread; share it in an [`Arc`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Family<KindLabels, Counter>,
    /// `events` by kind, so that counting an event allocates nothing once the kind is known.
    event_counters: RwLock<HashMap<String, Counter>>,
    violations: Family<ViolationLabels, Counter>,
    egress_bytes: Family<EgressLabels, Counter>,
    flows: Family<ClassLabels, Counter>,
    dns: Family<DnsLabels, Counter>,
    active_sessions: Gauge,
    sessions: Family<AgentLabels, Counter>,
    agent_sessions: Family<AgentLabels, Counter>,
    policy_reloads: Family<ReloadLabels, Counter>,
    programs_expected: Gauge,
    programs_attached: Gauge,
    kernel: KernelCollector,
    attachment: Mutex<Attachment>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let events = Family::<KindLabels, Counter>::default();
        registry.register("guard_events", "Events written, by kind", events.clone());
        let violations = Family::<ViolationLabels, Counter>::default();
        registry.register(
            "guard_violations",
            "Policy violations, by rule, action and outcome (killed, denied, logged, alerted, failed)",
            violations.clone(),
        );
        let egress_bytes = Family::<EgressLabels, Counter>::default();
        registry.register(
            "guard_egress_bytes",
            "Bytes session sockets sent (out) and received (in), IP level, by destination class",
            egress_bytes.clone(),
        );
        let flows = Family::<ClassLabels, Counter>::default();
        registry.register(
            "guard_flows",
            "Session flows (sockets) that ended, by destination class",
            flows.clone(),
        );
        for dest_class in DestClass::VARIANTS.iter().map(|c| c.as_str()) {
            for direction in ["out", "in"] {
                let _ = egress_bytes.get_or_create(&EgressLabels {
                    direction,
                    dest_class,
                });
            }
            let _ = flows.get_or_create(&ClassLabels { dest_class });
        }
        let dns = Family::<DnsLabels, Counter>::default();
        registry.register(
            "guard_dns_messages",
            "DNS messages of session sockets: queries sent, answers received",
            dns.clone(),
        );
        for direction in ["query", "answer"] {
            let _ = dns.get_or_create(&DnsLabels { direction });
        }
        let active_sessions = Gauge::default();
        registry.register(
            "guard_active_sessions",
            "Agent sessions being followed",
            active_sessions.clone(),
        );
        let sessions = Family::<AgentLabels, Counter>::default();
        registry.register(
            "guard_sessions",
            "Agent sessions started, by agent",
            sessions.clone(),
        );
        let agent_sessions = Family::<AgentLabels, Counter>::default();
        registry.register(
            "guard_agent_sessions",
            "Sessions whose agent program guard recognised, by agent (its profile)",
            agent_sessions.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "guard_policy_reloads",
            "Policy reloads (SIGHUP or file change), by result: ok or rejected",
            policy_reloads.clone(),
        );
        // Both results exist from the start, so that rate() and alerts see the first one.
        for result in ["ok", "rejected"] {
            let _ = policy_reloads.get_or_create(&ReloadLabels { result });
        }
        let programs_expected = Gauge::default();
        registry.register(
            "guard_programs_expected",
            "Kernel program attachments guard needs",
            programs_expected.clone(),
        );
        let programs_attached = Gauge::default();
        registry.register(
            "guard_programs_attached",
            "Kernel program attachments in place",
            programs_attached.clone(),
        );
        registry.register(
            "guard_build",
            "The guard binary",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        let kernel = KernelCollector::default();
        registry.register_collector(Box::new(kernel.clone()));
        Self {
            registry,
            events,
            event_counters: RwLock::new(HashMap::new()),
            violations,
            egress_bytes,
            flows,
            dns,
            active_sessions,
            sessions,
            agent_sessions,
            policy_reloads,
            programs_expected,
            programs_attached,
            kernel,
            attachment: Mutex::new(Attachment::default()),
        }
    }

    /// One event of `kind` was written: `guard_events_total{kind}`.
    pub fn event(&self, kind: &str) {
        let known = self
            .event_counters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kind)
            .cloned();
        let counter = match known {
            Some(counter) => counter,
            None => {
                let counter = self
                    .events
                    .get_or_create(&KindLabels {
                        kind: kind.to_owned(),
                    })
                    .clone();
                self.event_counters
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(kind.to_owned(), counter.clone());
                counter
            }
        };
        counter.inc();
    }

    /// A session of `agent` started: `guard_sessions_total{agent}`.
    pub fn session_started(&self, agent: &str) {
        self.sessions
            .get_or_create(&AgentLabels {
                agent: agent.to_owned(),
            })
            .inc();
    }

    /// The agent of a session recognised: `guard_agent_sessions_total{agent}`.
    pub fn agent_session(&self, agent: &str) {
        self.agent_sessions
            .get_or_create(&AgentLabels {
                agent: agent.to_owned(),
            })
            .inc();
    }

    /// One violation: `guard_violations_total{rule,action,outcome}`.
    pub fn violation(&self, rule: &str, action: &str, outcome: &str) {
        self.violations
            .get_or_create(&ViolationLabels {
                rule: rule.to_owned(),
                action: action.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Bytes a flow record added, and whether it ended the flow:
    /// `guard_egress_bytes_total{direction,dest_class}`, `guard_flows_total{dest_class}`.
    /// `dest_class` is one of `event::DEST_CLASSES`.
    pub fn flow(&self, dest_class: &'static str, out: u64, inb: u64, ended: bool) {
        for (direction, n) in [("out", out), ("in", inb)] {
            if n > 0 {
                self.egress_bytes
                    .get_or_create(&EgressLabels {
                        direction,
                        dest_class,
                    })
                    .inc_by(n);
            }
        }
        if ended {
            self.flows.get_or_create(&ClassLabels { dest_class }).inc();
        }
    }

    /// One DNS message of a session socket: `guard_dns_messages_total{direction}`.
    pub fn dns(&self, direction: &'static str) {
        self.dns.get_or_create(&DnsLabels { direction }).inc();
    }

    /// The kernel's running total of lost records of `kind`: `guard_lost_events_total{kind}`.
    pub fn set_lost(&self, kind: &str, total: u64) {
        let mut totals = self.kernel.lock();
        match totals.lost.get_mut(kind) {
            Some(value) => *value = total,
            None => {
                totals.lost.insert(kind.to_owned(), total);
            }
        }
    }

    /// The kernel's running totals of session opens judged by identity:
    /// `guard_identity_opens_total{result="matched"|"unknown"}`.
    pub fn set_identity_opens(&self, matched: u64, unknown: u64) {
        self.kernel.lock().identity = Some((matched, unknown));
    }

    /// guard's resolver: queries by outcome (forwarded, refused, failed, dropped)
    /// and the namespaces it runs in.
    pub fn set_resolver(&self, counts: [u64; 4], namespaces: usize) {
        self.kernel.lock().resolver = Some((counts, namespaces));
    }

    /// The export's state, as `guard status` shows it.
    pub fn set_export(&self, status: Option<guard_common::protocol::ExportStatus>) {
        self.kernel.lock().export = status;
    }

    /// `guard_active_sessions`.
    pub fn set_active_sessions(&self, n: u64) {
        self.active_sessions
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A policy reload was applied (`ok`) or refused (`rejected`):
    /// `guard_policy_reloads_total{result}`.
    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.policy_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// The kernel's running totals for one program (from its `bpf_prog_info`, non-zero
    /// only while `kernel.bpf_stats_enabled` is 1): `guard_program_run_time_seconds_total`
    /// and `guard_program_runs_total`, labelled `program`.
    pub fn set_program_stats(&self, program: &str, run_time_ns: u64, run_count: u64) {
        let mut totals = self.kernel.lock();
        match totals.programs.get_mut(program) {
            Some(value) => *value = (run_time_ns, run_count),
            None => {
                totals
                    .programs
                    .insert(program.to_owned(), (run_time_ns, run_count));
            }
        }
    }

    /// How many program attachments guard needs and how many are in place; `/healthz`
    /// answers 200 only when they are equal and not zero.
    pub fn set_attached(&self, expected: usize, attached: usize) {
        *self
            .attachment
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Attachment { expected, attached };
        self.programs_expected
            .set(i64::try_from(expected).unwrap_or(i64::MAX));
        self.programs_attached
            .set(i64::try_from(attached).unwrap_or(i64::MAX));
    }

    /// `Ok(())` when every program is attached, else why not.
    pub fn health(&self) -> Result<(), String> {
        let Attachment { expected, attached } = *self
            .attachment
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if expected == 0 {
            Err("not ready: the kernel programs are not loaded yet".to_owned())
        } else if attached != expected {
            Err(format!(
                "unhealthy: {attached} of {expected} kernel program attachments in place"
            ))
        } else {
            Ok(())
        }
    }

    /// The OpenMetrics text exposition of every metric ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String cannot fail; an encoder refusing a value could.
            tracing::warn!("cannot encode the metrics: {e}");
        }
        out
    }
}

pub async fn serve_listener(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    axum::serve(listener, router(metrics)).await
}

fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(metrics)
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response()
}

async fn healthz_handler(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn counters_move_and_render() {
        let m = Metrics::new();
        m.event("exec");
        m.event("exec");
        m.event("open");
        m.violation("credentials-read", "kill", "killed");
        m.set_lost("open", 7);
        m.set_lost("open", 12);
        m.set_active_sessions(3);
        m.session_started("codex");
        m.session_started("codex");
        m.session_started("claude");
        m.agent_session("claude-code");
        m.agent_session("gemini-cli");
        m.agent_session("gemini-cli");
        m.policy_reload(true);
        m.policy_reload(false);
        m.policy_reload(false);
        m.set_program_stats("sys_enter_openat", 1_500_000_000, 42);
        m.set_attached(13, 13);
        m.set_identity_opens(4, 1);
        let text = m.render();
        for line in [
            "# TYPE guard_events counter",
            "guard_events_total{kind=\"exec\"} 2",
            "guard_events_total{kind=\"open\"} 1",
            "guard_violations_total{rule=\"credentials-read\",action=\"kill\",outcome=\"killed\"} 1",
            "guard_lost_events_total{kind=\"open\"} 12",
            "guard_active_sessions 3",
            "guard_sessions_total{agent=\"codex\"} 2",
            "guard_sessions_total{agent=\"claude\"} 1",
            "guard_agent_sessions_total{agent=\"claude-code\"} 1",
            "guard_agent_sessions_total{agent=\"gemini-cli\"} 2",
            "guard_policy_reloads_total{result=\"ok\"} 1",
            "guard_policy_reloads_total{result=\"rejected\"} 2",
            "# UNIT guard_program_run_time_seconds seconds",
            "guard_program_run_time_seconds_total{program=\"sys_enter_openat\"} 1.5",
            "guard_program_runs_total{program=\"sys_enter_openat\"} 42",
            "guard_programs_expected 13",
            "guard_programs_attached 13",
            "guard_identity_opens_total{result=\"matched\"} 4",
            "guard_identity_opens_total{result=\"unknown\"} 1",
            "# EOF",
        ] {
            assert!(has_line(&text, line), "no line {line:?} in\n{text}");
        }
        assert!(text.contains("guard_build_info{version=\""), "{text}");
    }

    #[test]
    fn fresh_metrics_render_without_kernel_families() {
        let text = Metrics::new().render();
        assert!(has_line(&text, "guard_active_sessions 0"), "{text}");
        assert!(
            has_line(&text, "guard_policy_reloads_total{result=\"rejected\"} 0"),
            "{text}"
        );
        // Nothing to say before the first readings: no empty families.
        assert!(!text.contains("guard_lost_events"), "{text}");
        assert!(!text.contains("guard_program_runs"), "{text}");
        assert!(!text.contains("guard_identity_opens"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_export_renders_what_it_sent_and_dropped() {
        let m = Metrics::new();
        m.set_export(Some(guard_common::protocol::ExportStatus {
            endpoint: "http://fleet:4318/v1/logs".into(),
            state: "ok".into(),
            pending: 0,
            spool_records: 7,
            sent_records: 100,
            sent_bytes: 2048,
            retries: 3,
            dropped: [("spool_full_events".to_owned(), 5)].into_iter().collect(),
            ..Default::default()
        }));
        let text = m.render();
        for line in [
            "guard_export_records_total{state=\"ok\"} 100",
            "guard_export_bytes_total{what=\"sent\"} 2048",
            "guard_export_dropped_total{reason=\"spool_full_events\"} 5",
            "guard_export_spool_records{endpoint=\"http://fleet:4318/v1/logs\"} 7",
        ] {
            assert!(has_line(&text, line), "{line} in\n{text}");
        }
    }

    /// Every family, each with a sample: the rendered names and their labels.
    fn every_metric() -> BTreeMap<String, std::collections::BTreeSet<String>> {
        let m = Metrics::new();
        m.event("exec");
        m.violation("r", "kill", "killed");
        m.set_lost("open", 1);
        m.set_identity_opens(1, 1);
        m.set_active_sessions(1);
        m.session_started("codex");
        m.agent_session("codex");
        m.policy_reload(true);
        m.set_program_stats("p", 1, 1);
        m.set_attached(1, 1);
        m.flow("other", 1, 1, true);
        m.dns("query");
        m.set_resolver([1, 2, 3, 4], 1);
        m.set_export(Some(guard_common::protocol::ExportStatus {
            endpoint: "http://x/v1/logs".into(),
            state: "ok".into(),
            dropped: [("queue_full".to_owned(), 1)].into_iter().collect(),
            ..Default::default()
        }));
        let mut out: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for line in m.render().lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = out.entry(line[..name_end].to_owned()).or_default();
            if let Some(inside) = line[name_end..]
                .strip_prefix('{')
                .and_then(|l| l.split_once('}'))
                .map(|(inside, _)| inside)
            {
                labels.extend(
                    inside
                        .split(',')
                        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned())),
                );
            }
        }
        out
    }

    /// Names that look like metrics in the docs and are not: crates, a Vector
    /// transform (docs/deploy.md), the C accessors of docs/kernels.md.
    const NOT_METRICS: &[&str] = &[
        "guard_common",
        "guard_user",
        "guard_policy",
        "guard_fleet",
        "guard_tests",
        "guard_ebpf",
        "guard_events",
        "guard_path_walk",
        "guard_dentry_name",
        "guard_file_fileless",
        // The eBPF crate's global functions (docs/kernels.md).
        "guard_file_check",
        "guard_exec_check",
        "guard_applet",
        "guard_submit",
        "guard_each_walk",
    ];

    /// The docs (and the deployment files) name only metrics the exporter writes,
    /// with labels it writes; docs/deploy.md's table lists every metric it writes,
    /// with exactly its labels.
    #[test]
    fn the_docs_and_the_exporter_agree_on_every_metric() {
        let metrics = every_metric();
        // Every family the registry or the collector declares has a sample above.
        let source = include_str!("mod.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for name in code
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("guard_") && !s.contains(' '))
        {
            assert!(
                metrics.keys().any(|m| m.starts_with(name)),
                "{name} is declared and was not rendered: give it a sample in every_metric"
            );
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files: Vec<std::path::PathBuf> = ["README.md", "BENCHMARKS.md"]
            .iter()
            .map(|f| root.join(f))
            .collect();
        let mut dirs = vec![root.join("docs"), root.join("deploy")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| {
                    ["md", "yaml", "yml", "toml"].contains(&e.to_str().unwrap_or(""))
                }) {
                    files.push(path);
                }
            }
        }
        let mut wrong = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let shown = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("guard_") {
                let after = &rest[at..];
                let before = rest[..at].chars().next_back();
                rest = &after[6..];
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                let name = &after[..end];
                if NOT_METRICS.contains(&name) {
                    continue;
                }
                // `guard_export_*`, `guard_program_*`: a prefix of some metric.
                if name.ends_with('_') {
                    if !metrics.keys().any(|m| m.starts_with(name)) {
                        wrong.push(format!("{shown}: {name}* matches no metric"));
                    }
                    continue;
                }
                let Some(labels) = metrics.get(name) else {
                    wrong.push(format!("{shown}: {name} is not a metric guard writes"));
                    continue;
                };
                // `name{a,b}` or `name{a="x",b=~"y"}`: each a label it has.
                if let Some(inside) = after[end..]
                    .strip_prefix('{')
                    .and_then(|l| l.split_once('}'))
                    .map(|(inside, _)| inside)
                {
                    for label in inside
                        .split(',')
                        .map(|kv| kv.split(['=', '!']).next().unwrap_or_default().trim())
                    {
                        if !label.is_empty() && !labels.contains(label) {
                            wrong.push(format!("{shown}: {name} has no label {label}"));
                        }
                    }
                }
            }
        }
        // The table of docs/deploy.md: every metric, its labels.
        let deploy = std::fs::read_to_string(root.join("docs/deploy.md")).unwrap();
        let mut table: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        let mut inside = false;
        for line in deploy.lines() {
            if line.starts_with("| metric | type | labels |") {
                inside = true;
                continue;
            }
            if inside && !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.split('|').collect();
            if !inside || cells.len() < 4 || !cells[1].contains('`') {
                continue;
            }
            let labels: std::collections::BTreeSet<String> = cells[3]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            for name in cells[1].split('`').skip(1).step_by(2) {
                table.insert(name.to_owned(), labels.clone());
            }
        }
        for (name, labels) in &metrics {
            match table.get(name) {
                None => wrong.push(format!("docs/deploy.md's table lacks {name}")),
                Some(documented) if documented != labels => wrong.push(format!(
                    "docs/deploy.md's table gives {name} the labels {documented:?}, not {labels:?}"
                )),
                Some(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn health_needs_every_program() {
        let m = Metrics::new();
        assert!(m.health().unwrap_err().contains("not loaded"));
        m.set_attached(13, 12);
        assert!(m.health().unwrap_err().contains("12 of 13"));
        m.set_attached(13, 13);
        assert_eq!(m.health(), Ok(()));
    }

    /// Status code and body of `GET path` over a real connection.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        (status, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let server = tokio::spawn(serve_listener(listener, Arc::clone(&metrics)));

        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("not loaded"), "{body}");

        metrics.set_attached(13, 11);
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("11 of 13"), "{body}");

        metrics.set_attached(13, 13);
        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));

        metrics.event("connect");
        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(
            has_line(&body, "guard_events_total{kind=\"connect\"} 1"),
            "{body}"
        );

        let (status, _, _) = get(addr, "/nope").await;
        assert_eq!(status, 404);

        server.abort();
    }
}
