//! `[[anomaly]]` tables: thresholds on a session's egress and DNS.

use guard_common::line::DestClass;
use strum::VariantArray as _;
use toml::de::DeValue;

use super::{Checker, Value, article};
use crate::{
    diag::code,
    model::{Action, Anomaly, Check, Direction, Target},
};

const ANOMALY_KEYS: &[&str] = &[
    "id",
    "rule",
    "class",
    "bytes",
    "window",
    "direction",
    "queries",
    "label_length",
    "entropy",
    "name_length",
    "action",
    "target",
];

/// The destination classes a rule may name.
fn class_names() -> Vec<&'static str> {
    DestClass::VARIANTS.iter().map(|c| c.as_str()).collect()
}

impl Checker<'_> {
    pub(super) fn anomalies(&mut self, value: &Value<'_>) -> Vec<Anomaly> {
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                code::INVALID,
                value.span().start,
                format!(
                    "`anomaly` must be an array of tables (write each as [[anomaly]]), not {}",
                    article(value.get_ref().type_str())
                ),
            );
            return Vec::new();
        };
        items.iter().filter_map(|i| self.anomaly(i)).collect()
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one arm per [[anomaly]] key, then the keys each rule needs checked together"
    )]
    fn anomaly(&mut self, item: &Value<'_>) -> Option<Anomaly> {
        let start = item.span().start;
        let table = self.table("anomaly", item)?;
        let mut id = None;
        let mut rule = None;
        let mut classes = Vec::new();
        let mut bytes = None;
        let mut window = None;
        let mut direction = Direction::Out;
        let mut queries = None;
        let mut label_length = 48usize;
        let mut entropy = 4.0f64;
        let mut name_length = 200usize;
        let mut action = Action::Alert;
        let mut target = Target::Session;
        let mut ok = true;
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let at = value.span().start;
            match name {
                "id" => id = self.string("id", value).map(str::to_owned),
                "rule" => match self.string("rule", value) {
                    Some(r @ ("bytes" | "new-destination" | "dns-volume" | "dns-entropy")) => {
                        rule = Some(r.to_owned());
                    }
                    Some(other) => {
                        ok = false;
                        self.error(
                            code::INVALID,
                            at,
                            format!(
                                "unknown anomaly rule {other:?} (expected \"bytes\", \
                                 \"new-destination\", \"dns-volume\" or \"dns-entropy\")"
                            ),
                        );
                    }
                    None => ok = false,
                },
                "class" => {
                    let list: Vec<String> = match value.get_ref() {
                        DeValue::String(s) => vec![s.to_string()],
                        _ => self
                            .str_list("class", value)
                            .map(|l| l.items.iter().map(|(s, _)| (*s).to_owned()).collect())
                            .unwrap_or_default(),
                    };
                    for c in list {
                        if c == "any" {
                            continue;
                        }
                        if c.parse::<DestClass>().is_ok() {
                            classes.push(c);
                        } else {
                            ok = false;
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "unknown destination class {c:?} (expected \"any\" or one of {})",
                                    class_names().join(", ")
                                ),
                            );
                        }
                    }
                }
                "bytes" => {
                    let parsed = match value.get_ref() {
                        DeValue::Integer(i) => i.as_str().replace('_', "").parse::<u64>().ok(),
                        DeValue::String(s) => s.parse::<bytesize::ByteSize>().ok().map(|b| b.0),
                        _ => None,
                    };
                    match parsed {
                        Some(b) if b > 0 => bytes = Some(b),
                        _ => {
                            ok = false;
                            self.error(
                                code::INVALID,
                                at,
                                "`bytes` must be a size above 0, e.g. \"10MiB\" or 65536",
                            );
                        }
                    }
                }
                "window" => {
                    let parsed = self
                        .string("window", value)
                        .and_then(|s| humantime::parse_duration(s).ok());
                    match parsed {
                        Some(d) if d.as_secs() >= 1 && d.as_secs() <= 86_400 => {
                            window = Some(d.as_nanos() as u64);
                        }
                        _ => {
                            ok = false;
                            self.error(
                                code::INVALID,
                                at,
                                "`window` must be a duration from 1s to 24h, e.g. \"60s\"",
                            );
                        }
                    }
                }
                "direction" => match self.string("direction", value) {
                    Some("out") => direction = Direction::Out,
                    Some("in") => direction = Direction::In,
                    Some("both") => direction = Direction::Both,
                    _ => {
                        ok = false;
                        self.error(
                            code::INVALID,
                            at,
                            "`direction` must be \"out\", \"in\" or \"both\"",
                        );
                    }
                },
                "queries" => queries = self.integer("queries", value, 1, 1_000_000),
                "label_length" => {
                    label_length =
                        self.integer("label_length", value, 1, 63).unwrap_or(48) as usize;
                }
                "name_length" => {
                    name_length =
                        self.integer("name_length", value, 1, 253).unwrap_or(200) as usize;
                }
                "entropy" => match value.get_ref() {
                    DeValue::Float(f) => match f.as_str().parse::<f64>() {
                        Ok(e) if (0.0..=8.0).contains(&e) => entropy = e,
                        _ => {
                            ok = false;
                            self.error(code::INVALID, at, "`entropy` must be from 0.0 to 8.0");
                        }
                    },
                    DeValue::Integer(i) => entropy = i.as_str().parse::<f64>().unwrap_or(4.0),
                    other => {
                        ok = false;
                        self.wrong_type("entropy", "a number", at, other);
                    }
                },
                "action" => match self.string("action", value) {
                    Some("log") => action = Action::Log,
                    Some("alert") => action = Action::Alert,
                    Some("kill") => action = Action::Kill,
                    Some(other) => {
                        ok = false;
                        self.error(
                            code::UNKNOWN_ACTION,
                            at,
                            format!(
                                "unknown anomaly action {other:?} (expected \"log\", \"alert\" or \
                                 \"kill\": an anomaly is seen after the fact, it cannot deny)"
                            ),
                        );
                    }
                    None => ok = false,
                },
                "target" => match self.string("target", value) {
                    Some("session") => target = Target::Session,
                    Some("process") => target = Target::Process,
                    _ => {
                        ok = false;
                        self.error(
                            code::INVALID,
                            at,
                            "`target` must be \"session\" or \"process\"",
                        );
                    }
                },
                other => {
                    ok = false;
                    self.unknown_key(other, key.span().start, "in [[anomaly]]", ANOMALY_KEYS);
                }
            }
        }
        let Some(rule) = rule else {
            if ok {
                self.error(
                    code::MISSING,
                    start,
                    "an [[anomaly]] needs `rule` (\"bytes\", \"new-destination\", \
                     \"dns-volume\" or \"dns-entropy\")",
                );
            }
            return None;
        };
        let mut missing = |what: &str| {
            self.error(
                code::MISSING,
                start,
                format!("an [[anomaly]] of rule {rule:?} needs `{what}`"),
            );
        };
        let check = match rule.as_str() {
            "bytes" => match (bytes, window) {
                (Some(bytes), Some(window_ns)) => Check::Bytes {
                    bytes,
                    window_ns,
                    direction,
                },
                (None, _) => {
                    missing("bytes");
                    return None;
                }
                (_, None) => {
                    missing("window");
                    return None;
                }
            },
            "dns-volume" => match (queries, window) {
                (Some(q), Some(window_ns)) => Check::DnsVolume {
                    queries: u64::from(q),
                    window_ns,
                },
                (None, _) => {
                    missing("queries");
                    return None;
                }
                (_, None) => {
                    missing("window");
                    return None;
                }
            },
            "dns-entropy" => Check::DnsEntropy {
                label_length,
                entropy,
                name_length,
            },
            _ => Check::NewDestination,
        };
        if !ok {
            return None;
        }
        Some(Anomaly {
            id: id.unwrap_or_else(|| format!("anomaly.{}", check.name())),
            check,
            classes,
            action,
            target,
            pos: self.pos(start),
        })
    }
}
