//! Path patterns, programs (`exe`) and regexes, checked the way the matcher
//! compiles them.

use globset::GlobBuilder;

use crate::diag::code;
use crate::glob;

/// `~` when checking globs ([`glob::expand`] the way the matcher does): any
/// absolute directory does.
const CHECK_HOME: &str = "/home/user";

/// Why a file rule's pattern is unusable, if it is.
pub(super) fn check_path_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty".to_owned());
    }
    if pattern.starts_with('~') && pattern != "~" && !pattern.starts_with("~/") {
        return Err("only `~/` (the agent user's home) is supported, not `~user`".to_owned());
    }
    if pattern.len() > 1 && pattern.ends_with('/') {
        return Err(format!(
            "a path never ends in `/`: write \"{pattern}**\" for everything below it"
        ));
    }
    if pattern.contains("//") {
        return Err("empty path component (`//`)".to_owned());
    }
    if pattern.split('/').any(|c| c == "." || c == "..") {
        return Err("paths are matched resolved: `.` and `..` never appear in them".to_owned());
    }
    for expanded in glob::expand(pattern, &[CHECK_HOME.to_owned()]) {
        GlobBuilder::new(&expanded)
            .literal_separator(true)
            .build()
            .map_err(|e| e.kind().to_string())?;
    }
    Ok(())
}

/// Whether the kernel decides a file rule's pattern itself (as one of its
/// exceptions with `except`): what the kernel cannot match is judged in user
/// space, after the open (`policy::tables`).
pub(super) fn kernel_decides(pattern: &str, except: bool) -> bool {
    glob::expand(pattern, &[CHECK_HOME.to_owned()])
        .iter()
        .all(|e| glob::kernel_decides(e, except))
}

/// Whether the kernel decides an exec rule's `exe` entry itself: a name or an
/// absolute path, not a glob (`policy::tables`).
pub(super) fn kernel_decides_exe(exe: &str) -> bool {
    !exe.contains(['*', '?', '[', '{']) && exe.len() <= glob::KERNEL_KEY_BYTES
}

/// Why an `exe` entry is unusable: a program name or an absolute path, either of
/// which may be a glob.
pub(super) fn check_exe(exe: &str) -> Result<(), (&'static str, String)> {
    if exe.is_empty() {
        return Err((code::INVALID, "`exe` entry is empty".to_owned()));
    }
    if exe.contains('/') && !exe.starts_with('/') {
        return Err((
            code::INVALID,
            format!(
                "`exe` entry {exe:?} must be a program name (\"git\") or an absolute path (\"/usr/bin/git\")"
            ),
        ));
    }
    if exe.ends_with('/') {
        return Err((
            code::INVALID,
            format!("`exe` entry {exe:?} names a directory, not a program"),
        ));
    }
    GlobBuilder::new(exe)
        .literal_separator(true)
        .build()
        .map(drop)
        .map_err(|e| (code::BAD_GLOB, format!("bad glob {exe:?}: {}", e.kind())))
}

/// The one-line reason of a regex error (its `Display` draws the pattern with a
/// caret over several lines).
pub(super) fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.clone(), str::to_owned)
}
