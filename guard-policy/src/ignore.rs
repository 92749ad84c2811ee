//! A repository's ignore files as file rules: what the committed tree says must
//! not be read ([`Ignored`], read by the daemon from `HEAD`), and the globs the
//! judge makes of its gitignore patterns, anchored at the repository's root.

use std::path::{Path, PathBuf};

/// What a repository's committed tree says must not be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ignored {
    /// The repository's work tree (absolute).
    pub root: PathBuf,
    /// The ignore files found at `HEAD`, by name.
    pub files: Vec<String>,
    /// Their patterns, then the policy's, as gitignore writes them.
    pub patterns: Vec<String>,
    /// What was left out, for the log (a file too large, a pattern guard cannot
    /// read).
    pub notes: Vec<String>,
}

/// `text` with glob metacharacters escaped (a repository's path is literal).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The globs of `patterns` (gitignore's) in the repository at `root`, as file rules
/// write them: what they ignore (`paths`), and their `!` exceptions (`except`). A
/// pattern guard's globs cannot express (`.` or `..` as a component) is left out.
pub fn globs(root: &Path, patterns: &[String]) -> (Vec<String>, Vec<String>) {
    let base = escape(&root.display().to_string());
    let base = base.trim_end_matches('/');
    let (mut paths, mut except) = (Vec::new(), Vec::new());
    for line in patterns {
        let mut p = line.trim_end();
        let negated = p.starts_with('!');
        // `!` negates; `\!` and `\#` are a literal first `!` or `#`.
        if negated || p.starts_with("\\!") || p.starts_with("\\#") {
            p = &p[1..];
        }
        let dir_only = p.ends_with('/');
        let p = p.trim_end_matches('/');
        if p.is_empty() || p.split('/').any(|c| c == "." || c == "..") {
            continue;
        }
        // A `/` before the end anchors the pattern at the root; without one, it
        // matches at any depth.
        let glob = match p.strip_prefix('/') {
            Some(anchored) => format!("{base}/{anchored}"),
            None if p.contains('/') => format!("{base}/{p}"),
            None => format!("{base}/**/{p}"),
        };
        if glob.contains("//") {
            continue;
        }
        let builds = |g: &str| {
            globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .is_ok()
        };
        if !builds(&glob) {
            continue;
        }
        let list = if negated { &mut except } else { &mut paths };
        if !dir_only {
            list.push(glob.clone());
        }
        list.push(format!("{glob}/**"));
    }
    (paths, except)
}
