//! Syntax-error recovery: each TOML syntax error is reported once, and the
//! statement it is in is blanked out so the rest of the file is still checked.

use std::collections::HashSet;
use std::ops::Range;

use toml::de::DeTable;

use super::Checker;
use crate::diag::code;

/// More passes than this and syntax recovery gives up (a file that bad has been
/// reported enough).
const MAX_SYNTAX_PASSES: usize = 64;

impl Checker<'_> {
    /// Reports the TOML syntax errors and returns a text of the same length the
    /// rest of the checks can read: where the parser stumbled, the statement it
    /// stumbled on is blanked out and the text parsed again, so that one error
    /// neither hides the problems after it nor produces a cascade of false ones.
    pub(super) fn recover(&mut self) -> String {
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
    pub(super) fn damaged(&self, span: Range<usize>) -> bool {
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
}

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
pub(super) fn statement_at(text: &str, at: usize) -> Range<usize> {
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
pub(super) fn blank(text: &str, range: Range<usize>) -> String {
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
