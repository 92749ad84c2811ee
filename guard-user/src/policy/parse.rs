//! Reads a policy file (TOML) into a validated [`Policy`], reporting every problem
//! it finds, each with a stable code and the position of the offending key or
//! value. `docs/policy.md` documents the format and the codes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;

use globset::GlobBuilder;
use ipnet::IpNet;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, code, pos_at};
use super::glob;
use super::model::{
    Access, Action, ContainerField, ContainerSelector, Dest, Host, Kind, Mode, Policy, Pos, Rule,
    Scope,
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

/// `~` when checking globs ([`glob::expand`] the way the matcher does): any
/// absolute directory does.
const CHECK_HOME: &str = "/home/user";

/// More passes than this and syntax recovery gives up (a file that bad has been
/// reported enough).
const MAX_SYNTAX_PASSES: usize = 64;

const TOP_KEYS: &[&str] = &["mode", "agents", "rule"];
const AGENT_KEYS: &[&str] = &["names", "containers", "cgroups", "kill_stragglers"];
const COMMON_KEYS: &[&str] = &["id", "description", "kind", "action", "scope"];
const FILE_KEYS: &[&str] = &["paths", "except", "access"];
const EXEC_KEYS: &[&str] = &["exe", "argv_contains", "argv_regex"];
const NETWORK_KEYS: &[&str] = &["allow", "deny"];

type Value<'i> = Spanned<DeValue<'i>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum KindName {
    File,
    Exec,
    Network,
}

impl KindName {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "file" => KindName::File,
            "exec" => KindName::Exec,
            "network" => KindName::Network,
            _ => return None,
        })
    }

    fn of_key(key: &str) -> Option<Self> {
        [KindName::File, KindName::Exec, KindName::Network]
            .into_iter()
            .find(|k| k.keys().contains(&key))
    }

    fn as_str(self) -> &'static str {
        match self {
            KindName::File => "file",
            KindName::Exec => "exec",
            KindName::Network => "network",
        }
    }

    fn keys(self) -> &'static [&'static str] {
        match self {
            KindName::File => FILE_KEYS,
            KindName::Exec => EXEC_KEYS,
            KindName::Network => NETWORK_KEYS,
        }
    }

    /// Every key a rule of this kind may have.
    fn valid_keys(self) -> Vec<&'static str> {
        COMMON_KEYS.iter().chain(self.keys()).copied().collect()
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
    scope: Scope,
    paths: Option<Field<StrList<'v>>>,
    except: Option<Field<StrList<'v>>>,
    access: Option<Access>,
    exe: Option<Field<StrList<'v>>>,
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

    // ---- syntax --------------------------------------------------------------

    /// Reports the TOML syntax errors and returns a text of the same length the
    /// rest of the checks can read: where the parser stumbled, the statement it
    /// stumbled on is blanked out and the text parsed again, so that one error
    /// neither hides the problems after it nor produces a cascade of false ones.
    fn recover(&mut self) -> String {
        let mut text = self.text.to_owned();
        let mut reported: HashSet<(usize, String)> = HashSet::new();
        for _ in 0..MAX_SYNTAX_PASSES {
            let (_, mut errors) = DeTable::parse_recoverable(&text);
            errors.sort_by_key(|e| e.span().map_or(0, |s| s.start));
            let mut progressed = false;
            for e in &errors {
                let at = e.span().map_or(0, |s| s.start);
                let statement = statement_at(&text, at);
                if statement.is_empty()
                    || self
                        .blanked
                        .iter()
                        .any(|b| b.start <= statement.start && statement.end <= b.end)
                {
                    continue;
                }
                if reported.insert((at, e.message().to_owned())) {
                    self.syntax_error(e);
                }
                text = blank(&text, statement.clone());
                self.blanked.push(statement);
                progressed = true;
                // Later errors of this pass may be the first one's echoes: parse again.
                break;
            }
            if !progressed {
                for e in &errors {
                    let at = e.span().map_or(0, |s| s.start);
                    if reported.insert((at, e.message().to_owned())) {
                        self.syntax_error(e);
                    }
                }
                break;
            }
        }
        text
    }

    fn syntax_error(&mut self, e: &toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        let found = self.text.get(span.clone()).unwrap_or("");
        let message = e.message().trim();
        if found.is_empty() || found.len() > 40 || found.contains('\n') {
            self.error(code::SYNTAX, span.start, format!("invalid TOML: {message}"));
        } else {
            self.error(
                code::SYNTAX,
                span.start,
                format!("invalid TOML: {message} (at `{found}`)"),
            );
        }
    }

    /// Whether syntax recovery blanked something out of the rule whose table has
    /// `span` (then what looks missing from it may only be unreadable).
    fn damaged(&self, span: Range<usize>) -> bool {
        let start = span.start;
        let from_start = self.text.get(start..).unwrap_or("");
        let end = if from_start.starts_with("[[") {
            // A `[[rule]]` table runs to the next table header.
            let body = from_start
                .find('\n')
                .map_or(self.text.len(), |i| start + i + 1);
            line_ranges(self.text)
                .into_iter()
                .find(|l| l.start >= body && is_header(&self.text[l.clone()]))
                .map_or(self.text.len(), |l| l.start)
        } else {
            // An inline table: its span is all of it.
            span.end
        };
        self.blanked.iter().any(|b| b.start < end && b.end > start)
    }

    // ---- top level -----------------------------------------------------------

    fn policy(&mut self, name: &str, root: &DeTable<'_>) -> Policy {
        let mut policy = Policy {
            name: name.to_owned(),
            mode: Mode::Enforce,
            agents: vec!["codex".to_owned()],
            containers: Vec::new(),
            cgroups: Vec::new(),
            kill_stragglers: false,
            rules: Vec::new(),
        };
        for (key, value) in root.iter() {
            match key.get_ref().as_ref() {
                "mode" => {
                    if let Some(mode) = self.mode(value) {
                        policy.mode = mode;
                    }
                }
                "agents" => self.agents(value, &mut policy),
                "rule" => policy.rules = self.rules(value),
                other => self.unknown_key(other, key.span().start, "at the top level", TOP_KEYS),
            }
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

    fn agents(&mut self, value: &Value<'_>, policy: &mut Policy) {
        let Some(table) = self.table("agents", value) else {
            return;
        };
        // Where `names = []` was written: an error unless containers or cgroups
        // start sessions instead.
        let mut empty_names = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "names" => {
                    let Some(list) = self.str_list("names", value) else {
                        continue;
                    };
                    if list.empty {
                        empty_names = Some(value.span().start);
                    }
                    let mut names = Vec::new();
                    for (name, at) in list.items {
                        if name.is_empty() {
                            self.error(code::INVALID, at, "agent name is empty");
                        } else if name.contains('/') {
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "agent name {name:?} is a path: write the program's name \
                                     (\"codex\")"
                                ),
                            );
                        } else {
                            names.push(name.to_owned());
                        }
                    }
                    policy.agents = names;
                }
                "containers" => {
                    let Some(list) = self.str_list("containers", value) else {
                        continue;
                    };
                    policy.containers = list
                        .items
                        .into_iter()
                        .filter_map(|(text, at)| match container_selector(text) {
                            Ok(s) => Some(s),
                            Err(why) => {
                                self.error(code::INVALID, at, why);
                                None
                            }
                        })
                        .collect();
                }
                "cgroups" => {
                    let Some(list) = self.str_list("cgroups", value) else {
                        continue;
                    };
                    let mut globs = Vec::new();
                    for (pattern, at) in list.items {
                        if !pattern.starts_with('/') {
                            self.error(
                                code::BAD_GLOB,
                                at,
                                format!(
                                    "cgroup glob {pattern:?} must start with `/` (paths as \
                                     /proc/PID/cgroup shows them, from the cgroup2 root)"
                                ),
                            );
                        } else if let Err(e) = cgroup_glob(pattern) {
                            self.error(
                                code::BAD_GLOB,
                                at,
                                format!("bad glob {pattern:?}: {}", e.kind()),
                            );
                        } else {
                            globs.push(pattern.to_owned());
                        }
                    }
                    policy.cgroups = globs;
                }
                "kill_stragglers" => {
                    if let Some(kill) = self.boolean("kill_stragglers", value) {
                        policy.kill_stragglers = kill;
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [agents]", AGENT_KEYS),
            }
        }
        if let Some(at) = empty_names
            && policy.containers.is_empty()
            && policy.cgroups.is_empty()
        {
            self.error(
                code::INVALID,
                at,
                "`names` is empty and no `containers` or `cgroups` are chosen: nothing would \
                 start a session",
            );
        }
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

    // ---- one rule ------------------------------------------------------------

    fn rule(
        &mut self,
        index: usize,
        item: &Value<'_>,
        ids: &mut HashMap<String, usize>,
    ) -> Option<Rule> {
        let start = item.span().start;
        let DeValue::Table(table) = item.get_ref() else {
            self.error(
                code::INVALID,
                start,
                format!(
                    "each rule must be a table ([[rule]]), not {}",
                    article(item.get_ref().type_str())
                ),
            );
            return None;
        };
        let damaged = self.damaged(item.span());

        let id = table.get("id").and_then(|v| self.rule_id(v, ids));
        let label = match &id {
            Some(id) => format!("rule {id:?}"),
            None => format!("rule #{}", index + 1),
        };

        // The kind decides which keys are valid: read it first.
        let kind = match table.get("kind") {
            None => {
                if !damaged {
                    self.error(
                        code::BAD_KIND,
                        start,
                        format!(
                            "{label} has no `kind` (expected \"file\", \"exec\" or \"network\")"
                        ),
                    );
                }
                None
            }
            Some(value) => match self.string("kind", value) {
                None => None,
                Some(s) => {
                    let kind = KindName::parse(s);
                    if kind.is_none() {
                        self.error(
                            code::BAD_KIND,
                            value.span().start,
                            format!("unknown rule kind {s:?} (expected \"file\", \"exec\" or \"network\")"),
                        );
                    }
                    kind
                }
            },
        };

        let mut raw = RawRule::default();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let key_at = key.span().start;
            match name {
                "id" | "kind" => {}
                "description" => raw.description = self.string(name, value).map(str::to_owned),
                "action" => raw.action = self.action(key_at, value),
                "scope" => {
                    if let Some(scope) = self.scope(value) {
                        raw.scope = scope;
                    }
                }
                _ => match KindName::of_key(name) {
                    None => {
                        let valid = kind.map_or_else(all_rule_keys, KindName::valid_keys);
                        self.unknown_key(name, key_at, &format!("in {label}"), &valid);
                    }
                    Some(owner) if kind.is_some_and(|k| k != owner) => {
                        let kind = kind.unwrap_or(owner);
                        self.error(
                            code::WRONG_KIND_KEY,
                            key_at,
                            format!(
                                "`{name}` is not valid in {} {label} (it belongs to {} rules); \
                                 valid keys: {}",
                                kind.as_str(),
                                owner.as_str(),
                                kind.valid_keys().join(", "),
                            ),
                        );
                    }
                    // The kind's own key, or the kind is unknown: check the value anyway.
                    Some(_) => self.kind_field(&mut raw, name, key_at, value),
                },
            }
        }

        if id.is_none() && table.get("id").is_none() && !damaged {
            self.error(code::MISSING, start, format!("{label} has no `id`"));
        }
        if raw.action.is_none() && table.get("action").is_none() && !damaged {
            self.error(
                code::MISSING,
                start,
                format!(
                    "{label} has no `action` (expected \"log\", \"alert\", \"kill\" or \"deny\")"
                ),
            );
        }
        let kind = match kind? {
            KindName::File => self.file_kind(&label, start, damaged, &mut raw)?,
            KindName::Exec => self.exec_kind(&label, start, damaged, &mut raw)?,
            KindName::Network => self.network_kind(&label, start, damaged, &mut raw)?,
        };
        let action = raw.action?;
        if action.value == Action::Deny && matches!(kind, Kind::File { .. } | Kind::Exec { .. }) {
            self.warning(
                code::DENY_NEEDS_LSM,
                action.value_at,
                format!(
                    "`deny` on {} rule needs BPF-LSM; where guard cannot load it, {label} acts as \
                     `kill` (guard says so at start-up)",
                    article(kind.as_str())
                ),
            );
        }
        Some(Rule {
            id: id?,
            description: raw.description,
            kind,
            action: action.value,
            scope: raw.scope,
            pos: self.pos(start),
        })
    }

    fn rule_id(&mut self, value: &Value<'_>, ids: &mut HashMap<String, usize>) -> Option<String> {
        let at = value.span().start;
        let id = self.string("id", value)?;
        if id.is_empty() {
            self.error(code::INVALID, at, "rule id is empty");
            return None;
        }
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.error(
                code::INVALID,
                at,
                format!("rule id {id:?} has spaces or control characters"),
            );
            return None;
        }
        if let Some(&first) = ids.get(id) {
            let line = self.pos(first).line;
            self.error(
                code::DUPLICATE_ID,
                at,
                format!("duplicate rule id {id:?} (first defined at line {line})"),
            );
        } else {
            ids.insert(id.to_owned(), at);
        }
        Some(id.to_owned())
    }

    fn action(&mut self, key_at: usize, value: &Value<'_>) -> Option<Field<Action>> {
        let at = value.span().start;
        let s = self.string("action", value)?;
        let Some(action) = Action::parse(s) else {
            self.error(
                code::UNKNOWN_ACTION,
                at,
                format!("unknown action {s:?} (expected \"log\", \"alert\", \"kill\" or \"deny\")"),
            );
            return None;
        };
        Some(Field {
            value: action,
            key_at,
            value_at: at,
        })
    }

    fn scope(&mut self, value: &Value<'_>) -> Option<Scope> {
        let s = self.string("scope", value)?;
        let scope = Scope::parse(s);
        if scope.is_none() {
            self.error(
                code::INVALID,
                value.span().start,
                format!("unknown scope {s:?} (expected \"all\", \"root\" or \"descendants\")"),
            );
        }
        scope
    }

    /// Reads and checks a key of one of the kinds into `raw`.
    fn kind_field<'v>(
        &mut self,
        raw: &mut RawRule<'v>,
        name: &str,
        key_at: usize,
        value: &'v Value<'_>,
    ) {
        let value_at = value.span().start;
        match name {
            "paths" | "except" => {
                let Some(list) = self.str_list(name, value) else {
                    return;
                };
                for &(pattern, at) in &list.items {
                    if let Err(why) = check_path_pattern(pattern) {
                        self.error(code::BAD_GLOB, at, format!("bad glob {pattern:?}: {why}"));
                    }
                }
                let field = Some(Field {
                    value: list,
                    key_at,
                    value_at,
                });
                if name == "paths" {
                    raw.paths = field
                } else {
                    raw.except = field
                }
            }
            "access" => {
                let Some(list) = self.str_list(name, value) else {
                    return;
                };
                if list.empty {
                    self.error(
                        code::INVALID,
                        value_at,
                        "`access` is empty: name \"read\", \"write\" or both",
                    );
                }
                let mut access = Access::default();
                for (s, at) in list.items {
                    match s {
                        "read" => access.read = true,
                        "write" => access.write = true,
                        other => self.error(
                            code::INVALID,
                            at,
                            format!(
                                "unknown access {other:?} (expected \"read\" or \"write\"; write \
                                 covers create and truncate)"
                            ),
                        ),
                    }
                }
                raw.access = Some(access);
            }
            "exe" => {
                let Some(list) = self.str_list(name, value) else {
                    return;
                };
                for &(exe, at) in &list.items {
                    if let Err((code, why)) = check_exe(exe) {
                        self.error(code, at, why);
                    }
                }
                raw.exe = Some(Field {
                    value: list,
                    key_at,
                    value_at,
                });
            }
            "argv_contains" => {
                if let Some(list) = self.str_list(name, value) {
                    raw.argv_contains = list.items;
                }
            }
            "argv_regex" => {
                let Some(re) = self.string(name, value) else {
                    return;
                };
                if let Err(e) = regex::Regex::new(re) {
                    self.error(
                        code::INVALID,
                        value_at,
                        format!("bad `argv_regex` {re:?}: {}", regex_error(&e)),
                    );
                }
                raw.argv_regex = Some(re.to_owned());
            }
            "allow" | "deny" => {
                let Some(list) = self.str_list(name, value) else {
                    return;
                };
                let mut dests = Vec::new();
                for (text, at) in list.items {
                    match dest(text) {
                        Ok(d) => dests.push(d),
                        Err(why) => self.error(
                            code::BAD_DEST,
                            at,
                            format!("bad network destination {text:?}: {why}"),
                        ),
                    }
                }
                if name == "allow" && list.empty {
                    self.error(
                        code::INVALID,
                        value_at,
                        "`allow = []` is not supported: to refuse every destination write \
                         deny = [\"0.0.0.0/0\", \"::/0\"]",
                    );
                }
                let field = Some(Field {
                    value: DestList {
                        dests,
                        empty: list.empty,
                    },
                    key_at,
                    value_at,
                });
                if name == "allow" {
                    raw.allow = field
                } else {
                    raw.deny = field
                }
            }
            _ => {}
        }
    }

    /// The list a rule must have, with at least one entry: `paths` for a file rule,
    /// `exe` for an exec rule. A missing list is not reported when the rule was damaged
    /// by a syntax error (the list may be what was lost).
    fn required<'v>(
        &mut self,
        list: Option<Field<StrList<'v>>>,
        key: &str,
        label: &str,
        start: usize,
        damaged: bool,
    ) -> Option<Field<StrList<'v>>> {
        let (kind, what) = if key == "paths" {
            ("file", "path")
        } else {
            ("exec", "program")
        };
        let Some(list) = list else {
            if !damaged {
                self.error(
                    code::MISSING,
                    start,
                    format!("{kind} {label} has no `{key}`"),
                );
            }
            return None;
        };
        if list.value.empty {
            self.error(
                code::MISSING,
                list.value_at,
                format!("`{key}` of {label} is empty: name at least one {what}"),
            );
            return None;
        }
        Some(list)
    }

    fn file_kind(
        &mut self,
        label: &str,
        start: usize,
        damaged: bool,
        raw: &mut RawRule<'_>,
    ) -> Option<Kind> {
        let paths = self.required(raw.paths.take(), "paths", label, start, damaged)?;
        let except = raw.except.take();
        if let Some(except) = &except {
            let everything = except
                .value
                .items
                .iter()
                .find(|(p, _)| matches!(*p, "**" | "/**"));
            let all_excepted = paths
                .value
                .items
                .iter()
                .all(|(p, _)| except.value.items.iter().any(|(e, _)| e == p));
            if let Some((p, _)) = everything {
                self.warning(
                    code::NEVER_MATCHES,
                    except.key_at,
                    format!("{label} can never match: `except` has {p:?}, which covers every path"),
                );
            } else if all_excepted {
                self.warning(
                    code::NEVER_MATCHES,
                    except.key_at,
                    format!("{label} can never match: every entry of `paths` is also in `except`"),
                );
            }
        }
        Some(Kind::File {
            paths: paths
                .value
                .items
                .iter()
                .map(|(p, _)| (*p).to_owned())
                .collect(),
            except: except.map_or_else(Vec::new, |e| {
                e.value.items.iter().map(|(p, _)| (*p).to_owned()).collect()
            }),
            access: raw.access.unwrap_or(Access {
                read: true,
                write: true,
            }),
        })
    }

    fn exec_kind(
        &mut self,
        label: &str,
        start: usize,
        damaged: bool,
        raw: &mut RawRule<'_>,
    ) -> Option<Kind> {
        let exe = self.required(raw.exe.take(), "exe", label, start, damaged)?;
        for &(arg, at) in &raw.argv_contains {
            if arg.is_empty() {
                self.warning(
                    code::NEVER_MATCHES,
                    at,
                    format!(
                        "{label} will almost never match: the empty string in `argv_contains` only \
                         matches an empty argument"
                    ),
                );
            }
        }
        Some(Kind::Exec {
            exe: exe
                .value
                .items
                .iter()
                .map(|(e, _)| (*e).to_owned())
                .collect(),
            argv_contains: raw
                .argv_contains
                .iter()
                .map(|(a, _)| (*a).to_owned())
                .collect(),
            argv_regex: raw.argv_regex.take(),
        })
    }

    fn network_kind(
        &mut self,
        label: &str,
        start: usize,
        damaged: bool,
        raw: &mut RawRule<'_>,
    ) -> Option<Kind> {
        let (allow, deny) = (raw.allow.take(), raw.deny.take());
        if allow.is_none() && deny.is_none() {
            if !damaged {
                self.error(
                    code::MISSING,
                    start,
                    format!("network {label} has neither `allow` nor `deny`"),
                );
            }
            return None;
        }
        let deny_empty = deny.as_ref().is_none_or(|d| d.value.empty);
        match (&allow, &deny) {
            (Some(allow), _) if deny_empty && admits_everything(&allow.value.dests) => self
                .warning(
                    code::NEVER_MATCHES,
                    allow.key_at,
                    format!(
                        "{label} can never match: `allow` admits every destination (0.0.0.0/0 and \
                     ::/0, any port) and nothing is denied"
                    ),
                ),
            (None, Some(deny)) if deny_empty => self.warning(
                code::NEVER_MATCHES,
                deny.key_at,
                format!("{label} can never match: `deny` is empty and there is no `allow`"),
            ),
            _ => {}
        }
        Some(Kind::Network {
            allow: allow.map_or_else(Vec::new, |a| a.value.dests),
            deny: deny.map_or_else(Vec::new, |d| d.value.dests),
        })
    }

    // ---- typed values --------------------------------------------------------

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

