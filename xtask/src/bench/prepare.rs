//! Preparing the workloads: the git repository, the C sources, the loopback
//! listener, and warming a real workload before each timed run.

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::ctx::Ctx;
use super::process::{chown_tree, run_timed};
use super::setups::Workload;
use crate::util;

/// Reads every file under `dir`, so the page cache holds it.
fn read_tree(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            read_tree(&path)?;
        } else if meta.is_file() {
            let _ = fs::read(&path);
        }
    }
    Ok(())
}

/// `program` and the shared libraries `ldd` lists for it.
pub(super) fn program_files(program: &Path) -> Vec<PathBuf> {
    let mut files = vec![program.to_path_buf()];
    if let Ok(out) = util::stdout_of(Command::new("ldd").arg(program)) {
        files.extend(
            out.lines()
                .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
                .map(PathBuf::from),
        );
    }
    files
}

/// Brings a real workload to the same starting state before every timed run:
/// reads the repository, git and its libraries (this machine pages cold file pages
/// out), then runs one untimed iteration as the workload account. Without that,
/// the first git run after a minute was several times slower on this VM whatever
/// was attached (cold pages back from disk; files written back meanwhile whose
/// blocks are then freed with `discard`), and gcc's 30 MB of cc1 likewise.
///
/// The cargo, npm and codex workloads take seconds each: their toolchain, sources,
/// caches and install are read instead of an untimed iteration.
pub(super) fn prewarm(ctx: &Ctx, w: Workload) -> Result<()> {
    let warm = match w {
        Workload::Cargo => Some(&ctx.agent_day.cargo_warm),
        Workload::Npm => Some(&ctx.agent_day.npm_warm),
        Workload::Codex => Some(&ctx.codex.warm),
        _ => None,
    };
    if let Some(dirs) = warm {
        for d in dirs {
            read_tree(d)?;
        }
        return Ok(());
    }
    if w == Workload::Real {
        read_tree(&ctx.repo)?;
        for f in &ctx.warm_files {
            let _ = fs::read(f);
        }
    }
    // One iteration, whatever the timed runs do.
    let mut cmd = Command::new(&ctx.workload_bin);
    cmd.args(ctx.workload_args(w, 1));
    ctx.workload_env(&mut cmd);
    run_timed(&mut cmd, Duration::from_secs(300)).map(|_| ())
}

/// `n` C files for the build workload.
pub(super) fn make_build_sources(dir: &Path, n: u64, uid: u32, gid: u32) -> Result<()> {
    fs::create_dir_all(dir)?;
    for i in 0..n {
        let mut src =
            String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n\n");
        for f in 0..41 {
            let _ = writeln!(
                src,
                "int f{i}_{f}(const char *s, int n) {{\n    int h = {f};\n    \
                 for (int k = 0; k < n; k++)\n        h = h * 31 + s[k % (int)strlen(s)];\n    \
                 if (h % 7 == 3)\n        printf(\"%d\\n\", h);\n    \
                 return h ^ atoi(s);\n}}\n"
            );
        }
        fs::write(dir.join(format!("m{i}.c")), src)?;
    }
    chown_tree(dir, uid, gid)
}

/// A repository with `files` files on branch `a`, and branch `b` changing `changed` of them.
pub(super) fn make_repo(repo: &Path, files: u64, changed: u64, uid: u32, gid: u32) -> Result<()> {
    fs::create_dir_all(repo)?;
    let per_dir = 100;
    for i in 0..files {
        let dir = repo.join(format!("src/m{:02}", i / per_dir));
        if i % per_dir == 0 {
            fs::create_dir_all(&dir)?;
        }
        let mut body = String::new();
        for line in 0..20 {
            let _ = writeln!(
                body,
                "// file {i} line {line}: generated for cargo xtask bench"
            );
        }
        fs::write(dir.join(format!("f{i:05}.rs")), body)?;
    }
    let git = |args: &[&str]| -> Result<()> {
        util::stdout_of(
            Command::new("git")
                .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
                .args([
                    "-c",
                    "commit.gpgsign=false",
                    "-c",
                    "core.hooksPath=/dev/null",
                ])
                .args(args)
                .current_dir(repo)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("HOME", repo),
        )
        .map(|_| ())
    };
    git(&["init", "-q", "-b", "a", "."])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "a"])?;
    git(&["checkout", "-q", "-b", "b"])?;
    for i in 0..changed.min(files) {
        let f = repo.join(format!("src/m{:02}/f{i:05}.rs", i / per_dir));
        let mut body = fs::read_to_string(&f)?;
        body.push_str("// changed on branch b\n");
        fs::write(&f, body)?;
    }
    git(&["commit", "-q", "-a", "-m", "b"])?;
    git(&["checkout", "-q", "a"])?;
    chown_tree(repo, uid, gid)
}

/// Listener on 127.0.0.1 whose thread accepts and drops connections forever.
/// A loopback listener that reads every connection to its end and discards it.
pub(super) fn sink() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = std::io::copy(&mut s, &mut std::io::sink());
            });
        }
    });
    Ok(port)
}

pub(super) fn listener() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    // A long accept queue: a busy machine must not drop SYNs (a 1 s retry).
    // SAFETY: listen on a socket we own; re-listening only changes the backlog.
    unsafe {
        libc::listen(l.as_raw_fd(), 4096);
    }
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    Ok(port)
}
