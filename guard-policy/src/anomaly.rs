//! Anomalies (`[[anomaly]]`): thresholds on what a session sends and resolves,
//! judged in user space from flow records (bytes each record adds), connects and
//! sends (first-time destinations) and DNS queries (volume, long or high-entropy
//! names). Decides only, like the judge: the pipeline carries a [`Hit`] out.
//!
//! Each rule fires at most once per session, key (class, destination, domain) and
//! window: a tunnel sending thousands of queries is one violation a window, not a
//! flood.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::{
    dns::suspicious_name,
    event::{Detail, Event, SessionId, dns::Direction as DnsDirection},
    model::{Action, Anomaly, Check, Direction, Target},
};

/// Destinations remembered per session for `new-destination`.
const MAX_SEEN: usize = 4096;
/// Re-fire guard for rules without a window (`new-destination` fires once per
/// destination anyway; `dns-entropy` once a minute per domain).
const ENTROPY_REFIRE_NS: i128 = 60_000_000_000;

/// An anomaly rule the event broke.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub rule: String,
    pub action: Action,
    pub target: Target,
    /// What crossed which threshold, for people.
    pub what: String,
}

impl Hit {
    /// `rule` broken, with `what` crossed.
    fn of(rule: &Anomaly, what: String) -> Self {
        Self {
            rule: rule.id.clone(),
            action: rule.action,
            target: rule.target,
            what,
        }
    }
}

/// Counts per one-second bucket over a sliding window.
#[derive(Debug, Default)]
struct Window {
    buckets: VecDeque<(i128, u64)>,
    /// No new firing before this time (the window after the last one).
    quiet_until: i128,
}

impl Window {
    fn add(&mut self, ts_ns: i128, n: u64, window_ns: u64) -> u64 {
        let sec = ts_ns.div_euclid(1_000_000_000);
        match self.buckets.back_mut() {
            Some((s, c)) if *s == sec => *c += n,
            _ => self.buckets.push_back((sec, n)),
        }
        let oldest = sec - i128::from(window_ns / 1_000_000_000).max(1);
        while self.buckets.front().is_some_and(|(s, _)| *s <= oldest) {
            self.buckets.pop_front();
        }
        self.buckets.iter().map(|(_, c)| c).sum()
    }
}

#[derive(Debug, Default)]
struct SessionState {
    /// (rule index, key) → window.
    windows: HashMap<(usize, String), Window>,
    seen: HashSet<String>,
}

/// The domain a name's queries are grouped under: its last two labels.
fn domain(name: &str) -> String {
    let labels: Vec<&str> = name.trim_end_matches('.').rsplit('.').take(2).collect();
    labels.into_iter().rev().collect::<Vec<_>>().join(".")
}

fn human(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

fn secs(ns: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ns / 1_000_000_000)).to_string()
}

/// The anomaly rules of the policy, and what each session did against them.
#[derive(Debug, Default)]
pub struct Detector {
    rules: Vec<Anomaly>,
    sessions: HashMap<SessionId, SessionState>,
}