/// The valid key a mistyped one was most likely meant to be.
fn closest<'k>(key: &str, valid: &[&'k str]) -> Option<&'k str> {
    valid
        .iter()
        .map(|v| (edit_distance(key, v), *v))
        .filter(|&(d, v)| d > 0 && d < key.chars().count() && d <= 1.max(v.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---- globs and programs -------------------------------------------------------

/// Why a file rule's pattern is unusable, if it is.
fn check_path_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    if pattern.starts_with('~') && pattern != "~" && !pattern.starts_with("~/") {
        return Err("only `~/` (the agent user's home) is supported, not `~user`".to_owned());
    }
    if pattern.len() > 1 && pattern.ends_with('/') {
        return Err(format!(
            "a path never ends in `/`: write \"{pattern}**\" for everything below it"
        ));
    }
    if pattern.contains("//") {
        return Err("empty path component (`//`)".to_owned());
    }
    if pattern.split('/').any(|c| c == "." || c == "..") {
        return Err("paths are matched resolved: `.` and `..` never appear in them".to_owned());
    }
    for expanded in glob::expand(pattern, &[CHECK_HOME.to_owned()]) {
        GlobBuilder::new(&expanded)
            .literal_separator(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
    }
    Ok(())
}

/// Why an `exe` entry is unusable: a program name or an absolute path, either of
/// which may be a glob.
fn check_exe(exe: &str) -> Result<(), (&'static str, String)> {
    if exe.is_empty() {
        return Err((code::INVALID, "`exe` entry is empty".to_owned()));
    }
    if exe.contains('/') && !exe.starts_with('/') {
        return Err((
            code::INVALID,
            format!(
                "`exe` entry {exe:?} must be a program name (\"git\") or an absolute path (\"/usr/bin/git\")"
            ),
        ));
    }
    if exe.ends_with('/') {
        return Err((
            code::INVALID,
            format!("`exe` entry {exe:?} names a directory, not a program"),
        ));
    }
    GlobBuilder::new(exe)
        .literal_separator(true)
        .build()
        .map(drop)
        .map_err(|e| (code::BAD_GLOB, format!("bad glob {exe:?}: {}", e.kind())))
}

/// The one-line reason of a regex error (its `Display` draws the pattern with a
/// caret over several lines).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.clone(), str::to_owned)
}

// ---- network destinations ------------------------------------------------------

/// Parses a network destination: `host`, `host:port`, `ip`, `ip:port`, `cidr`,
/// `cidr:port`, `[v6]`, `[v6]:port`, `[v6cidr]:port`, a bare IPv6 address or CIDR,
/// `@resolvers`, `@resolvers:port`.
fn dest(text: &str) -> Result<Dest, String> {
    let (host, port) = host_port(text)?;
    Ok(Dest {
        host,
        port,
        text: text.to_owned(),
    })
}

fn host_port(text: &str) -> Result<(Host, Option<u16>), String> {
    if text.is_empty() {
        return Err("it is empty".to_owned());
    }
    if text.chars().any(char::is_whitespace) {
        return Err("it has spaces".to_owned());
    }
    if let Some(alias) = text.strip_prefix('@') {
        let (name, port) = match alias.split_once(':') {
            Some((name, port)) => (name, Some(parse_port(port)?)),
            None => (alias, None),
        };
        return if name == "resolvers" {
            Ok((Host::Resolvers, port))
        } else {
            Err(format!(
                "unknown alias \"@{name}\" (the only one is @resolvers)"
            ))
        };
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err("`[` without `]`".to_owned());
        };
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(parse_port(port)?),
                None => return Err("expected `:PORT` after `]`".to_owned()),
            },
        };
        let net = parse_net(inner)?;
        if !matches!(net, IpNet::V6(_)) {
            return Err(format!(
                "brackets are for IPv6 addresses: write {inner}:PORT"
            ));
        }
        return Ok((Host::Net(net), port));
    }
    if text.matches(':').count() >= 2 {
        // A bare IPv6 address or CIDR: a port needs the bracketed form.
        return parse_net(text)
            .map(|net| (Host::Net(net), None))
            .map_err(|_| {
                "not an IPv6 address or CIDR (write [ADDRESS]:PORT for a port)".to_owned()
            });
    }
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (text, None),
    };
    if host.contains('/') || host.parse::<IpAddr>().is_ok() {
        return Ok((Host::Net(parse_net(host)?), port));
    }
    Ok((Host::Name(host_name(host)?), port))
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| {
            "not a valid CIDR (an address, `/`, a prefix length up to 32 or 128)".to_owned()
        })?;
        if net.trunc() != net {
            return Err(format!(
                "host bits are set (did you mean \"{}\"?)",
                net.trunc()
            ));
        }
        Ok(net)
    } else {
        let addr: IpAddr = text
            .parse()
            .map_err(|_| "not a valid IP address".to_owned())?;
        Ok(IpNet::from(addr))
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("no port after `:`".to_owned());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {text:?} is not a number"));
    }
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("port {text} is out of range (1..=65535)")),
    }
}

