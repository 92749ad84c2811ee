//! Reads a policy file (TOML) into a validated [`Policy`], reporting every problem
//! it finds, each with a stable code and the position of the offending key or
//! value. `docs/policy.md` documents the format and the codes.
//!
//! The checker and the top level of the file live here; one `[[rule]]` in
//! `rule`, syntax-error recovery in `recovery`, path and program checks in
//! `check`, network destinations in `destination`, container selectors and cgroup globs
//! in `container`.

mod anomaly;
mod check;
mod container;
mod delegation;
mod destination;
mod dns;
mod export;
mod fleet;
mod packages;
mod profile;
mod recovery;
mod rule;
mod sections;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use self::container::cgroup_glob;
use super::diag::{Diagnostic, code, pos_at};
use super::model::{
    Access, Action, Dest, Files, Kind, Limits, Mode, Policy, Pos, ReportConfig, Rule, Scope,
    Sessions, Taint,
};

/// Parses and validates a policy. `source_name` names it in [`Policy::name`] (a
/// file path or a built-in's name).
///
/// `Ok` carries the policy and its warnings; `Err` carries every diagnostic, errors
/// and warnings, sorted by position, when there is at least one error.
pub fn parse(source_name: &str, text: &str) -> Result<(Policy, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Checker {
        text,
        diags: Vec::new(),
        blanked: Vec::new(),
    };
    let readable = cx.recover();
    let (doc, _) = DeTable::parse_recoverable(&readable);
    let policy = cx.policy(source_name, doc.get_ref());
    let mut diags = cx.diags;
    diags.sort_by_key(|d| (d.pos.line, d.pos.col));
    if diags.iter().any(Diagnostic::is_error) {
        Err(diags)
    } else {
        Ok((policy, diags))
    }
}

/// The rule a setting makes: its id, the setting as people write it, what it
/// catches, its kind and action, and where the setting is (a byte offset).
struct SettingRule {
    id: &'static str,
    setting: &'static str,
    description: &'static str,
    kind: Kind,
    action: Action,
    at: usize,
}

const TOP_KEYS: &[&str] = &[
    "mode",
    "agents",
    "limits",
    "report",
    "sessions",
    "taint",
    "files",
    "dns",
    "delegation",
    "packages",
    "rule",
    "anomaly",
    "export",
    "redact",
    "audit",
    "fleet",
];
const COMMON_KEYS: &[&str] = &["id", "description", "kind", "action", "fallback", "scope"];
const FILE_KEYS: &[&str] = &["paths", "except", "access", "secret"];
const EXEC_KEYS: &[&str] = &["exe", "digest", "argv_contains", "argv_regex"];
const NETWORK_KEYS: &[&str] = &["allow", "deny"];

type Value<'i> = Spanned<DeValue<'i>>;

#[derive(Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
enum KindName {
    File,
    Exec,
    Network,
}

impl KindName {
    fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    fn of_key(key: &str) -> Option<Self> {
        [Self::File, Self::Exec, Self::Network]
            .into_iter()
            .find(|k| k.keys().contains(&key))
    }

    fn as_str(self) -> &'static str {
        self.into()
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            Self::File => FILE_KEYS,
            Self::Exec => EXEC_KEYS,
            Self::Network => NETWORK_KEYS,
        }
    }

    /// Every key a rule of this kind may have.
    fn valid_keys(self) -> Vec<&'static str> {
        // A network `deny` never falls back: the kernel refuses on every tier.
        COMMON_KEYS
            .iter()
            .filter(|k| self != Self::Network || **k != "fallback")
            .chain(self.keys())
            .copied()
            .collect()
    }
}

/// A field as written: its value and where its key and value start.
struct Field<T> {
    value: T,
    key_at: usize,
    value_at: usize,
}

/// A list of strings as written, with where each starts; `empty` when the array
/// itself was `[]` (not when its entries were all invalid).
struct StrList<'v> {
    items: Vec<(&'v str, usize)>,
    empty: bool,
}

