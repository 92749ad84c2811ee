//! Secrets never leave the host in clear: before an event is written anywhere (the
//! audit log, the control socket, reports, the export), command lines lose what
//! looks like a credential, each value replaced by [`REDACTED`]. The judge sees the
//! command line as it was (a rule may be about a token's presence); everything
//! written after it sees the redacted one, and the event says it was redacted.
//!
//! What is recognised (docs/export.md, "Redaction"): `Authorization`-like headers
//! and `Bearer` tokens; `--password=…`, `--token …` and their kin; `-p<pass>` for the
//! MySQL clients; `user:pass@` in URLs; `NAME=VALUE` where the name says token,
//! secret, key or password; and the shapes of AWS, GitHub, OpenAI, Anthropic,
//! Google and Slack keys, private keys and JWTs. `[redact] patterns` adds more.

use regex::{Regex, RegexSet};

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Options whose value is a secret, as `--opt=VALUE` or `--opt VALUE`.
const SECRET_OPTIONS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "token",
    "secret",
    "api-key",
    "apikey",
    "api_key",
    "access-token",
    "auth-token",
    "client-secret",
    "private-key",
    "secret-key",
    "access-key",
];

/// Header names whose value is a credential (`-H "Name: value"`).
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-auth-token",
    "cookie",
    "private-token",
];

/// Programs whose `-pSECRET` is a password (everywhere else `-p` is a port, a
/// parent, a profile…).
const MYSQL_CLIENTS: &[&str] = &[
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mariadb",
    "mariadb-dump",
];

/// Key shapes redacted wherever they appear (the whole match).
const KEY_SHAPES: &[&str] = &[
    // AWS access key ids.
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
    // GitHub tokens.
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
    // Anthropic, then OpenAI (sk-…, sk-proj-…).
    r"\bsk-ant-[A-Za-z0-9_\-]{16,}",
    r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
    // Google API keys.
    r"\bAIza[0-9A-Za-z_\-]{35}\b",
    // Slack tokens.
    r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    // JSON Web Tokens.
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    // PEM private keys passed inline.
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
];

/// Redacts command lines.
pub struct Redactor {
    enabled: bool,
    /// `NAME=VALUE` with a secret's name: the value.
    assignment: Regex,
    /// `scheme://user:pass@`: the password.
    userinfo: Regex,
    /// `Bearer TOKEN`, `Basic TOKEN`: the token.
    bearer: Regex,
    /// A header line `Name: value` with a secret's name: the value.
    header: Regex,
    /// `--option=VALUE` with a secret's name: the value.
    option_eq: Regex,
    /// The shapes of keys: the whole match.
    shapes: Vec<Regex>,
    shape_set: RegexSet,
    /// `[redact] patterns`: the `secret` group, else the whole match.
    extra: Vec<Regex>,
}

impl Redactor {
    /// A redactor with the built-in rules and `patterns` (already checked by the
    /// policy parser); `enabled = false` changes nothing.
    pub fn new(enabled: bool, patterns: &[String]) -> Redactor {
        let options = SECRET_OPTIONS.join("|");
        let headers = SECRET_HEADERS.join("|");
        // The built-in expressions are fixed and tested: they compile.
        let re = |p: &str| Regex::new(p).unwrap_or_else(|_| Regex::new("$^").expect("empty"));
        Redactor {
            enabled,
            assignment: re(
                r#"(?i)\b([A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|PWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?|_KEY)[A-Z0-9_]*)=['"]?([^\s&;'"]+)"#,
            ),
            userinfo: re(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+):([^@\s/]+)@"),
            bearer: re(r"(?i)\b(Bearer|Basic|Token)\s+([A-Za-z0-9._~+/=\-]{8,})"),
            header: re(&format!(r"(?i)\b({headers})\s*:\s*(.+)")),
            option_eq: re(&format!(r"(?i)^(--?(?:{options}))=(.+)$")),
            shapes: KEY_SHAPES.iter().map(|p| re(p)).collect(),
            shape_set: RegexSet::new(KEY_SHAPES).unwrap_or_else(|_| RegexSet::empty()),
            extra: patterns.iter().filter_map(|p| Regex::new(p).ok()).collect(),
        }
    }

    /// Redacts `argv` in place; true when anything was redacted.
    pub fn argv(&self, argv: &mut [String]) -> bool {
        if !self.enabled {
            return false;
        }
        let program = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
            .unwrap_or_default();
        let mysql = MYSQL_CLIENTS.contains(&program.as_str());
        let mut changed = false;
        let mut next_is_secret = false;
        for arg in argv.iter_mut() {
            if next_is_secret {
                next_is_secret = false;
                if !arg.starts_with('-') || arg.len() > 1 {
                    *arg = REDACTED.to_owned();
                    changed = true;
                    continue;
                }
            }
            let bare = arg.trim_start_matches('-').to_ascii_lowercase();
            if arg.starts_with("--") && SECRET_OPTIONS.contains(&bare.as_str()) {
                // `--password VALUE`: the next argument.
                next_is_secret = true;
                continue;
            }
            if mysql && arg.starts_with("-p") && arg.len() > 2 && !arg.starts_with("--") {
                *arg = format!("-p{REDACTED}");
                changed = true;
                continue;
            }
            if let Some(new) = self.text(arg) {
                *arg = new;
                changed = true;
            }
        }
        changed
    }