/// A DNS name, lowercased: labels of letters, digits and hyphens.
fn host_name(text: &str) -> Result<String, String> {
    if text.starts_with("*.") {
        return Err("wildcard names are not supported: list each host".to_owned());
    }
    let name = text.to_ascii_lowercase();
    if name.len() > 253 {
        return Err("a host name has at most 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label in host name".to_owned());
        }
        if label.len() > 63 {
            return Err("a label of a host name has at most 63 characters".to_owned());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("not a valid host name (letters, digits, hyphens and dots)".to_owned());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label of a host name cannot start or end with a hyphen".to_owned());
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a valid IP address or host name".to_owned());
    }
    Ok(name)
}

/// Whether an allow list holds every IPv4 and IPv6 destination on every port.
fn admits_everything(allow: &[Dest]) -> bool {
    let any = |v4: bool| {
        allow.iter().any(|d| {
            d.port.is_none()
                && matches!(d.host, Host::Net(net) if net.prefix_len() == 0 && matches!(net, IpNet::V4(_)) == v4)
        })
    };
    any(true) && any(false)
}

// ---- syntax recovery helpers -----------------------------------------------------

/// Byte ranges of the lines of `text`, without their `\n`.
fn line_ranges(text: &str) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            lines.push(start..i);
            start = i + 1;
        }
    }
    lines.push(start..text.len());
    lines
}

