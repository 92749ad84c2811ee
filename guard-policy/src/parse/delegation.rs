//! `[delegation]`: what a session's connect to a known spawner outside every
//! session gets, and which programs are spawners (docs/policy.md, "Delegation").

use super::{Checker, Value, code};
use crate::model::{Action, Delegation, Kind, Policy, Spawner};

const DELEGATION_KEYS: &[&str] = &["action", "spawners", "also"];

impl Checker<'_> {
    /// `[delegation]`.
    pub(super) fn delegation(&mut self, value: &Value<'_>, delegation: &mut Delegation) {
        let Some(table) = self.table("delegation", value) else {
            return;
        };
        let mut also = Vec::new();
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "action" => {
                    let actions = [Action::Log, Action::Alert, Action::Deny, Action::Kill];
                    if let Some(action) =
                        self.allow_or_action(("delegation", name), value, &actions)
                    {
                        delegation.action = action;
                    }
                }
                "spawners" | "also" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    let mut programs = Vec::new();
                    for (text, at) in list.items {
                        if text.is_empty() || text.contains('/') {
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "[delegation] {name}: {text:?} is not a program name (a file \
                                     name such as \"tmux\", no path)"
                                ),
                            );
                        } else {
                            programs.push(text.to_owned());
                        }
                    }
                    if name == "spawners" {
                        delegation.spawners = programs
                            .into_iter()
                            .map(|p| Spawner {
                                name: p.clone(),
                                programs: vec![p],
                                what: String::new(),
                            })
                            .collect();
                    } else {
                        also = programs;
                    }
                }
                other => {
                    self.unknown_key(other, key.span().start, "in [delegation]", DELEGATION_KEYS);
                }
            }
        }
        delegation
            .spawners
            .extend(also.into_iter().map(|p| Spawner {
                name: p.clone(),
                programs: vec![p],
                what: String::new(),
            }));
    }

    /// Appends `[delegation]`'s rule, `delegation.spawner`.
    pub(super) fn delegation_rule(&mut self, policy: &mut Policy, at: Option<usize>) {
        let Some(action) = policy.delegation.action else {
            return;
        };
        let made = super::SettingRule {
            id: Delegation::RULE,
            setting: "[delegation] action",
            description: "[delegation]: a session asked a process outside every session that \
                          runs commands on request (a known spawner) to act for it",
            kind: Kind::Delegation,
            action,
            at: at.unwrap_or(0),
        };
        self.setting_rule(policy, made);
    }
}
