//! One `[[rule]]`: its id, action, scope and the fields of its kind.

use std::collections::HashMap;

use toml::de::DeValue;

use super::check::{
    check_exe, check_path_pattern, kernel_decides, kernel_decides_exe, regex_error,
};
use super::destination::{admits_everything, dest};
use super::{Checker, DestList, Field, KindName, RawRule, StrList, Value, all_rule_keys, article};
use crate::diag::code;
use crate::model::{Access, Action, Kind, ROLE_NAMES, Rule, Scope, role_bit};

impl Checker<'_> {
    #[expect(
        clippy::too_many_lines,
        reason = "in order: the kind (it says which keys are valid), the keys, checks across them"
    )]
    pub(super) fn rule(
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
                "fallback" => raw.fallback = self.action(key_at, value),
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
        let after_the_fact = self.after_the_fact(&raw);
        let kind = match kind? {
            KindName::File => self.file_kind(&label, start, damaged, &mut raw)?,
            KindName::Exec => self.exec_kind(&label, start, damaged, &mut raw)?,
            KindName::Network => self.network_kind(&label, start, damaged, &mut raw)?,
        };
        let action = raw.action?;
        let fallback = match raw.fallback.take() {
            Some(f) => Some(self.fallback(f, action.value, &kind, &label)?),
            None => None,
        };
        if action.value == Action::Deny && matches!(kind, Kind::File { .. } | Kind::Exec { .. }) {
            let acts = match fallback {
                Some(f) => format!("as its `fallback`, `{}`", f.as_str()),
                None => "as `kill`".to_owned(),
            };
            self.warning(
                code::DENY_NEEDS_LSM,
                action.value_at,
                format!(
                    "`deny` on {} rule needs BPF-LSM; where guard cannot load it, {label} acts \
                     {acts} (guard says so at start-up)",
                    article(kind.as_str())
                ),
            );
        }
        for (what, at) in after_the_fact {
            let exec = matches!(kind, Kind::Exec { .. });
            self.warning(
                code::USER_SPACE_ONLY,
                at,
                format!(
                    "{what} has no shape the kernel matches: {label}'s `{}` of it is judged in \
                     user space, {}",
                    action.value.as_str(),
                    if exec {
                        "after the program started (it may have run for a moment); name each \
                         program instead (`mkfs.ext4`, not `mkfs.*`)"
                    } else {
                        "after the open (a write has happened, a read has returned data); the \
                         kernel matches directories (`/dir/**`), exact paths, file names, name \
                         prefixes and suffixes (`id_rsa*`, `*.pem`) and whole components \
                         (`.git/hooks/**`, `.claude/settings.json`): spell a wildcard directory \
                         out (`/etc/cron.d/**`, not `/etc/cron*/**`)"
                    }
                ),
            );
        }
        Some(Rule {
            id: id?,
            description: raw.description,
            kind,
            action: action.value,
            scope: raw.scope,
            secret: raw.secret,
            fallback,
            pos: self.pos(start),
        })
    }

    /// The patterns of a `kill` or `deny` rule the kernel cannot match, each with
    /// where it is written: they are judged in user space, after the fact (W105).
    fn after_the_fact(&self, raw: &RawRule<'_>) -> Vec<(String, usize)> {
        let stops = raw
            .action
            .as_ref()
            .is_some_and(|a| matches!(a.value, Action::Kill | Action::Deny));
        // A `fallback` names what the rule does there instead (W104 says where).
        if !stops || raw.fallback.is_some() {
            return Vec::new();
        }
        fn list<'v>(f: &Option<Field<StrList<'v>>>) -> Vec<(&'v str, usize)> {
            f.as_ref()
                .map(|f| f.value.items.clone())
                .unwrap_or_default()
        }
        let mut out = Vec::new();
        for (p, at) in list(&raw.paths) {
            if check_path_pattern(p).is_ok() && !kernel_decides(p, false) {
                out.push((format!("pattern {p:?}"), at));
            }
        }
        for (p, at) in list(&raw.except) {
            // An exception of everything never matches at all (W101).
            let everything = matches!(p, "**" | "/**");
            if !everything && check_path_pattern(p).is_ok() && !kernel_decides(p, true) {
                out.push((
                    format!("exception {p:?} (so every pattern of the rule)"),
                    at,
                ));
            }
        }
        // An argument condition is user space's whatever the programs (not flagged):
        // their globs change nothing.
        let by_argv = !raw.argv_contains.is_empty() || raw.argv_regex.is_some();
        for (e, at) in list(&raw.exe).into_iter().filter(|_| !by_argv) {
            if check_exe(e).is_ok() && !kernel_decides_exe(e) {
                out.push((format!("program {e:?}"), at));
            }
        }
        out
    }

    /// `fallback`: what a `deny` file or exec rule does where the kernel cannot refuse
    /// (`log`, `alert` or `kill`). `None` when it is refused (the rule is not loaded).
    fn fallback(
        &mut self,
        fallback: Field<Action>,
        action: Action,
        kind: &Kind,
        label: &str,
    ) -> Option<Action> {
        if matches!(kind, Kind::Network { .. }) {
            self.error(
                code::WRONG_KIND_KEY,
                fallback.key_at,
                format!(
                    "`fallback` is not valid in network {label}: the kernel refuses connects and \
                     sends on every tier, so a network `deny` never falls back"
                ),
            );
            return None;
        }
        if action != Action::Deny {
            self.error(
                code::BAD_FALLBACK,
                fallback.key_at,
                format!(
                    "`fallback` is for `deny` rules (what they do where the kernel cannot refuse \
                     without killing); {label} is `{}`",
                    action.as_str()
                ),
            );
            return None;
        }
        if fallback.value == Action::Deny {
            self.error(
                code::BAD_FALLBACK,
                fallback.value_at,
                format!(
                    "the `fallback` of {label} cannot be `deny`: it is what `deny` becomes where \
                     the kernel cannot refuse (expected \"log\", \"alert\" or \"kill\")"
                ),
            );
            return None;
        }
        let user_space = crate::tables::user_space_patterns(kind);
        if !user_space.is_empty() {
            self.warning(
                code::FALLBACK_ALWAYS,
                fallback.key_at,
                format!(
                    "{label}: only user space matches {}, after the fact: for these `deny` acts \
                     as its fallback, `{}`, on every kernel",
                    user_space.join(", "),
                    fallback.value.as_str()
                ),
            );
        }
        Some(fallback.value)
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

    /// `scope`: "all", "root", "descendants", a role, or an array of roles.
    fn scope(&mut self, value: &Value<'_>) -> Option<Scope> {
        if let DeValue::Array(_) = value.get_ref() {
            let list = self.str_list("scope", value)?;
            if list.empty {
                self.error(
                    code::INVALID,
                    value.span().start,
                    format!("`scope` lists no role (expected some of {ROLE_NAMES})"),
                );
                return None;
            }
            let mut set = 0u8;
            let mut ok = true;
            for (name, at) in list.items {
                match role_bit(name) {
                    Some(bit) => set |= bit,
                    None => {
                        ok = false;
                        let hint = if matches!(name, "all" | "root" | "descendants") {
                            format!(" (\"{name}\" is a scope of its own: write scope = \"{name}\")")
                        } else {
                            String::new()
                        };
                        self.error(
                            code::INVALID,
                            at,
                            format!(
                                "unknown role {name:?} in `scope` (expected {ROLE_NAMES}){hint}"
                            ),
                        );
                    }
                }
            }
            return ok.then_some(Scope::Roles(set));
        }
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(
                "scope",
                "a string or an array of roles",
                value.span().start,
                value.get_ref(),
            );
            return None;
        };
        let s: &str = s.as_ref();
        let scope = Scope::parse(s);
        if scope.is_none() {
            self.error(
                code::INVALID,
                value.span().start,
                format!(
                    "unknown scope {s:?} (expected \"all\", \"root\", \"descendants\", a role ({ROLE_NAMES}) or an array of roles)"
                ),
            );
        }
        scope
    }

    /// Reads and checks a key of one of the kinds into `raw`.
    #[expect(
        clippy::too_many_lines,
        reason = "one arm per kind-specific rule key, each with its own checks of the value"
    )]
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
            "secret" => {
                if let Some(secret) = self.boolean(name, value) {
                    raw.secret = secret;
                }
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
            "digest" => {
                raw.digest_key = true;
                let Some(list) = self.str_list(name, value) else {
                    return;
                };
                for &(text, at) in &list.items {
                    match crate::model::Digest::parse(text) {
                        Ok(d) => raw.digests.push(d),
                        Err(why) => self.error(code::INVALID, at, why),
                    }
                }
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
                    if key == "exe" {
                        format!("exec {label} has neither `exe` nor `digest`")
                    } else {
                        format!("{kind} {label} has no `{key}`")
                    },
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
        // A rule by digest alone needs no name.
        let exe = if !raw.digest_key || raw.exe.is_some() {
            self.required(raw.exe.take(), "exe", label, start, damaged)?
                .value
                .items
                .iter()
                .map(|(e, _)| (*e).to_owned())
                .collect()
        } else if raw.digests.is_empty() {
            return None; // every digest was reported
        } else {
            Vec::new()
        };
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
            exe,
            digests: std::mem::take(&mut raw.digests),
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
}
