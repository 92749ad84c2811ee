//! `[export]` (where events and session summaries go, docs/export.md),
//! `[redact]` (what is taken out of free text before anything is written) and
//! `[audit]` (the audit log's format).

use super::{Checker, Value, code};
use crate::model::{Audit, Export, ExportProtocol, Redact, Schema};

const EXPORT_KEYS: &[&str] = &[
    "endpoint",
    "protocol",
    "headers",
    "token_file",
    "ca_file",
    "client_cert",
    "client_key",
    "kinds",
    "summary_interval",
    "summary_items",
    "batch_records",
    "batch_interval",
    "timeout",
    "compression",
    "spool_dir",
    "spool_max",
    "resource",
    "schema",
];
const REDACT_KEYS: &[&str] = &["enabled", "patterns"];
const AUDIT_KEYS: &[&str] = &["format"];

/// The event kinds an export may name: every kind the daemon writes.
const EVENT_KINDS: &[&str] = guard_common::line::EventDetail::KINDS;

impl Checker<'_> {
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per [export] key with its own limits, then client_cert and client_key"
    )]
    pub(super) fn export(&mut self, value: &Value<'_>, export: &mut Export) {
        let Some(table) = self.table("export", value) else {
            return;
        };
        let mut cert_key = (None, None);
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let at = value.span().start;
            match name {
                "endpoint" => {
                    let Some(url) = self.string(name, value) else {
                        continue;
                    };
                    match url::Url::parse(url) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                            export.endpoint = Some(url.to_owned());
                        }
                        Ok(u) => self.error(
                            code::INVALID,
                            at,
                            format!(
                                "[export] endpoint {url:?} must be an http:// or https:// URL \
                                 with a host (not {}:)",
                                u.scheme()
                            ),
                        ),
                        Err(e) => self.error(
                            code::INVALID,
                            at,
                            format!("[export] endpoint {url:?} is not a URL: {e}"),
                        ),
                    }
                }
                "protocol" => match self.string(name, value) {
                    Some("http/protobuf") => export.protocol = ExportProtocol::Protobuf,
                    Some("http/json") => export.protocol = ExportProtocol::Json,
                    Some(other) => self.error(
                        code::INVALID,
                        at,
                        format!(
                            "unknown [export] protocol {other:?} (expected \"http/protobuf\" or \
                             \"http/json\")"
                        ),
                    ),
                    None => {}
                },
                "headers" | "resource" => {
                    let Some(t) = self.table(name, value) else {
                        continue;
                    };
                    let mut pairs = Vec::new();
                    for (k, v) in t.iter() {
                        let key = k.get_ref().as_ref();
                        if let Some(text) = self.string(key, v) {
                            if name == "headers"
                                && http::HeaderName::from_bytes(key.as_bytes()).is_err()
                            {
                                self.error(
                                    code::INVALID,
                                    k.span().start,
                                    format!("[export] header name {key:?} is not a valid header"),
                                );
                                continue;
                            }
                            pairs.push((key.to_owned(), text.to_owned()));
                        }
                    }
                    if name == "headers" {
                        export.headers = pairs;
                    } else {
                        export.resource = pairs;
                    }
                }
                "token_file" | "ca_file" | "client_cert" | "client_key" | "spool_dir" => {
                    let Some(path) = self.string(name, value) else {
                        continue;
                    };
                    if !path.starts_with('/') {
                        self.error(
                            code::INVALID,
                            at,
                            format!("[export] {name} {path:?} must be an absolute path"),
                        );
                        continue;
                    }
                    let path = Some(std::path::PathBuf::from(path));
                    match name {
                        "token_file" => export.token_file = path,
                        "ca_file" => export.ca_file = path,
                        "client_cert" => {
                            cert_key.0 = Some(at);
                            export.client_cert = path;
                        }
                        "client_key" => {
                            cert_key.1 = Some(at);
                            export.client_key = path;
                        }
                        _ => export.spool_dir = path,
                    }
                }
                "kinds" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    let mut kinds = Vec::new();
                    for (kind, at) in list.items {
                        if EVENT_KINDS.contains(&kind) {
                            kinds.push(kind.to_owned());
                        } else {
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "unknown event kind {kind:?} in [export] kinds (one of {})",
                                    EVENT_KINDS.join(", ")
                                ),
                            );
                        }
                    }
                    export.kinds = Some(kinds);
                }
                "summary_interval" | "batch_interval" | "timeout" => {
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    let (min, max) = match name {
                        "summary_interval" => (1, 86_400),
                        "timeout" => (1, 300),
                        _ => (0, 60),
                    };
                    match humantime::parse_duration(text) {
                        Ok(d) if d.as_secs() >= min && d.as_secs() <= max && !d.is_zero() => {
                            match name {
                                "summary_interval" => export.summary_interval = d,
                                "timeout" => export.timeout = d,
                                _ => export.batch_interval = d,
                            }
                        }
                        Ok(_) => self.error(
                            code::INVALID,
                            at,
                            format!("[export] {name} {text:?} must be from {min} s to {max} s"),
                        ),
                        Err(e) => self.error(
                            code::INVALID,
                            at,
                            format!("[export] {name} {text:?} is not a duration (\"60s\"): {e}"),
                        ),
                    }
                }
                "summary_items" => {
                    if let Some(n) = self.integer(name, value, 1, 2_000) {
                        export.summary_items = n as usize;
                    }
                }
                "batch_records" => {
                    if let Some(n) = self.integer(name, value, 1, 10_000) {
                        export.batch_records = n as usize;
                    }
                }
                "compression" => match self.string(name, value) {
                    Some("gzip") => export.gzip = true,
                    Some("none") => export.gzip = false,
                    Some(other) => self.error(
                        code::INVALID,
                        at,
                        format!(
                            "unknown [export] compression {other:?} (expected \"gzip\" or \"none\")"
                        ),
                    ),
                    None => {}
                },
                "spool_max" => {
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    match text.parse::<bytesize::ByteSize>() {
                        Ok(b) if b.0 >= 1024 * 1024 => export.spool_max = b.0,
                        Ok(_) => self.error(
                            code::INVALID,
                            at,
                            format!("[export] spool_max {text:?} must be at least 1 MiB"),
                        ),
                        Err(e) => self.error(
                            code::INVALID,
                            at,
                            format!("[export] spool_max {text:?} is not a size (\"256MiB\"): {e}"),
                        ),
                    }
                }
                "schema" => {
                    if let Some(schema) = self.schema("[export] schema", "guard", value) {
                        export.schema = schema;
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [export]", EXPORT_KEYS),
            }
        }
        match cert_key {
            (Some(at), None) => self.error(
                code::MISSING,
                at,
                "[export] client_cert needs client_key (mutual TLS takes both)",
            ),
            (None, Some(at)) => self.error(
                code::MISSING,
                at,
                "[export] client_key needs client_cert (mutual TLS takes both)",
            ),
            _ => {}
        }
    }

    /// `"ocsf"`, or guard's own schema (`native`, by its name in this key).
    fn schema(&mut self, key: &str, native: &str, value: &Value<'_>) -> Option<Schema> {
        let at = value.span().start;
        match self.string(key, value)? {
            "ocsf" => Some(Schema::Ocsf),
            s if s == native => Some(Schema::Guard),
            other => {
                self.error(
                    code::INVALID,
                    at,
                    format!("unknown {key} {other:?} (expected \"{native}\" or \"ocsf\")"),
                );
                None
            }
        }
    }

    pub(super) fn audit(&mut self, value: &Value<'_>, audit: &mut Audit) {
        let Some(table) = self.table("audit", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "format" => {
                    if let Some(format) = self.schema("[audit] format", "json", value) {
                        audit.format = format;
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [audit]", AUDIT_KEYS),
            }
        }
    }

    pub(super) fn redact(&mut self, value: &Value<'_>, redact: &mut Redact) {
        let Some(table) = self.table("redact", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "enabled" => {
                    if let Some(b) = self.boolean(name, value) {
                        redact.enabled = b;
                    }
                }
                "patterns" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    for (pattern, at) in list.items {
                        match regex::Regex::new(pattern) {
                            Ok(_) => redact.patterns.push(pattern.to_owned()),
                            Err(e) => self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "[redact] pattern {pattern:?} is not a regular expression: {e}"
                                ),
                            ),
                        }
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [redact]", REDACT_KEYS),
            }
        }
    }
}
