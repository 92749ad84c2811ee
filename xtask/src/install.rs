//! `cargo xtask install`: a workstation install — the binary, the systemd unit, and
//! a starting policy (an existing one is kept).

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{log, util};

pub(crate) fn install(bin: &Path, prefix: &Path) -> Result<()> {
    if !util::is_root() {
        bail!(
            "install writes under /usr/local and /etc; run it as root:\n  sudo -E env PATH=$PATH cargo xtask install"
        );
    }
    let target_bin = prefix.join("usr/local/bin/guard");
    let unit = prefix.join("etc/systemd/system/guard.service");
    let policy = prefix.join("etc/guard/guard.toml");
    for dir in [&target_bin, &unit, &policy]
        .iter()
        .filter_map(|p| p.parent())
    {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // Copy to a temporary name and rename, so a running guard is never cut mid-file.
    let tmp = target_bin.with_extension("new");
    fs::copy(bin, &tmp).with_context(|| format!("copy {} to {}", bin.display(), tmp.display()))?;
    fs::rename(&tmp, &target_bin).with_context(|| format!("install {}", target_bin.display()))?;
    log!("installed {}", target_bin.display());

    let source_unit = util::workspace_root().join("deploy/systemd/guard.service");
    fs::copy(&source_unit, &unit).with_context(|| format!("install {}", unit.display()))?;
    log!("installed {}", unit.display());

    if policy.exists() {
        log!("kept {} (it exists)", policy.display());
    } else {
        let text = util::stdout_of(Command::new(bin).args(["policy", "show", "workstation"]))?;
        fs::write(&policy, text).with_context(|| format!("write {}", policy.display()))?;
        log!("installed {} (the workstation policy)", policy.display());
    }
    log!("next: systemctl daemon-reload && systemctl enable --now guard");
    Ok(())
}
