//! The daemon's side of the policy: where it comes from ([`Source`]) and reading it
//! ([`load`]), the home directories `~` stands for on this host ([`homes`]) and
//! file watching for reloads (`watch`). Parsing, validating, compiling to the
//! kernel's tables and judging are the `guard-policy` crate's, re-exported here.

pub use guard_policy::{
    builtin, coverage, diag, dns, glob, judge, matcher, model, parse, replay, tables,
};

pub mod watch;

use std::path::{Path, PathBuf};

use self::{diag::Diagnostic, model::Policy};

/// Where a policy comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Builtin(&'static str),
    File(PathBuf),
}

impl Source {
    /// `None` is the workstation built-in; a built-in's name selects it unless a
    /// file of that name exists; anything else is a file.
    pub fn from_arg(arg: Option<&Path>) -> Self {
        match arg {
            None => Self::Builtin("workstation"),
            Some(p) => match builtin::NAMES.iter().find(|n| Path::new(n) == p) {
                Some(name) if !p.exists() => Self::Builtin(name),
                _ => Self::File(p.to_owned()),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            Self::Builtin(n) => (*n).to_owned(),
            Self::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read policy {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {name} has {errors} error(s):\n{rendered}")]
    Invalid {
        name: String,
        errors: usize,
        rendered: String,
    },
}

/// Reads and validates a policy; warnings come back with it.
pub fn load(source: &Source) -> Result<(Policy, Vec<Diagnostic>), LoadError> {
    let (name, text) = match source {
        Source::Builtin(n) => (
            (*n).to_owned(),
            builtin::get(n).unwrap_or_default().to_owned(),
        ),
        Source::File(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|source| LoadError::Read {
                path: p.clone(),
                source,
            })?,
        ),
    };
    if matches!(source, Source::File(_)) && text.trim().is_empty() {
        // Most likely a file caught mid-write; never let it replace a policy.
        return Err(LoadError::Invalid {
            rendered: format!("{name}:1:1: error[G008]: the policy file is empty\n"),
            errors: 1,
            name,
        });
    }
    parse::parse(&name, &text).map_err(|diags| LoadError::Invalid {
        errors: diags
            .iter()
            .filter(|d| d.severity == diag::Severity::Error)
            .count(),
        rendered: diag::render(&name, &diags),
        name,
    })
}

/// Home directories whose `~` rules apply: root's and every regular user's
/// (uid >= 1000) that exists on this host.
pub fn homes() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 {
            continue;
        }
        let uid: u32 = f[2].parse().unwrap_or(u32::MAX);
        let home = f[5];
        if (uid == 0 || (1000..65534).contains(&uid))
            && home.starts_with('/')
            && Path::new(home).is_dir()
            && !out.iter().any(|h| h == home)
        {
            out.push(home.to_owned());
        }
    }
    if out.is_empty() {
        out.push("/root".to_owned());
    }
    out
}
