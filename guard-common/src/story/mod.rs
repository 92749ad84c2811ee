//! A session's report as a story: every declared call, what guard decided, the
//! packages installed and their scripts, and the processes no call declared, merged
//! in the order they happened. One description for every page that tells it: the
//! Markdown report (`guard report`, a CI job's summary) and the fleet's session page
//! render the same items, each in its own markup.

extern crate alloc;

use alloc::{
    borrow::ToOwned,
    format,
    string::{String, ToString},
    vec::Vec,
};

use chrono::{DateTime, Utc};

use crate::report::{Report, why};

pub mod timeline;

/// A piece of a line: plain words, a name or command shown as code, or words that
/// stand out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Code(String),
    Strong(String),
}

/// What an item is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Start,
    Call,
    Decision,
    Package,
    Script,
    Undeclared,
    End,
}

/// Items of a story a page shows at most; the page's other sections list
/// everything.
pub const STORY_MAX: usize = 200;

/// What a story says when the agent declared no calls.
pub const NO_CALLS: &str = "The agent declared no tool calls to guard: the story has what the \
                            kernel saw, not what the agent said it would do.";

/// One thing that happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// When, as the report gives it.
    pub ts: String,
    /// `ts` read; none when it does not parse (such items go last).
    pub at: Option<DateTime<Utc>>,
    pub kind: Kind,
    pub parts: Vec<Part>,
}

impl Item {
    /// The time of day, to the millisecond (`ts` itself when it does not parse).
    pub fn clock(&self) -> String {
        match self.at {
            Some(t) => clock(t),
            None => self.ts.clone(),
        }
    }

    /// The line without markup (code in backticks, nothing bold), for logs and tests.
    pub fn plain(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) | Part::Strong(t) => t.clone(),
                Part::Code(c) => format!("`{c}`"),
            })
            .collect()
    }
}

