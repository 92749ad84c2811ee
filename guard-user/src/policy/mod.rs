//! Policy: parse and validate (`parse`, `diag`), the built-ins (`builtin`) and what
//! they answer (`coverage`), how path
//! patterns read (`glob`), matching in user space (`matcher`), what the kernel
//! enforces itself (`tables`: the rule maps), the judge's verdicts (`judge`) and file watching
//! for reloads (`watch`).

pub mod builtin;
pub mod coverage;
pub mod diag;
pub mod dns;
pub mod glob;
pub mod judge;
pub mod matcher;
pub mod model;
pub mod parse;
pub mod tables;
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
            None => Source::Builtin("workstation"),
            Some(p) => match builtin::NAMES.iter().find(|n| Path::new(n) == p) {
                Some(name) if !p.exists() => Source::Builtin(name),
                _ => Source::File(p.to_owned()),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            Source::Builtin(n) => (*n).to_owned(),
            Source::File(p) => p.display().to_string(),
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
