//! `[packages]`: what a package a session installs gets when its name is a near
//! miss of a well-known package's or new to the organisation, and what a package's
//! script gets when it reaches the network beyond the registries (docs/policy.md,
//! "Packages").

use super::{Checker, Value};
use crate::model::{Action, Kind, Packages, Policy};

const PACKAGES_KEYS: &[&str] = &["near_miss", "script_network", "first_seen"];

impl Checker<'_> {
    /// `[packages]`.
    pub(super) fn packages(&mut self, value: &Value<'_>, packages: &mut Packages) {
        let Some(table) = self.table("packages", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                // The manifest is written, the connection made, when the judge sees
                // it: `deny` has nothing left to refuse, so it is not offered.
                "near_miss" | "script_network" | "first_seen" => {
                    let actions = [Action::Log, Action::Alert, Action::Kill];
                    if let Some(action) = self.allow_or_action(("packages", name), value, &actions)
                    {
                        match name {
                            "near_miss" => packages.near_miss = action,
                            "first_seen" => packages.first_seen = action,
                            _ => packages.script_network = action,
                        }
                    }
                }
                other => {
                    self.unknown_key(other, key.span().start, "in [packages]", PACKAGES_KEYS);
                }
            }
        }
    }

    /// The rules `[packages]` makes, for its settings that are not `allow`.
    pub(super) fn packages_rule(&mut self, policy: &mut Policy, at: Option<usize>) {
        let settings = [
            (
                policy.packages.near_miss,
                Packages::NEAR_MISS,
                "[packages] near_miss",
                "[packages]: a session installed a package whose name is one edit from a \
                 well-known package's (a typo, or a name a model invented that someone \
                 registered)",
            ),
            (
                policy.packages.script_network,
                Packages::SCRIPT_NETWORK,
                "[packages] script_network",
                "[packages]: a package's script (an install script, or a project's npm \
                 script) reached the network beyond the package registries",
            ),
            (
                policy.packages.first_seen,
                Packages::FIRST_SEEN,
                "[packages] first_seen",
                "[packages]: a session installed a package the organisation had never seen \
                 (no package of that name in the fleet's inventory)",
            ),
        ];
        for (action, id, setting, description) in settings {
            let Some(action) = action else { continue };
            let made = super::SettingRule {
                id,
                setting,
                description,
                kind: Kind::Packages,
                action,
                at: at.unwrap_or(0),
            };
            self.setting_rule(policy, made);
        }
    }
}