impl Detector {
    pub fn new(rules: Vec<Anomaly>) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }

    /// A new policy's rules; the sessions' counts start again.
    pub fn set_rules(&mut self, rules: Vec<Anomaly>) {
        if rules != self.rules {
            self.rules = rules;
            self.sessions.clear();
        }
    }

    pub fn forget(&mut self, session: SessionId) {
        self.sessions.remove(&session);
    }

    fn watches(rule: &Anomaly, class: &str) -> bool {
        if rule.classes.is_empty() {
            class != "local"
        } else {
            rule.classes.iter().any(|c| c == class)
        }
    }

    /// The first anomaly rule `ev` breaks (after its destination was named). Every
    /// rule sees every event (their counts go on), one hit is reported.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per event kind the anomaly rules count; each keeps the first hit"
    )]
    pub fn check(&mut self, ev: &Event) -> Option<Hit> {
        let session = ev.session?;
        if self.rules.is_empty() {
            return None;
        }
        let mut hit = None;
        match &ev.detail {
            Detail::Flow(f) => {
                let (out, inb) = (f.new_out, f.new_in);
                if f.port == 53 || out + inb == 0 {
                    return None;
                }
                let class = ev.dest_class(f.addr);
                let state = self.sessions.entry(session).or_default();
                for (i, rule) in self.rules.iter().enumerate() {
                    let Check::Bytes {
                        bytes,
                        window_ns,
                        direction,
                    } = &rule.check
                    else {
                        continue;
                    };
                    if !Self::watches(rule, class.as_str()) {
                        continue;
                    }
                    let n = match direction {
                        Direction::Out => out,
                        Direction::In => inb,
                        Direction::Both => out + inb,
                    };
                    let w = state
                        .windows
                        .entry((i, class.as_str().to_owned()))
                        .or_default();
                    let total = w.add(ev.ts_ns, n, *window_ns);
                    if total > *bytes && ev.ts_ns >= w.quiet_until && hit.is_none() {
                        w.quiet_until = ev.ts_ns + i128::from(*window_ns);
                        let dir = match direction {
                            Direction::Out => "sent",
                            Direction::In => "received",
                            Direction::Both => "moved",
                        };
                        hit = Some(Hit::of(
                            rule,
                            format!(
                                "{} {dir} to class {class} within {} (limit {})",
                                human(total),
                                secs(*window_ns),
                                human(*bytes)
                            ),
                        ));
                    }
                }
            }
            Detail::Connect {
                addr, port, ret, ..
            }
            | Detail::Send {
                addr, port, ret, ..
            } => {
                // A refused or failed connect went nowhere, nor does a UDP socket's
                // connect (its first send is the destination's).
                if *port == 53
                    || (*ret < 0 && *ret != -i64::from(libc::EINPROGRESS))
                    || crate::matcher::udp_connect(&ev.detail)
                {
                    return None;
                }
                let class = ev.dest_class(*addr);
                let dest = ev.host.clone().unwrap_or_else(|| addr.to_string());
                let state = self.sessions.entry(session).or_default();
                if state.seen.contains(&dest) {
                    return None;
                }
                if state.seen.len() >= MAX_SEEN {
                    state.seen.clear();
                }
                state.seen.insert(dest.clone());
                hit = self
                    .rules
                    .iter()
                    .find(|r| {
                        matches!(r.check, Check::NewDestination) && Self::watches(r, class.as_str())
                    })
                    .map(|rule| {
                        Hit::of(
                            rule,
                            format!(
                                "first connection of the session to {dest}:{port} (class {class})"
                            ),
                        )
                    });
            }
            Detail::Dns(d) if d.direction == DnsDirection::Query => {
                let name = d.name.as_deref().unwrap_or("");
                let state = self.sessions.entry(session).or_default();
                for (i, rule) in self.rules.iter().enumerate() {
                    match &rule.check {
                        Check::DnsVolume { queries, window_ns } => {
                            let w = state.windows.entry((i, String::new())).or_default();
                            let total = w.add(ev.ts_ns, 1, *window_ns);
                            if total > *queries && ev.ts_ns >= w.quiet_until && hit.is_none() {
                                w.quiet_until = ev.ts_ns + i128::from(*window_ns);
                                hit = Some(Hit::of(
                                    rule,
                                    format!(
                                        "{total} DNS queries within {} (limit {queries})",
                                        secs(*window_ns)
                                    ),
                                ));
                            }
                        }
                        Check::DnsEntropy {
                            label_length,
                            entropy,
                            name_length,
                        } if hit.is_none() => {
                            let Some(why) =
                                suspicious_name(name, *label_length, *entropy, *name_length)
                            else {
                                continue;
                            };
                            let w = state.windows.entry((i, domain(name))).or_default();
                            if ev.ts_ns < w.quiet_until {
                                continue;
                            }
                            w.quiet_until = ev.ts_ns + ENTROPY_REFIRE_NS;
                            // The name itself would carry the data into the log.
                            let shown = crate::event::dns::cut_name(name)
                                .unwrap_or_else(|| name.to_owned());
                            hit = Some(Hit::of(rule, format!("DNS query for {shown}: {why}")));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        dns::entropy,
        event::{Flow, FlowReason, Proto, Task, dns::Dns},
        model::Pos,
    };

    fn rule(check: Check, classes: &[&str]) -> Anomaly {
        Anomaly {
            id: format!("anomaly.{}", check.name()),
            check,
            classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            action: Action::Alert,
            target: Target::Session,
            pos: Pos { line: 1, col: 1 },
        }
    }

    fn ev(ts_s: i128, detail: Detail) -> Event {
        let mut e = Event::derived(
            ts_s * 1_000_000_000,
            Some(SessionId(1)),
            Task::default(),
            detail,
        );
        e.host = None;
        e
    }

    /// A record of one flow with `out` bytes sent in all, `new_out` of them since its
    /// previous record (as the pipeline counts them).
    fn flow(out: u64, new_out: u64, reason: FlowReason) -> Detail {
        Detail::Flow(Flow {
            addr: "203.0.113.9".parse().expect("ip"),
            port: 443,
            proto: Proto::Tcp,
            bytes_out: out,
            bytes_in: 0,
            packets_out: 1,
            packets_in: 0,
            reason,
            cookie: 1,
            start_boot_ns: 1,
            start_ns: 0,
            new_out,
            new_in: 0,
            accepted: false,
        })
    }

    fn query(name: &str) -> Detail {
        Detail::Dns(Box::new(Dns {
            server: "127.0.0.53".parse().expect("ip"),
            port: 53,
            proto: Proto::Udp,
            direction: DnsDirection::Query,
            id: Some(1),
            name: Some(name.into()),
            qtype: Some("A".into()),
            rcode: None,
            answers: vec![],
            len: 40,
            cut: false,
            error: None,
            cookie: 2,
        }))
    }

    #[test]
    fn bytes_over_the_window_fire_once_per_window() {
        let mut d = Detector::new(vec![rule(
            Check::Bytes {
                bytes: 1000,
                window_ns: 10_000_000_000,
                direction: Direction::Out,
            },
            &["other"],
        )]);
        assert_eq!(d.check(&ev(0, flow(600, 600, FlowReason::Periodic))), None);
        let hit = d
            .check(&ev(5, flow(1200, 600, FlowReason::Periodic)))
            .expect("fires");
        assert_eq!(hit.rule, "anomaly.bytes");
        assert!(hit.what.contains("class other"), "{}", hit.what);
        // Quiet for the rest of the window.
        assert_eq!(
            d.check(&ev(6, flow(5000, 3800, FlowReason::Periodic))),
            None
        );
        // Old bytes leave the window.
        let mut d2 = Detector::new(d.rules.clone());
        assert_eq!(d2.check(&ev(0, flow(600, 600, FlowReason::Periodic))), None);
        assert_eq!(
            d2.check(&ev(30, flow(1200, 600, FlowReason::Periodic))),
            None
        );
    }

    #[test]
    fn local_destinations_are_not_watched_unless_named() {
        let mut d = Detector::new(vec![rule(Check::NewDestination, &[])]);
        let mut e = ev(
            0,
            Detail::Connect {
                addr: "127.0.0.1".parse().expect("ip"),
                port: 80,
                proto: Proto::Tcp,
                ret: 0,
            },
        );
        assert_eq!(d.check(&e), None);
        e.detail = Detail::Connect {
            addr: "203.0.113.9".parse().expect("ip"),
            port: 443,
            proto: Proto::Tcp,
            ret: 0,
        };
        assert!(d.check(&e).is_some());
        assert_eq!(d.check(&e), None, "only the first time");
    }

    #[test]
    fn dns_volume_and_entropy() {
        let mut d = Detector::new(vec![
            rule(
                Check::DnsVolume {
                    queries: 3,
                    window_ns: 60_000_000_000,
                },
                &[],
            ),
            rule(
                Check::DnsEntropy {
                    label_length: 48,
                    entropy: 4.0,
                    name_length: 200,
                },
                &[],
            ),
        ]);
        for _ in 0..3 {
            assert_eq!(d.check(&ev(0, query("api.openai.com"))), None);
        }
        let hit = d.check(&ev(1, query("api.openai.com"))).expect("volume");
        assert_eq!(hit.rule, "anomaly.dns-volume");
        let long = "mzxw6ytboi2dkmrsgu3tqnzygq4dmmbrgiztcnjwga3dsobrgm4tanrx.t.example";
        let hit = d.check(&ev(2, query(long))).expect("entropy");
        assert_eq!(hit.rule, "anomaly.dns-entropy");
        assert!(hit.what.contains("entropy"), "{}", hit.what);
    }

    #[test]
    fn entropy_heuristics() {
        assert!(entropy("aaaa") < 0.01);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
        // Real names stay below the defaults.
        for name in [
            "api.openai.com",
            "chatgpt.com",
            "registry.npmjs.org",
            "objects.githubusercontent.com",
            "internal-k8s-default-frontend-0123456789.us-east-1.elb.amazonaws.com",
            "d3l1x2y3z4.cloudfront.net",
        ] {
            assert_eq!(suspicious_name(name, 48, 4.0, 200), None, "{name}");
        }
        // Base32 of exfiltrated bytes in one label.
        let tunnel = "gezdgnbvgy3tqojqgezdgnbvgy3tqojqgezdgnbvgy3tqojqmfrggzdf.x.example";
        assert!(
            suspicious_name(tunnel, 48, 4.0, 200).is_none(),
            "low entropy repeats"
        );
        let random = "k7q2xw9m4tzr8vn3pbh6yj5cfd1lgs0aeuoi7qk2m9x4w8z3r6t5v1n0.x.example";
        assert!(suspicious_name(random, 48, 4.0, 200).is_some());
        let long = format!("{}.example", ["abcdefghij"; 20].join("."));
        assert!(
            suspicious_name(&long, 48, 4.0, 200)
                .expect("long")
                .contains("name of")
        );
        assert_eq!(domain("a.b.guard-test.example."), "guard-test.example");
    }
}
