//! Manifests recognised by their paths; near misses of well-known packages, held
//! against known typosquats (ecosyste.ms' typosquatting dataset, CC0:
//! `fixtures/typosquats.csv`, the npm and PyPI rows) and against real packages
//! that are past the known ones in their source's ranking (npm's 11,001st to
//! 13,628th, PyPI's 11,001st to 15,000th: `fixtures/legit-*.txt`).

use super::*;

fn m(ecosystem: &'static str, name: &str, version: Option<&str>) -> Option<Manifest> {
    Some(Manifest {
        ecosystem,
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })
}

#[test]
fn the_manifests_each_install_writes_are_recognised_by_their_paths() {
    let cases = [
        (
            "/w/app/node_modules/left-pad/package.json",
            m(NPM, "left-pad", None),
        ),
        (
            "/w/app/node_modules/@openai/codex/package.json",
            m(NPM, "@openai/codex", None),
        ),
        // A dependency's own dependency.
        (
            "/w/node_modules/a/node_modules/b/package.json",
            m(NPM, "b", None),
        ),
        ("node_modules/c/package.json", m(NPM, "c", None)),
        // Files of a package's tree, the workspace's own manifest, npm's lockfile.
        ("/w/app/node_modules/left-pad/lib/package.json", None),
        ("/w/app/package.json", None),
        ("/w/app/node_modules/.package-lock.json", None),
        ("/w/app/node_modules/@scope/package.json", None),
        ("/w/app/node_modules/.bin/package.json", None),
        (
            "/v/lib/python3.11/site-packages/requests-2.31.0.dist-info/METADATA",
            m(PYPI, "requests", Some("2.31.0")),
        ),
        (
            "/v/lib/python3.11/site-packages/typing_extensions-4.12.2.dist-info/METADATA",
            m(PYPI, "typing_extensions", Some("4.12.2")),
        ),
        ("/v/lib/python3.11/site-packages/requests/METADATA", None),
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-json-x-1.0.0-rc.1/Cargo.toml",
            m(CRATES, "serde-json-x", Some("1.0.0-rc.1")),
        ),
        (
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/itoa-1.0.18/Cargo.toml",
            m(CRATES, "itoa", Some("1.0.18")),
        ),
        // A crate of the workspace, a file of a crate's tree.
        ("/w/app/crates/itoa-1.0.18/Cargo.toml", None),
        (
            "/root/.cargo/registry/src/index/itoa-1.0.18/sub/Cargo.toml",
            None,
        ),
        (
            "/root/go/pkg/mod/github.com/!burnt!sushi/toml@v1.3.2/go.mod",
            m(GO, "github.com/BurntSushi/toml", Some("v1.3.2")),
        ),
        ("/root/go/pkg/mod/cache/download/x@v1/go.mod", None),
        ("/root/go/pkg/mod/github.com/a/b@v1.0.0/sub/go.mod", None),
        ("/etc/passwd", None),
    ];
    for (path, want) in cases {
        assert_eq!(manifest(path), want, "{path}");
    }
}

/// Cargo's build scripts, as it runs them; other programs under a `build` directory
/// are not.
#[test]
fn a_crate_s_build_script_is_known_by_its_path() {
    for (exe, crate_name) in [
        (
            "/w/target/debug/build/proc-macro2-1a2b3c4d5e6f7a8b/build-script-build",
            Some("proc-macro2"),
        ),
        (
            "/home/a/.cache/t/release/build/openssl-sys-00ff00ff00ff00ff/build-script-main",
            Some("openssl-sys"),
        ),
        (
            "/w/target/debug/build/x-1a2b3c4d5e6f7a8/build-script-build",
            None,
        ),
        (
            "/w/target/debug/build/x-1a2b3c4d5e6f7a8g/build-script-build",
            None,
        ),
        (
            "/w/target/debug/deps/x-1a2b3c4d5e6f7a8b/build-script-build",
            None,
        ),
        ("/w/build/tool-1a2b3c4d5e6f7a8b/run", None),
        (
            "/w/target/debug/build/-1a2b3c4d5e6f7a8b/build-script-build",
            None,
        ),
    ] {
        assert_eq!(build_script(exe), crate_name, "{exe}");
    }
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/packages/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_typo_of_a_well_known_name_is_a_near_miss_and_the_name_itself_is_not() {
    assert_eq!(near_miss(NPM, "lodahs"), Some("lodash"));
    assert_eq!(near_miss(NPM, "expresss"), Some("express"));
    assert_eq!(near_miss(NPM, "lodash"), None);
    assert_eq!(near_miss(PYPI, "reqeusts"), Some("requests"));
    // PyPI's names compare normalised: the same project, not a near miss.
    assert_eq!(near_miss(PYPI, "Typing.Extensions"), None);
    assert_eq!(near_miss(PYPI, "typing_extensions"), None);
    // npm's do not: another package, one edit away.
    assert_eq!(near_miss(NPM, "lodash_es"), Some("lodash-es"));
    // Short names are left alone; other ecosystems have no list.
    assert_eq!(near_miss(NPM, "msx"), None);
    assert_eq!(near_miss(CRATES, "serdee"), None);
    assert_eq!(normalise(PYPI, "Zope..Interface_"), "zope-interface");
}

#[test]
fn known_typosquats_are_caught_and_real_packages_mostly_are_not() {
    let mut caught = 0;
    let mut missed = Vec::new();
    let mut listed = 0;
    let squats = fixture("typosquats.csv");
    for line in squats.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (bad, target, eco) = (f[0], f[1], f[2]);
        let eco = match eco {
            "npm" => NPM,
            "pypi" => PYPI,
            _ => continue,
        };
        let known = match eco {
            NPM => &*NPM_WELL_KNOWN,
            _ => &*PYPI_WELL_KNOWN,
        };
        if !known
            .targets
            .iter()
            .any(|(_, t)| *t == normalise(eco, target))
        {
            continue;
        }
        listed += 1;
        match near_miss(eco, bad) {
            Some(_) => caught += 1,
            None => missed.push(bad),
        }
    }
    // What one edit cannot see: combosquats and two-edit typos.
    assert_eq!((listed, caught), (LISTED, CAUGHT), "missed: {missed:?}");
    for (eco, file, most) in [
        (NPM, "legit-npm.txt", LEGIT_NPM_FLAGGED),
        (PYPI, "legit-pypi.txt", LEGIT_PYPI_FLAGGED),
    ] {
        let text = fixture(file);
        let flagged: Vec<(&str, &str)> = text
            .lines()
            .filter_map(|n| near_miss(eco, n).map(|k| (n, k)))
            .collect();
        assert_eq!(flagged.len(), most, "{eco}: {flagged:?}");
    }
}

const LISTED: usize = 75;
const CAUGHT: usize = 57;
const LEGIT_NPM_FLAGGED: usize = 13;
const LEGIT_PYPI_FLAGGED: usize = 54;

#[test]
fn pip_s_build_backend_hooks_are_recognised_by_their_runner() {
    let argv = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    assert!(build_backend_hook(&argv(&[
        "/w/venv/bin/python3",
        "/w/venv/lib/python3.11/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py",
        "build_wheel",
        "/tmp/tmpco9e5im4",
    ])));
    assert!(build_backend_hook(&argv(&[
        "python",
        "/usr/lib/python3/dist-packages/pip/_vendor/pep517/in_process/_in_process.py",
        "get_requires_for_build_wheel",
        "/tmp/x",
    ])));
    assert!(!build_backend_hook(&argv(&[
        "python", "setup.py", "install"
    ])));
    assert!(!build_backend_hook(&argv(&["pip", "install", "x"])));
}
