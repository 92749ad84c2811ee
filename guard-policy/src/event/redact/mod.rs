//! Secrets never leave the host in clear: before an event is written anywhere (the
//! audit log, the control socket, reports, the export), command lines lose what
//! looks like a credential, each value replaced by [`REDACTED`]. The judge sees the
//! command line as it was (a rule may be about a token's presence); everything
//! written after it sees the redacted one, and the event says it was redacted.
//!
//! What is recognised (docs/export.md, "Redaction"): `Authorization`-like headers
//! and `Bearer` tokens; `--password=…`, `--token …` and their kin; `-p<pass>` after a
//! MySQL client's name, `-p <pass>` after `sshpass`'s, `-u user:<pass>` after
//! `curl`'s; `user:pass@` in URLs; `NAME=VALUE` where the name says token, secret,
//! key or password; and the shapes of AWS, GitHub, OpenAI, Anthropic, Google and
//! Slack keys, private keys and JWTs. `[redact] patterns` adds more.
//!
//! The same rules hold inside shell scripts, which is how agents run commands
//! (`bash -lc "<cmd>"`, `sh -c`, `su -c`, `eval`, `ssh host "<cmd>"`, here-documents,
//! `$(…)`): the script is split into its commands and words ([`shell`]), each command
//! is read like an argv, and each secret found in a word is cut from the script at
//! the bytes it came from. Only the secret goes: the rest of the script, its quotes
//! included, is kept byte for byte.

mod shell;

use std::ops::Range;

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
    // wget's.
    "http-password",
    "ftp-password",
    "proxy-password",
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
    "mysqlimport",
    "mysqlshow",
    "mysqlcheck",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
];

/// Shells whose `-c` takes a script (the first operand after the options).
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "lksh", "oksh", "ash", "yash", "posh", "rbash",
    "fish",
];

/// Programs whose `-c`/`--command` takes a script for a shell they start.
const COMMAND_OPTION: &[&str] = &["su", "runuser", "flock", "script"];

/// Options of `ssh` that take an argument (its operands: the host, then the remote
/// command, which the remote shell reads as a script).
const SSH_ARGUMENT_OPTIONS: &str = "BbcDEeFIiJLlmOopQRSWw";

/// Names that match the secret-name rule and are not secrets: the shell's working
/// directories.
const NOT_SECRET_NAMES: &[&str] = &["PWD", "OLDPWD"];

/// How deep scripts inside scripts are read (`sh -c "bash -c '…'"`, `$(…)`).
const MAX_DEPTH: usize = 8;

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

/// A regular expression and what of its match is the secret.
struct Rule {
    re: Regex,
    /// The capture group that is the secret; 0: the whole match.
    group: usize,
    /// The group holding a variable's name, checked against [`NOT_SECRET_NAMES`].
    name: Option<usize>,
}

/// Rules with a set that tells which of them match (most text matches none).
struct Rules {
    rules: Vec<Rule>,
    /// `None` if the set could not be built: then every rule is tried.
    set: Option<RegexSet>,
}

impl Rules {
    fn new(rules: Vec<Rule>) -> Self {
        let set = RegexSet::new(rules.iter().map(|r| r.re.as_str())).ok();
        Self { rules, set }
    }

    /// Pushes the secrets the rules find in `text` (ranges of `text`).
    fn find(&self, text: &str, out: &mut Vec<Range<usize>>) {
        let mut one = |rule: &Rule| {
            for c in rule.re.captures_iter(text) {
                if let Some(name) = rule.name.and_then(|n| c.get(n))
                    && NOT_SECRET_NAMES
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(name.as_str()))
                {
                    continue;
                }
                if let Some(m) = c.get(rule.group)
                    && !m.is_empty()
                {
                    out.push(m.range());
                }
            }
        };
        match &self.set {
            // Most text matches none: that answer is twice as quick as which.
            Some(set) if !set.is_match(text) => {}
            Some(set) => {
                for i in set.matches(text).iter() {
                    one(&self.rules[i]);
                }
            }
            None => self.rules.iter().for_each(one),
        }
    }
}

/// What the next word of a command is, by the word before it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Next {
    #[default]
    Word,
    /// A secret as a whole (`--password VALUE`, `sshpass -p VALUE`).
    Secret,
    /// `user:password` (`curl -u`): what follows the first colon.
    UserPassword,
    /// A shell script (`su -c SCRIPT`).
    Script,
    /// An option's argument, nothing to read (`bash -o pipefail`).
    Skip,
}

