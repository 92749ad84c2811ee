//! The agent's day as workloads: a Rust crate whose dependencies the set-up
//! vendors from crates.io (so the timed builds run offline), and an npm project
//! whose packages the set-up puts in the npm cache (so the timed `npm ci` runs
//! offline). Both run as the workload account, which cannot read root's rustup
//! toolchain: the set-up links the toolchain into the bench's directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use super::process::chown_tree;
use crate::util::{self, log};

/// The crates the Rust workload's crate uses (from crates.io, vendored).
pub(super) const CARGO_DEPS: &str = "regex, serde_json and memchr";
/// The packages the npm workload's project uses (from the npm registry).
pub(super) const NPM_DEPS: &str = "mocha, lodash and semver";

/// What the cargo and npm workloads run on (empty where they do not run).
#[derive(Default)]
pub(super) struct AgentDay {
    /// The crate (`Cargo.toml`, `src/`, `vendor/`, `.cargo/config.toml`).
    pub(super) crate_dir: PathBuf,
    /// A toolchain the workload account can run (`bin/cargo`, `bin/rustc`).
    pub(super) toolchain: PathBuf,
    /// The npm project (`package.json`, `package-lock.json`, `test/`).
    pub(super) npm_dir: PathBuf,
    /// Read before each timed cargo run, so the page cache holds them.
    pub(super) cargo_warm: Vec<PathBuf>,
    /// Read before each timed npm run.
    pub(super) npm_warm: Vec<PathBuf>,
}

const CARGO_TOML: &str = r#"[package]
name = "gbench-crate"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
memchr = "2"
regex = "1"
serde_json = "1"
"#;

const MAIN_RS: &str = r#"use std::collections::BTreeMap;

fn main() {
    let re = regex::Regex::new(r"(?m)^fn (\w+)\((.*)\)").expect("a valid pattern");
    let src = include_str!("main.rs");
    let mut names = BTreeMap::new();
    for c in re.captures_iter(src) {
        names.insert(c[1].to_owned(), c[2].len());
    }
    let lines = memchr::memchr_iter(b'\n', src.as_bytes()).count();
    let report = serde_json::json!({ "functions": names, "lines": lines });
    println!("{report}");
}
"#;

const PACKAGE_JSON: &str = r#"{
  "name": "gbench-npm",
  "version": "1.0.0",
  "private": true,
  "scripts": { "test": "mocha --reporter dot" },
  "dependencies": { "lodash": "^4.17.21", "semver": "^7.6.0" },
  "devDependencies": { "mocha": "^10.4.0" }
}
"#;

const TEST_JS: &str = r#"const assert = require('assert');
const _ = require('lodash');
const semver = require('semver');

describe('lodash', function () {
  it('chunks', function () { assert.deepStrictEqual(_.chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]); });
  it('groups', function () { assert.deepStrictEqual(_.groupBy([1.3, 2.1, 2.4], Math.floor), { 1: [1.3], 2: [2.1, 2.4] }); });
  it('merges', function () { assert.deepStrictEqual(_.merge({ a: { b: 1 } }, { a: { c: 2 } }), { a: { b: 1, c: 2 } }); });
  for (let n = 0; n < 50; n++) {
    it(`sorts ${n}`, function () {
      const xs = _.shuffle(_.range(n));
      assert.deepStrictEqual(_.sortBy(xs), _.range(n));
    });
  }
});

describe('semver', function () {
  it('compares', function () { assert.ok(semver.gt('1.10.0', '1.9.3')); });
  it('satisfies', function () { assert.ok(semver.satisfies('7.6.2', '^7.6.0')); });
  it('sorts', function () { assert.deepStrictEqual(semver.sort(['1.2.10', '1.2.9', '1.10.0']), ['1.2.9', '1.2.10', '1.10.0']); });
});
"#;

