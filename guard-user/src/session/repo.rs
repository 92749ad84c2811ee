//! The repository a session's workspace belongs to, read from its git metadata with
//! gix (never by running git, never from the agent's environment): the fetch
//! remote's URL with any credentials stripped, the branch and the HEAD commit.
//!
//! guard runs as root and reads repositories other users own: git's ownership
//! rule would make gix ignore the repository's own configuration (and so its
//! remote). The repository is opened with full trust, isolated from root's own
//! git configuration: what is read is the workspace's metadata, as its owner's git
//! would read it.

use std::path::Path;

use gix::remote::Direction;
use guard_common::report::Repository;

/// The repository at or above `dir`; a note says why a field is missing.
pub fn read(dir: &Path) -> Repository {
    let path = match gix::discover::upwards(dir) {
        Ok((path, _)) => path,
        Err(_) => {
            return Repository {
                note: Some("not a git repository".to_owned()),
                ..Repository::default()
            };
        }
    };
    let (git_dir, work_tree) = path.into_repository_and_work_tree_directories();
    let repo = match gix::open_opts(
        &git_dir,
        gix::open::Options::isolated().with(gix::sec::Trust::Full),
    ) {
        Ok(repo) => repo,
        Err(e) => {
            return Repository {
                root: work_tree.map(|w| w.display().to_string()),
                note: Some(format!("unreadable: {e}")),
                ..Repository::default()
            };
        }
    };
    let url = repo
        .find_default_remote(Direction::Fetch)
        .and_then(Result::ok)
        .and_then(|r| {
            r.url(Direction::Fetch)
                .map(|u| strip_credentials(&u.to_bstring().to_string()))
        });
    let branch = repo
        .head_name()
        .ok()
        .flatten()
        .map(|n| n.shorten().to_string());
    let commit = repo.head_id().ok().map(|id| id.to_string());
    let note = match (&url, &commit) {
        (None, _) => Some("no remote".to_owned()),
        (Some(_), None) => Some("no commit yet".to_owned()),
        _ => None,
    };
    Repository {
        url,
        branch,
        commit,
        root: repo
            .workdir()
            .or(work_tree.as_deref())
            .map(|w| w.display().to_string()),
        note,
    }
}

/// `url` without a user name or password (`https://user:token@host/x` →
/// `https://host/x`). scp-like URLs (`git@host:x`) keep their user: it is no
/// secret (`git` for every GitHub user).
pub fn strip_credentials(url: &str) -> String {
    if let Ok(mut u) = url::Url::parse(url)
        && u.has_host()
        && (!u.username().is_empty() || u.password().is_some())
    {
        let _ = u.set_username("");
        let _ = u.set_password(None);
        return u.to_string();
    }
    url.to_owned()
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

    #[test]
    fn credentials_never_leave_in_a_url() {
        assert_eq!(
            strip_credentials("https://alice:ghp_abcdef@github.com/acme/app.git"),
            "https://github.com/acme/app.git"
        );
        assert_eq!(
            strip_credentials("https://x-access-token@github.com/acme/app"),
            "https://github.com/acme/app"
        );
        assert_eq!(
            strip_credentials("git@github.com:acme/app.git"),
            "git@github.com:acme/app.git"
        );
        assert_eq!(
            strip_credentials("https://github.com/acme/app"),
            "https://github.com/acme/app"
        );
    }

    #[test]
    fn a_workspace_names_its_remote_branch_and_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        git(d, &["init", "--quiet", "-b", "feature/x"]);
        git(
            d,
            &[
                "remote",
                "add",
                "origin",
                "https://bob:s3cret@git.example.com/acme/app.git",
            ],
        );
        std::fs::create_dir(d.join("src")).expect("mkdir");
        std::fs::write(d.join("src/a"), "a").expect("write");
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
        let r = read(&d.join("src"));
        assert_eq!(
            r.url.as_deref(),
            Some("https://git.example.com/acme/app.git")
        );
        assert_eq!(r.branch.as_deref(), Some("feature/x"));
        assert_eq!(r.commit.as_ref().map(String::len), Some(40));
        assert_eq!(r.note, None);

        let plain = tempfile::tempdir().expect("tempdir");
        assert_eq!(
            read(plain.path()).note.as_deref(),
            Some("not a git repository")
        );
        git(plain.path(), &["init", "--quiet"]);
        let r = read(plain.path());
        assert_eq!((r.url, r.note.as_deref()), (None, Some("no remote")));
    }
}