/// Where a command is, past a program that runs what follows it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Plain,
    /// Past a shell's name: its options; `script`: `-c` was among them.
    ShellOptions { script: bool },
    /// Past `ssh`'s name: its options, then the host.
    SshOptions,
    /// Past the host: every word with a space or an operator in it is a script.
    SshRemote,
    /// Past `eval`: every word is a script.
    Eval,
}

/// Redacts command lines.
pub struct Redactor {
    enabled: bool,
    /// Rules for one word (an argument, a word of a script, a line of a
    /// here-document): a header's value runs to the word's end.
    word: Rules,
    /// Rules for a whole script, whose matches are delimited by their own shape:
    /// key shapes, `Bearer` tokens, `[redact] patterns` (they also find secrets in
    /// comments and across words).
    raw: Rules,
}

impl Redactor {
    /// A redactor with the built-in rules and `patterns` (already checked by the
    /// policy parser); `enabled = false` changes nothing.
    pub fn new(enabled: bool, patterns: &[String]) -> Self {
        let options = SECRET_OPTIONS.join("|");
        let headers = SECRET_HEADERS.join("|");
        let names = r"[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|PWD|API_?KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?|_KEY)[A-Z0-9_]*";
        // The built-in expressions are fixed and tested: they compile.
        let rule = |p: &str, group: usize, name: Option<usize>| Rule {
            re: Regex::new(p).unwrap_or_else(|_| Regex::new("$^").expect("empty")),
            group,
            name,
        };
        let bearer = r"\b(?:(?i:bearer)|Basic|Token)\s+([A-Za-z0-9._~+/=\-]{8,})";
        let shapes = || KEY_SHAPES.iter().map(|p| rule(p, 0, None));
        let extra = || {
            patterns.iter().filter_map(|p| {
                let re = Regex::new(p).ok()?;
                let group = re
                    .capture_names()
                    .position(|n| n == Some("secret"))
                    .unwrap_or(0);
                Some(Rule {
                    re,
                    group,
                    name: None,
                })
            })
        };
        let mut word = vec![
            // `Authorization: VALUE`: the value, to the end of the word or line.
            rule(&format!(r"(?i)\b(?:{headers})\s*:\s*(.+)"), 1, None),
            rule(bearer, 1, None),
            rule(&format!(r"(?is)^--?(?:{options})=(.+)$"), 1, None),
            // `scheme://user:pass@`: the password.
            rule(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:([^@\s/]+)@", 1, None),
            // `NAME=VALUE` anywhere in the text (up to a space or a quote)…
            rule(&format!(r#"(?i)\b({names})=['"]?([^\s&;'"]+)"#), 2, Some(1)),
            // …and a word that is such an assignment: all of its value.
            rule(&format!(r"(?is)^({names})=(.+)$"), 2, Some(1)),
        ];
        word.extend(shapes());
        word.extend(extra());
        let mut raw = vec![rule(bearer, 1, None)];
        raw.extend(shapes());
        raw.extend(extra());
        Self {
            enabled,
            word: Rules::new(word),
            raw: Rules::new(raw),
        }
    }

    /// Redacts `argv` in place; true when anything was redacted.
    pub fn argv(&self, argv: &mut [String]) -> bool {
        if !self.enabled {
            return false;
        }
        let mut cuts = Vec::new();
        self.command(argv, 0, &mut cuts);
        if cuts.is_empty() {
            return false;
        }
        let mut changed = false;
        for (i, arg) in argv.iter_mut().enumerate() {
            let mine = cuts
                .iter()
                .filter(|(word, _)| *word == i)
                .map(|(_, r)| r.clone())
                .collect();
            if let Some(new) = splice(arg, mine) {
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
        let mut cuts = Vec::new();
        self.word.find(text, &mut cuts);
        self.raw.find(text, &mut cuts);
        splice(text, cuts)
    }

    /// The secrets of one command (`words`, its argv): (word, range of the word).
    #[expect(
        clippy::too_many_lines,
        reason = "one pass over argv: the mode and the next word's role carry from word to word"
    )]
    fn command<W: AsRef<str>>(
        &self,
        words: &[W],
        depth: usize,
        cuts: &mut Vec<(usize, Range<usize>)>,
    ) {
        let mut next = Next::Word;
        let mut mode = Mode::Plain;
        let (mut mysql, mut curl, mut sshpass, mut command_option) = (false, false, false, false);
        for (i, word) in words.iter().enumerate() {
            let w = word.as_ref();
            let script = |src: &str, cuts: &mut Vec<(usize, Range<usize>)>| {
                let mut found = Vec::new();
                self.script(src, depth + 1, &mut found);
                cuts.extend(found.into_iter().map(|r| (i, r)));
            };
            match std::mem::take(&mut next) {
                Next::Word => {}
                Next::Secret => {
                    if !w.is_empty() && w != "-" {
                        cuts.push((i, 0..w.len()));
                    }
                    continue;
                }
                Next::UserPassword => {
                    if let Some(colon) = w.find(':')
                        && colon + 1 < w.len()
                    {
                        cuts.push((i, colon + 1..w.len()));
                    }
                    continue;
                }
                Next::Script => {
                    script(w, cuts);
                    continue;
                }
                Next::Skip => continue,
            }
            match mode {
                // An option is one word of its own: a word with a space or an
                // operator in it is the script, whatever it starts with.
                Mode::ShellOptions { script: has_c } if !is_script_like(w) => {
                    if let Some(long) = w.strip_prefix("--") {
                        next = match long {
                            "rcfile" | "init-file" => Next::Skip,
                            _ => Next::Word,
                        };
                        if long.is_empty() {
                            mode = Mode::Plain;
                            if has_c {
                                next = Next::Script;
                            }
                        } else if long == "command" {
                            mode = Mode::ShellOptions { script: true };
                        }
                        continue;
                    }
                    if (w.starts_with('-') || w.starts_with('+')) && w.len() > 1 {
                        let letters = &w[1..];
                        if w.starts_with('-') && letters.contains('c') {
                            mode = Mode::ShellOptions { script: true };
                        }
                        if letters.contains(['o', 'O']) {
                            next = Next::Skip;
                        }
                        continue;
                    }
                    mode = Mode::Plain;
                    if has_c {
                        script(w, cuts);
                        continue;
                    }
                    // A script file: its arguments follow.
                }
                Mode::SshOptions => {
                    if let Some(letters) = w.strip_prefix('-')
                        && !letters.is_empty()
                    {
                        // The first letter that takes an argument takes the rest of
                        // the word, or the next word.
                        if let Some(at) = letters.find(|c| SSH_ARGUMENT_OPTIONS.contains(c))
                            && at + 1 == letters.len()
                        {
                            next = Next::Skip;
                        }
                        continue;
                    }
                    mode = Mode::SshRemote;
                    continue;
                }
                Mode::ShellOptions { script: true } => {
                    mode = Mode::Plain;
                    script(w, cuts);
                    continue;
                }
                Mode::ShellOptions { script: false } => mode = Mode::Plain,
                Mode::SshRemote => {
                    if is_script_like(w) {
                        script(w, cuts);
                        continue;
                    }
                }
                Mode::Eval => {
                    script(w, cuts);
                    continue;
                }
                Mode::Plain => {}
            }
            let program = w.rsplit('/').next().unwrap_or(w);
            if SHELLS.contains(&program) {
                mode = Mode::ShellOptions { script: false };
                continue;
            }
            match program {
                "ssh" => {
                    mode = Mode::SshOptions;
                    continue;
                }
                "eval" => {
                    mode = Mode::Eval;
                    continue;
                }
                "curl" => curl = true,
                "sshpass" => sshpass = true,
                _ if MYSQL_CLIENTS.contains(&program) => mysql = true,
                _ if COMMAND_OPTION.contains(&program) => command_option = true,
                _ => {}
            }
            if let Some(long) = w.strip_prefix("--") {
                if SECRET_OPTIONS.iter().any(|o| o.eq_ignore_ascii_case(long)) {
                    next = Next::Secret;
                    continue;
                }
                if command_option && matches!(long, "command" | "session-command") {
                    next = Next::Script;
                    continue;
                }
                if curl && matches!(long, "user" | "proxy-user") {
                    next = Next::UserPassword;
                    continue;
                }
                if curl && let Some(value) = long.strip_prefix("user=") {
                    if let Some(colon) = value.find(':')
                        && colon + 1 < value.len()
                    {
                        let start = 2 + "user=".len() + colon + 1;
                        cuts.push((i, start..w.len()));
                    }
                    continue;
                }
            } else if let Some(short) = w.strip_prefix('-') {
                if mysql && short.len() > 1 && short.starts_with('p') {
                    cuts.push((i, 2..w.len()));
                    continue;
                }
                if sshpass && short.starts_with('p') {
                    if short.len() == 1 {
                        next = Next::Secret;
                    } else {
                        cuts.push((i, 2..w.len()));
                    }
                    continue;
                }
                if curl && (short.starts_with('u') || short.starts_with('U')) {
                    if short.len() == 1 {
                        next = Next::UserPassword;
                    } else if let Some(colon) = short.find(':')
                        && colon + 1 < short.len()
                    {
                        cuts.push((i, 1 + colon + 1..w.len()));
                    }
                    continue;
                }
                if command_option && short == "c" {
                    next = Next::Script;
                    continue;
                }
            }
            let mut found = Vec::new();
            self.word.find(w, &mut found);
            cuts.extend(found.into_iter().map(|r| (i, r)));
        }
    }

    /// The secrets of a shell script (ranges of `src`).
    fn script(&self, src: &str, depth: usize, out: &mut Vec<Range<usize>>) {
        self.raw.find(src, out);
        if depth > MAX_DEPTH {
            self.word.find(src, out);
            return;
        }
        let parsed = shell::parse(src);
        let mut cuts = Vec::new();
        for command in &parsed.commands {
            cuts.clear();
            self.command(&command.words, depth, &mut cuts);
            out.extend(
                cuts.drain(..)
                    .filter_map(|(i, r)| command.words.get(i)?.source(r)),
            );
            for word in &command.others {
                let mut found = Vec::new();
                self.word.find(word.value(), &mut found);
                out.extend(found.into_iter().filter_map(|r| word.source(r)));
            }
        }
        let mut found = Vec::new();
        for body in &parsed.bodies {
            // Line by line as text (a header's value runs to the end of its line),
            // and as a script (a here-document fed to a shell).
            let mut at = body.start;
            for line in src[body.clone()].split_inclusive('\n') {
                found.clear();
                self.word.find(line.trim_end_matches('\n'), &mut found);
                out.extend(found.iter().map(|r| r.start + at..r.end + at));
                at += line.len();
            }
            found.clear();
            self.script(&src[body.clone()], depth + 1, &mut found);
            out.extend(
                found
                    .iter()
                    .map(|r| r.start + body.start..r.end + body.start),
            );
        }
        for nested in &parsed.nested {
            found.clear();
            self.script(&src[nested.clone()], depth + 1, &mut found);
            out.extend(
                found
                    .iter()
                    .map(|r| r.start + nested.start..r.end + nested.start),
            );
        }
    }
}

/// Whether `word` holds more than one word of a shell (a space, an operator, a
/// quote): a script rather than an option or a program.
fn is_script_like(word: &str) -> bool {
    word.contains([
        ' ', '\t', '\n', ';', '|', '&', '<', '>', '(', ')', '$', '`', '\'', '"',
    ])
}

impl AsRef<str> for shell::Word {
    fn as_ref(&self) -> &str {
        self.value()
    }
}

/// `text` with each of `cuts` (ranges of it; overlapping and touching ones as one)
/// replaced by [`REDACTED`]; `None` when there is none.
fn splice(text: &str, mut cuts: Vec<Range<usize>>) -> Option<String> {
    cuts.retain(|r| {
        !r.is_empty()
            && r.end <= text.len()
            && text.is_char_boundary(r.start)
            && text.is_char_boundary(r.end)
    });
    if cuts.is_empty() {
        return None;
    }
    cuts.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut current: Option<Range<usize>> = None;
    for cut in cuts {
        match &mut current {
            Some(c) if cut.start <= c.end => c.end = c.end.max(cut.end),
            _ => {
                if let Some(c) = current.take() {
                    out.push_str(&text[at..c.start]);
                    out.push_str(REDACTED);
                    at = c.end;
                }
                current = Some(cut);
            }
        }
    }
    if let Some(c) = current {
        out.push_str(&text[at..c.start]);
        out.push_str(REDACTED);
        at = c.end;
    }
    out.push_str(&text[at..]);
    (out != text).then_some(out)
}

#[cfg(test)]
mod tests;
