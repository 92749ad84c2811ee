//! What each destination receives for one claim (an alert's rows for it): the
//! same facts in each one's format.
//!
//! - `webhook`: guard's JSON ([`Webhook`]), signed: `X-Guard-Timestamp` (unix
//!   seconds) and `X-Guard-Signature: sha256=<hex>`, the HMAC-SHA256 of
//!   `<timestamp>.<body>` with the destination's secret.
//! - `slack`: an incoming webhook's message: `text` (the notification) and
//!   Block Kit `blocks`.
//! - `teams`: a message with one Adaptive Card (1.4), as a Workflows webhook takes it.
//! - `pagerduty`: an Events API v2 `trigger`, its `dedup_key` the alert and first
//!   event, so a retry is the same incident.
//! - `email`: a plain-text mail, its subject the one-line summary, each event on a
//!   line with its session's link.

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Alerts, Destination, Kind};
use crate::store::alerts::{Claim, Queued};

/// Events listed by name in one message; the rest are counted.
pub const LISTED: usize = 10;

/// What is sent: a JSON POST, or a mail.
#[derive(Clone, Debug)]
pub enum Message {
    /// A request body and its extra headers.
    Post {
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    Mail {
        subject: String,
        text: String,
    },
}

/// The `webhook` body.
#[derive(Clone, Debug, Serialize)]
pub struct Webhook<'a> {
    pub alert: &'a str,
    /// Events this message stands for.
    pub count: usize,
    pub first_ms: i64,
    pub last_ms: i64,
    /// The first [`LISTED`] of them.
    pub events: Vec<WebhookEvent<'a>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WebhookEvent<'a> {
    pub host: &'a str,
    pub session_uid: &'a str,
    pub record_id: &'a str,
    pub ts_ms: i64,
    pub rule: &'a str,
    pub outcome: &'a str,
    pub text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The link to a session's page, when the dashboard's address is known.
fn session_url(alerts: &Alerts, session_uid: &str) -> Option<String> {
    let base = alerts.dashboard_url.as_deref()?;
    (!session_uid.is_empty()).then(|| format!("{base}/sessions/{session_uid}"))
}

/// One line: `killed ssh-keys on build-01: open /home/u/.ssh/id_ed25519`, or for a
/// group `37 events of secret-reads-stopped on 3 hosts (ssh-keys killed, …)`.
pub fn summary(claim: &Claim) -> String {
    let first = &claim.rows[0];
    if claim.rows.len() == 1 {
        return format!("guard: {} on {}: {}", what(first), first.host, first.text);
    }
    let mut hosts: Vec<&str> = claim.rows.iter().map(|r| r.host.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let mut kinds: Vec<String> = claim
        .rows
        .iter()
        .map(|r| format!("{} {}", r.rule, r.outcome).trim_end().to_owned())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    let shown = kinds.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let more = if kinds.len() > 3 { ", …" } else { "" };
    let on = if hosts.len() == 1 {
        hosts[0].to_owned()
    } else {
        format!("{} hosts", hosts.len())
    };
    format!(
        "guard: {} events of {} on {on} ({shown}{more})",
        claim.rows.len(),
        claim.alert
    )
}

/// `killed ssh-keys`, `silent host_silent`, or the kind alone for an event with
/// no outcome (`policy_rejected`).
fn what(r: &Queued) -> String {
    if r.outcome.is_empty() {
        r.rule.clone()
    } else {
        format!("{} {}", r.outcome, r.rule)
    }
}

/// The message `destination` receives for `claim`, at `now_secs`.
#[expect(
    clippy::too_many_lines,
    reason = "one arm per destination kind: each service's payload for the alert side by side"
)]
pub fn render(destination: &Destination, alerts: &Alerts, claim: &Claim, now_secs: i64) -> Message {
    let title = summary(claim);
    let first = &claim.rows[0];
    let link = session_url(alerts, &first.session_uid);
    let lines: Vec<String> = claim
        .rows
        .iter()
        .take(LISTED)
        .map(|r| format!("{} on {}: {}", what(r), r.host, r.text))
        .collect();
    let rest = claim.rows.len().saturating_sub(LISTED);
    let value: Value = match destination.kind {
        Kind::Webhook => serde_json::to_value(Webhook {
            alert: &claim.alert,
            count: claim.rows.len(),
            first_ms: first.ts_ms,
            last_ms: claim.rows.last().map_or(first.ts_ms, |r| r.ts_ms),
            events: claim
                .rows
                .iter()
                .take(LISTED)
                .map(|r| WebhookEvent {
                    host: &r.host,
                    session_uid: &r.session_uid,
                    record_id: &r.record_id,
                    ts_ms: r.ts_ms,
                    rule: &r.rule,
                    outcome: &r.outcome,
                    text: &r.text,
                    url: session_url(alerts, &r.session_uid),
                })
                .collect(),
        })
        .unwrap_or(Value::Null),
        Kind::Slack => {
            let mut text = lines
                .iter()
                .map(|l| format!("• {}", slack_escape(l)))
                .collect::<Vec<_>>()
                .join("\n");
            if rest > 0 {
                text.push_str(&format!("\n… and {rest} more"));
            }
            if let Some(url) = &link {
                text.push_str(&format!("\n<{url}|The first session>"));
            }
            json!({
                "text": title,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(&title)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": format!("guard-fleet alert `{}`", slack_escape(&claim.alert))}
                    ]}
                ]
            })
        }
        Kind::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": true}),
            ];
            body.extend(
                lines
                    .iter()
                    .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
            );
            if rest > 0 {
                body.push(json!({"type": "TextBlock", "text": format!("… and {rest} more"), "wrap": true}));
            }
            let mut card = json!({
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            });
            if let Some(url) = &link {
                card["actions"] =
                    json!([{"type": "Action.OpenUrl", "title": "The first session", "url": url}]);
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": card,
                }]
            })
        }
        Kind::Email => {
            return Message::Mail {
                subject: title,
                text: mail_text(alerts, claim, rest),
            };
        }
        Kind::Pagerduty => {
            let severity = if claim
                .rows
                .iter()
                .any(|r| r.outcome == "killed" || r.outcome == "denied")
            {
                "critical"
            } else {
                "warning"
            };
            let mut event = json!({
                "routing_key": destination.routing_key.clone().unwrap_or_default(),
                "event_action": "trigger",
                "dedup_key": format!("guard-fleet/{}/{}/{}", claim.alert, first.host, first.record_id),
                "payload": {
                    "summary": truncate(&title, 1024),
                    "source": first.host,
                    "severity": severity,
                    "timestamp": rfc3339(first.ts_ms),
                    "component": "guard",
                    "group": first.rule,
                    "class": first.outcome,
                    "custom_details": {
                        "alert": claim.alert,
                        "count": claim.rows.len(),
                        "events": lines,
                    },
                },
                "client": "guard-fleet",
            });
            if let Some(url) = &link {
                event["client_url"] = json!(url);
                event["links"] = json!([{"href": url, "text": "The first session"}]);
            }
            event
        }
    };
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let mut headers = Vec::new();
    if let (Kind::Webhook, Some(secret)) = (destination.kind, &destination.secret) {
        headers.push(("x-guard-timestamp", now_secs.to_string()));
        headers.push((
            "x-guard-signature",
            format!("sha256={}", sign(secret, now_secs, &body)),
        ));
    }
    Message::Post { body, headers }
}

