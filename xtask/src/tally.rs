//! What a test run proved: passed, failed and skipped tests of every suite (unit,
//! end-to-end on the host, each kernel of the matrix), read from the harnesses'
//! own reports (nextest's JUnit file, the VM console), never from an exit status
//! alone; and the one line `cargo xtask test` ends with.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::util::log;

/// One test's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Passed,
    /// Passed on a retry (the suites that allow one: the agents' real CLIs): what the
    /// failed try said. Counted as passed, and named in the summary.
    Flaky(String),
    Failed(String),
    /// Not run, with the reason (a missing feature, a flag that left it out).
    Skipped(String),
}

/// A suite's results.
#[derive(Debug, Default)]
pub(crate) struct Suite {
    pub name: String,
    pub tests: Vec<(String, Verdict)>,
    /// The suite could not run or report (a build failure, a VM that did not
    /// boot): counted as one failure.
    pub error: Option<String>,
    pub wall: Duration,
    /// What the counts do not tell (a VM booted twice), printed with the summary.
    pub notes: Vec<String>,
}

impl Suite {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.tests.iter().filter(|(_, v)| f(v)).count()
    }

    pub(crate) fn passed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Passed | Verdict::Flaky(_)))
    }

    pub(crate) fn flaky(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Flaky(_)))
    }

    pub(crate) fn failed(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Failed(_))) + usize::from(self.error.is_some())
    }

    pub(crate) fn skipped(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Skipped(_)))
    }

    /// Marks the tests `skips` names (test name, reason) as skipped: a test that
    /// returned early passed in its harness's eyes.
    pub(crate) fn apply_skips(&mut self, skips: &[(String, String)]) {
        for (test, reason) in skips {
            for (name, verdict) in &mut self.tests {
                if (name == test || name.ends_with(&format!("::{test}")))
                    && *verdict == Verdict::Passed
                {
                    *verdict = Verdict::Skipped(reason.clone());
                }
            }
        }
    }
}

/// Every suite of a run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub suites: Vec<Suite>,
}

impl Tally {
    pub(crate) fn add(&mut self, suite: Suite) {
        log!(
            "{}: {} passed, {} failed, {} skipped ({:.0} s)",
            suite.name,
            suite.passed(),
            suite.failed(),
            suite.skipped(),
            suite.wall.as_secs_f64()
        );
        self.suites.push(suite);
    }

    /// A suite that did not run, with why (`--no-vm`): one skip.
    pub(crate) fn not_run(&mut self, name: &str, why: &str) {
        let mut suite = Suite::new(name);
        suite.tests.push((
            format!("{name} (whole suite)"),
            Verdict::Skipped(why.to_owned()),
        ));
        self.add(suite);
    }

    pub(crate) fn failed(&self) -> usize {
        self.suites.iter().map(Suite::failed).sum()
    }

