//! `[packages]`: what a package a session installs gets when its name is a near
//! miss of a well-known package's (docs/policy.md, "Packages").

use super::{Checker, Value};
use crate::model::{Action, Kind, Packages, Policy};

const PACKAGES_KEYS: &[&str] = &["near_miss"];

impl Checker<'_> {
    /// `[packages]`.
    pub(super) fn packages(&mut self, value: &Value<'_>, packages: &mut Packages) {
        let Some(table) = self.table("packages", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "near_miss" => {
                    // The manifest is written when the judge sees it: `deny` has
                    // nothing left to refuse, so it is not offered.
                    let actions = [Action::Log, Action::Alert, Action::Kill];
                    if let Some(action) = self.allow_or_action(("packages", name), value, &actions)
                    {
                        packages.near_miss = action;
                    }
                }
                other => {
                    self.unknown_key(other, key.span().start, "in [packages]", PACKAGES_KEYS);
                }
            }
        }
    }

    /// The rule `[packages] near_miss` makes, when it is not `allow`.
    pub(super) fn packages_rule(&mut self, policy: &mut Policy, at: Option<usize>) {
        let Some(action) = policy.packages.near_miss else {
            return;
        };
        let made = super::SettingRule {
            id: Packages::NEAR_MISS,
            setting: "[packages] near_miss",
            description: "[packages]: a session installed a package whose name is one edit \
                          from a well-known package's (a typo, or a name a model invented \
                          that someone registered)",
            kind: Kind::Packages,
            action,
            at: at.unwrap_or(0),
        };
        self.setting_rule(policy, made);
    }
}
