//! What `guard run` hides and makes read-only for a session: the paths the policy
//! forbids every process of the session to read or to change. The daemon finds them
//! (it holds the policy's matcher) when the session registers: the concrete files and
//! directories the policy names, and what its patterns (`.env`, `*.pem`,
//! `.git/hooks/**`, a repository's ignore files) match in the workspace, walked
//! breadth first and bounded. The client confines itself to them (Landlock outside
//! its writable trees, its mount namespace inside them, `super::mount`).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Most entries of a workspace looked at (breadth first: what lies near its top,
/// `.env`, `.git/hooks`, comes first). Past it, what a pattern would match deeper
/// down is left to guard's other tiers (the client says so).
pub const WALK_MAX: usize = 20_000;

/// A file name that stands for "anything in this directory" when asking whether a
/// rule covers a whole directory (`.git/hooks/**` covers `.git/hooks/<PROBE>`). No
/// exception a policy writes (`*.sample`, `*.pub`) matches it.
pub const PROBE: &str = "guard-probe-of-the-directory";

/// What a session must not read, and must not change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub read_deny: Vec<PathBuf>,
    pub write_deny: Vec<PathBuf>,
    /// What could not be looked at (for people).
    pub notes: Vec<String>,
}

/// Whether the policy stops every process of a session from reading (`write`:
/// changing) the file at this path (a path ending in [`PROBE`]: anything in that
/// directory).
pub trait Stops {
    fn stops(&self, path: &str, write: bool) -> bool;
}

impl<F: Fn(&str, bool) -> bool> Stops for F {
    fn stops(&self, path: &str, write: bool) -> bool {
        self(path, write)
    }
}

impl Targets {
    /// Sorts and removes what another entry covers (a path below a hidden or a
    /// read-only directory; a read-only path that is hidden anyway). A hidden file
    /// below a read-only directory stays: it is hidden on top.
    pub fn settle(&mut self) {
        fn settle(v: &mut Vec<PathBuf>) {
            v.sort();
            v.dedup();
            let all = v.clone();
            v.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
        }
        settle(&mut self.read_deny);
        settle(&mut self.write_deny);
        let hidden = self.read_deny.clone();
        self.write_deny
            .retain(|p| !hidden.iter().any(|h| p.starts_with(h)));
    }

    /// Adds a concrete path the policy names (`dir`: a directory, everything in it),
    /// where it exists.
    pub fn add_named(&mut self, path: &Path, dir: bool, stops: &dyn Stops) {
        let Some(text) = path.to_str() else {
            return;
        };
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return; // nothing to hide or protect yet
        };
        if meta.file_type().is_symlink() {
            // Its target is protected where it lives (the policy names paths as the
            // kernel resolves them).
            return;
        }
        let probe = if dir {
            format!("{}/{PROBE}", text.trim_end_matches('/'))
        } else {
            text.to_owned()
        };
        if stops.stops(&probe, false) {
            self.read_deny.push(path.to_owned());
        } else if stops.stops(&probe, true) {
            self.write_deny.push(path.to_owned());
        }
    }

    /// Walks `root` breadth first (never through a symbolic link, at most
    /// [`WALK_MAX`] entries) for what the policy's patterns stop every process from
    /// reading or changing. A hidden directory is not entered; a read-only one is
    /// (a file inside it may have to be hidden).
    pub fn walk(&mut self, root: &Path, stops: &dyn Stops) {
        if root == Path::new("/") {
            // Not a workspace: the whole file system.
            self.notes
                .push("the working directory is /: no workspace was walked".to_owned());
            return;
        }
        let mut queue = VecDeque::from([root.to_owned()]);
        let mut seen = 0usize;
        while let Some(dir) = queue.pop_front() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                seen += 1;
                if seen > WALK_MAX {
                    self.notes.push(format!(
                        "{} has more than {WALK_MAX} entries: what lies past them is left to \
                         guard's other tiers",
                        root.display()
                    ));
                    return;
                }
                let path = entry.path();
                let (Ok(kind), Some(text)) = (entry.file_type(), path.to_str()) else {
                    continue;
                };
                if kind.is_dir() {
                    let probe = format!("{text}/{PROBE}");
                    if stops.stops(&probe, false) {
                        self.read_deny.push(path);
                        continue;
                    }
                    if stops.stops(&probe, true) {
                        self.write_deny.push(path.clone());
                    }
                    if !pruned(&path) {
                        queue.push_back(path);
                    }
                } else if kind.is_file() {
                    if stops.stops(text, false) {
                        self.read_deny.push(path);
                    } else if stops.stops(text, true) {
                        self.write_deny.push(path);
                    }
                }
            }
        }
    }
}

/// The tree to walk for a session whose root works in `cwd`: the work tree of the
/// repository `cwd` belongs to (its root's `.git/hooks` too), else `cwd` itself.
pub fn workspace(cwd: &Path) -> PathBuf {
    gix::discover::upwards(cwd)
        .ok()
        .and_then(|(path, _)| path.into_repository_and_work_tree_directories().1)
        .unwrap_or_else(|| cwd.to_owned())
}

/// Directories never worth walking: a repository's object store (thousands of
/// files no rule names).
fn pruned(dir: &Path) -> bool {
    let name = dir.file_name().and_then(|n| n.to_str());
    let parent = dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    matches!((parent, name), (Some(".git"), Some("objects" | "lfs")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_finds_what_the_patterns_stop_and_keeps_to_its_bounds() {
        let t = tempfile::tempdir().expect("tempdir");
        let ws = t.path();
        for d in [".git/hooks", ".git/objects/ab", "src/deep", "secrets/inner"] {
            std::fs::create_dir_all(ws.join(d)).expect("mkdir");
        }
        for f in [
            ".env",
            ".env.example",
            "src/deep/.env.local",
            "src/main.rs",
            ".git/hooks/pre-commit",
            ".git/objects/ab/.env",
            "secrets/inner/key",
        ] {
            std::fs::write(ws.join(f), "x").expect("write");
        }
        std::os::unix::fs::symlink(ws.join(".env"), ws.join("link.env")).expect("symlink");
        let stops = |path: &str, write: bool| {
            let name = path.rsplit('/').next().unwrap_or(path);
            if write {
                path.contains("/.git/hooks/")
            } else {
                (name == ".env" || name.starts_with(".env.")) && !name.ends_with(".example")
                    || path.contains("/secrets/")
            }
        };
        let mut t = Targets::default();
        t.walk(ws, &stops);
        t.settle();
        assert_eq!(
            t.read_deny,
            [
                ws.join(".env"),
                ws.join("secrets"),
                ws.join("src/deep/.env.local")
            ]
        );
        assert_eq!(t.write_deny, [ws.join(".git/hooks")]);
        assert!(t.notes.is_empty(), "{t:?}");
    }

    #[test]
    fn a_named_path_is_taken_where_it_exists() {
        let t = tempfile::tempdir().expect("tempdir");
        let home = t.path();
        std::fs::create_dir_all(home.join(".ssh")).expect("mkdir");
        std::fs::write(home.join(".bashrc"), "x").expect("write");
        let stops = |path: &str, write: bool| {
            if write {
                path.ends_with("/.bashrc")
            } else {
                path.contains("/.ssh/")
            }
        };
        let mut t = Targets::default();
        t.add_named(&home.join(".ssh"), true, &stops);
        t.add_named(&home.join(".bashrc"), false, &stops);
        t.add_named(&home.join(".aws"), true, &stops);
        t.settle();
        assert_eq!(t.read_deny, [home.join(".ssh")]);
        assert_eq!(t.write_deny, [home.join(".bashrc")]);
    }
}
