//! A repository's ignore files that agents honour for their own tools
//! (`.codexignore`, `.aiignore`, `.geminiignore`, `.cursorignore`: `[files]
//! ignore_files`), and the policy's own `[files] ignore` patterns, made binding for
//! every process of a session: read from the committed tree (`HEAD`, with gix, never
//! from the working copy, which the agent can edit) when a session starts in the
//! repository, and turned into file rules (`policy::judge`) anchored at the
//! repository's root.
//!
//! The patterns are gitignore's: `#` comments, `!` exceptions, a trailing `/` for
//! directories, a `/` elsewhere anchors the pattern at the root, `*`, `?`, `[…]` and
//! `**`. An ignored directory's files are ignored. An exception applies whatever its
//! place in the file (guard takes the matches, then the exceptions out of them).

use std::path::{Path, PathBuf};

pub use guard_policy::ignore::{Ignored, escape, globs};

/// Most bytes read of one ignore file.
pub const FILE_MAX: usize = 64 * 1024;

/// Most patterns taken from one repository.
pub const PATTERNS_MAX: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the repository at {root}")]
    Open {
        root: PathBuf,
        #[source]
        source: Box<gix::Error>,
    },
    #[error("the repository at {root} has no commit to read its ignore files from")]
    NoHead {
        root: PathBuf,
        #[source]
        source: Box<gix::Error>,
    },
}

/// The ignore files named `names` at the root of `HEAD`'s tree in the repository
/// whose work tree is `root`, and the policy's own `patterns`.
pub fn read(root: &Path, names: &[String], patterns: &[String]) -> Result<Ignored, Error> {
    let mut out = Ignored {
        root: root.to_owned(),
        ..Ignored::default()
    };
    if !names.is_empty() {
        // Opened as repo.rs does: guard (root) reads a repository another user owns,
        // with full trust and none of root's own git configuration.
        let repo = gix::open_opts(
            root,
            gix::open::Options::isolated().with(gix::sec::Trust::Full),
        )
        .map_err(|source| Error::Open {
            root: root.to_owned(),
            source: Box::new(source),
        })?;
        let tree = repo.head_tree().map_err(|source| Error::NoHead {
            root: root.to_owned(),
            source: Box::new(source),
        })?;
        for name in names {
            let Some(entry) = tree.find_entry(name.as_str()) else {
                continue;
            };
            if !entry.mode().is_blob() {
                out.notes.push(format!("{name} at HEAD is not a file"));
                continue;
            }
            let Ok(object) = entry.object() else {
                out.notes.push(format!("{name} at HEAD cannot be read"));
                continue;
            };
            let data = &object.data;
            if data.len() > FILE_MAX {
                out.notes.push(format!(
                    "{name} is over {FILE_MAX} bytes: its tail is left out"
                ));
            }
            let text = String::from_utf8_lossy(&data[..data.len().min(FILE_MAX)]);
            out.files.push(name.clone());
            out.patterns.extend(text.lines().map(str::to_owned));
        }
    }
    out.patterns.extend(patterns.iter().cloned());
    out.patterns.retain(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    if out.patterns.len() > PATTERNS_MAX {
        out.notes.push(format!(
            "more than {PATTERNS_MAX} ignore patterns: the rest are left out"
        ));
        out.patterns.truncate(PATTERNS_MAX);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    fn globset(globs: &[String]) -> globset::GlobSet {
        let mut b = globset::GlobSetBuilder::new();
        for g in globs {
            b.add(
                globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .expect("a glob"),
            );
        }
        b.build().expect("a set")
    }

    #[test]
    fn gitignore_patterns_become_globs_anchored_at_the_repository() {
        let root = Path::new("/home/a/src/app [1]");
        let lines: Vec<String> = [
            "secrets/",
            "*.sqlite",
            "/config/prod.json",
            "data/**/*.csv",
            "!data/public/*.csv",
            "\\#notes",
            "../escape",
            "",
        ]
        .map(str::to_owned)
        .to_vec();
        let (paths, except) = globs(root, &lines);
        let (ignored, kept) = (globset(&paths), globset(&except));
        let ignores = |p: &str| {
            let p = format!("/home/a/src/app [1]/{p}");
            ignored.is_match(&p) && !kept.is_match(&p)
        };
        for p in [
            "secrets/key",
            "sub/secrets/deep/key",
            "db.sqlite",
            "sub/db.sqlite",
            "config/prod.json",
            "data/x/y/a.csv",
            "#notes",
        ] {
            assert!(ignores(p), "{p} is ignored: {paths:?} {except:?}");
        }
        for p in [
            "secrets",
            "config/dev.json",
            "sub/config/prod.json",
            "data/public/a.csv",
            "README.md",
        ] {
            assert!(!ignores(p), "{p} is not ignored: {paths:?} {except:?}");
        }
        assert!(!ignored.is_match("/home/a/src/other/db.sqlite"));
        assert!(!paths.iter().any(|p| p.contains("..")), "{paths:?}");
    }

    #[test]
    fn the_committed_ignore_files_count_not_the_working_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        git(d, &["init", "--quiet", "-b", "main"]);
        std::fs::write(d.join(".codexignore"), "secrets/\n# a comment\n*.key\n").expect("write");
        std::fs::write(d.join(".aiignore"), "/private.md\n").expect("write");
        git(d, &["add", "."]);
        git(
            d,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "--quiet",
                "-m",
                "one",
            ],
        );
        // The agent loosens them in the working copy: nothing changes.
        std::fs::write(d.join(".codexignore"), "").expect("write");
        std::fs::remove_file(d.join(".aiignore")).expect("rm");
        let names: Vec<String> = [".codexignore", ".aiignore", ".geminiignore"]
            .map(str::to_owned)
            .to_vec();
        let read = read(d, &names, &["*.sqlite".to_owned()]).expect("read");
        assert_eq!(read.files, [".codexignore", ".aiignore"]);
        assert_eq!(
            read.patterns,
            ["secrets/", "*.key", "/private.md", "*.sqlite"]
        );
        // A repository without a commit has nothing committed to read.
        let empty = tempfile::tempdir().expect("tempdir");
        git(empty.path(), &["init", "--quiet"]);
        assert!(matches!(
            super::read(empty.path(), &names, &[]),
            Err(Error::NoHead { .. })
        ));
    }
}