/// An `email`'s text: each listed event with its session's link, the count of the
/// rest, and the alert's name and time span.
fn mail_text(alerts: &Alerts, claim: &Claim, rest: usize) -> String {
    let mut text = String::new();
    for r in claim.rows.iter().take(LISTED) {
        text.push_str(&format!(
            "- {} on {} at {}: {}\n",
            what(r),
            r.host,
            rfc3339(r.ts_ms),
            r.text
        ));
        if let Some(url) = session_url(alerts, &r.session_uid) {
            text.push_str(&format!("  {url}\n"));
        }
    }
    if rest > 0 {
        text.push_str(&format!("- ... and {rest} more\n"));
    }
    text.push_str(&format!(
        "\nguard-fleet alert `{}`: {} event(s).\n",
        claim.alert,
        claim.rows.len()
    ));
    text
}

/// The webhook signature: HMAC-SHA256 of `<timestamp>.<body>`, hex.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    crate::auth::tokens::hex(ctx.sign().as_ref())
}

/// Slack's three control characters, escaped as its docs ask.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    format!("{}...", crate::ingest::validate::cut(s, max - 3))
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(n: usize) -> Claim {
        Claim {
            alert: "secret-reads".into(),
            destination: "d".into(),
            owner: "o".into(),
            rows: (0..n)
                .map(|i| Queued {
                    host: if i % 2 == 0 { "build-01" } else { "build-02" }.into(),
                    record_id: format!("r{i}"),
                    session_uid: "s1".into(),
                    ts_ms: 1_700_000_000_000 + i as i64,
                    rule: "ssh-keys".into(),
                    outcome: "killed".into(),
                    text: "open /home/u/.ssh/id_ed25519 <x>".into(),
                    attempts: 1,
                })
                .collect(),
        }
    }

    fn dest(kind: Kind) -> Destination {
        Destination {
            name: "d".into(),
            kind,
            url: "http://127.0.0.1:1/".into(),
            secret: Some(b"k".to_vec()),
            routing_key: Some("R0UTINGKEY".into()),
            mail: None,
        }
    }

    /// A POST's body (parsed) and headers.
    fn post(m: Message) -> (Value, Vec<u8>, Vec<(&'static str, String)>) {
        match m {
            Message::Post { body, headers } => {
                (serde_json::from_slice(&body).expect("json"), body, headers)
            }
            Message::Mail { .. } => panic!("a mail, not a POST"),
        }
    }

    #[test]
    fn one_event_and_a_storm_read_as_people_expect() {
        assert_eq!(
            summary(&claim(1)),
            "guard: killed ssh-keys on build-01: open /home/u/.ssh/id_ed25519 <x>"
        );
        assert_eq!(
            summary(&claim(1000)),
            "guard: 1000 events of secret-reads on 2 hosts (ssh-keys killed)"
        );
    }

    #[test]
    fn the_webhook_is_signed_over_timestamp_and_body() {
        let alerts = Alerts::default();
        let (v, body, headers) = post(render(
            &dest(Kind::Webhook),
            &alerts,
            &claim(12),
            1_700_000_000,
        ));
        assert_eq!(v["count"], 12);
        assert_eq!(v["events"].as_array().map(Vec::len), Some(LISTED));
        let sig = headers
            .iter()
            .find(|(h, _)| *h == "x-guard-signature")
            .map(|(_, v)| v.clone())
            .expect("signed");
        // Checked the way a receiver would, with ring's verify.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"k");
        let mut signed = b"1700000000.".to_vec();
        signed.extend_from_slice(&body);
        let raw: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&sig["sha256=".len()..][i..i + 2], 16).expect("hex"))
            .collect();
        ring::hmac::verify(&key, &signed, &raw).expect("the signature verifies");
    }

    #[test]
    fn a_mail_lists_ten_events_with_links_and_counts_the_rest() {
        let alerts = Alerts {
            dashboard_url: Some("https://fleet.example.org".into()),
            ..Alerts::default()
        };
        let Message::Mail { subject, text } = render(&dest(Kind::Email), &alerts, &claim(12), 0)
        else {
            panic!("an email destination gets a mail");
        };
        assert_eq!(subject, summary(&claim(12)));
        assert_eq!(text.matches("\n- killed ssh-keys on ").count() + 1, LISTED);
        assert_eq!(
            text.matches("  https://fleet.example.org/sessions/s1\n")
                .count(),
            LISTED
        );
        assert!(text.contains("- ... and 2 more\n"), "{text}");
        assert!(text.contains("alert `secret-reads`: 12 event(s)"), "{text}");
    }

    #[test]
    fn slack_text_is_escaped_and_pagerduty_names_a_stable_incident() {
        let alerts = Alerts {
            dashboard_url: Some("https://fleet.example.org".into()),
            ..Alerts::default()
        };
        let (v, ..) = post(render(&dest(Kind::Slack), &alerts, &claim(1), 0));
        let blocks = v["blocks"].to_string();
        assert!(blocks.contains("&lt;x&gt;"), "{blocks}");
        assert!(blocks.contains("<https://fleet.example.org/sessions/s1|The first session>"));
        let (v, ..) = post(render(&dest(Kind::Pagerduty), &alerts, &claim(3), 0));
        assert_eq!(v["dedup_key"], "guard-fleet/secret-reads/build-01/r0");
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["routing_key"], "R0UTINGKEY");
    }
}
