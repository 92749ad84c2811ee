//! Any list as CSV (`?format=csv`): every row the filters select (at most
//! [`super::pages::CSV_MAX`]), one header line, times in RFC 3339 UTC and bytes as
//! numbers, for a spreadsheet or the SIEM.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::store::read::{Dim, DimRow, Host, SessionRow, Window};

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn answer(name: &str, rows: Vec<Vec<String>>) -> Response {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        if let Err(e) = w.write_record(&r) {
            tracing::error!(error = %e, "csv not written");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    match w.into_inner() {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"guard-fleet-{name}.csv\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "csv not written");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The sessions list.
pub fn sessions(rows: &[SessionRow]) -> Response {
    let mut out = vec![
        [
            "started",
            "host",
            "session_uid",
            "user",
            "agent",
            "agent_version",
            "repository",
            "branch",
            "state",
            "ended",
            "duration_ms",
            "commands",
            "files_read",
            "files_written",
            "secrets_read",
            "bytes_out",
            "bytes_in",
            "model_bytes_out",
            "other_bytes_out",
            "violations",
            "host_started",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in rows {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        out.push(vec![
            time(s.started_ms),
            s.host.clone(),
            s.session_uid.clone(),
            o(&s.user_name),
            o(&s.agent),
            o(&s.agent_version),
            o(&s.repo_url),
            o(&s.repo_branch),
            s.state.clone(),
            s.ended_ms.map(time).unwrap_or_default(),
            s.duration_ms.to_string(),
            s.commands.to_string(),
            s.files_read.to_string(),
            s.files_written.to_string(),
            s.secrets_read.to_string(),
            s.bytes_out.to_string(),
            s.bytes_in.to_string(),
            s.model_bytes_out.to_string(),
            (s.bytes_out - s.model_bytes_out).max(0).to_string(),
            s.violations.to_string(),
            s.host_started_ms.map(time).unwrap_or_default(),
        ]);
    }
    answer("sessions", out)
}

/// The hosts list.
pub fn hosts(hosts: &[Host]) -> Response {
    let mut out = vec![
        [
            "host",
            "host_name",
            "reporting",
            "guard_version",
            "kernel",
            "policy",
            "mode",
            "missing_tiers",
            "clock_skew_ms",
            "first_seen",
            "last_seen",
            "last_heartbeat",
            "sessions_30d",
            "running",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for h in hosts {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        out.push(vec![
            h.host.clone(),
            h.host_name.clone(),
            (!h.stale).to_string(),
            o(&h.guard_version),
            o(&h.os_version),
            o(&h.policy_name),
            o(&h.policy_mode),
            h.missing_tiers().join(" "),
            h.clock_skew_ms.to_string(),
            time(h.first_seen_ms),
            time(h.last_seen_ms),
            h.heartbeat_ms.map(time).unwrap_or_default(),
            h.sessions.to_string(),
            h.running.to_string(),
        ]);
    }
    answer("hosts", out)
}

/// A list of the rollup (developers, destinations, …) over `window`.
pub fn dimension(dim: Dim, window: &Window, rows: &[DimRow]) -> Response {
    let name = serde_json::to_value(dim)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut header = vec![
        "name".to_owned(),
        "from".to_owned(),
        "days".to_owned(),
        if dim.counts_violations() {
            "violations"
        } else {
            "sessions"
        }
        .to_owned(),
        "previous_period".to_owned(),
    ];
    if dim == Dim::Destinations {
        header.insert(1, "class".to_owned());
    }
    if !dim.counts_violations() {
        header.extend(
            [
                "developers",
                "sessions_reading_secrets",
                "secrets_read",
                "violations",
                "bytes_out",
                "model_bytes_out",
                "other_bytes_out",
                "duration_ms",
                "first",
                "last",
            ]
            .map(str::to_owned),
        );
    }
    let mut out = vec![header];
    for r in rows {
        let mut line = vec![
            r.name.clone(),
            time(window.since_ms),
            window.days.to_string(),
            r.sessions.to_string(),
            r.prev_sessions.to_string(),
        ];
        if dim == Dim::Destinations {
            let (class, dest) = r.class_and_dest();
            line[0] = dest.to_owned();
            line.insert(1, class.to_owned());
        }
        if !dim.counts_violations() {
            line.extend([
                r.developers.to_string(),
                r.sessions_reading_secrets.to_string(),
                r.secrets_read.to_string(),
                r.violations.to_string(),
                r.bytes_out.to_string(),
                r.model_bytes_out.to_string(),
                r.other_bytes_out().to_string(),
                r.duration_ms.to_string(),
                time(r.first_ms),
                time(r.last_ms),
            ]);
        }
        out.push(line);
    }
    answer(&name, out)
}