/// A table header line: `[agents]`, `[[rule]]`.
fn is_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// A line that starts a `key = value` statement (bare, quoted or dotted key).
fn is_key_line(line: &str) -> bool {
    let mut rest = line.trim_start();
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some(end) = quoted.find('"') else {
                return false;
            };
            rest = &quoted[end + 1..];
        } else if let Some(quoted) = rest.strip_prefix('\'') {
            let Some(end) = quoted.find('\'') else {
                return false;
            };
            rest = &quoted[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            if end == 0 {
                return false;
            }
            rest = &rest[end..];
        }
        rest = rest.trim_start();
        match rest.strip_prefix('.') {
            Some(after) => rest = after.trim_start(),
            None => return rest.starts_with('='),
        }
    }
}

/// Whether the statement on `line` goes on to the next line (an open array, table
/// or string, or a value still to come).
fn continues(line: &str) -> bool {
    let code = line.split(" #").next().unwrap_or(line).trim_end();
    code.ends_with(['[', '{', ',', '=', '\\'])
}

/// The lines of the statement that holds byte `at`: from the line where it starts
/// to the line before the next statement (for a table header, the next header).
fn statement_at(text: &str, at: usize) -> Range<usize> {
    let lines = line_ranges(text);
    let Some(here) = lines.iter().position(|l| at <= l.end) else {
        return 0..0;
    };
    let significant = |i: usize| {
        let line = text[lines[i].clone()].trim();
        !line.is_empty() && !line.starts_with('#')
    };
    let mut first = here;
    while !is_header(&text[lines[first].clone()]) && !is_key_line(&text[lines[first].clone()]) {
        match (0..first).rev().find(|&i| significant(i)) {
            Some(previous) if continues(&text[lines[previous].clone()]) => first = previous,
            _ => break,
        }
    }
    let header = is_header(&text[lines[first].clone()]);
    let last = (here + 1..lines.len())
        .find(|&i| {
            let line = &text[lines[i].clone()];
            is_header(line) || (!header && is_key_line(line))
        })
        .map_or(lines.len() - 1, |next| next - 1);
    lines[first].start..lines[last].end
}