/// Runs `cmd` (in `dir`), failing with its output when it fails.
fn run(cmd: &mut Command, dir: &Path, what: &str) -> Result<()> {
    let out = cmd
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The toolchain the xtask runs with, linked (or, across file systems, copied)
/// into `dst` without its sources and docs.
fn link_toolchain(dst: &Path) -> Result<()> {
    let sysroot = util::stdout_of(Command::new("rustc").args(["--print", "sysroot"]))
        .context("cannot find the Rust toolchain (rustc --print sysroot)")?;
    let sysroot = PathBuf::from(sysroot.trim());
    fs::create_dir_all(dst.join("lib/rustlib"))?;
    let host = util::stdout_of(Command::new("rustc").args(["--print", "host-tuple"]))
        .context("cannot ask rustc for its host")?;
    let parts = [
        "bin".to_owned(),
        "libexec".to_owned(),
        format!("lib/rustlib/{}", host.trim()),
    ];
    let mut sources: Vec<PathBuf> = parts.iter().map(|p| sysroot.join(p)).collect();
    // The shared libraries rustc and cargo load (librustc_driver, LLVM).
    for e in fs::read_dir(sysroot.join("lib"))? {
        let p = e?.path();
        if p.is_file() {
            sources.push(p);
        }
    }
    for src in sources.iter().filter(|p| p.exists()) {
        let rel = src.strip_prefix(&sysroot)?;
        let to = dst.join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        let linked = Command::new("cp")
            .arg("-al")
            .arg(src)
            .arg(&to)
            .status()
            .is_ok_and(|s| s.success());
        if !linked {
            run(
                Command::new("cp").arg("-a").arg(src).arg(&to),
                dst,
                "cp -a (the toolchain)",
            )?;
        }
    }
    Ok(())
}

/// Makes the crate and the npm project under `base` (tmpfs) and the toolchain
/// under `dir` (disk), owned by `uid:gid`; the npm cache is `home/.npm`.
pub(super) fn prepare(
    base: &Path,
    dir: &Path,
    home: &Path,
    uid: u32,
    gid: u32,
) -> Result<AgentDay> {
    let crate_dir = base.join("crate");
    fs::create_dir_all(crate_dir.join("src"))?;
    fs::create_dir_all(crate_dir.join(".cargo"))?;
    fs::write(crate_dir.join("Cargo.toml"), CARGO_TOML)?;
    fs::write(crate_dir.join("src/main.rs"), MAIN_RS)?;
    log!("vendoring the cargo workload's dependencies ({CARGO_DEPS}) from crates.io");
    let vendor = util::stdout_of(
        Command::new("cargo")
            .args(["vendor", "--versioned-dirs", "vendor"])
            .current_dir(&crate_dir),
    )
    .context("cargo vendor (the cargo workload needs crates.io once)")?;
    if !vendor.contains("[source.crates-io]") {
        bail!("cargo vendor printed no source replacement: {vendor:?}");
    }
    fs::write(crate_dir.join(".cargo/config.toml"), vendor)?;
    chown_tree(&crate_dir, uid, gid)?;
    let toolchain = dir.join("toolchain");
    link_toolchain(&toolchain)?;

    let npm_dir = base.join("npm");
    fs::create_dir_all(npm_dir.join("test"))?;
    fs::write(npm_dir.join("package.json"), PACKAGE_JSON)?;
    fs::write(npm_dir.join("test/test.js"), TEST_JS)?;
    let cache = home.join(".npm");
    log!("installing the npm workload's packages ({NPM_DEPS}) from the npm registry");
    run(
        Command::new("npm")
            // The lock file keeps each package's address (whatever a user's npmrc
            // says), so `npm ci --offline` takes the tarballs from the cache.
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--omit-lockfile-registry-resolved=false")
            .arg("--cache")
            .arg(&cache),
        &npm_dir,
        "npm install (the npm workload needs the npm registry once)",
    )?;
    chown_tree(&npm_dir, uid, gid)?;
    chown_tree(home, uid, gid)?;
    Ok(AgentDay {
        cargo_warm: vec![
            crate_dir.clone(),
            toolchain.join("bin"),
            toolchain.join("lib"),
        ],
        npm_warm: vec![npm_dir.clone(), cache],
        crate_dir,
        toolchain,
        npm_dir,
    })
}
