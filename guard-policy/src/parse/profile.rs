//! `[[agents.profile]]` tables: an agent's profile of the policy's own, or one that
//! replaces a built-in profile of the same `id` (docs/agents.md).

use toml::de::DeValue;

use super::{Checker, Value, article};
use crate::{diag::code, model::AgentProfile};

const PROFILE_KEYS: &[&str] = &["id", "programs", "scripts", "structured", "session_var"];

impl Checker<'_> {
    pub(super) fn profiles(&mut self, value: &Value<'_>) -> Vec<AgentProfile> {
        let DeValue::Array(items) = value.get_ref() else {
            self.error(
                code::INVALID,
                value.span().start,
                format!(
                    "`profile` must be an array of tables (write each as [[agents.profile]]), \
                     not {}",
                    article(value.get_ref().type_str())
                ),
            );
            return Vec::new();
        };
        let profiles: Vec<AgentProfile> = items.iter().filter_map(|i| self.profile(i)).collect();
        let vars = crate::profile::Known::new(&profiles).session_vars().count();
        if vars > guard_common::SESSION_VARS_AGENTS as usize {
            self.error(
                code::INVALID,
                value.span().start,
                format!(
                    "the agents' profiles name {vars} session variables: the kernel looks for \
                     at most {}",
                    guard_common::SESSION_VARS_AGENTS
                ),
            );
        }
        profiles
    }

    fn profile(&mut self, item: &Value<'_>) -> Option<AgentProfile> {
        let start = item.span().start;
        let table = self.table("profile", item)?;
        let mut out = AgentProfile {
            id: String::new(),
            programs: Vec::new(),
            scripts: Vec::new(),
            structured: false,
            session_var: None,
        };
        let mut ok = true;
        for (key, value) in table.iter() {
            let at = value.span().start;
            match key.get_ref().as_ref() {
                "id" => match self.string("id", value) {
                    Some(id) if !id.is_empty() => id.clone_into(&mut out.id),
                    Some(_) => {
                        ok = false;
                        self.error(code::INVALID, at, "a profile's `id` is empty");
                    }
                    None => ok = false,
                },
                list @ ("programs" | "scripts") => {
                    let Some(names) = self.str_list(list, value) else {
                        ok = false;
                        continue;
                    };
                    for (name, at) in names.items {
                        if name.is_empty() || name.contains('/') {
                            ok = false;
                            self.error(
                                code::INVALID,
                                at,
                                format!("{name:?} in `{list}` is not a file name"),
                            );
                        } else if list == "programs" {
                            out.programs.push(name.to_owned());
                        } else {
                            out.scripts.push(name.to_owned());
                        }
                    }
                }
                "structured" => match self.boolean("structured", value) {
                    Some(b) => out.structured = b,
                    None => ok = false,
                },
                "session_var" => match self.string("session_var", value) {
                    Some(var) if guard_common::SessionVar::new(var).is_some() => {
                        out.session_var = Some(var.to_owned());
                    }
                    Some(var) => {
                        ok = false;
                        self.error(
                            code::INVALID,
                            at,
                            format!(
                                "session_var {var:?} is not a variable name of 1 to {} bytes",
                                guard_common::SESSION_VAR_LEN - 2
                            ),
                        );
                    }
                    None => ok = false,
                },
                other => {
                    ok = false;
                    self.unknown_key(
                        other,
                        key.span().start,
                        "in [[agents.profile]]",
                        PROFILE_KEYS,
                    );
                }
            }
        }
        if out.id.is_empty() && ok {
            ok = false;
            self.error(code::MISSING, start, "a profile needs an `id`");
        }
        if ok && out.programs.is_empty() && out.scripts.is_empty() {
            ok = false;
            self.error(
                code::MISSING,
                start,
                format!(
                    "profile {:?} names no `programs` and no `scripts`: nothing would be its agent",
                    out.id
                ),
            );
        }
        ok.then_some(out)
    }
}
