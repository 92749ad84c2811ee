//! `guard run --landlock`: the agent confines itself with Landlock before it runs,
//! derived from the policy, so that a refused operation fails with EACCES and the
//! agent lives, on any kernel with Landlock (BPF-LSM or not). guard still reports
//! every attempt (the kernel's open records carry the refusal).
//!
//! Landlock only grants: a rule gives rights on a file or on a directory's whole
//! tree. What the policy forbids is carved out by granting everything around it:
//! each directory on the way from `/` to a forbidden path is split into its
//! entries, each granted on its own, and the forbidden path gets nothing. So:
//! - the whole file system stays readable (and runnable) but the files and
//!   directories `kill`/`deny` rules on reads name (`~/.ssh`, `~/.aws`, …);
//! - only the workspace, the agent's own state, the temporary directories, the
//!   caches and `/dev` are writable: shell rc files, `~/.ssh/authorized_keys`,
//!   crontabs and the like cannot change.
//!
//! What that costs (docs/policy.md, "Landlock"): a split directory's own entries
//! are fixed at start (a file created in `~` afterwards is not readable); names
//! inside a forbidden directory can be listed, not read; a forbidden path inside
//! a writable tree (a repository's `.git/hooks`) cannot be carved out, since
//! splitting the tree would forbid creating files in it: `guard run`'s mount
//! namespace covers those (`mount`). Landlock forbids mounting: an agent's own
//! bubblewrap sandbox cannot start inside it.
//!
//! `targets`: what the daemon names for a session to hide and make read-only;
//! `mount`: the mount namespace that covers them.

pub mod mount;
pub mod targets;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
};

/// What a path may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rights {
    pub read: bool,
    pub write: bool,
}

const READ: Rights = Rights {
    read: true,
    write: false,
};
const READ_WRITE: Rights = Rights {
    read: true,
    write: true,
};
const NONE: Rights = Rights {
    read: false,
    write: false,
};

/// One Landlock rule: `path` (a directory's tree, or one file) with `rights`;
/// `list` only: the directory may be listed, nothing more (a split directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub path: PathBuf,
    pub rights: Rights,
    pub list_only: bool,
    pub dir: bool,
}

/// The rules that confine a session: everything readable but `read_deny`, only
/// `writable` writable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub grants: Vec<Grant>,
    /// Forbidden paths left to guard's other tiers (inside a writable tree).
    pub not_covered: Vec<PathBuf>,
}

fn is_within(path: &Path, of: &Path) -> bool {
    path.starts_with(of)
}

/// Those of `paths` inside one of the `writable` trees (symbolic links resolved).
pub fn inside(paths: &[PathBuf], writable: &[PathBuf]) -> Vec<PathBuf> {
    let writable: Vec<PathBuf> = writable
        .iter()
        .filter_map(|w| std::fs::canonicalize(w).ok())
        .collect();
    paths
        .iter()
        .filter(|p| {
            std::fs::canonicalize(p).is_ok_and(|p| writable.iter().any(|w| is_within(&p, w)))
        })
        .cloned()
        .collect()
}

/// The plan for `read_deny` and `writable` (absolute paths; those that do not
/// exist are left out: there is nothing to hide, or to write, yet).
pub fn plan(read_deny: &[PathBuf], writable: &[PathBuf]) -> Plan {
    let canonical = |paths: &[PathBuf]| -> BTreeSet<PathBuf> {
        paths
            .iter()
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .collect()
    };
    let writable = canonical(writable);
    let mut not_covered = Vec::new();
    let mut deny = BTreeSet::new();
    for p in canonical(read_deny) {
        if writable.iter().any(|w| is_within(&p, w)) {
            not_covered.push(p);
        } else {
            deny.insert(p);
        }
    }
    // A writable path inside a forbidden one stays forbidden.
    let writable: BTreeSet<PathBuf> = writable
        .into_iter()
        .filter(|w| !deny.iter().any(|d| is_within(w, d)))
        .collect();
    let overrides: Vec<(PathBuf, Rights)> = deny
        .iter()
        .map(|p| (p.clone(), NONE))
        .chain(writable.iter().map(|p| (p.clone(), READ_WRITE)))
        .collect();
    let mut grants = Vec::new();
    visit(Path::new("/"), READ, &overrides, &mut grants);
    Plan {
        grants,
        not_covered,
    }
}

/// Whether `a` grants everything `b` does.
fn covers(a: Rights, b: Rights) -> bool {
    (a.read || !b.read) && (a.write || !b.write)
}