/// `text` with `range` replaced by spaces, line breaks kept: positions stay valid.
fn blank(text: &str, range: Range<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..range.start]);
    for c in text[range.clone()].chars() {
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    }
    out.push_str(&text[range.end..]);
    out
}

/// A `[agents] containers` entry: `"*"`, a container id (prefix), or terms
/// `key=value` joined by `,` that must all hold.
fn container_selector(text: &str) -> Result<ContainerSelector, String> {
    const HINT: &str = "write \"*\" (every container), a container id or its first 12 or more \
                        hex digits, or terms such as \"namespace=ci,name=agent\"";
    if text == "*" {
        return Ok(ContainerSelector::Any);
    }
    if !text.contains('=') {
        let hint = if text.bytes().all(|b| b.is_ascii_hexdigit()) {
            String::new()
        } else {
            format!(" (a container's name: \"name={text}\")")
        };
        return container_id_prefix(text)
            .map(|id| ContainerSelector::All(vec![(ContainerField::Id, id)]))
            .ok_or_else(|| format!("{text:?} does not choose a container: {HINT}{hint}"));
    }
    let mut terms = Vec::new();
    for term in text.split(',') {
        let Some((key, value)) = term.split_once('=') else {
            return Err(format!("{term:?} in {text:?} is not `key=value`: {HINT}"));
        };
        let (key, value) = (key.trim(), value.trim());
        let Some(&(_, field)) = ContainerField::ALL.iter().find(|(k, _)| *k == key) else {
            let keys: Vec<&str> = ContainerField::ALL.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown container key {key:?} in {text:?}; valid keys: {}",
                keys.join(", ")
            ));
        };
        let value = match field {
            ContainerField::Id => container_id_prefix(value).ok_or_else(|| {
                format!("`id={value}` is not a container id or its first 12 or more hex digits")
            })?,
            ContainerField::PodUid => {
                // The systemd cgroup driver writes pod uids with `_`; accept either.
                let uid = value.to_ascii_lowercase().replace('_', "-");
                if !crate::container::is_pod_uid(&uid) {
                    return Err(format!(
                        "`pod_uid={value}` is not a pod uid (as `kubectl get pod -o \
                         jsonpath='{{.metadata.uid}}'` prints it)"
                    ));
                }
                uid
            }
            _ => {
                if value.is_empty() {
                    return Err(format!("`{key}=` in {text:?} has no value"));
                }
                globset::Glob::new(value)
                    .map_err(|e| format!("bad glob {value:?} in {text:?}: {}", e.kind()))?;
                value.to_owned()
            }
        };
        terms.push((field, value));
    }
    Ok(ContainerSelector::All(terms))
}