/// The time of day of `t`, to the millisecond.
fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// A timestamp of a report (RFC 3339), read.
pub fn parse(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Builds one line.
struct Line(Vec<Part>);

impl Line {
    fn text(mut self, s: impl Into<String>) -> Self {
        let s = s.into();
        match self.0.last_mut() {
            Some(Part::Text(t)) => t.push_str(&s),
            _ => self.0.push(Part::Text(s)),
        }
        self
    }

    fn code(mut self, s: &str) -> Self {
        self.0.push(Part::Code(s.to_owned()));
        self
    }

    fn strong(mut self, s: impl Into<String>) -> Self {
        self.0.push(Part::Strong(s.into()));
        self
    }

    /// `items` as code, joined; `and N more` past `max`.
    fn list(mut self, items: &[String], max: usize) -> Self {
        for (i, item) in items.iter().take(max).enumerate() {
            if i > 0 {
                self = self.text(", ");
            }
            self = self.code(item);
        }
        if items.len() > max {
            self = self.text(format!(" and {} more", items.len() - max));
        }
        self
    }

    fn item(self, ts: &str, kind: Kind) -> Item {
        Item {
            ts: ts.to_owned(),
            at: parse(ts),
            kind,
            parts: self.0,
        }
    }
}

fn line() -> Line {
    Line(Vec::new())
}

/// Why a process is undeclared, in words.
pub fn why_words(undeclared_why: &str) -> &str {
    match undeclared_why {
        why::OUTLIVED => "worked on after its call ended",
        why::OUTSIDE => "started by the agent outside every call",
        why::INSTALL_SCRIPT => "run by a package's install script",
        other => other,
    }
}

/// Everything `r` holds that has a time, in the order it happened; what has no
/// readable time goes last, in the order found.
#[expect(
    clippy::too_many_lines,
    reason = "one loop per part of the report; all go into one list, sorted at the end"
)]
pub fn story(r: &Report) -> Vec<Item> {
    let mut all = Vec::new();
    if let Some(started) = &r.started {
        let mut l = line()
            .text("The session started: ")
            .code(r.agent.as_deref().unwrap_or("an agent"));
        if let Some(pid) = r.root_pid {
            l = l.text(format!(" (pid {pid})"));
        }
        if let Some(how) = &r.how {
            l = l.text(format!(", started by {how}"));
        }
        if let Some(w) = &r.workspace {
            l = l.text(", in ").code(w);
        }
        all.push(l.text(".").item(started, Kind::Start));
    }
    for c in &r.calls.items {
        let mut l = line().strong("Call").text(" ").code(&c.tool);
        if let Some(command) = &c.command {
            l = l.text(": ").code(command);
        }
        let programs: Vec<String> = c.processes.iter().map(|p| p.exe.clone()).collect();
        if c.execs == 0 {
            l = l.text(" — ran no program");
        } else {
            l = l.text(" — ran ").list(&programs, 5);
            if c.execs > programs.len().min(5) as u64 {
                l = l.text(format!(" ({} programs in all)", c.execs));
            }
        }
        if !c.destinations.is_empty() {
            l = l.text("; reached ").list(&c.destinations, 5);
        }
        if !c.secrets.is_empty() {
            l = l.text("; opened secrets ").list(&c.secrets, 5);
        }
        if !c.written_outside.is_empty() {
            l = l
                .text("; wrote outside the workspace ")
                .list(&c.written_outside, 5);
        }
        l = match c.ended.as_deref().and_then(parse).map(clock) {
            Some(end) => l.text(format!("; ended {end}")),
            None => l.text("; no end declared"),
        };
        all.push(l.text(".").item(&c.started, Kind::Call));
    }
    for v in &r.violations.items {
        let alert = if v.alert { ", alerted" } else { "" };
        let l = line()
            .strong(format!("guard: {}", v.outcome))
            .text(" — ")
            .code(&v.comm)
            .text(format!(" (pid {}) ", v.pid))
            .code(&v.what)
            .text(" broke rule ")
            .code(&v.rule)
            .text(format!(" (action {}{alert}).", v.action));
        all.push(l.item(&v.ts, Kind::Decision));
    }
    for p in &r.packages.items {
        let mut l = line()
            .text(format!("Installed {} package ", p.ecosystem))
            .code(&p.name)
            .text(format!(
                " {}",
                p.version.as_deref().unwrap_or("(version unknown)")
            ));
        if !p.registries.is_empty() {
            l = l.text(" from ").list(&p.registries, 3);
        }
        let by = p.command.as_deref().unwrap_or(&p.by);
        all.push(
            l.text(" (by ")
                .code(by)
                .text(").")
                .item(&p.ts, Kind::Package),
        );
    }
    for s in &r.scripts.items {
        let kind = if s.install {
            "Install script"
        } else {
            "Script"
        };
        let mut l = line()
            .text(format!("{kind} of "))
            .code(&s.package)
            .text(": ")
            .code(&s.command)
            .text(format!(
                " — {} programs, {} reads, {} writes",
                s.execs, s.reads, s.writes
            ));
        if !s.secrets.is_empty() {
            l = l.text("; opened secrets ").list(&s.secrets, 5);
        }
        if !s.destinations.is_empty() {
            l = l.text("; reached ").list(&s.destinations, 5);
        }
        all.push(l.text(".").item(&s.ts, Kind::Script));
    }
    for u in &r.undeclared.items {
        let mut l = line()
            .strong("Undeclared")
            .text(" ")
            .code(&u.command)
            .text(format!(" (pid {}): {}", u.pid, why_words(&u.why)));
        if let Some(call) = &u.call {
            l = l.text(" (call ").code(call).text(")");
        }
        if !u.did.is_empty() {
            l = l.text("; then ").list(&u.did, 5);
        }
        all.push(l.text(".").item(&u.ts, Kind::Undeclared));
    }
    if let Some(ended) = &r.ended {
        let words = match r.duration_ms {
            Some(ms) => format!("The session ended, after {}.{:03} s.", ms / 1000, ms % 1000),
            None => "The session ended.".to_owned(),
        };
        all.push(line().text(words).item(ended, Kind::End));
    }
    all.sort_by_key(|e| (e.at.is_none(), e.at));
    all
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::report::{Bounded, Call};

    #[test]
    fn a_line_keeps_names_apart_from_words_and_bad_times_go_last() {
        let mut r = Report {
            started: Some("2026-11-22T08:00:00Z".to_owned()),
            ..Report::default()
        };
        r.calls = Bounded {
            items: vec![
                Call {
                    tool: "shell".to_owned(),
                    command: Some("rm -rf `x`".to_owned()),
                    started: "yesterday".to_owned(),
                    ..Call::default()
                },
                Call {
                    tool: "apply_patch".to_owned(),
                    started: "2026-11-22T07:59:59.5Z".to_owned(),
                    ..Call::default()
                },
            ],
            omitted: 0,
        };
        let items = story(&r);
        let kinds: Vec<Kind> = items.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, [Kind::Call, Kind::Start, Kind::Call]);
        assert_eq!(items[0].clock(), "07:59:59.500");
        // A command is one code part, whatever it holds; words around it merge.
        assert_eq!(
            items[2].parts,
            [
                Part::Strong("Call".to_owned()),
                Part::Text(" ".to_owned()),
                Part::Code("shell".to_owned()),
                Part::Text(": ".to_owned()),
                Part::Code("rm -rf `x`".to_owned()),
                Part::Text(" — ran no program; no end declared.".to_owned()),
            ]
        );
        assert_eq!(items[2].clock(), "yesterday");
        assert_eq!(items[1].plain(), "The session started: `an agent`.");
    }
}
