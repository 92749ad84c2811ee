//! The settings sections: `[agents]` (who starts a session), `[sessions]`, `[taint]`,
//! `[files]`, `[limits]` and `[report]`.

use super::container::{cgroup_glob, container_selector};
use super::{Checker, Value, destination};
use crate::diag::code;
use crate::model::{Action, Files, Limits, OnLoss, Policy, ReportConfig, Sessions, Taint};

const TAINT_KEYS: &[&str] = &["egress", "allow"];
const FILES_KEYS: &[&str] = &["ignore_files", "ignore", "action"];
const REPORT_KEYS: &[&str] = &["dir"];
const LIMIT_KEYS: &[&str] = &["rate", "burst", "on_loss"];
const AGENT_KEYS: &[&str] = &[
    "names",
    "containers",
    "cgroups",
    "kill_stragglers",
    "homes",
    "profile",
];

impl Checker<'_> {
    /// `[taint]`: `egress = "allow" | "log" | "alert" | "deny"` and `allow`, a list
    /// of destinations as network rules write them.
    pub(super) fn taint(&mut self, value: &Value<'_>, taint: &mut Taint) {
        let Some(table) = self.table("taint", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            match name {
                "egress" => {
                    let actions = [Action::Log, Action::Alert, Action::Deny];
                    if let Some(egress) = self.allow_or_action(("taint", name), value, &actions) {
                        taint.egress = egress;
                    }
                }
                "allow" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    taint.allow.clear();
                    for (text, at) in list.items {
                        match destination::dest(text) {
                            Ok(d) => taint.allow.push(d),
                            Err(why) => self.error(
                                code::BAD_DEST,
                                at,
                                format!("bad network destination {text:?}: {why}"),
                            ),
                        }
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [taint]", TAINT_KEYS),
            }
        }
    }

    /// `[files]`: `ignore_files` (file names read at a repository's root),
    /// `ignore` (gitignore patterns) and `action` (`"allow"` or an action).
    pub(super) fn files(&mut self, value: &Value<'_>, files: &mut Files) {
        let Some(table) = self.table("files", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let at = value.span().start;
            match name {
                "ignore_files" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    files.ignore_files.clear();
                    for (file, at) in list.items {
                        if file.is_empty() || file.contains('/') || matches!(file, "." | "..") {
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "[files] ignore_files names files at a repository's root: \
                                     {file:?} is not a file name"
                                ),
                            );
                        } else {
                            files.ignore_files.push(file.to_owned());
                        }
                    }
                }
                "ignore" => {
                    let Some(list) = self.str_list(name, value) else {
                        continue;
                    };
                    files.ignore.clear();
                    for (pattern, at) in list.items {
                        let bare = pattern.trim_start_matches('!').trim_matches('/');
                        if bare.is_empty()
                            || bare.split('/').any(|c| matches!(c, "." | ".."))
                            || pattern.contains('\n')
                        {
                            self.error(
                                code::BAD_GLOB,
                                at,
                                format!(
                                    "bad [files] ignore pattern {pattern:?}: a gitignore pattern \
                                     inside the repository (no `.` or `..`, not empty)"
                                ),
                            );
                        } else {
                            files.ignore.push(pattern.to_owned());
                        }
                    }
                }
                "action" => {
                    let Some(text) = self.string(name, value) else {
                        continue;
                    };
                    files.action = match text {
                        "allow" => None,
                        other => match Action::parse(other) {
                            Some(a) => Some(a),
                            None => {
                                self.error(
                                    code::UNKNOWN_ACTION,
                                    at,
                                    format!(
                                        "unknown [files] action {other:?} (expected \"allow\", \
                                         \"log\", \"alert\", \"kill\" or \"deny\")"
                                    ),
                                );
                                continue;
                            }
                        },
                    };
                }
                other => self.unknown_key(other, key.span().start, "in [files]", FILES_KEYS),
            }
        }
    }

    /// `[sessions]`: `key = "allow" | "log" | "alert" | "deny" | "kill"` for each
    /// route around the hooks.
    pub(super) fn sessions(&mut self, value: &Value<'_>, sessions: &mut Sessions) {
        let Some(table) = self.table("sessions", value) else {
            return;
        };
        for (key, value) in table.iter() {
            let name = key.get_ref().as_ref();
            let at = value.span().start;
            let Some(slot) = sessions.get_mut(name) else {
                self.unknown_key(name, key.span().start, "in [sessions]", &Sessions::KEYS);
                continue;
            };
            let Some(text) = self.string(name, value) else {
                continue;
            };
            *slot = match text {
                "allow" => None,
                "log" => Some(Action::Log),
                "alert" => Some(Action::Alert),
                "deny" if name == "unsandboxed_tools" => {
                    self.error(
                        code::INVALID,
                        at,
                        "[sessions] unsandboxed_tools cannot be \"deny\": a tool is known to run \
                         outside the sandbox once it runs (use \"kill\")"
                            .to_owned(),
                    );
                    continue;
                }
                "deny" if name == "undeclared" => {
                    self.error(
                        code::INVALID,
                        at,
                        "[sessions] undeclared cannot be \"deny\": a process is known to have \
                         outlived its call once it works on (use \"kill\")"
                            .to_owned(),
                    );
                    continue;
                }
                "deny" => Some(Action::Deny),
                "kill" => Some(Action::Kill),
                other => {
                    self.error(
                        code::INVALID,
                        at,
                        format!(
                            "unknown [sessions] {name} {other:?} (expected \"allow\", \"log\", \
                             \"alert\", \"deny\" or \"kill\")"
                        ),
                    );
                    continue;
                }
            };
        }
    }

    pub(super) fn agents(&mut self, value: &Value<'_>, policy: &mut Policy) {
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
                "homes" => {
                    let Some(list) = self.str_list("homes", value) else {
                        continue;
                    };
                    for (home, at) in list.items {
                        let plain = home.starts_with('/')
                            && home.len() > 1
                            && !home.ends_with('/')
                            && !home.contains(['*', '?', '[', '{', '~'])
                            && !home.split('/').any(|c| c == "." || c == "..");
                        if plain {
                            policy.homes.push(home.to_owned());
                        } else {
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "home {home:?} must be an absolute directory path with no \
                                     wildcard, `~`, `.` or `..`, and no trailing `/` \
                                     (`/home/runner`)"
                                ),
                            );
                        }
                    }
                }
                "profile" => policy.profiles = self.profiles(value),
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

    pub(super) fn limits(&mut self, value: &Value<'_>, limits: &mut Limits) {
        let Some(table) = self.table("limits", value) else {
            return;
        };
        let mut burst = None;
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "rate" => {
                    if let Some(rate) = self.integer("rate", value, 0, Limits::MAX_RATE) {
                        limits.rate = rate;
                    }
                }
                "burst" => burst = self.integer("burst", value, 1, Limits::MAX_BURST),
                "on_loss" => {
                    let at = value.span().start;
                    limits.on_loss = match self.string("on_loss", value) {
                        Some("log") => OnLoss::Log,
                        Some("alert") => OnLoss::Alert,
                        Some("kill") => OnLoss::Kill,
                        Some(other) => {
                            self.error(
                                code::INVALID,
                                at,
                                format!(
                                    "unknown on_loss {other:?} (expected \"log\", \"alert\" or \"kill\")"
                                ),
                            );
                            continue;
                        }
                        None => continue,
                    };
                }
                other => self.unknown_key(other, key.span().start, "in [limits]", LIMIT_KEYS),
            }
        }
        limits.burst = burst.unwrap_or_else(|| Limits::default_burst(limits.rate));
    }

    pub(super) fn report(&mut self, value: &Value<'_>, report: &mut ReportConfig) {
        let Some(table) = self.table("report", value) else {
            return;
        };
        for (key, value) in table.iter() {
            match key.get_ref().as_ref() {
                "dir" => {
                    let at = value.span().start;
                    let Some(dir) = self.string("dir", value) else {
                        continue;
                    };
                    if dir.starts_with('/') {
                        report.dir = Some(dir.into());
                    } else {
                        self.error(
                            code::INVALID,
                            at,
                            format!("[report] dir {dir:?} must be an absolute path"),
                        );
                    }
                }
                other => self.unknown_key(other, key.span().start, "in [report]", REPORT_KEYS),
            }
        }
    }
}
