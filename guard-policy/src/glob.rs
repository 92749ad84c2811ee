//! How policy path patterns read, in one place: the user-space matcher and the
//! kernel compiler both start here.
//!
//! - `~/x` is `x` under a user's home (every local user's, see [`homes`]);
//! - an absolute pattern is matched against the whole path;
//! - a pattern without `/` matches the file name in any directory (`.env`, `*.pem`);
//! - a relative pattern with `/` matches at any depth (`.git/hooks/**`).
//!
//! `*` and `?` never cross `/`; `**` does.

/// The shapes the kernel can match itself (LPM tries over whole paths, file names
/// and reversed file names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelShape {
    /// `/dir/**`: every path under `/dir/` (stored with its trailing slash).
    Prefix(String),
    /// An absolute path without wildcards.
    Exact(String),
    /// A file name without wildcards.
    Name(String),
    /// `name*`: file names starting with it.
    NamePrefix(String),
    /// `*suffix`: file names ending with it.
    NameSuffix(String),
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

/// Expands `~` and anchors a pattern; one pattern may become several (one per home).
pub fn expand(pattern: &str, homes: &[String]) -> Vec<String> {
    if let Some(rest) = pattern.strip_prefix("~/") {
        homes
            .iter()
            .map(|h| format!("{}/{rest}", h.trim_end_matches('/')))
            .collect()
    } else if pattern == "~" {
        homes.to_vec()
    } else if pattern.starts_with('/') || pattern.starts_with("**/") {
        vec![pattern.to_owned()]
    } else {
        vec![format!("**/{pattern}")]
    }
}

/// The kernel shape of an expanded pattern, when it has one.
pub fn kernel_shape(expanded: &str) -> Option<KernelShape> {
    if let Some(name) = expanded.strip_prefix("**/") {
        if name.contains('/') {
            return None;
        }
        if !has_meta(name) {
            return Some(KernelShape::Name(name.to_owned()));
        }
        if let Some(prefix) = name
            .strip_suffix('*')
            .filter(|p| !p.is_empty() && !has_meta(p))
        {
            return Some(KernelShape::NamePrefix(prefix.to_owned()));
        }
        if let Some(suffix) = name
            .strip_prefix('*')
            .filter(|s| !s.is_empty() && !has_meta(s))
        {
            return Some(KernelShape::NameSuffix(suffix.to_owned()));
        }
        return None;
    }
    if !expanded.starts_with('/') {
        return None;
    }
    if let Some(dir) = expanded.strip_suffix("/**").filter(|d| !has_meta(d)) {
        return Some(KernelShape::Prefix(format!("{dir}/")));
    }
    (!has_meta(expanded)).then(|| KernelShape::Exact(expanded.to_owned()))
}

/// What the kernel can match of a file pattern: a [`KernelShape`], or whole
/// components anywhere in the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileShape {
    Shape(KernelShape),
    /// `**/a/b/**`: every path with `/a/b/` in it (stored as that string).
    Components(String),
    /// `**/a/b`: every path that ends in `/a/b` (stored as that string, exact):
    /// a file in a directory of that name at any depth (`.claude/settings.json`).
    ComponentsEnd(String),
}

/// Bytes of a string a kernel path key holds (`guard_common::rules::PATH_KEY_DATA`
/// less its generation, kind and end bytes).
pub const KERNEL_KEY_BYTES: usize = guard_common::rules::PATH_KEY_DATA - 3;

/// The kernel's shape of an expanded file pattern, if it has one.
pub fn file_shape(expanded: &str) -> Option<FileShape> {
    if let Some(shape) = kernel_shape(expanded) {
        return Some(FileShape::Shape(shape));
    }
    let rest = expanded.strip_prefix("**/")?;
    let literal = |run: &str| {
        !run.is_empty()
            && !has_meta(run)
            && run
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
    };
    match rest.strip_suffix("/**") {
        Some(run) => literal(run).then(|| FileShape::Components(format!("/{run}/"))),
        // One component is a file name (`kernel_shape`); two or more end a path.
        None => (literal(rest) && rest.contains('/'))
            .then(|| FileShape::ComponentsEnd(format!("/{rest}"))),
    }
}

impl FileShape {
    /// The bytes the kernel's entry holds.
    fn key_len(&self) -> usize {
        match self {
            Self::Shape(
                KernelShape::Prefix(s)
                | KernelShape::Exact(s)
                | KernelShape::Name(s)
                | KernelShape::NamePrefix(s)
                | KernelShape::NameSuffix(s),
            )
            | Self::Components(s)
            | Self::ComponentsEnd(s) => s.len(),
        }
    }
}

/// Whether the kernel decides an expanded file pattern itself: as a rule's
/// pattern, or (`except`) as one of its exceptions. A component run is never an
/// exception in the kernel (its scan stops at its first match, which could be the
/// rule's own pattern); a pattern longer than a key is not matched at all.
pub fn kernel_decides(expanded: &str, except: bool) -> bool {
    file_shape(expanded).is_some_and(|s| {
        s.key_len() <= KERNEL_KEY_BYTES
            && !(except && matches!(s, FileShape::Components(_) | FileShape::ComponentsEnd(_)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_and_anchor() {
        let homes = vec!["/root".to_owned(), "/home/ada".to_owned()];
        assert_eq!(
            expand("~/.ssh/**", &homes),
            ["/root/.ssh/**", "/home/ada/.ssh/**"]
        );
        assert_eq!(expand(".env", &homes), ["**/.env"]);
        assert_eq!(expand(".git/hooks/**", &homes), ["**/.git/hooks/**"]);
        assert_eq!(expand("/etc/shadow", &homes), ["/etc/shadow"]);
    }

    #[test]
    fn kernel_shapes() {
        use KernelShape::*;
        let cases = [
            ("/root/.ssh/**", Some(Prefix("/root/.ssh/".into()))),
            ("/etc/shadow", Some(Exact("/etc/shadow".into()))),
            ("**/.env", Some(Name(".env".into()))),
            ("**/id_rsa*", Some(NamePrefix("id_rsa".into()))),
            ("**/.env.*", Some(NamePrefix(".env.".into()))),
            ("**/*.pem", Some(NameSuffix(".pem".into()))),
            ("**/.git/hooks/**", None),
            ("/root/*.pem", None),
            ("**/*.{pem,key}", None),
        ];
        for (pattern, want) in cases {
            assert_eq!(kernel_shape(pattern), want, "{pattern}");
        }
    }

    #[test]
    fn component_runs_and_ends() {
        assert_eq!(
            file_shape("**/.git/hooks/**"),
            Some(FileShape::Components("/.git/hooks/".into()))
        );
        assert_eq!(
            file_shape("**/.claude/settings.json"),
            Some(FileShape::ComponentsEnd("/.claude/settings.json".into()))
        );
        // One component is a file name; wildcards have no kernel shape.
        assert_eq!(
            file_shape("**/.env"),
            Some(FileShape::Shape(KernelShape::Name(".env".into())))
        );
        assert_eq!(file_shape("**/.claude/*.json"), None);
        assert_eq!(file_shape("/etc/cron*/**"), None);
        assert!(kernel_decides("/etc/cron.d/**", false));
        assert!(!kernel_decides("/etc/cron*/**", false));
        assert!(kernel_decides("**/.git/hooks/**", false));
        assert!(!kernel_decides("**/.git/hooks/**", true));
        assert!(!kernel_decides("**/.claude/settings.json", true));
        assert!(kernel_decides("**/*.sample", true));
        let long = format!("/{}", "a".repeat(KERNEL_KEY_BYTES));
        assert!(!kernel_decides(&long, false));
    }
}