    /// The summary: one line of counts, then each failure and each skip with its
    /// reason.
    pub(crate) fn summary(&self) -> String {
        let sum = |f: fn(&Suite) -> usize| self.suites.iter().map(f).sum::<usize>();
        let flaky = match sum(Suite::flaky) {
            0 => String::new(),
            n => format!(" ({n} on a retry)"),
        };
        let mut out = format!(
            "summary: {} passed{flaky}, {} failed, {} skipped ({})",
            sum(Suite::passed),
            sum(Suite::failed),
            sum(Suite::skipped),
            self.suites
                .iter()
                .map(|s| format!("{} {}/{}", s.name, s.passed(), s.tests.len()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for suite in &self.suites {
            for note in &suite.notes {
                let _ = write!(out, "\n  NOTE {}: {note}", suite.name);
            }
            if let Some(e) = &suite.error {
                let _ = write!(out, "\n  FAILED {}: {e}", suite.name);
            }
            for (name, verdict) in &suite.tests {
                match verdict {
                    Verdict::Passed => {}
                    Verdict::Flaky(why) => {
                        let _ = write!(
                            out,
                            "\n  FLAKY {}: {name}: passed on a retry; the failed try: {why}",
                            suite.name
                        );
                    }
                    Verdict::Failed(why) => {
                        let _ = write!(out, "\n  FAILED {}: {name}: {why}", suite.name);
                    }
                    Verdict::Skipped(why) => {
                        let _ = write!(out, "\n  skipped {}: {name}: {why}", suite.name);
                    }
                }
            }
        }
        out
    }
}

/// The tests of a nextest JUnit report (`target/nextest/PROFILE/junit.xml`):
/// `binary::test` and its verdict.
pub(crate) fn junit(path: &Path) -> Result<Vec<(String, Verdict)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_junit(&text).with_context(|| format!("cannot parse {}", path.display()))
}

fn parse_junit(text: &str) -> Result<Vec<(String, Verdict)>> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = Vec::new();
    // The test case being read: (name, failure message).
    let mut current: Option<(String, Option<String>)> = None;
    // Its failed tries before the one that passed (`<flakyFailure>`).
    let mut flaky: Option<String> = None;
    loop {
        match reader.read_event()? {
            Event::Start(e) if e.name().into_inner() == "testcase" => {
                current = Some((case_name(&e), None));
                flaky = None;
            }
            // `<testcase .../>`: nothing inside, a pass.
            Event::Empty(e) if e.name().into_inner() == "testcase" => {
                out.push((case_name(&e), Verdict::Passed));
            }
            // `<failure …>TEXT</failure>`: the text is the test's panic message (a
            // failed try of a test that passed after: `<flakyFailure>`).
            Event::Start(e) if matches!(e.name().into_inner(), "failure" | "flakyFailure") => {
                let mut why = failure_message(&e);
                let text = reader.read_text(e.name())?;
                if let Ok(text) = quick_xml::escape::unescape(&text.xml10_content()) {
                    let said = panic_message(&text);
                    if !said.is_empty() {
                        why = format!("{why}: {said}");
                    }
                }
                if e.name().into_inner() == "flakyFailure" {
                    flaky.get_or_insert(why);
                } else if let Some((_, failure)) = &mut current {
                    *failure = Some(why);
                }
            }
            Event::Start(e) | Event::Empty(e)
                if matches!(e.name().into_inner(), "failure" | "error") =>
            {
                if let Some((_, failure)) = &mut current {
                    *failure = Some(failure_message(&e));
                }
            }
            Event::End(e) if e.name().into_inner() == "testcase" => {
                if let Some((name, failure)) = current.take() {
                    let verdict = match (failure, flaky.take()) {
                        (None, Some(tried)) => Verdict::Flaky(tried),
                        (failure, _) => verdict(failure),
                    };
                    out.push((name, verdict));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

/// A `<failure>`'s or `<error>`'s one-line message.
fn failure_message(e: &quick_xml::events::BytesStart<'_>) -> String {
    attr(e, "message")
        .or_else(|| attr(e, "type"))
        .unwrap_or_else(|| "failed".to_owned())
}

/// The first lines of a failed test's panic message (what follows nextest's "thread
/// '…' panicked at FILE:LINE:COL:" line), on one line: what the summary shows of it.
fn panic_message(text: &str) -> String {
    const LINES: usize = 4;
    const CHARS: usize = 240;
    let body = text
        .split_once("panicked at ")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map_or(text, |(_, message)| message);
    body.lines()
        .map(str::trim)
        // (A `<flakyFailure>` holds its try's `<system-out>`: not the message.)
        .take_while(|l| {
            !l.starts_with("stack backtrace:") && !l.starts_with("note: ") && !l.starts_with('<')
        })
        .filter(|l| !l.is_empty())
        .take(LINES)
        .map(|l| l.chars().take(CHARS).collect::<String>())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn attr(e: &quick_xml::events::BytesStart<'_>, key: &str) -> Option<String> {
    e.attributes()
        .filter_map(Result::ok)
        .find(|a| a.key.into_inner() == key)
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// `classname::name` of a `<testcase>`.
fn case_name(e: &quick_xml::events::BytesStart<'_>) -> String {
    let name = attr(e, "name").unwrap_or_default();
    match attr(e, "classname") {
        Some(class) if !class.is_empty() => format!("{class}::{name}"),
        _ => name,
    }
}

fn verdict(failure: Option<String>) -> Verdict {
    match failure {
        Some(why) => Verdict::Failed(why),
        None => Verdict::Passed,
    }
}

/// The skips the tests recorded (`GUARD_E2E_SKIP_LOG`): (test, reason).
pub(crate) fn skips(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((
                v.get("test")?.as_str()?.to_owned(),
                v.get("reason")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_reports_each_case_and_its_failure() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0">
  <testsuite name="guard-tests::routes" tests="3" disabled="0" errors="0" failures="1">
    <testcase name="io_uring_is_refused" classname="guard-tests::routes" time="1.2"/>
    <testcase name="raw_sockets" classname="guard-tests::routes" time="3.4">
      <failure message="thread panicked" type="test failure">thread 'raw_sockets' panicked at tests/tests/e2e/routes.rs:9:5:
[ci] 1 failures:
  the raw socket was not refused
stack backtrace:</failure>
      <system-out>out</system-out>
    </testcase>
    <testcase name="loader" classname="guard-tests::routes" time="1.0">
      <system-out>fine</system-out>
    </testcase>
    <testcase name="real_cli" classname="guard-tests::agents" time="9.0">
      <flakyFailure message="thread panicked" type="test failure">thread 'real_cli' panicked at tests/tests/e2e/agents.rs:9:5:
[claude] 1 failures:
  not told
        <system-out>out</system-out>
      </flakyFailure>
      <system-out>passed</system-out>
    </testcase>
  </testsuite>
</testsuites>"#;
        let cases = parse_junit(xml).expect("parses");
        assert_eq!(
            cases,
            vec![
                (
                    "guard-tests::routes::io_uring_is_refused".to_owned(),
                    Verdict::Passed
                ),
                (
                    "guard-tests::routes::raw_sockets".to_owned(),
                    Verdict::Failed(
                        "thread panicked: [ci] 1 failures: | the raw socket was not refused"
                            .to_owned()
                    )
                ),
                ("guard-tests::routes::loader".to_owned(), Verdict::Passed),
                (
                    "guard-tests::agents::real_cli".to_owned(),
                    Verdict::Flaky("thread panicked: [claude] 1 failures: | not told".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn a_recorded_skip_is_not_a_pass() {
        let mut suite = Suite::new("e2e");
        suite.tests = vec![
            (
                "guard-tests::deny::deny_refuses".to_owned(),
                Verdict::Passed,
            ),
            ("guard-tests::deny::other".to_owned(), Verdict::Passed),
        ];
        suite.apply_skips(&[("deny_refuses".to_owned(), "no BPF-LSM".to_owned())]);
        assert_eq!((suite.passed(), suite.skipped(), suite.failed()), (1, 1, 0));
        let mut tally = Tally::default();
        tally.suites.push(suite);
        let summary = tally.summary();
        assert!(
            summary.starts_with("summary: 1 passed, 0 failed, 1 skipped"),
            "{summary}"
        );
        assert!(summary.contains("skipped e2e: guard-tests::deny::deny_refuses: no BPF-LSM"));
    }
}
