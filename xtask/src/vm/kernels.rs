//! What the matrix boots: Debian's kernels (found in apt's suites, fetched and
//! unpacked, never installed), and virtme-ng and virtiofsd, which boot them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use super::{OLDER_SERIES, SERIES, VIRTIOFSD, VIRTME_NG};
use crate::util::{self, log};

/// One kernel of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Kernel {
    pub(super) series: &'static str,
    /// Debian's ABI name: `6.1.0-56-amd64`, `6.12.117+deb12-amd64`.
    pub(super) abi: String,
}

impl Kernel {
    fn package(&self) -> String {
        format!("linux-image-{}-unsigned", self.abi)
    }
}

/// A virtualenv with virtme-ng under `vm_dir`; returns its `bin` directory.
pub(super) fn virtme_ng(vm_dir: &Path) -> Result<PathBuf> {
    let venv = vm_dir.join("venv");
    let bin = venv.join("bin");
    let pinned = VIRTME_NG.trim_start_matches("virtme-ng==");
    let have = util::stdout_of(Command::new(bin.join("vng")).arg("--version"))
        .ok()
        .map(|s| s.trim().to_owned());
    if have.as_deref() == Some(&format!("virtme-ng {pinned}")) {
        log!("virtme-ng: present ({pinned})");
        return Ok(bin);
    }
    log!("virtme-ng: installing {VIRTME_NG} into {}", venv.display());
    util::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    util::run(
        Command::new(bin.join("pip"))
            .args(["install", "--quiet", VIRTME_NG])
            .stdin(Stdio::null()),
    )?;
    Ok(bin)
}

/// [`VIRTIOFSD`] in the virtualenv's `bin` (`bin`), built unless present.
pub(super) fn virtiofsd(bin: &Path) -> Result<()> {
    let wanted = format!("virtiofsd {VIRTIOFSD}");
    let have = util::stdout_of(Command::new(bin.join("virtiofsd")).arg("--version"))
        .ok()
        .map(|s| s.trim().to_owned());
    if have.as_deref() == Some(wanted.as_str()) {
        log!("virtiofsd: present ({VIRTIOFSD})");
        return Ok(());
    }
    log!("virtiofsd: building {VIRTIOFSD} into {}", bin.display());
    let root = bin.parent().context("the virtualenv's bin has a parent")?;
    // Without its release profile's fat LTO, and at the lowest CPU priority: on a
    // fresh machine it is built beside the tests' build, which comes first (the
    // VMs need it only after the unit and end-to-end tests).
    util::run(util::niced(
        util::cargo()
            .args(["install", "--locked", "--force", "--quiet", "virtiofsd"])
            .arg("--version")
            .arg(format!("={VIRTIOFSD}"))
            .arg("--root")
            .arg(root)
            .env("CARGO_PROFILE_RELEASE_LTO", "off")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
            .stdin(Stdio::null()),
    ))
}

