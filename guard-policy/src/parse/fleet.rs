//! `[fleet]`: where the host pulls the policy its group is assigned, and the key
//! that must have signed it (docs/fleet.md, "Policy from the fleet").

use std::time::Duration;

use base64::Engine as _;

use super::{Checker, Value, code};
use crate::model::{Fleet, Labels, MAX_LABELS, label_check};

const FLEET_KEYS: &[&str] = &["policy_url", "public_key", "group", "labels", "interval"];

/// How often the assignment is asked for when the file does not say.
pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

impl Checker<'_> {
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per [fleet] key, then the two keys it needs checked together"
    )]
    pub(super) fn fleet(&mut self, value: &Value<'_>, at: usize) -> Option<Fleet> {
        let table = self.table("fleet", value)?;
        let (mut url, mut key, mut group) = (None, None, None);
        // Present but wrong: already reported where it is.
        let (mut url_given, mut key_given) = (false, false);
        let mut interval = DEFAULT_INTERVAL;
        let mut labels = Labels::default();
        for (name, value) in table.iter() {
            let name = name.get_ref().as_ref();
            let here = value.span().start;
            match name {
                "policy_url" => {
                    url_given = true;
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    match url::Url::parse(text) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                            url = Some(text.to_owned());
                        }
                        _ => self.error(
                            code::INVALID,
                            here,
                            format!(
                                "[fleet] policy_url {text:?} must be an http:// or https:// URL \
                                 with a host"
                            ),
                        ),
                    }
                }
                "public_key" => {
                    key_given = true;
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim());
                    match bytes.ok().and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                        Some(k) => key = Some(k),
                        None => self.error(
                            code::INVALID,
                            here,
                            "[fleet] public_key must be the fleet's Ed25519 public key: 32 bytes \
                             in base64 (`guard-fleet policy-key` prints it)",
                        ),
                    }
                }
                "group" => {
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    if !crate::model::valid_name(text) {
                        self.error(
                            code::INVALID,
                            here,
                            format!(
                                "[fleet] group {text:?} must be 1 to 128 letters, digits, `-`, \
                                 `_` or `.`"
                            ),
                        );
                    } else {
                        group = Some(text.to_owned());
                    }
                }
                "labels" => {
                    let Some(table) = self.table("labels", value) else {
                        continue;
                    };
                    for (key, value) in table.iter() {
                        let (key, here) = (key.get_ref().as_ref(), value.span().start);
                        let Some(text) = self.string(key, value) else {
                            continue;
                        };
                        match label_check(key, text) {
                            Ok(()) => {
                                labels.0.insert(key.to_owned(), text.to_owned());
                            }
                            Err(e) => self.error(code::INVALID, here, format!("[fleet] {e}")),
                        }
                    }
                    if labels.0.len() > MAX_LABELS {
                        self.error(
                            code::INVALID,
                            here,
                            format!("[fleet] labels: at most {MAX_LABELS}"),
                        );
                    }
                }
                "interval" => {
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    match humantime::parse_duration(text) {
                        Ok(d) if (1..=86_400).contains(&d.as_secs()) => interval = d,
                        _ => self.error(
                            code::INVALID,
                            here,
                            format!(
                                "[fleet] interval {text:?} must be from 1 s to 1 day (\"30s\")"
                            ),
                        ),
                    }
                }
                other => self.unknown_key(other, here, "in [fleet]", FLEET_KEYS),
            }
        }
        let missing = |what: &str| format!("[fleet] needs `{what}`");
        match (url, key) {
            (Some(policy_url), Some(public_key)) => Some(Fleet {
                policy_url,
                public_key,
                group,
                labels,
                interval,
            }),
            _ => {
                if !url_given {
                    self.error(code::MISSING, at, missing("policy_url"));
                }
                if !key_given {
                    self.error(code::MISSING, at, missing("public_key"));
                }
                None
            }
        }
    }
}
