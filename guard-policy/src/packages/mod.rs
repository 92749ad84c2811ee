//! Packages an install writes, recognised by their manifests' paths (the files the
//! kernel reports a session writing), and names that are near misses of well-known
//! packages: both pure, for the judge (`[packages]`) and the reports. Reading the
//! manifests is the daemon's (guard's `packages`).
//!
//! | ecosystem | manifest written by the install | version from |
//! |---|---|---|
//! | `npm` (npm, pnpm, yarn) | `…/node_modules/[@SCOPE/]NAME/package.json` | the file (JSON) |
//! | `pypi` (pip, uv, poetry) | `…/NAME-VERSION.dist-info/METADATA` | the file (`Name:`/`Version:` headers), else the directory |
//! | `crates.io` (cargo) | `…/registry/src/INDEX/NAME-VERSION/Cargo.toml` | the file (TOML), else the directory |
//! | `go` | `…/pkg/mod/MODULE@VERSION/go.mod` | the directory |

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

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

/// The crate whose build script `exe` is: cargo runs a package's `build.rs`, built,
/// as `…/build/NAME-HASH/build-script-build` (HASH: 16 hex digits). Like an npm
/// install script, it runs the crate's own code with the developer's credentials in
/// reach, at every build that compiles the crate.
pub fn build_script(exe: &str) -> Option<&str> {
    let (dir, file) = exe.rsplit_once('/')?;
    if !file.starts_with("build-script-") {
        return None;
    }
    let (parent, unit) = dir.rsplit_once('/')?;
    if !parent.ends_with("/build") {
        return None;
    }
    let (name, hash) = unit.rsplit_once('-')?;
    (hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) && !name.is_empty())
        .then_some(name)
}