/// `linux-image-*-amd64-unsigned` package names apt knows that match `pattern`.
pub(super) fn apt_search(pattern: &str) -> Result<Vec<String>> {
    let out = util::stdout_of(Command::new("apt-cache").args(["search", "--names-only", pattern]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The newest generic amd64 ABI of `series` among `packages`, by numeric fields.
pub(super) fn newest_abi(series: &str, packages: &[String]) -> Option<String> {
    let mut abis: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            p.strip_prefix("linux-image-")?
                .strip_suffix("-unsigned")
                .map(str::to_owned)
        })
        .filter(|abi| is_generic(series, abi))
        .collect();
    abis.sort_by_key(|abi| numbers(abi));
    abis.pop()
}

/// `6.1.0-56-amd64` or `6.12.117+deb12-amd64` of `series`: not the cloud, rt or
/// debug flavours.
pub(super) fn is_generic(series: &str, abi: &str) -> bool {
    let Some(core) = abi.strip_suffix("-amd64") else {
        return false;
    };
    let Some(rest) = core.strip_prefix(series).and_then(|r| r.strip_prefix('.')) else {
        return false;
    };
    let rest = rest.replace("+deb", "-");
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
}

pub(super) fn numbers(abi: &str) -> Vec<u64> {
    abi.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Debian 11's suites (bullseye, bullseye-security), for the 5.10 kernel's download
/// alone: apt's sources, lists and cache of their own under `vm_dir/apt-bullseye`,
/// passed to each apt command; the host's sources and packages are never touched.
pub(super) struct Bullseye {
    args: Vec<String>,
}

impl Bullseye {
    /// Its configuration, with lists no older than a day.
    fn new(vm_dir: &Path) -> Result<Self> {
        let root = vm_dir.join("apt-bullseye");
        let lists = root.join("lists");
        let cache = root.join("cache");
        for d in [lists.join("partial"), cache.join("archives/partial")] {
            fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let sources = root.join("sources.list");
        let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
        fs::write(
            &sources,
            format!(
                "deb [signed-by={keyring}] http://deb.debian.org/debian bullseye main\n\
                 deb [signed-by={keyring}] http://deb.debian.org/debian-security \
                 bullseye-security main\n"
            ),
        )
        .with_context(|| format!("cannot write {}", sources.display()))?;
        let opt = |k: &str, v: &Path| vec!["-o".to_owned(), format!("{k}={}", v.display())];
        let args = [
            opt("Dir::Etc::SourceList", &sources),
            opt("Dir::Etc::SourceParts", Path::new("/dev/null")),
            opt("Dir::State::Lists", &lists),
            opt("Dir::Cache", &cache),
        ]
        .concat();
        let b = Self { args };
        let stamp = root.join("updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(86_400));
        if !fresh {
            log!("apt-get update of bullseye's suites (for the {OLDER_SERIES} kernel only)");
            util::run(util::apt_get().args(&b.args).arg("update"))?;
            fs::write(&stamp, "").with_context(|| format!("cannot write {}", stamp.display()))?;
        }
        Ok(b)
    }

    fn search(&self, pattern: &str) -> Result<Vec<String>> {
        let out = util::stdout_of(Command::new("apt-cache").args(&self.args).args([
            "search",
            "--names-only",
            pattern,
        ]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    }
}

/// The kernels to boot: the newest of each series the configured suites carry, and
/// with `older`, bullseye's newest 5.10.
pub(super) fn matrix(vm_dir: &Path, older: bool) -> Result<Vec<Kernel>> {
    let search = || apt_search(r"^linux-image-6\.[0-9]+\..*-amd64-unsigned$");
    let mut six = search()?;
    if SERIES.iter().any(|s| newest_abi(s, &six).is_none()) {
        log!("apt lists no kernel for some series; running apt-get update");
        util::run(util::apt_get().arg("update"))?;
        six = search()?;
    }
    let mut kernels = Vec::new();
    if older {
        let found = Bullseye::new(vm_dir)?.search(r"^linux-image-5\.10\..*-amd64-unsigned$")?;
        let abi = newest_abi(OLDER_SERIES, &found)
            .ok_or_else(|| anyhow!("bullseye's suites list no {OLDER_SERIES} kernel"))?;
        kernels.push(Kernel {
            series: OLDER_SERIES,
            abi,
        });
    }
    for series in SERIES {
        let abi = newest_abi(series, &six).ok_or_else(|| {
            anyhow!(
                "no Debian {series} kernel (linux-image-{series}.*-amd64-unsigned) in the \
                 configured apt suites"
            )
        })?;
        kernels.push(Kernel { series, abi });
    }
    log!(
        "kernel matrix: {}",
        kernels
            .iter()
            .map(|k| k.abi.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(kernels)
}

/// Downloads and unpacks `kernel` under `vm_dir/kernels/ABI` unless it is there
/// already; returns its vmlinuz.
pub(super) fn fetch(vm_dir: &Path, kernel: &Kernel) -> Result<PathBuf> {
    let root = vm_dir.join("kernels").join(&kernel.abi);
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{}", kernel.abi));
    let modules = root.join("lib/modules").join(&kernel.abi);
    if vmlinuz.is_file() && modules.is_dir() {
        log!("kernel {}: cached in {}", kernel.abi, root.display());
        return Ok(vmlinuz);
    }
    let debs = vm_dir.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let package = kernel.package();
    let mut download = util::apt_get();
    if kernel.series == OLDER_SERIES {
        download.args(Bullseye::new(vm_dir)?.args);
    }
    util::run(download.args(["download", &package]).current_dir(&debs))?;
    let deb = fs::read_dir(&debs)
        .with_context(|| format!("cannot list {}", debs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| {
            anyhow!(
                "apt-get download left no {package}_*.deb in {}",
                debs.display()
            )
        })?;
    let kernels = vm_dir.join("kernels");
    fs::create_dir_all(&kernels).with_context(|| format!("cannot create {}", kernels.display()))?;
    // Unpacked aside, then renamed: an interrupted unpack is never taken for a kernel.
    let partial = kernels.join(format!("{}.partial", kernel.abi));
    let _ = fs::remove_dir_all(&partial);
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&partial, &root)
        .with_context(|| format!("cannot move {} to {}", partial.display(), root.display()))?;
    // The unpacked tree is what is kept; the package is 70-110 MB.
    let _ = fs::remove_file(&deb);
    if !vmlinuz.is_file() {
        bail!("{package} has no {}", vmlinuz.display());
    }
    Ok(vmlinuz)
}