/// Destinations as written; `empty` when the array itself was `[]`.
struct DestList {
    dests: Vec<Dest>,
    empty: bool,
}

/// The fields of one `[[rule]]`, each as read (invalid values already reported).
#[derive(Default)]
struct RawRule<'v> {
    description: Option<String>,
    action: Option<Field<Action>>,
    /// `fallback`, as written (checked once the action and kind are known).
    fallback: Option<Field<Action>>,
    scope: Scope,
    paths: Option<Field<StrList<'v>>>,
    except: Option<Field<StrList<'v>>>,
    access: Option<Access>,
    secret: bool,
    exe: Option<Field<StrList<'v>>>,
    digests: Vec<super::model::Digest>,
    /// `digest` was given (its entries may all have been invalid).
    digest_key: bool,
    argv_contains: Vec<(&'v str, usize)>,
    argv_regex: Option<String>,
    allow: Option<Field<DestList>>,
    deny: Option<Field<DestList>>,
}

struct Checker<'t> {
    text: &'t str,
    diags: Vec<Diagnostic>,
    /// Byte ranges syntax recovery blanked out.
    blanked: Vec<Range<usize>>,
}

impl Checker<'_> {
    fn error(&mut self, code: &'static str, at: usize, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(code, self.pos(at), message));
    }

    fn warning(&mut self, code: &'static str, at: usize, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(code, self.pos(at), message));
    }

    fn pos(&self, at: usize) -> Pos {
        pos_at(self.text, at)
    }

    // ---- top level -----------------------------------------------------------

    fn policy(&mut self, name: &str, root: &DeTable<'_>) -> Policy {
        let mut policy = Policy {
            name: name.to_owned(),
            mode: Mode::Enforce,
            agents: crate::profile::launchers().map(str::to_owned).collect(),
            profiles: Vec::new(),
            containers: Vec::new(),
            cgroups: Vec::new(),
            kill_stragglers: false,
            homes: Vec::new(),
            limits: Limits::default(),
            report: ReportConfig::default(),
            sessions: Sessions::default(),
            taint: Taint::default(),
            files: Default::default(),
            dns: super::model::Dns::default(),
            delegation: super::model::Delegation::default(),
            packages: super::model::Packages::default(),
            rules: Vec::new(),
            anomalies: Vec::new(),
            export: Default::default(),
            redact: Default::default(),
            audit: Default::default(),
            fleet: None,
        };
        let mut sessions_at = 0;
        let mut taint_at = 0;
        let mut dns_at = None;
        let mut dns_unknown = None;
        let mut delegation_at = None;
        let mut packages_at = None;
        for (key, value) in root.iter() {
            match key.get_ref().as_ref() {
                "mode" => {
                    if let Some(mode) = self.mode(value) {
                        policy.mode = mode;
                    }
                }
                "agents" => self.agents(value, &mut policy),
                "limits" => self.limits(value, &mut policy.limits),
                "report" => self.report(value, &mut policy.report),
                "sessions" => {
                    sessions_at = key.span().start;
                    self.sessions(value, &mut policy.sessions);
                }
                "taint" => {
                    taint_at = key.span().start;
                    self.taint(value, &mut policy.taint);
                }
                "files" => self.files(value, &mut policy.files),
                "dns" => {
                    dns_at = Some(key.span().start);
                    dns_unknown = self.dns(value, &mut policy.dns);
                }
                "delegation" => {
                    delegation_at = Some(key.span().start);
                    self.delegation(value, &mut policy.delegation);
                }
                "packages" => {
                    packages_at = Some(key.span().start);
                    self.packages(value, &mut policy.packages);
                }
                "rule" => policy.rules = self.rules(value),
                "anomaly" => policy.anomalies = self.anomalies(value),
                "export" => self.export(value, &mut policy.export),
                "redact" => self.redact(value, &mut policy.redact),
                "audit" => self.audit(value, &mut policy.audit),
                "fleet" => policy.fleet = self.fleet(value, key.span().start),
                other => self.unknown_key(other, key.span().start, "at the top level", TOP_KEYS),
            }
        }
        let pos = self.pos(sessions_at);
        for (key, action, routes) in policy.sessions.rules() {
            let id = format!("sessions.{key}");
            if let Some(clash) = policy.rules.iter().find(|r| r.id == id) {
                let at = clash.pos;
                self.diags.push(Diagnostic::error(
                    code::DUPLICATE_ID,
                    at,
                    format!("rule id {id:?} is taken by the `[sessions] {key}` setting"),
                ));
            }
            policy.rules.push(Rule {
                id,
                description: Some(format!("[sessions] {key}")),
                kind: Kind::Route(routes),
                action,
                scope: Scope::All,
                secret: false,
                fallback: None,
                pos,
            });
        }
        for id in Files::RULES {
            if let Some(clash) = policy.rules.iter().find(|r| r.id == id) {
                let at = clash.pos;
                self.diags.push(Diagnostic::error(
                    code::DUPLICATE_ID,
                    at,
                    format!("rule id {id:?} is taken by the `[files]` settings"),
                ));
            }
        }
        self.dns_rule(&mut policy, dns_at, dns_unknown);
        self.delegation_rule(&mut policy, delegation_at);
        self.packages_rule(&mut policy, packages_at);
        if let Some(action) = policy.taint.egress {
            let kind = Kind::TaintEgress {
                allow: policy.taint.allow.clone(),
            };
            let made = SettingRule {
                id: Taint::RULE,
                setting: "[taint] egress",
                description: "[taint] egress",
                kind,
                action,
                at: taint_at,
            };
            self.setting_rule(&mut policy, made);
        }
        policy
    }

    fn mode(&mut self, value: &Value<'_>) -> Option<Mode> {
        let at = value.span().start;
        let mode = match self.string("mode", value)? {
            "enforce" => Mode::Enforce,
            "observe" => Mode::Observe,
            other => {
                self.error(
                    code::INVALID,
                    at,
                    format!("unknown mode {other:?} (expected \"enforce\" or \"observe\")"),
                );
                return None;
            }
        };
        if mode == Mode::Observe {
            self.warning(
                code::OBSERVE_MODE,
                at,
                "observe mode: every rule's action is downgraded to `log` (events name the \
                 action in `would`)",
            );
        }
        Some(mode)
    }

    fn rules(&mut self, value: &Value<'_>) -> Vec<Rule> {
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                code::INVALID,
                value.span().start,
                format!(
                    "`rule` must be an array of tables (write each rule as [[rule]]), not {}",
                    article(value.get_ref().type_str())
                ),
            );
            return Vec::new();
        };
        // Rule id → where its first definition's id is.
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut rules = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(rule) = self.rule(index, item, &mut ids) {
                rules.push(rule);
            }
        }
        rules
    }

    // ---- typed values --------------------------------------------------------

    /// A setting that is `"allow"` (`None`: no rule) or one of `actions`, as
    /// `[section] name` says; `None` after reporting any other value.
    fn allow_or_action(
        &mut self,
        (section, name): (&str, &str),
        value: &Value<'_>,
        actions: &[Action],
    ) -> Option<Option<Action>> {
        let text = self.string(name, value)?;
        if text == "allow" {
            return Some(None);
        }
        if let Some(action) = actions.iter().copied().find(|a| a.as_str() == text) {
            return Some(Some(action));
        }
        let mut expected: Vec<String> = std::iter::once("allow")
            .chain(actions.iter().map(|a| a.as_str()))
            .map(|a| format!("{a:?}"))
            .collect();
        let last = expected.pop().unwrap_or_default();
        self.error(
            code::INVALID,
            value.span().start,
            format!(
                "unknown [{section}] {name} {text:?} (expected {} or {last})",
                expected.join(", ")
            ),
        );
        None
    }

    /// Adds the rule a setting makes (`[taint] egress`, `[dns] unknown`, …) to
    /// `policy`'s, after the policy's own; a rule of the policy's with its id is an
    /// error.
    fn setting_rule(&mut self, policy: &mut Policy, made: SettingRule) {
        let SettingRule {
            id,
            setting,
            description,
            kind,
            action,
            at,
        } = made;
        if let Some(clash) = policy.rules.iter().find(|r| r.id == id) {
            let clash_at = clash.pos;
            self.diags.push(Diagnostic::error(
                code::DUPLICATE_ID,
                clash_at,
                format!("rule id {id:?} is taken by the `{setting}` setting"),
            ));
        }
        policy.rules.push(Rule {
            id: id.to_owned(),
            description: Some(description.to_owned()),
            kind,
            action,
            scope: Scope::All,
            secret: false,
            fallback: None,
            pos: self.pos(at),
        });
    }

    fn string<'v>(&mut self, key: &str, value: &'v Value<'_>) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            other => {
                self.wrong_type(key, "a string", value.span().start, other);
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.wrong_type(key, "true or false", value.span().start, other);
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    fn integer(&mut self, key: &str, value: &Value<'_>, min: u32, max: u32) -> Option<u32> {
        let at = value.span().start;
        let DeValue::Integer(int) = value.get_ref() else {
            self.wrong_type(key, "a whole number", at, value.get_ref());
            return None;
        };
        let digits = int.as_str().replace('_', "");
        match i64::from_str_radix(&digits, int.radix()) {
            Ok(n) if n >= i64::from(min) && n <= i64::from(max) => u32::try_from(n).ok(),
            _ => {
                self.error(
                    code::INVALID,
                    at,
                    format!("`{key}` must be a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    fn table<'v, 'i>(&mut self, key: &str, value: &'v Value<'i>) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.wrong_type(key, "a table", value.span().start, other);
                None
            }
        }
    }

    /// An array of strings; entries of other types are reported and left out.
    fn str_list<'v>(&mut self, key: &str, value: &'v Value<'_>) -> Option<StrList<'v>> {
        let DeValue::Array(array) = value.get_ref() else {
            self.wrong_type(
                key,
                "an array of strings",
                value.span().start,
                value.get_ref(),
            );
            return None;
        };
        let mut items = Vec::new();
        for item in array.iter() {
            match item.get_ref() {
                DeValue::String(s) => items.push((s.as_ref(), item.span().start)),
                other => self.error(
                    code::INVALID,
                    item.span().start,
                    format!(
                        "entries of `{key}` must be strings, not {}",
                        article(other.type_str())
                    ),
                ),
            }
        }
        Some(StrList {
            items,
            empty: array.is_empty(),
        })
    }

    fn wrong_type(&mut self, key: &str, expected: &str, at: usize, found: &DeValue<'_>) {
        self.error(
            code::INVALID,
            at,
            format!(
                "`{key}` must be {expected}, not {}",
                article(found.type_str())
            ),
        );
    }

    fn unknown_key(&mut self, key: &str, at: usize, place: &str, valid: &[&str]) {
        let hint =
            closest(key, valid).map_or_else(String::new, |k| format!(" (did you mean `{k}`?)"));
        self.error(
            code::UNKNOWN_KEY,
            at,
            format!(
                "unknown key `{key}` {place}{hint}; valid keys: {}",
                valid.join(", ")
            ),
        );
    }
}

fn all_rule_keys() -> Vec<&'static str> {
    COMMON_KEYS
        .iter()
        .chain(FILE_KEYS)
        .chain(EXEC_KEYS)
        .chain(NETWORK_KEYS)
        .copied()
        .collect()
}

/// `a string`, `an integer`.
fn article(noun: &str) -> String {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}

/// The valid key a mistyped one was most likely meant to be: the nearest by
/// Levenshtein distance (in characters), if it is near enough to be a typo.
fn closest<'k>(key: &str, valid: &[&'k str]) -> Option<&'k str> {
    valid
        .iter()
        // Swapped letters count as one edit (`mdoe` is one from `mode`).
        .map(|v| (strsim::osa_distance(key, v), *v))
        .filter(|&(d, v)| d > 0 && d < key.chars().count() && d <= 1.max(v.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, v)| v)
}
