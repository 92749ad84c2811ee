//! The session as a story in the Markdown report, for the reviewer who reads it
//! before merging the agent's work: the items of `guard_common::story` (every
//! declared call, what guard stopped, the packages installed and their scripts, the
//! processes no call declared, in the order they happened; the fleet's session page
//! tells the same), with a timeline chart (Mermaid, which GitHub renders in job
//! summaries and Markdown files). The sections after it hold the same facts by kind.

use std::fmt::Write as _;

use guard_common::{
    report::Report,
    story::{Item, NO_CALLS, Part, STORY_MAX, story, timeline::timeline},
};

use super::inline;

/// An item's line in Markdown: names and commands as code spans.
fn markdown(item: &Item) -> String {
    item.parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Code(c) => format!("`{}`", inline(c)),
            Part::Strong(s) => format!("**{s}**"),
        })
        .collect()
}

/// A name Mermaid's Gantt syntax takes: no `:` (it ends the name), `#` or `;`.
fn chart_name(s: &str) -> String {
    s.chars()
        .map(|c| if matches!(c, ':' | '#' | ';') { ' ' } else { c })
        .collect()
}

/// The timeline chart in Mermaid: the declared calls as bars, guard's decisions as
/// milestones.
fn chart(out: &mut String, r: &Report) -> std::fmt::Result {
    let t = timeline(r);
    if t.is_empty() {
        return Ok(());
    }
    writeln!(out, "```mermaid\ngantt")?;
    writeln!(out, "    dateFormat x\n    axisFormat %H:%M:%S")?;
    if !t.bars.is_empty() {
        writeln!(out, "    section Calls")?;
        for (i, b) in t.bars.iter().enumerate() {
            let name = chart_name(&b.name);
            writeln!(out, "    {name} :c{i}, {}, {}", b.start_ms, b.end_ms)?;
        }
    }
    if !t.marks.is_empty() {
        writeln!(out, "    section guard")?;
        for (i, m) in t.marks.iter().enumerate() {
            let (name, at) = (chart_name(&m.name), m.at_ms);
            writeln!(out, "    {name} :crit, milestone, v{i}, {at}, {at}")?;
        }
    }
    writeln!(out, "```\n")
}

/// The section "The session, in order": the chart, then one line per thing that
/// happened.
pub(super) fn write(out: &mut String, r: &Report) -> std::fmt::Result {
    writeln!(out, "\n## The session, in order\n")?;
    chart(out, r)?;
    let all = story(r);
    for item in all.iter().take(STORY_MAX) {
        writeln!(out, "- `{}` {}", item.clock(), markdown(item))?;
    }
    if all.len() > STORY_MAX {
        writeln!(
            out,
            "- …and {} more; the sections below list everything.",
            all.len() - STORY_MAX
        )?;
    }
    if r.calls.items.is_empty() {
        writeln!(out, "\n{NO_CALLS}")?;
    }
    Ok(())
}

#[cfg(test)]
pub(in crate::report) mod tests {
    use guard_common::report::{
        Bounded, Call, Command, Package, Script, Undeclared, Violation, why,
    };

    use super::*;

    fn at(s: &str) -> String {
        format!("2026-11-22T08:00:{s}Z")
    }

    /// A session whose parts are given out of order: a call that installs a package
    /// whose install script reads a secret and is killed, and a process left behind.
    pub(in crate::report) fn session() -> Report {
        let mut r = Report {
            session: "s".to_owned(),
            agent: Some("codex".to_owned()),
            root_pid: Some(10),
            how: Some("run".to_owned()),
            workspace: Some("/w".to_owned()),
            started: Some(at("00.000")),
            ended: Some(at("09.000")),
            duration_ms: Some(9000),
            ..Report::default()
        };
        r.undeclared = Bounded {
            items: vec![Undeclared {
                ts: at("05.000"),
                pid: 30,
                command: "sleep 600".to_owned(),
                why: why::OUTLIVED.to_owned(),
                call: Some("call_2".to_owned()),
                did: vec!["exec /usr/bin/sleep".to_owned()],
            }],
            omitted: 0,
        };
        r.violations = Bounded {
            items: vec![Violation {
                ts: at("02.500"),
                pid: 21,
                comm: "node".to_owned(),
                what: "open /home/a/.ssh/id_rsa".to_owned(),
                path: Some("/home/a/.ssh/id_rsa".to_owned()),
                rule: "credentials-read".to_owned(),
                action: "kill".to_owned(),
                outcome: "killed".to_owned(),
                alert: true,
            }],
            omitted: 0,
        };
        r.calls = Bounded {
            items: vec![
                Call {
                    id: "call_2".to_owned(),
                    tool: "shell".to_owned(),
                    command: Some("sleep 600 &".to_owned()),
                    started: at("04.000"),
                    ended: Some(at("04.100")),
                    execs: 1,
                    processes: vec![Command {
                        ts: at("04.010"),
                        pid: 30,
                        exe: "/usr/bin/sleep".to_owned(),
                        argv: vec!["sleep".to_owned(), "600".to_owned()],
                        verdict: None,
                        sandboxed: None,
                    }],
                    ..Call::default()
                },
                Call {
                    id: "call_1".to_owned(),
                    tool: "shell".to_owned(),
                    command: Some("npm install: ./evil".to_owned()),
                    started: at("01.000"),
                    ended: Some(at("03.000")),
                    execs: 3,
                    processes: vec![Command {
                        ts: at("01.010"),
                        pid: 20,
                        exe: "/usr/bin/npm".to_owned(),
                        argv: vec!["npm".to_owned(), "install".to_owned()],
                        verdict: None,
                        sandboxed: None,
                    }],
                    verdicts: vec!["credentials-read: killed".to_owned()],
                    ..Call::default()
                },
            ],
            omitted: 0,
        };
        r.packages = Bounded {
            items: vec![Package {
                ecosystem: "npm".to_owned(),
                name: "evil".to_owned(),
                version: Some("1.0.0".to_owned()),
                ts: at("02.000"),
                pid: 20,
                by: "npm".to_owned(),
                command: Some("npm install ./evil".to_owned()),
                ..Package::default()
            }],
            omitted: 0,
        };
        r.scripts = Bounded {
            items: vec![Script {
                package: "evil".to_owned(),
                install: true,
                ts: at("02.200"),
                pid: 21,
                command: "node postinstall.js".to_owned(),
                execs: 1,
                secrets: vec!["/home/a/.ssh/id_rsa".to_owned()],
                ..Script::default()
            }],
            omitted: 0,
        };
        r
    }