/// A container id or a prefix of it (12 to 64 hex digits), in lowercase.
fn container_id_prefix(text: &str) -> Option<String> {
    (text.bytes().all(|b| b.is_ascii_hexdigit()) && (12..=64).contains(&text.len()))
        .then(|| text.to_ascii_lowercase())
}

/// An `[agents] cgroups` glob: `*` stays within one path component, `**` crosses them.
pub fn cgroup_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::diag::{Severity, render};
    use super::*;

    fn codes(text: &str) -> Vec<&'static str> {
        match parse("t.toml", text) {
            Ok((_, diags)) | Err(diags) => diags.iter().map(|d| d.code).collect(),
        }
    }

    fn policy(text: &str) -> Policy {
        match parse("t.toml", text) {
            Ok((policy, diags)) => {
                assert!(diags.is_empty(), "{}", render("t.toml", &diags));
                policy
            }
            Err(diags) => panic!("{}", render("t.toml", &diags)),
        }
    }

    const FILE: &str = "[[rule]]\nid = \"r\"\nkind = \"file\"\naction = \"kill\"\n";
    const EXEC: &str = "[[rule]]\nid = \"r\"\nkind = \"exec\"\naction = \"kill\"\n";
    const NET: &str = "[[rule]]\nid = \"r\"\nkind = \"network\"\naction = \"deny\"\n";

    #[test]
    fn every_code_is_reported_where_it_applies() {
        let file = |rest: &str| format!("{FILE}{rest}");
        let exec = |rest: &str| format!("{EXEC}{rest}");
        let net = |rest: &str| format!("{NET}{rest}");
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            ("nothing at all", String::new(), vec![]),
            ("a clean file rule", file("paths = [\"~/.ssh/**\"]"), vec![]),
            ("syntax", "mode = enforce".to_owned(), vec!["G001"]),
            (
                "syntax does not hide later problems",
                file(
                    "paths = [\"a\" \"b\"]\n[[rule]]\nid = 3\nkind = \"exec\"\nexe = [\"x\"]\naction = \"log\"",
                ),
                vec!["G001", "G009"],
            ),
            (
                "unknown top-level key",
                "moed = \"enforce\"".to_owned(),
                vec!["G002"],
            ),
            (
                "unknown [agents] key",
                "[agents]\nname = [\"codex\"]".to_owned(),
                vec!["G002"],
            ),
            (
                "unknown rule key",
                file("paths = [\"x\"]\nacces = [\"read\"]"),
                vec!["G002"],
            ),
            (
                "sub-table in a rule",
                file("paths = [\"x\"]\n[rule.extra]\na = 1"),
                vec!["G002"],
            ),
            (
                "bad path glob",
                file("paths = [\"~/.ssh/[\"]"),
                vec!["G003"],
            ),
            (
                "bad except glob",
                file("paths = [\"x\"]\nexcept = [\"{a\"]"),
                vec!["G003"],
            ),
            ("bad exe glob", exec("exe = [\"git[\"]"), vec!["G003"]),
            ("bad cidr", net("allow = [\"10.0.0.0/40\"]"), vec!["G004"]),
            (
                "bad port",
                net("deny = [\"example.com:70000\"]"),
                vec!["G004"],
            ),
            ("bad host", net("deny = [\"exa mple.com\"]"), vec!["G004"]),
            (
                "unknown action",
                format!("{}paths = [\"x\"]", FILE.replace("kill", "stop")),
                vec!["G005"],
            ),
            (
                "duplicate id",
                format!("{}{}", file("paths = [\"x\"]\n"), file("paths = [\"y\"]")),
                vec!["G006"],
            ),
            (
                "unknown kind",
                FILE.replace("\"file\"", "\"socket\""),
                vec!["G007"],
            ),
            (
                "missing kind",
                "[[rule]]\nid = \"r\"\naction = \"log\"".to_owned(),
                vec!["G007"],
            ),
            (
                "missing id",
                "[[rule]]\nkind = \"exec\"\nexe = [\"su\"]\naction = \"log\"".to_owned(),
                vec!["G008"],
            ),
            (
                "missing action",
                "[[rule]]\nid = \"r\"\nkind = \"exec\"\nexe = [\"su\"]".to_owned(),
                vec!["G008"],
            ),
            ("missing paths", FILE.to_owned(), vec!["G008"]),
            ("missing exe", EXEC.to_owned(), vec!["G008"]),
            ("missing allow and deny", NET.to_owned(), vec!["G008"]),
            ("empty paths", file("paths = []"), vec!["G008"]),
            ("bad mode", "mode = \"strict\"".to_owned(), vec!["G009"]),
            (
                "mode of the wrong type",
                "mode = true".to_owned(),
                vec!["G009"],
            ),
            (
                "bad scope",
                file("paths = [\"x\"]\nscope = \"children\""),
                vec!["G009"],
            ),
            (
                "bad access",
                file("paths = [\"x\"]\naccess = [\"exec\"]"),
                vec!["G009"],
            ),
            (
                "empty access",
                file("paths = [\"x\"]\naccess = []"),
                vec!["G009"],
            ),
            (
                "bad regex",
                exec("exe = [\"git\"]\nargv_regex = \"(\""),
                vec!["G009"],
            ),
            (
                "empty id",
                FILE.replace("\"r\"", "\"\"") + "paths = [\"x\"]",
                vec!["G009"],
            ),
            (
                "id with a space",
                FILE.replace("\"r\"", "\"a b\"") + "paths = [\"x\"]",
                vec!["G009"],
            ),
            (
                "list entry of the wrong type",
                file("paths = [\"x\", 1]"),
                vec!["G009"],
            ),
            (
                "rule as a plain table",
                "[rule]\nid = \"r\"".to_owned(),
                vec!["G009"],
            ),
            (
                "agents as a string",
                "agents = \"codex\"".to_owned(),
                vec!["G009"],
            ),
            (
                "agent name as a path",
                "[agents]\nnames = [\"/usr/bin/codex\"]".to_owned(),
                vec!["G009"],
            ),
            (
                "no names and nothing else",
                "[agents]\nnames = []".to_owned(),
                vec!["G009"],
            ),
            (
                "container id too short",
                "[agents]\ncontainers = [\"4f1c7b\"]".to_owned(),
                vec!["G009"],
            ),
            (
                "container name instead of an id",
                "[agents]\ncontainers = [\"ci-runner\"]".to_owned(),
                vec!["G009"],
            ),
            (
                "pod uid that is not one",
                "[agents]\ncontainers = [\"pod_uid=runner-0\"]".to_owned(),
                vec!["G009"],
            ),
            (
                "unknown container key",
                "[agents]\ncontainers = [\"label=ci\"]".to_owned(),
                vec!["G009"],
            ),
            (
                "container term without a value",
                "[agents]\ncontainers = [\"namespace=ci,name=\"]".to_owned(),
                vec!["G009"],
            ),
            (
                "relative cgroup glob",
                "[agents]\ncgroups = [\"kubepods.slice/**\"]".to_owned(),
                vec!["G003"],
            ),
            (
                "broken cgroup glob",
                "[agents]\ncgroups = [\"/kubepods/[abc\"]".to_owned(),
                vec!["G003"],
            ),
            (
                "exe as a relative path",
                exec("exe = [\"bin/git\"]"),
                vec!["G009"],
            ),
            ("empty allow", net("allow = []"), vec!["G009"]),
            (
                "key of another kind",
                exec("exe = [\"git\"]\npaths = [\"x\"]"),
                vec!["G010"],
            ),
            (
                "allow admits everything",
                net("allow = [\"0.0.0.0/0\", \"::/0\"]"),
                vec!["W101"],
            ),
            ("deny is empty", net("deny = []"), vec!["W101"]),
            (
                "every path excepted",
                file("paths = [\"a\"]\nexcept = [\"a\"]"),
                vec!["W101"],
            ),
            (
                "except covers everything",
                file("paths = [\"a\"]\nexcept = [\"/**\"]"),
                vec!["W101"],
            ),
            (
                "empty argument",
                exec("exe = [\"git\"]\nargv_contains = [\"\"]"),
                vec!["W101"],
            ),
            (
                "deny on files",
                FILE.replace("kill", "deny") + "paths = [\"x\"]",
                vec!["W102"],
            ),
            (
                "deny on execs",
                EXEC.replace("kill", "deny") + "exe = [\"x\"]",
                vec!["W102"],
            ),
            (
                "observe mode",
                "mode = \"observe\"".to_owned(),
                vec!["W103"],
            ),
            // Not problems.
            (
                "allow everything but deny something",
                net("allow = [\"0.0.0.0/0\", \"::/0\"]\ndeny = [\"10.0.0.1\"]"),
                vec![],
            ),
            (
                "allow everything on one port",
                net("allow = [\"0.0.0.0/0:443\", \"[::/0]:443\"]"),
                vec![],
            ),
            ("deny on network", net("deny = [\"10.0.0.1\"]"), vec![]),
            (
                "no agents table",
                FILE.to_owned() + "paths = [\"x\"]",
                vec![],
            ),
        ];
        for (what, text, expected) in cases {
            assert_eq!(codes(&text), expected, "{what}:\n{text}");
        }
    }

    #[test]
    fn errors_refuse_the_policy_and_warnings_do_not() {
        let Err(diags) = parse("t.toml", "mode = \"observe\"\nfoo = 1") else {
            panic!("accepted")
        };
        assert_eq!(
            diags.iter().map(|d| d.severity).collect::<Vec<_>>(),
            [Severity::Warning, Severity::Error]
        );
        let Ok((policy, warnings)) = parse("t.toml", "mode = \"observe\"") else {
            panic!("refused")
        };
        assert_eq!(policy.mode, Mode::Observe);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].pos, Pos { line: 1, col: 8 });
    }

    #[test]
    fn defaults() {
        let p = policy("");
        assert_eq!(p.name, "t.toml");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.agents, ["codex"]);
        assert!(!p.kill_stragglers);
        assert!(p.rules.is_empty());

        let p = policy(&format!("{FILE}paths = [\"x\"]"));
        let rule = &p.rules[0];
        assert_eq!(rule.scope, Scope::All);
        assert_eq!(rule.pos, Pos { line: 1, col: 1 });
        assert_eq!(
            rule.kind,
            Kind::File {
                paths: vec!["x".to_owned()],
                except: vec![],
                access: Access {
                    read: true,
                    write: true
                },
            }
        );
    }

    #[test]
    fn reads_every_field() {
        let p = policy(
            "mode = \"observe\"\n[agents]\nnames = [\"codex\", \"aider\"]\nkill_stragglers = true\n\
             [[rule]]\nid = \"git\"\ndescription = \"d\"\nkind = \"exec\"\nexe = [\"git\"]\n\
             argv_contains = [\"push\"]\nargv_regex = \"-f\"\naction = \"alert\"\nscope = \"root\"\n"
                .replace("mode = \"observe\"\n", "")
                .as_str(),
        );
        assert_eq!(p.agents, ["codex", "aider"]);
        assert!(p.kill_stragglers);
        let rule = &p.rules[0];
        assert_eq!(
            (rule.id.as_str(), rule.description.as_deref()),
            ("git", Some("d"))
        );
        assert_eq!((rule.action, rule.scope), (Action::Alert, Scope::Root));
        assert_eq!(rule.pos, Pos { line: 4, col: 1 });
        assert_eq!(
            rule.kind,
            Kind::Exec {
                exe: vec!["git".to_owned()],
                argv_contains: vec!["push".to_owned()],
                argv_regex: Some("-f".to_owned()),
            }
        );
    }

    #[test]
    fn destinations() {
        let net = |s: &str| Host::Net(s.parse().expect("a net"));
        let ok: &[(&str, Host, Option<u16>)] = &[
            (
                "api.openai.com:443",
                Host::Name("api.openai.com".to_owned()),
                Some(443),
            ),
            (
                "Api.OpenAI.COM",
                Host::Name("api.openai.com".to_owned()),
                None,
            ),
            ("localhost", Host::Name("localhost".to_owned()), None),
            ("10.1.2.3", net("10.1.2.3/32"), None),
            ("10.1.2.3:1", net("10.1.2.3/32"), Some(1)),
            ("10.0.0.0/8:65535", net("10.0.0.0/8"), Some(65535)),
            ("::1", net("::1/128"), None),
            ("fd00::/8", net("fd00::/8"), None),
            ("[::1]", net("::1/128"), None),
            ("[::1]:8080", net("::1/128"), Some(8080)),
            ("[fd00::/8]:443", net("fd00::/8"), Some(443)),
            ("0.0.0.0/0", net("0.0.0.0/0"), None),
            ("@resolvers", Host::Resolvers, None),
            ("@resolvers:53", Host::Resolvers, Some(53)),
        ];
        for (text, host, port) in ok {
            assert_eq!(
                dest(text),
                Ok(Dest {
                    host: host.clone(),
                    port: *port,
                    text: (*text).to_owned()
                }),
                "{text}"
            );
        }
        for bad in [
            "",
            " a.com",
            "a.com:",
            "a.com:0",
            "a.com:65536",
            "a.com:+1",
            "a.com:x",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "1.2.3.4.5",
            "999.1.1.1",
            "[10.0.0.1]",
            "[::1]x",
            "[::1",
            "::1::2",
            "*.a.com",
            "a..com",
            "a.com.",
            "-a.com",
            "a_b.com",
            "@dns",
            "@resolvers:",
            "fe80::1%eth0",
            &"a".repeat(64),
        ] {
            assert!(dest(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn globs_are_checked_as_the_matcher_compiles_them() {
        // `*` stays within a path component: `~/*` is not a bad glob, nor `**` alone.
        for ok in [
            "~",
            "~/*",
            "**",
            "*",
            "/etc/cron*/**",
            "a/**/b",
            "[!a]*.{pem,key}",
            "x**",
        ] {
            assert_eq!(check_path_pattern(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "~x", "~x/y", "dir/", "a//b", "./a", "a/../b", "[", "{a", "[z-a]", "a\\",
        ] {
            assert!(check_path_pattern(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unknown_keys_suggest_the_closest_valid_one() {
        assert_eq!(closest("acess", FILE_KEYS), Some("access"));
        assert_eq!(closest("path", FILE_KEYS), Some("paths"));
        assert_eq!(closest("rules", TOP_KEYS), Some("rule"));
        assert_eq!(closest("x", COMMON_KEYS), None);
        assert_eq!(closest("colour", TOP_KEYS), None);
    }

    #[test]
    fn syntax_recovery_blanks_whole_statements() {
        let text = "a = [\"x\",\n  \"y\" z,\n  \"w\"]\nb = 1\n[t]\nc = ?\nd = 2\n[u]\n";
        // The array's second line: the whole array statement, to `b`.
        let second = text.find('z').expect("z");
        assert_eq!(
            &text[statement_at(text, second)],
            "a = [\"x\",\n  \"y\" z,\n  \"w\"]"
        );
        let bad = text.find('?').expect("?");
        assert_eq!(&text[statement_at(text, bad)], "c = ?");
        let header = text.find("[t]").expect("[t]");
        assert_eq!(&text[statement_at(text, header)], "[t]\nc = ?\nd = 2");
        let blanked = blank(text, statement_at(text, bad));
        assert_eq!(blanked.len(), text.len());
        assert!(blanked.contains("\n     \nd = 2"));
    }

    #[test]
    fn containers_and_cgroups_choose_sessions() {
        let text = "[agents]\nnames = []\ncontainers = [\"*\", \"4F1C7B0E9D2A\", \
                    \"pod_uid=5f0e2b6c_1d2e_4a3b_9c8d_7e6f5a4b3c2d\", \
                    \"namespace=arc-*, name=runner\"]\n\
                    cgroups = [\"/kubepods.slice/**\"]";
        let (p, warnings) = parse("t.toml", text).expect("valid");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(p.agents.is_empty());
        assert_eq!(
            p.containers,
            [
                ContainerSelector::Any,
                ContainerSelector::All(vec![(ContainerField::Id, "4f1c7b0e9d2a".to_owned())]),
                ContainerSelector::All(vec![(
                    ContainerField::PodUid,
                    "5f0e2b6c-1d2e-4a3b-9c8d-7e6f5a4b3c2d".to_owned()
                )]),
                ContainerSelector::All(vec![
                    (ContainerField::Namespace, "arc-*".to_owned()),
                    (ContainerField::Name, "runner".to_owned()),
                ]),
            ]
        );
        assert_eq!(p.cgroups, ["/kubepods.slice/**"]);
        let glob = cgroup_glob("/system.slice/docker-*.scope")
            .expect("glob")
            .compile_matcher();
        assert!(glob.is_match("/system.slice/docker-4f1c.scope"));
        assert!(!glob.is_match("/system.slice/x/docker-4f1c.scope"));
    }

    /// `tests/fixtures/policy/NAME.toml` is checked and its diagnostics rendered as
    /// `guard policy check NAME.toml` prints them must equal the insta snapshot
    /// `NAME.snap` beside it (`cargo insta review` or `INSTA_UPDATE=always` updates them).
    #[test]
    fn fixtures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
        let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
            .expect("fixture directory")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        fixtures.sort();
        for path in &fixtures {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name");
            let stem = name.trim_end_matches(".toml");
            let text = std::fs::read_to_string(path).expect("fixture");
            let rendered = match parse(name, &text) {
                Ok((_, diags)) | Err(diags) => render(name, &diags),
            };
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path(&dir);
            settings.set_prepend_module_to_snapshot(false);
            settings.set_omit_expression(true);
            settings.set_input_file(path);
            settings.bind(|| insta::assert_snapshot!(stem, rendered));
        }
        for name in [
            "ok",
            "unknown-key",
            "bad-glob",
            "bad-cidr",
            "unknown-action",
            "duplicate-id",
            "never-matches",
            "many-errors",
        ] {
            assert!(
                fixtures
                    .iter()
                    .any(|p| p.file_stem().is_some_and(|s| s == name)),
                "fixture {name}.toml is missing"
            );
        }
    }

    #[test]
    fn fixtures_that_should_load_do() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
        for (name, loads) in [
            ("ok", true),
            ("never-matches", true),
            ("observe", true),
            ("many-errors", false),
        ] {
            let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).expect("fixture");
            assert_eq!(parse(name, &text).is_ok(), loads, "{name}");
        }
    }
}
