//! An agent's version, from the package it was installed from: the `package.json`
//! nearest above its program (Codex's native binary from npm lies in
//! `node_modules/@openai/codex-linux-x64/vendor/…/bin/codex`), or above the script
//! a JavaScript runtime runs (`node …/@openai/codex/bin/codex.js`). Read once per
//! program path.

use std::{collections::HashMap, path::Path, sync::Arc};

/// Directories walked up from a program before giving up.
const LEVELS: usize = 8;
/// Program paths remembered (the cache is emptied past it).
const KEPT: usize = 256;

#[derive(Default)]
pub struct Versions {
    by_path: HashMap<String, Option<Arc<str>>>,
}

impl Versions {
    /// The version of the agent that `exe` (run with `argv`) is, if its package
    /// says.
    pub fn of(&mut self, exe: &str, argv: &[String]) -> Option<Arc<str>> {
        let runtime = Path::new(exe)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| super::profile::RUNTIMES.contains(&n));
        let program = match super::profile::script_of(argv) {
            Some(script) if runtime && script.starts_with('/') => script,
            _ => exe,
        };
        if let Some(known) = self.by_path.get(program) {
            return known.clone();
        }
        if self.by_path.len() >= KEPT {
            self.by_path.clear();
        }
        // npm's `.bin/gemini` is a symlink into the package: its own directory is
        // the installing project's.
        let real = std::fs::canonicalize(program).unwrap_or_else(|_| program.into());
        let found = package_version(&real).map(Arc::from);
        self.by_path.insert(program.to_owned(), found.clone());
        found
    }
}

/// The `version` of the nearest `package.json` (with a `name`) above `program`,
/// for a program installed as a package (under `node_modules`); a platform
/// package's suffix (`0.169.0-linux-x64`) is left out.
fn package_version(program: &Path) -> Option<String> {
    if !program
        .components()
        .any(|c| c.as_os_str() == "node_modules")
    {
        return None;
    }
    for dir in program.ancestors().skip(1).take(LEVELS) {
        let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json.get("name")?;
        let version = json.get("version")?.as_str()?;
        let version = ["-linux-", "-darwin-", "-win32-"]
            .iter()
            .find_map(|p| version.split_once(p).map(|(v, _)| v))
            .unwrap_or(version);
        return Some(version.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(dir: &Path, name: &str, version: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(
            dir.join("package.json"),
            format!("{{\"name\": \"{name}\", \"version\": \"{version}\"}}"),
        )
        .expect("write package.json");
    }

    /// Codex from npm, both ways it starts: the native binary of the platform
    /// package, and `node` running the wrapper's script.
    #[test]
    fn codex_from_npm_is_known_by_its_package() {
        let root = tempfile::tempdir().expect("tempdir");
        let modules = root.path().join("node_modules/@openai");
        package(&modules.join("codex"), "@openai/codex", "0.169.0");
        package(
            &modules.join("codex-linux-x64"),
            "@openai/codex",
            "0.169.0-linux-x64",
        );
        let native = modules.join("codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex");
        let script = modules.join("codex/bin/codex.js");
        for file in [&native, &script] {
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, "").expect("write");
        }
        let mut versions = Versions::default();
        let native = native.to_str().expect("UTF-8");
        assert_eq!(versions.of(native, &[]).as_deref(), Some("0.169.0"));
        let script = script.to_str().expect("UTF-8").to_owned();
        assert_eq!(
            versions
                .of("/usr/bin/node", &["node".to_owned(), script])
                .as_deref(),
            Some("0.169.0")
        );
        assert_eq!(versions.of("/usr/bin/true", &[]), None, "no package");
    }

    /// Gemini CLI: `node` (after its options) running npm's `.bin/gemini`, a symlink
    /// into the package, inside a project that has a package.json of its own.
    #[test]
    fn a_script_behind_npm_s_bin_symlink_is_known_by_its_package() {
        let root = tempfile::tempdir().expect("tempdir");
        package(root.path(), "the-project", "9.9.9");
        let pkg = root.path().join("node_modules/@google/gemini-cli");
        package(&pkg, "@google/gemini-cli", "0.61.0");
        std::fs::create_dir_all(pkg.join("bundle")).expect("mkdir");
        std::fs::write(pkg.join("bundle/gemini.js"), "").expect("write");
        let bin = root.path().join("node_modules/.bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::os::unix::fs::symlink("../@google/gemini-cli/bundle/gemini.js", bin.join("gemini"))
            .expect("symlink");
        let script = bin.join("gemini").to_str().expect("UTF-8").to_owned();
        let argv = [
            "node".to_owned(),
            "--max-old-space-size=4096".to_owned(),
            script,
        ];
        assert_eq!(
            Versions::default().of("/usr/bin/node", &argv).as_deref(),
            Some("0.61.0")
        );
    }
}