/// Whether `argv` runs a hook of a Python project's build backend: pip (and
/// `python -m build`) run each PEP 517 hook of a source tree it installs from (a
/// source distribution, a directory) as `python …/pyproject_hooks/_in_process/
/// _in_process.py HOOK DIR` (older pips: `…/pep517/in_process/_in_process.py`),
/// with the source tree as the working directory. The backend runs the project's
/// own code (its `setup.py`), as an npm install script runs its package's.
pub fn build_backend_hook(argv: &[String]) -> bool {
    argv.iter().take(3).any(|a| {
        a.ends_with("/_in_process/_in_process.py") || a.ends_with("/in_process/_in_process.py")
    })
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

/// Names shorter than this (normalised) are never called near misses: one edit
/// away from a short name is another short name, often a real package.
pub const NEAR_MISS_MIN_LEN: usize = 5;

/// Packages a near miss is measured against: the first this many of each list.
pub const NEAR_MISS_TARGETS: usize = 2_000;

/// The known packages of an ecosystem, most downloaded first (guard-policy/data,
/// each file saying where its list comes from): the first
/// [`NEAR_MISS_TARGETS`] are the well-known ones a near miss is one edit from; none
/// of the list is ever called a near miss (a real package that happens to be one
/// edit from another).
struct WellKnown {
    /// The targets and their normalised forms.
    targets: Vec<(&'static str, String)>,
    /// Every name of the list, normalised.
    known: HashSet<String>,
    /// Each target's normalised form, and each form with one character deleted,
    /// to the targets that have it: a name one edit from a target shares one of
    /// these with it (the candidates a distance is then computed for), so a check
    /// costs a few lookups rather than 2,000 distances.
    deletions: HashMap<String, Vec<usize>>,
}

impl WellKnown {
    fn new(ecosystem: &str, text: &'static str) -> Self {
        let names: Vec<&'static str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let targets: Vec<(&'static str, String)> = names
            .iter()
            .take(NEAR_MISS_TARGETS)
            .map(|n| (*n, normalise(ecosystem, n)))
            .collect();
        let known = names.iter().map(|n| normalise(ecosystem, n)).collect();
        let mut deletions: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (_, key)) in targets.iter().enumerate() {
            for variant in std::iter::once(key.clone()).chain(deleted(key)) {
                let list = deletions.entry(variant).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        Self {
            targets,
            known,
            deletions,
        }
    }
}

/// `s` with each of its characters deleted in turn.
fn deleted(s: &str) -> impl Iterator<Item = String> + '_ {
    s.char_indices().map(move |(i, c)| {
        let mut out = String::with_capacity(s.len());
        out.push_str(&s[..i]);
        out.push_str(&s[i + c.len_utf8()..]);
        out
    })
}

static NPM_WELL_KNOWN: LazyLock<WellKnown> =
    LazyLock::new(|| WellKnown::new(NPM, include_str!("../../data/well-known-npm.txt")));
static PYPI_WELL_KNOWN: LazyLock<WellKnown> =
    LazyLock::new(|| WellKnown::new(PYPI, include_str!("../../data/well-known-pypi.txt")));

/// A name as its registry compares names: PyPI's normalised form (PEP 503: lower
/// case, runs of `-`, `_` and `.` as one `-`), npm's as it is (npm names are lower
/// case, and `-`, `_` and `.` make different packages).
pub fn normalise(ecosystem: &str, name: &str) -> String {
    if ecosystem != PYPI {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// The well-known package (npm's and PyPI's 2,000 most downloaded:
/// guard-policy/data) that `name` is a near miss of: not a known package itself
/// (the 11,000 most downloaded), and one edit away
/// (a letter dropped, added, changed, or two swapped: the optimal string alignment
/// distance) from one, both of at least [`NEAR_MISS_MIN_LEN`] characters. What a
/// typo, or a model's invention that someone registered, looks like.
pub fn near_miss(ecosystem: &str, name: &str) -> Option<&'static str> {
    let list = match ecosystem {
        NPM => &*NPM_WELL_KNOWN,
        PYPI => &*PYPI_WELL_KNOWN,
        _ => return None,
    };
    let key = normalise(ecosystem, name);
    if list.known.contains(&key) || key.chars().count() < NEAR_MISS_MIN_LEN {
        return None;
    }
    // The most downloaded of the candidates that are one edit away.
    std::iter::once(key.clone())
        .chain(deleted(&key))
        .filter_map(|v| list.deletions.get(&v))
        .flatten()
        .copied()
        .filter(|&i| {
            let known = &list.targets[i].1;
            known.chars().count() >= NEAR_MISS_MIN_LEN && strsim::osa_distance(&key, known) == 1
        })
        .min()
        .map(|i| list.targets[i].0)
}

/// A page of the organisation's package names, as the fleet serves them to hosts
/// (`GET /v1/packages?since=MS`, docs/fleet.md).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamesPage {
    /// `(ecosystem, name)` of every package version the fleet recorded since the
    /// asked time, each name once.
    pub names: Vec<(String, String)>,
    /// Where the next pull starts (`since`, the fleet's clock): the last name's
    /// record time when the page is full, else the fleet's clock less a minute (a
    /// write in flight commits in that time: names may come twice, never not at
    /// all).
    pub until: i64,
    /// The page was full: ask again from `until` now.
    pub more: bool,
}

/// The package names the organisation has seen (`[packages] first_seen`): what the
/// fleet's inventory lists (the daemon pulls it), and what this host judged since.
/// Keys are the registry's comparison form ([`normalise`]). Not `ready` until the
/// fleet's whole list has arrived once: until then nothing is judged first seen.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    names: HashSet<(String, String)>,
    ready: bool,
}

impl Inventory {
    /// Adds a name the organisation has seen.
    pub fn insert(&mut self, ecosystem: &str, name: &str) {
        self.names
            .insert((ecosystem.to_owned(), normalise(ecosystem, name)));
    }

    /// Whether the organisation has seen `name`: `None` until the fleet's list has
    /// arrived.
    pub fn knows(&self, ecosystem: &str, name: &str) -> Option<bool> {
        self.ready.then(|| {
            self.names
                .contains(&(ecosystem.to_owned(), normalise(ecosystem, name)))
        })
    }

    /// The fleet's whole list has arrived (once is enough: what follows adds to it).
    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests;