    fn story(r: &Report) -> String {
        let mut out = String::new();
        write(&mut out, r).expect("a String takes every write");
        out
    }

    #[test]
    fn the_story_tells_what_happened_in_the_order_it_happened() {
        let out = story(&session());
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("- `")).collect();
        let expected = [
            "- `08:00:00.000` The session started: `codex` (pid 10), started by run, in `/w`.",
            "- `08:00:01.000` **Call** `shell`: `npm install: ./evil` — ran `/usr/bin/npm` (3 programs in all); ended 08:00:03.000.",
            "- `08:00:02.000` Installed npm package `evil` 1.0.0 (by `npm install ./evil`).",
            "- `08:00:02.200` Install script of `evil`: `node postinstall.js` — 1 programs, 0 reads, 0 writes; opened secrets `/home/a/.ssh/id_rsa`.",
            "- `08:00:02.500` **guard: killed** — `node` (pid 21) `open /home/a/.ssh/id_rsa` broke rule `credentials-read` (action kill, alerted).",
            "- `08:00:04.000` **Call** `shell`: `sleep 600 &` — ran `/usr/bin/sleep`; ended 08:00:04.100.",
            "- `08:00:05.000` **Undeclared** `sleep 600` (pid 30): worked on after its call ended (call `call_2`); then `exec /usr/bin/sleep`.",
            "- `08:00:09.000` The session ended, after 9.000 s.",
        ];
        assert_eq!(lines, expected, "{out}");
        assert!(!out.contains("declared no tool calls"), "{out}");
    }

    #[test]
    fn the_chart_draws_the_calls_and_guard_s_decisions() {
        let out = story(&session());
        let chart = out
            .split("```mermaid\n")
            .nth(1)
            .and_then(|c| c.split("```").next())
            .unwrap_or_else(|| panic!("no chart: {out}"));
        let start = |s: &str| {
            guard_common::story::parse(&at(s))
                .expect("a time")
                .timestamp_millis()
        };
        // Names lose the `:` that would end them; the calls in the order they
        // started (the report lists them otherwise).
        assert!(
            chart.contains(&format!(
                "    npm install  ./evil :c0, {}, {}\n",
                start("01.000"),
                start("03.000")
            )),
            "{chart}"
        );
        assert!(
            chart.contains(&format!(
                "    sleep 600 & :c1, {}, {}\n",
                start("04.000"),
                start("04.100")
            )),
            "{chart}"
        );
        let v = start("02.500");
        assert!(
            chart.contains(&format!(
                "    section guard\n    credentials-read killed :crit, milestone, v0, {v}, {v}\n"
            )),
            "{chart}"
        );
        assert!(chart.starts_with("gantt\n    dateFormat x\n"), "{chart}");
    }

    #[test]
    fn a_session_without_calls_says_so_and_bad_times_go_last() {
        let mut r = session();
        r.calls = Bounded::default();
        r.packages.items[0].ts = "not a time".to_owned();
        let out = story(&r);
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("- `")).collect();
        assert!(
            lines
                .last()
                .is_some_and(|l| l.starts_with("- `not a time` Installed npm package")),
            "{out}"
        );
        assert!(out.contains("declared no tool calls to guard"), "{out}");
        // Without calls the chart still marks guard's decisions.
        assert!(
            out.contains("section guard") && !out.contains("section Calls"),
            "{out}"
        );
    }

    #[test]
    fn a_command_keeps_its_pipes_and_loses_its_backticks() {
        let mut r = session();
        r.calls.items[0].command = Some("ls | wc -l `x`".to_owned());
        let out = story(&r);
        assert!(
            out.contains("**Call** `shell`: `ls | wc -l 'x'` — ran"),
            "{out}"
        );
    }

    #[test]
    fn a_long_session_is_cut_and_says_so() {
        let mut r = session();
        let v = r.violations.items[0].clone();
        r.violations.items = vec![v; STORY_MAX + 10];
        let out = story(&r);
        let lines = out.lines().filter(|l| l.starts_with("- `")).count();
        assert_eq!(lines, STORY_MAX, "{out}");
        // Every entry counts: the start, 2 calls, the violations, a package, a
        // script, an undeclared process and the end.
        let total = 7 + STORY_MAX + 10;
        assert!(
            out.contains(&format!("- …and {} more;", total - STORY_MAX)),
            "{out}"
        );
        assert_eq!(
            out.matches(":crit, milestone").count(),
            guard_common::story::timeline::CHART_MAX,
            "{out}"
        );
    }
}
