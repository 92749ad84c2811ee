//! Packages a session installs: recognised by the manifest each package manager
//! leaves per installed package (guard-policy's `packages`, from the paths of the
//! files an install wrote), then named and versioned from those files with their
//! formats' parsers. Also the environment variable that names the package whose
//! script a process runs, which the kernel reads at exec.

use std::path::Path;

pub use guard_policy::packages::{
    CRATES, GO, Manifest, NPM, PYPI, build_backend_hook, build_script, manifest,
};

/// The environment variable that names the package whose script a process runs:
/// npm (and pnpm, yarn) set it for the lifecycle scripts of the packages they
/// install and for `npm run`. The kernel looks for it at each tool's exec
/// (`SESSION_VARS`' last entry).
pub const SCRIPT_PACKAGE_VAR: &str = "npm_package_name";

/// Bytes of a source tree's `PKG-INFO` or `pyproject.toml` read at most.
const SOURCE_META_MAX: u64 = 256 << 10;

/// The Python project whose source tree is at `dir` (a build backend's working
/// directory: [`guard_policy::packages::build_backend_hook`]): the name its
/// `PKG-INFO` gives (every source distribution has one), else its
/// `pyproject.toml`'s `[project] name`. Neither file is followed through a symbolic
/// link; each is read up to 256 KiB.
pub fn source_tree_name(dir: &Path) -> Option<String> {
    use std::io::Read as _;
    let text = |file: &str| -> Option<String> {
        let f = crate::host::open_regular(&dir.join(file)).ok()?;
        let mut text = String::new();
        f.take(SOURCE_META_MAX).read_to_string(&mut text).ok()?;
        Some(text)
    };
    if let Some(read) = text("PKG-INFO").and_then(|t| parse(PYPI, &t).ok()) {
        return Some(read.name);
    }
    #[derive(serde::Deserialize)]
    struct PyProject {
        project: Project,
    }
    #[derive(serde::Deserialize)]
    struct Project {
        name: String,
    }
    let p: PyProject = toml::from_str(&text("pyproject.toml")?).ok()?;
    Some(p.project.name)
}

/// A package's name and version as its manifest file says them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub name: String,
    pub version: String,
}

/// Reads the name and version from the manifest at `path` of `ecosystem`.
pub fn read(ecosystem: &str, path: &Path) -> Result<Read, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "manifest gone".to_owned(),
        _ => format!("unreadable: {e}"),
    })?;
    // Created and never written: its writer was stopped (killed) in between.
    if text.trim().is_empty() {
        return Err("manifest empty".to_owned());
    }
    parse(ecosystem, &text)
}

/// Parses a manifest's text: JSON for npm, the core metadata's headers for PyPI,
/// TOML for cargo. (Go's version is in its directory's name only.)
pub fn parse(ecosystem: &str, text: &str) -> Result<Read, String> {
    match ecosystem {
        NPM => {
            #[derive(serde::Deserialize)]
            struct PackageJson {
                name: String,
                version: String,
            }
            let p: PackageJson =
                serde_json::from_str(text).map_err(|e| format!("not a package.json: {e}"))?;
            Ok(Read {
                name: p.name,
                version: p.version,
            })
        }
        PYPI => {
            // Core metadata is an e-mail header block: the headers end at the first
            // empty line, where the description may start.
            let mut name = None;
            let mut version = None;
            for line in text.lines().take_while(|l| !l.is_empty()) {
                if let Some(v) = line.strip_prefix("Name:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("Version:") {
                    version = Some(v.trim().to_owned());
                }
            }
            match (name, version) {
                (Some(name), Some(version)) => Ok(Read { name, version }),
                _ => Err("METADATA without Name and Version".to_owned()),
            }
        }
        CRATES => {
            #[derive(serde::Deserialize)]
            struct CargoToml {
                package: CargoPackage,
            }
            #[derive(serde::Deserialize)]
            struct CargoPackage {
                name: String,
                version: String,
            }
            let c: CargoToml =
                toml::from_str(text).map_err(|e| format!("not a crate's Cargo.toml: {e}"))?;
            Ok(Read {
                name: c.package.name,
                version: c.package.version,
            })
        }
        other => Err(format!("{other}'s manifests are not read")),
    }
}

#[cfg(test)]
mod tests;
