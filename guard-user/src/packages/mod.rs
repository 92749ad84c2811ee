//! Packages a session installs: recognised by the manifest each package manager
//! leaves per installed package (the paths of the files an install wrote, as the
//! kernel reports them), then named and versioned from those files with their
//! formats' parsers. Also the environment variable that names the package whose
//! script a process runs, which the kernel reads at exec.
//!
//! | ecosystem | manifest written by the install | version from |
//! |---|---|---|
//! | `npm` (npm, pnpm, yarn) | `…/node_modules/[@SCOPE/]NAME/package.json` | the file (JSON) |
//! | `pypi` (pip, uv, poetry) | `…/NAME-VERSION.dist-info/METADATA` | the file (`Name:`/`Version:` headers), else the directory |
//! | `crates.io` (cargo) | `…/registry/src/INDEX/NAME-VERSION/Cargo.toml` | the file (TOML), else the directory |
//! | `go` | `…/pkg/mod/MODULE@VERSION/go.mod` | the directory |

use std::path::Path;

/// The environment variable that names the package whose script a process runs:
/// npm (and pnpm, yarn) set it for the lifecycle scripts of the packages they
/// install and for `npm run`. The kernel looks for it at each tool's exec
/// (`SESSION_VARS`' last entry).
pub const SCRIPT_PACKAGE_VAR: &str = "npm_package_name";

/// The ecosystems, as reports name them.
pub const NPM: &str = "npm";
pub const PYPI: &str = "pypi";
pub const CRATES: &str = "crates.io";
pub const GO: &str = "go";

/// A package's manifest, recognised from the path an install wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub ecosystem: &'static str,
    /// The name as the path gives it.
    pub name: String,
    /// The version, where the path gives it.
    pub version: Option<String>,
}

/// The manifest that `path` (a file an install wrote) is, if it is one.
pub fn manifest(path: &str) -> Option<Manifest> {
    let (dir, file) = path.rsplit_once('/')?;
    match file {
        "package.json" => npm(dir),
        "METADATA" => {
            let stem = dir.rsplit('/').next()?.strip_suffix(".dist-info")?;
            let (name, version) = stem.split_once('-')?;
            Some(Manifest {
                ecosystem: PYPI,
                name: name.to_owned(),
                version: Some(version.to_owned()),
            })
        }
        "Cargo.toml" => {
            let (parent, crate_dir) = dir.rsplit_once('/')?;
            let (registry, _index) = parent.rsplit_once('/')?;
            if !registry.ends_with("/registry/src") {
                return None;
            }
            let (name, version) = crate_version(crate_dir)?;
            Some(Manifest {
                ecosystem: CRATES,
                name: name.to_owned(),
                version: Some(version.to_owned()),
            })
        }
        "go.mod" => {
            let (_, module) = dir.split_once("/pkg/mod/")?;
            if module.starts_with("cache/") {
                return None;
            }
            let (module, version) = module.rsplit_once('@')?;
            if version.contains('/') {
                return None;
            }
            Some(Manifest {
                ecosystem: GO,
                name: go_unescape(module),
                version: Some(version.to_owned()),
            })
        }
        _ => None,
    }
}

/// `…/node_modules/NAME` or `…/node_modules/@SCOPE/NAME`: the package directly
/// under a `node_modules` directory (not a file of its own tree).
fn npm(dir: &str) -> Option<Manifest> {
    let (rest, last) = dir.rsplit_once('/')?;
    let name = if rest.ends_with("/node_modules") || rest == "node_modules" {
        // A scope's directory holds packages; it is not one.
        if last.starts_with('@') {
            return None;
        }
        last.to_owned()
    } else {
        let (above, scope) = rest.rsplit_once('/')?;
        if !scope.starts_with('@') || !(above.ends_with("/node_modules") || above == "node_modules")
        {
            return None;
        }
        format!("{scope}/{last}")
    };
    if name.starts_with('.') || last.is_empty() {
        return None;
    }
    Some(Manifest {
        ecosystem: NPM,
        name,
        version: None,
    })
}

/// `NAME-VERSION` as cargo names a crate's directory: the version starts at the
/// first `-` followed by a digit (a crate's name never has one there).
fn crate_version(dir: &str) -> Option<(&str, &str)> {
    let at = dir
        .char_indices()
        .find(|&(i, c)| c == '-' && dir[i + 1..].starts_with(|d: char| d.is_ascii_digit()))?
        .0;
    Some((&dir[..at], &dir[at + 1..]))
}

/// Go's module cache writes capitals as `!` and the lower-case letter.
fn go_unescape(module: &str) -> String {
    let mut out = String::with_capacity(module.len());
    let mut upper = false;
    for c in module.chars() {
        if c == '!' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
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