/// Grants `rights` on `dir`'s tree. Landlock adds up the rules of a path and of
/// every directory above it, so an override below that grants more (a writable
/// tree inside a readable one) is a rule of its own, beside the tree's. Only an
/// override that takes a right away (a forbidden path inside a readable tree)
/// needs the tree split into its entries, each granted on its own; a split
/// directory keeps only the right to list it, so splitting one for a writable
/// path below it would forbid creating anything in it (`mktemp` in `/tmp` when the
/// workspace is below `/tmp`).
fn visit(dir: &Path, rights: Rights, overrides: &[(PathBuf, Rights)], out: &mut Vec<Grant>) {
    let below = |p: &PathBuf| p != dir && is_within(p, dir);
    let restricting = overrides
        .iter()
        .any(|(p, r)| below(p) && !covers(*r, rights));
    if !restricting {
        if rights != NONE {
            out.push(Grant {
                path: dir.to_owned(),
                rights,
                list_only: false,
                dir: true,
            });
        }
        for (p, r) in overrides
            .iter()
            .filter(|(p, r)| below(p) && !covers(rights, *r))
        {
            out.push(Grant {
                path: p.clone(),
                rights: *r,
                list_only: false,
                dir: p.is_dir(),
            });
        }
        return;
    }
    if rights.read {
        out.push(Grant {
            path: dir.to_owned(),
            rights: READ,
            list_only: true,
            dir: true,
        });
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let rights = overrides
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(rights, |(_, r)| *r);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            visit(&path, rights, overrides, out);
        } else if kind.is_symlink() {
            // Never granted through a link: its target is granted (or not) where
            // it lives; a link to a forbidden file must not open it.
        } else if rights != NONE {
            out.push(Grant {
                path,
                rights,
                list_only: false,
                dir: false,
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up Landlock")]
    Ruleset(#[from] landlock::RulesetError),
}

/// How the confinement went: Landlock's own report, and the rules given.
#[derive(Debug)]
pub struct Applied {
    pub status: RestrictionStatus,
    pub rules: usize,
    pub skipped: usize,
}

impl Applied {
    /// For people and for the daemon (`guard sessions`, the report).
    pub fn summary(&self) -> String {
        let how = match self.status.ruleset {
            RulesetStatus::FullyEnforced => "fully enforced",
            RulesetStatus::PartiallyEnforced => "partly enforced (an older Landlock ABI)",
            RulesetStatus::NotEnforced => "not enforced (no Landlock in this kernel)",
        };
        format!("{how}, {} rules", self.rules)
    }

    pub fn enforced(&self) -> bool {
        self.status.ruleset != RulesetStatus::NotEnforced
    }
}

/// Confines the calling process (and everything it will exec) to `plan`, with
/// the newest Landlock this crate knows, down to what the kernel has.
pub fn apply(plan: &Plan) -> Result<Applied, Error> {
    let abi = ABI::V6;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let list: BitFlags<AccessFs> = AccessFs::ReadDir.into();
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?
        .create()?;
    let (mut rules, mut skipped) = (0, 0);
    for g in &plan.grants {
        let mut access = match (g.list_only, g.rights) {
            (true, _) => list,
            (false, Rights { write: true, .. }) => all,
            (false, _) => read,
        };
        if !g.dir {
            access &= AccessFs::from_file(abi);
        }
        let Ok(fd) = PathFd::new(&g.path) else {
            // Gone since the plan was made (a temporary file): nothing to grant.
            skipped += 1;
            continue;
        };
        ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        rules += 1;
    }
    let status = ruleset.restrict_self()?;
    Ok(Applied {
        status,
        rules,
        skipped,
    })
}

/// What the agent may write besides its workspace: the temporary directories,
/// the user's caches, `/dev`, and the agent's own state, by the agent programs the
/// command line names (the program itself, or one a wrapper runs: `setpriv …
/// codex`, `env node …/gemini`).
pub fn writable(home: &Path, workspace: &Path, argv: &[String]) -> Vec<PathBuf> {
    let mut out = vec![
        workspace.to_owned(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        PathBuf::from("/dev"),
        home.join(".cache"),
    ];
    for arg in argv {
        let name = arg.rsplit('/').next().unwrap_or(arg);
        let name = name.strip_suffix(".js").unwrap_or(name);
        let state: &[&str] = match name {
            "codex" => &[".codex"],
            "claude" | "claude.exe" => &[".claude", ".claude.json", ".config/claude"],
            "gemini" => &[".gemini"],
            "copilot" => &[".copilot"],
            _ => &[],
        };
        out.extend(state.iter().map(|s| home.join(s)));
        if name == "codex"
            && let Some(dir) = std::env::var_os("CODEX_HOME")
        {
            out.push(PathBuf::from(dir));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_directory_is_carved_out_of_a_readable_tree() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(t.path()).expect("canonical");
        for d in ["home/.ssh", "home/src/app/.git/hooks", "home/docs", "etc"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("home/.bashrc"), "x").expect("write");
        std::fs::write(root.join("home/.ssh/id_rsa"), "k").expect("write");
        std::os::unix::fs::symlink(root.join("home/.ssh/id_rsa"), root.join("home/key-link"))
            .expect("symlink");
        let p = plan(
            &[root.join("home/.ssh"), root.join("home/src/app/.git/hooks")],
            &[root.join("home/src/app")],
        );
        let of = |path: &str| p.grants.iter().find(|g| g.path == root.join(path)).cloned();
        // The forbidden directory gets no rule, its siblings theirs.
        assert!(of("home/.ssh").is_none(), "{p:#?}");
        assert!(
            p.grants
                .iter()
                .all(|g| !g.path.starts_with(root.join("home/.ssh"))),
            "{p:#?}"
        );
        assert_eq!(of("home/.bashrc").map(|g| g.rights), Some(READ));
        assert_eq!(of("home/docs").map(|g| g.rights), Some(READ));
        assert_eq!(of("home").map(|g| g.list_only), Some(true));
        // The workspace, writable as a whole: what it protects is left to guard.
        assert_eq!(of("home/src/app").map(|g| g.rights), Some(READ_WRITE));
        assert_eq!(p.not_covered, [root.join("home/src/app/.git/hooks")]);
        // A link never carries rights to what it points at.
        assert!(of("home/key-link").is_none(), "{p:#?}");
        assert_eq!(of("etc").map(|g| g.rights), Some(READ));
    }

    #[test]
    fn a_writable_tree_keeps_its_rights_when_a_writable_path_lies_below_it() {
        // The workspace below the temporary directory, and another writable path
        // below it: the temporary directory stays writable as a whole (issue 48:
        // `mktemp` failed under `guard run --landlock` in a workspace below /tmp).
        let t = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(t.path()).expect("canonical");
        for d in ["tmp/ws/src", "tmp/other", "home/.ssh", "var/tmp", "var/lib"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let p = plan(
            &[root.join("home/.ssh")],
            &[
                root.join("tmp"),
                root.join("tmp/ws"),
                root.join("tmp/other"),
                root.join("var/tmp"),
            ],
        );
        let of = |path: &str| p.grants.iter().find(|g| g.path == root.join(path)).cloned();
        let tmp = of("tmp").expect("a rule for tmp");
        assert_eq!((tmp.rights, tmp.list_only), (READ_WRITE, false), "{p:#?}");
        // Nothing below it is split or granted less.
        assert!(
            p.grants
                .iter()
                .filter(|g| g.path.starts_with(root.join("tmp")))
                .all(|g| g.rights == READ_WRITE && !g.list_only),
            "{p:#?}"
        );
        // A readable directory with a writable one below: a readable rule for the
        // whole tree, a writable one for the path, no split.
        let var = of("var").expect("a rule for var");
        assert_eq!((var.rights, var.list_only), (READ, false), "{p:#?}");
        assert_eq!(of("var/tmp").map(|g| g.rights), Some(READ_WRITE));
        assert!(of("var/lib").is_none(), "{p:#?}");
        // The forbidden directory still splits what is above it.
        assert_eq!(of("home").map(|g| g.list_only), Some(true));
        assert!(of("home/.ssh").is_none(), "{p:#?}");
    }

    #[test]
    fn the_agent_s_state_is_writable_through_its_wrappers() {
        let home = Path::new("/home/a");
        let argv = |a: &[&str]| -> Vec<String> { a.iter().map(|s| (*s).to_owned()).collect() };
        let codex = writable(
            home,
            Path::new("/w"),
            &argv(&["setpriv", "--reuid=1000", "/opt/codex/bin/codex", "exec"]),
        );
        assert!(codex.contains(&home.join(".codex")), "{codex:?}");
        let gemini = writable(
            home,
            Path::new("/w"),
            &argv(&[
                "env",
                "node",
                "/usr/lib/node_modules/@google/gemini-cli/bundle/gemini.js",
            ]),
        );
        assert!(gemini.contains(&home.join(".gemini")), "{gemini:?}");
        let plain = writable(home, Path::new("/w"), &argv(&["sh", "-c", "codex-like"]));
        assert!(
            !plain
                .iter()
                .any(|p| p.starts_with(home) && *p != home.join(".cache"))
        );
    }
}