    /// `text` with every secret in it redacted; `None` when there was none.
    pub fn text(&self, text: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let mut out = text.to_owned();
        let mut changed = false;
        let mut apply = |re: &Regex, group: usize, out: &mut String| {
            if !re.is_match(out) {
                return;
            }
            let replaced = re
                .replace_all(out, |c: &regex::Captures<'_>| {
                    let whole = c.get(0).map_or("", |m| m.as_str());
                    match c.get(group) {
                        Some(secret) if group > 0 => {
                            let start = secret.start() - c.get(0).map_or(0, |m| m.start());
                            format!(
                                "{}{REDACTED}{}",
                                &whole[..start],
                                &whole[start + secret.as_str().len()..]
                            )
                        }
                        _ => REDACTED.to_owned(),
                    }
                })
                .into_owned();
            if replaced != *out {
                *out = replaced;
                changed = true;
            }
        };
        apply(&self.header, 2, &mut out);
        apply(&self.bearer, 2, &mut out);
        apply(&self.option_eq, 2, &mut out);
        apply(&self.userinfo, 2, &mut out);
        apply(&self.assignment, 2, &mut out);
        if self.shape_set.is_match(&out) {
            for re in &self.shapes {
                apply(re, 0, &mut out);
            }
        }
        for re in &self.extra {
            let group = re
                .capture_names()
                .position(|n| n == Some("secret"))
                .unwrap_or(0);
            apply(re, group, &mut out);
        }
        changed.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(argv: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        Redactor::new(true, &[]).argv(&mut v);
        v
    }

    /// Real-world shapes: each row is a command line and what it must become.
    #[test]
    fn credentials_in_command_lines_are_redacted() {
        let table: &[(&[&str], &[&str])] = &[
            (
                &[
                    "curl",
                    "-H",
                    "Authorization: Bearer ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                    "https://api.github.com",
                ],
                &[
                    "curl",
                    "-H",
                    "Authorization: [REDACTED]",
                    "https://api.github.com",
                ],
            ),
            (
                &[
                    "curl",
                    "-H",
                    "x-api-key: sk-ant-api03-abcdefghijklmnopqrstuv",
                    "https://api.anthropic.com",
                ],
                &[
                    "curl",
                    "-H",
                    "x-api-key: [REDACTED]",
                    "https://api.anthropic.com",
                ],
            ),
            (
                &[
                    "sh",
                    "-c",
                    "curl -s -H \"Authorization: Bearer abc.def.ghijklmnop\" http://x",
                ],
                &["sh", "-c", "curl -s -H \"Authorization: [REDACTED]"],
            ),
            (
                &["psql", "--password=hunter2", "-h", "db"],
                &["psql", "--password=[REDACTED]", "-h", "db"],
            ),
            (
                &["vault", "login", "--token", "s.abcdef123456"],
                &["vault", "login", "--token", "[REDACTED]"],
            ),
            (
                &["mysql", "-uroot", "-phunter2", "app"],
                &["mysql", "-uroot", "-p[REDACTED]", "app"],
            ),
            (&["mkdir", "-p", "build"], &["mkdir", "-p", "build"]),
            (
                &[
                    "git",
                    "clone",
                    "https://alice:ghp_0123456789abcdefghijklmnopqrstuvwxyz@github.com/acme/app",
                ],
                &[
                    "git",
                    "clone",
                    "https://alice:[REDACTED]@github.com/acme/app",
                ],
            ),
            (
                &[
                    "env",
                    "GITHUB_TOKEN=ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                    "make",
                ],
                &["env", "GITHUB_TOKEN=[REDACTED]", "make"],
            ),
            (
                &[
                    "env",
                    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "aws",
                    "s3",
                    "ls",
                ],
                &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]", "aws", "s3", "ls"],
            ),
            (
                &[
                    "aws",
                    "configure",
                    "set",
                    "aws_access_key_id",
                    "AKIAIOSFODNN7EXAMPLE",
                ],
                &["aws", "configure", "set", "aws_access_key_id", "[REDACTED]"],
            ),
            (
                &[
                    "python3",
                    "-c",
                    "openai.api_key='sk-proj-abcdefghijklmnopqrstuvwxyz012345'",
                ],
                &["python3", "-c", "openai.api_key='[REDACTED]'"],
            ),
            (
                &["echo", "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234"],
                &["echo", "[REDACTED]"],
            ),
            (
                &["slack", "xoxb-123456789012-abcdefghij"],
                &["slack", "[REDACTED]"],
            ),
            (
                &[
                    "jwt",
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop",
                ],
                &["jwt", "[REDACTED]"],
            ),
            (
                &["cargo", "test", "--release"],
                &["cargo", "test", "--release"],
            ),
            (&["ls", "-la", "/home/alice"], &["ls", "-la", "/home/alice"]),
        ];
        for (argv, want) in table {
            let got = redacted(argv);
            let want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
            if argv[0] == "sh" {
                // Inside a shell script: the header's value is gone, whatever follows.
                assert!(
                    got[2].starts_with(&want[2]) && !got[2].contains("abc.def"),
                    "{got:?}"
                );
                continue;
            }
            assert_eq!(got, want, "{argv:?}");
        }
    }

    #[test]
    fn policy_patterns_redact_their_secret_group_and_off_changes_nothing() {
        let r = Redactor::new(true, &[r"ticket-(?P<secret>[0-9]{6})".to_owned()]);
        assert_eq!(
            r.text("see ticket-123456 now").as_deref(),
            Some("see ticket-[REDACTED] now")
        );
        let off = Redactor::new(false, &[]);
        let mut argv = vec![
            "curl".to_owned(),
            "-H".to_owned(),
            "Authorization: Bearer abcdefghij".to_owned(),
        ];
        assert!(!off.argv(&mut argv));
        assert_eq!(argv[2], "Authorization: Bearer abcdefghij");
    }
}
