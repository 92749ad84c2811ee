//! Protected files by identity, as the policy names them: the concrete files and
//! directories file rules name ([`Target`], compiled by `tables`), what the set the
//! daemon installs holds ([`Summary`]), and the path an open by identity stands for
//! ([`canonical`]). Resolving targets to (device, inode) and keeping the set
//! current is the daemon's (`guard::identity`).

use std::path::{Path, PathBuf};

use guard_common::RuleRef;

/// A concrete file or directory a file rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The path, as the policy expands it (no trailing slash).
    pub path: PathBuf,
    /// `inode_kind::FILE` (the file itself) or `TREE` (everything under the directory).
    pub kind: u8,
    /// The entry's value: the rule's path entry (verdict, scope, accesses), without
    /// a verdict for rules the kernel does not enforce (then only reported).
    pub value: RuleRef,
    /// A candidate that may well not exist (a program name looked for in each
    /// standard directory): not reported missing.
    pub optional: bool,
    /// For a directory the kernel enforces a rule on: the rule's exceptions
    /// (expanded patterns), whose files inside it are not its members.
    pub except: Vec<String>,
}

/// What the identity set holds, for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: usize,
    /// Paths past a bound: entries not installed (they match by path only), and
    /// directories of rules past [`IDENTITY_UNKNOWN_MAX`](guard_common::rules::IDENTITY_UNKNOWN_MAX) (an open too deep to
    /// place is not failed closed for them).
    pub over: Vec<String>,
    pub missing: usize,
    /// Rules a too-deep open is judged by ([`inode_kind::UNKNOWN`](guard_common::rules::inode_kind::UNKNOWN) entries).
    pub fail_closed: usize,
    /// Of `entries`, the files inside protected directories.
    pub members: usize,
}

/// The path an open by identity stands for: the protected entry's path, then the
/// last `up` components of the path it was opened at.
pub fn canonical(protected: &Path, opened: &str, up: u16) -> String {
    let mut parts: Vec<&str> = opened
        .rsplit('/')
        .filter(|c| !c.is_empty())
        .take(usize::from(up))
        .collect();
    parts.reverse();
    let mut out = protected.display().to_string();
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    out
}
