//! Problems found in a policy file, with stable codes and positions, rendered one
//! per line as `FILE:LINE:COL: error[G003]: message` (what `guard policy check`
//! prints). The codes are documented in `docs/policy.md`; never reuse a retired one.

use super::model::Pos;

/// The stable diagnostic codes. `G…` are errors (the policy is refused), `W…` are
/// warnings (the policy loads).
pub mod code {
    /// TOML syntax error.
    pub const SYNTAX: &str = "G001";
    /// Unknown key (top level, `[agents]` or a rule).
    pub const UNKNOWN_KEY: &str = "G002";
    /// A path or exe glob that does not compile or can never match a path.
    pub const BAD_GLOB: &str = "G003";
    /// A network destination that is not a host name, address, CIDR or alias with
    /// an optional port in 1..=65535.
    pub const BAD_DEST: &str = "G004";
    /// `action` is none of log, alert, kill, deny.
    pub const UNKNOWN_ACTION: &str = "G005";
    /// Two rules with the same id.
    pub const DUPLICATE_ID: &str = "G006";
    /// `kind` is missing or none of file, exec, network.
    pub const BAD_KIND: &str = "G007";
    /// A required field is missing.
    pub const MISSING: &str = "G008";
    /// A value of the wrong type or out of range.
    pub const INVALID: &str = "G009";
    /// A key that belongs to another kind of rule.
    pub const WRONG_KIND_KEY: &str = "G010";
    /// `fallback` on a rule whose action is not `deny`, or naming `deny`.
    pub const BAD_FALLBACK: &str = "G011";
    /// A rule that can never match.
    pub const NEVER_MATCHES: &str = "W101";
    /// `deny` on a file or exec rule: acts as `kill` without BPF-LSM.
    pub const DENY_NEEDS_LSM: &str = "W102";
    /// `mode = "observe"`: every action is downgraded to `log`.
    pub const OBSERVE_MODE: &str = "W103";
    /// A `deny` with a `fallback` on patterns only user space matches: there it acts
    /// as its fallback on every kernel.
    pub const FALLBACK_ALWAYS: &str = "W104";
    /// A `kill` or `deny` pattern the kernel cannot match: judged in user space,
    /// after the fact.
    pub const USER_SPACE_ONLY: &str = "W105";
}

/// How bad a diagnostic is: any error refuses the policy, warnings do not.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    /// `error` or `warning`, as rendered.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One problem in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable code from [`code`] (`G003`, `W101`, …).
    pub code: &'static str,
    /// One line, lowercase, naming the offending key or value.
    pub message: String,
    /// The start of the offending key or value.
    pub pos: Pos,
}

impl Diagnostic {
    /// An error: the policy is refused.
    pub fn error(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, pos, message.into())
    }

    /// A warning: the policy loads.
    pub fn warning(code: &'static str, pos: Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, pos, message.into())
    }

    fn new(severity: Severity, code: &'static str, pos: Pos, message: String) -> Self {
        // Rendering is one line per diagnostic, whatever a library's message holds.
        let message = if message.contains(['\n', '\r']) {
            message
                .split(['\n', '\r'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            message
        };
        Self {
            severity,
            code,
            message,
            pos,
        }
    }

    /// Whether this refuses the policy.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders diagnostics one per line, each ending in a newline:
/// `FILE:LINE:COL: error[G003]: bad glob "~/.ssh/[": …`.
pub fn render(source_name: &str, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&format!(
            "{source_name}:{}:{}: {}[{}]: {}\n",
            d.pos.line, d.pos.col, d.severity, d.code, d.message
        ));
    }
    out
}

/// The position of byte `offset` in `text`: 1-based line, 1-based column counted
/// in characters. An offset past the end is the end; one inside a character is
/// that character.
pub fn pos_at(text: &str, offset: usize) -> Pos {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line: before.matches('\n').count() + 1,
        col: before[line_start..].chars().count() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\nçé = 1\n\nx";
        assert_eq!(pos_at(text, 0), Pos { line: 1, col: 1 });
        assert_eq!(pos_at(text, 2), Pos { line: 1, col: 3 });
        assert_eq!(pos_at(text, 3), Pos { line: 2, col: 1 });
        // `ç` and `é` are two bytes each: byte 7 is the space after them.
        assert_eq!(pos_at(text, 7), Pos { line: 2, col: 3 });
        // Inside a character: that character.
        assert_eq!(pos_at(text, 4), Pos { line: 2, col: 1 });
        assert_eq!(pos_at(text, 12), Pos { line: 3, col: 1 });
        assert_eq!(pos_at(text, 13), Pos { line: 4, col: 1 });
        assert_eq!(pos_at(text, 999), Pos { line: 4, col: 2 });
        assert_eq!(pos_at("", 5), Pos { line: 1, col: 1 });
    }

    #[test]
    fn renders_one_line_each() {
        let diags = [
            Diagnostic::error(
                code::BAD_GLOB,
                Pos { line: 3, col: 10 },
                "bad glob \"~/.ssh/[\": unclosed",
            ),
            Diagnostic::warning(code::OBSERVE_MODE, Pos { line: 1, col: 8 }, "observe mode"),
        ];
        assert_eq!(
            render("guard.toml", &diags),
            "guard.toml:3:10: error[G003]: bad glob \"~/.ssh/[\": unclosed\n\
             guard.toml:1:8: warning[W103]: observe mode\n"
        );
        assert_eq!(render("guard.toml", &[]), "");
    }

    #[test]
    fn messages_are_kept_to_one_line() {
        let d = Diagnostic::error(
            code::INVALID,
            Pos::default(),
            "regex parse error:\n    (\n    ^\nerror: unclosed group",
        );
        assert_eq!(d.message, "regex parse error: ( ^ error: unclosed group");
        assert!(d.is_error());
        assert!(!Diagnostic::warning(code::NEVER_MATCHES, Pos::default(), "x").is_error());
    }
}
