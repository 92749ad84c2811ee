//! One guest's life: the script it runs, its boot under QEMU, its console read
//! as it goes, and the tests' results read from what it printed.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use super::kernels::Kernel;
use super::{
    APPEND, BEGIN_MARK, BOOT_LIMIT, DONE_MARK, END_MARK, Prepared, SILENCE_LIMIT, SKIP_MARK,
    START_MARK, TAIL_LINES, TEST_DEADLINE_SECS, TEST_KILL_SECS, TIME_SCALE, VM_TIMEOUT,
};
use crate::util::{self, log};

/// Tests a guest runs at once: one per vCPU. Each starts a daemon of its own (its
/// own pin directory, agent names and ports), so they cannot see each other. Three
/// at a time ran the 6.1 kernel's tests 8% faster (QEMU used 152% of its 200% with
/// two, 2026-11-27), but in two `.ci/run`s in a row a guest stopped on the emulator's
/// text-patching faults (an `int3` oops in `bpf_lsm_bpf` on 6.12, a soft lockup in
/// `bpf_lsm_file_open` on 6.1: a daemon's LSM link patched in while another
/// daemon's process runs through it), and one second boot costs more than the 8%.
pub(super) const GUEST_JOBS: usize = 2;

/// Boots after the first for the tests a stopped guest cut off. Under TCG a guest
/// kernel has died mid-run now and then (a hang; an `int3` oops or a soft lockup at
/// a call site being patched while programs attach or detach on the other vCPU:
/// the emulator's cross-modifying code, docs/kernels.md); each boot runs only what
/// the last one did not finish. On 6.1 this hit one boot in two of the last four
/// CI runs (2026-11-25/26), always at `bpf_lsm_bpf`, and the next boot passed.
pub(super) const REBOOTS: usize = 3;

/// The script the guest runs: mounts what guard needs, then each test of the
/// subset in a process of its own (so that no test depends on another's leftovers,
/// and a hang costs one test), [`GUEST_JOBS`] at a time, each bounded by `timeout`.
/// A test's output is kept apart and printed whole between markers the host reads
/// when it ends (a `start` line says when it began); a test that overran is
/// followed by the kernel's view of what was stuck. `tests` is (binary name,
/// executable, test names).
pub(super) fn guest_script(
    vm_dir: &Path,
    guard: &Path,
    tests: &[(&str, PathBuf, Vec<String>)],
) -> Result<PathBuf> {
    let guard = fs::canonicalize(guard)
        .with_context(|| format!("no guard binary at {}", guard.display()))?;
    let one = vm_dir.join("guest-one.sh");
    let list = vm_dir.join("guest-tests.txt");
    let mut lines = String::new();
    for (bin, exe, names) in tests {
        for name in names {
            let line = format!("{bin} {name} {}", exe.display());
            if line.split_whitespace().count() != 3 {
                bail!("a test binary's path has a blank in it: {}", exe.display());
            }
            lines.push_str(&line);
            lines.push('\n');
        }
    }
    fs::write(&list, lines).with_context(|| format!("cannot write {}", list.display()))?;
    let one_script = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask vm-test`: one test of the guest's list, its output\n\
         # kept apart, then printed whole between its markers.\n\
         set -u\n\
         bin=$1 name=$2 exe=$3\n\
         log=\"$GUARD_VM_OUT/$bin.$name.log\"\n\
         # What was stuck when a test overran: every task not running or sleeping\n\
         # interruptibly, with its kernel stack, and the kernel's last messages.\n\
         stuck() {{\n\
           echo \"guard-vm: stuck: $1\"\n\
           ps -eo pid,ppid,stat,wchan:32,etimes,args | grep -v ' ps -eo'\n\
           for d in /proc/[0-9]*; do\n\
             st=$(awk '{{print $3}}' \"$d/stat\" 2>/dev/null)\n\
             case \"$st\" in D) echo \"--- ${{d#/proc/}} $(cat $d/comm) ($st):\"; cat \"$d/stack\";; esac\n\
           done\n\
           grep -E 'MemFree|MemAvailable|Slab' /proc/meminfo\n\
           ls -R /sys/fs/bpf | head -50\n\
           dmesg | tail -40\n\
         }}\n\
         echo \"{START_MARK}$bin $name\"\n\
         start=$(date +%s)\n\
         timeout -k 10 {TEST_KILL_SECS} \"$exe\" --exact --test-threads=1 \"$bin::$name\" > \"$log\" 2>&1\n\
         rc=$?\n\
         if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then stuck \"$bin $name\" >> \"$log\" 2>&1; fi\n\
         secs=$(( $(date +%s) - start ))\n\
         {{\n\
           flock 9\n\
           echo \"{BEGIN_MARK}$bin $name\"\n\
           cat \"$log\"\n\
           echo \"{END_MARK}$bin $name rc=$rc secs=$secs\"\n\
         }} 9> \"$GUARD_VM_OUT/print.lock\"\n\
         [ $rc -eq 0 ] || : > \"$GUARD_VM_OUT/failed\"\n\
         exit 0\n"
    );
    fs::write(&one, one_script).with_context(|| format!("cannot write {}", one.display()))?;
    let s = format!(
        "#!/bin/sh\n\
         # Written by `cargo xtask vm-test`; run inside each kernel's VM.\n\
         set -u\n\
         {GUEST_MOUNTS}\
         export GUARD_BIN='{guard}' GUARD_E2E_REQUIRE_LSM=1 GUARD_E2E_TIME_SCALE={TIME_SCALE} \
         GUARD_E2E_TEST_DEADLINE={TEST_DEADLINE_SECS} GUARD_E2E_DETACHED_UNPIN=1 RUST_BACKTRACE=0\n\
         cd /tmp\n\
         GUARD_VM_OUT=$(mktemp -d /tmp/guard-vm.XXXXXX)\n\
         export GUARD_VM_OUT\n\
         xargs -P {GUEST_JOBS} -L 1 sh '{one}' < '{list}'\n\
         failed=0\n\
         [ -e \"$GUARD_VM_OUT/failed\" ] && failed=1\n\
         echo \"{DONE_MARK} failed=$failed\"\n\
         exit $failed\n",
        guard = guard.display(),
        one = one.display(),
        list = list.display(),
    );
    let path = vm_dir.join("guest.sh");
    fs::write(&path, s).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// What the guest mounts before its work (what guard needs), and the line that says
/// which kernel and LSMs it runs. virtme-ng binds a file of its own over /etc/shadow
/// (root without a password); `useradd` renames its new copy onto it, which a mount
/// point refuses (EBUSY): the tests that make users need the overlay's own file, so
/// the guest unmounts it.
pub(super) const GUEST_MOUNTS: &str = "\
    for f in /etc/passwd /etc/shadow /etc/group /etc/gshadow; do \
    grep -q \" $f \" /proc/self/mounts && umount \"$f\"; done\n\
    mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing\n\
    mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf\n\
    mountpoint -q /sys/kernel/security || mount -t securityfs securityfs /sys/kernel/security\n\
    grep -q ' cgroup2 ' /proc/self/mounts || mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
    echo \"guard-vm: kernel $(uname -r); active LSMs: $(cat /sys/kernel/security/lsm); $(grep MemTotal /proc/meminfo); \
    root over $(awk '$2 == \"/\" { print $3 }' /proc/self/mounts)\"\n";

/// What a command run in a kernel's VM printed: the kernel's ABI and the console, or
/// why no boot ran it to its end.
pub(crate) struct CommandRun {
    pub abi: String,
    pub console: Result<Vec<String>>,
}

/// Boots each kernel [`prepare`] set up (one at a time, as the tests do) to run
/// `command`, a shell command line, as root with what guard needs mounted; `what`
/// names it in the log. A boot that stopped before the command ended (the
/// emulator's flakes, see [`REBOOTS`]) is tried again, up to [`REBOOTS`] times. A
/// command that failed is no VM failure: its exit status is on the console, after
/// [`DONE_MARK`] (`rc=N`), and the caller finds its output missing.
pub(crate) fn run_command(
    prepared: Prepared,
    what: &str,
    command: &str,
) -> Result<Vec<CommandRun>> {
    let Prepared {
        vm_dir,
        venv,
        unpacked,
        ..
    } = prepared;
    let script = vm_dir.join("guest-command.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             # Written by `cargo xtask`; run inside each kernel's VM.\n\
             set -u\n\
             {GUEST_MOUNTS}\
             cd /tmp\n\
             echo \"{START_MARK}{what}\"\n\
             {command}\n\
             echo \"{DONE_MARK} rc=$?\"\n"
        ),
    )
    .with_context(|| format!("cannot write {}", script.display()))?;
    let mut runs = Vec::new();
    for (kernel, vmlinuz) in &unpacked {
        log!(
            "kernel {}: booting (TCG, 2 vCPUs, {VM_MEMORY}) for {what}",
            kernel.abi
        );
        let mut last = anyhow!("not booted");
        let mut console = None;
        for boot_no in 1..=REBOOTS + 1 {
            match boot(&venv, &vm_dir, kernel, vmlinuz, &script) {
                Ok(Booted { lines, error: None }) => {
                    console = Some(lines);
                    break;
                }
                Ok(Booted { error: Some(e), .. }) => last = anyhow!("boot {boot_no}: {e}"),
                Err(e) => last = e.context(format!("boot {boot_no}")),
            }
            if boot_no <= REBOOTS {
                log!("kernel {}: {last:#}; booting once more", kernel.abi);
            }
        }
        runs.push(CommandRun {
            abi: kernel.abi.clone(),
            console: console.ok_or(last),
        });
    }
    Ok(runs)
}

/// One test's result in a VM, from the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TestRun {
    pub bin: String,
    pub name: String,
    pub verdict: Verdict,
    pub secs: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Passed,
    Failed(String),
    /// The harness ran no test by that name (renamed, or filtered out).
    Missing,
    /// The VM stopped before the test ended (`started`) or began.
    CutOff {
        started: bool,
    },
    Skipped(String),
}

/// Reads each expected test's result off the console: the harness's own `test
/// MODULE::NAME ... ok` between the test's markers, its `running 1 test`, the exit
/// status, and any `SKIPPED:` line. A test whose markers never came (the VM stopped first) is
/// failed.
pub(super) fn results(console: &[String], expected: &[(String, String)]) -> Vec<TestRun> {
    expected
        .iter()
        .map(|(bin, name)| {
            let begin = format!("{BEGIN_MARK}{bin} {name}");
            let end = format!("{END_MARK}{bin} {name} ");
            let Some(from) = console.iter().position(|l| l.trim_end() == begin) else {
                let start = format!("{START_MARK}{bin} {name}");
                return TestRun {
                    bin: bin.clone(),
                    name: name.clone(),
                    verdict: Verdict::CutOff {
                        started: console.iter().any(|l| l.trim_end() == start),
                    },
                    secs: 0,
                };
            };
            let Some(len) = console[from..].iter().position(|l| l.starts_with(&end)) else {
                return TestRun {
                    bin: bin.clone(),
                    name: name.clone(),
                    verdict: Verdict::CutOff { started: true },
                    secs: 0,
                };
            };
            let lines = &console[from..from + len];
            let tail = &console[from + len][end.len()..];
            let field = |key: &str| {
                tail.split_whitespace()
                    .find_map(|f| f.strip_prefix(key))
                    .and_then(|v| v.parse::<i64>().ok())
            };
            let rc = field("rc=").unwrap_or(-1);
            let secs = field("secs=").unwrap_or(0).max(0) as u64;
            // The binary names a test by its module path: `test MODULE::NAME ... ok`.
            let ok_line = format!("test {bin}::{name} ... ok");
            let ran_one = lines.iter().any(|l| l.trim_end() == "running 1 test");
            let ok = lines.iter().any(|l| l.trim_end() == ok_line);
            let skipped = lines
                .iter()
                .find_map(|l| l.split_once(SKIP_MARK).map(|(_, r)| r.trim().to_owned()));
            let verdict = if !ran_one && rc == 0 {
                Verdict::Missing
            } else if rc == 124 || rc == 137 {
                Verdict::Failed(format!("overran its {TEST_KILL_SECS} s and was killed"))
            } else if rc != 0 {
                Verdict::Failed(format!("exit status {rc}"))
            } else if !ok {
                Verdict::Failed("exit status 0 but the harness did not report it ok".to_owned())
            } else if let Some(why) = skipped {
                Verdict::Skipped(why)
            } else {
                Verdict::Passed
            };
            TestRun {
                bin: bin.clone(),
                name: name.clone(),
                verdict,
                secs,
            }
        })
        .collect()
}

/// A VM that stopped without printing a single line (see the retry in `run`).
#[derive(Debug)]
pub(super) struct Silent(std::process::ExitStatus);

impl std::fmt::Display for Silent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the VM stopped without printing anything (vng: {})",
            self.0
        )
    }
}

impl std::error::Error for Silent {}

/// What a booted VM printed, and what went wrong with the VM itself (not its tests).
pub(super) struct Booted {
    pub(super) lines: Vec<String>,
    pub(super) error: Option<String>,
}

/// The VM's memory: the most the machine's rules allow one VM.
pub(super) const VM_MEMORY: &str = "4G";

/// Boots `kernel` and runs the guest script; the console goes to stderr as it comes
/// and to `vm_dir/ABI.log`. Fails when the VM printed nothing; a VM that did not get
/// to the end of the script has `error` set, with the console's last lines.
#[expect(
    clippy::too_many_lines,
    reason = "one VM's life: start vng, stream its console, stop a hung guest, then judge what it printed"
)]
pub(super) fn boot(
    venv: &Path,
    vm_dir: &Path,
    kernel: &Kernel,
    vmlinuz: &Path,
    script: &Path,
) -> Result<Booted> {
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=30", &format!("{}", VM_TIMEOUT.as_secs())])
        .arg(venv.join("vng"))
        .arg("--run")
        .arg(vmlinuz)
        // `-v`: the kernel's console on stderr. Without it virtme-ng sends it to
        // /dev/null (`quiet loglevel=0`), and a guest kernel that panicked left only
        // vng's exit status 255 (seen twice in 6.12, 2026-11-24).
        .args([
            "-v",
            "--disable-kvm",
            "--cpus",
            "2",
            "--memory",
            VM_MEMORY,
            "--append",
            APPEND,
        ])
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .env("PATH", path)
        .stdin(Stdio::null())
        // Pipes, never a regular file: QEMU truncates a file its output goes to.
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group: a hung guest is stopped with QEMU and all.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    log!("$ {}", util::display(&cmd));
    let mut child = cmd.spawn().context("cannot start vng (virtme-ng)")?;
    let console = Arc::new(Mutex::new(Console {
        last: Some(Instant::now()),
        ..Console::default()
    }));
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|from| {
        let console = Arc::clone(&console);
        thread::spawn(move || {
            for line in BufReader::new(from)
                .lines()
                .map_while(std::result::Result::ok)
            {
                eprintln!("  vm| {line}");
                if let Ok(mut c) = console.lock() {
                    c.push(line);
                }
            }
        })
    })
    .collect();
    // The guest prints at least every TEST_KILL_SECS (a test's end, or what was
    // stuck when `timeout` ended it): silence much longer than that is a guest that
    // no longer runs (a hung kernel, a stuck emulator), stopped here rather than at
    // VM_TIMEOUT.
    let mut silent = false;
    let mut boot_hung = false;
    let booted = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for vng")? {
            break status;
        }
        let (quiet, began) = console.lock().map_or((Duration::ZERO, true), |c| {
            (c.last.map_or(Duration::ZERO, |t| t.elapsed()), c.began)
        });
        if !began && booted.elapsed() > BOOT_LIMIT && !silent {
            silent = true;
            boot_hung = true;
            log!(
                "kernel {}: no test began within {BOOT_LIMIT:?} of the boot: stopping the VM",
                kernel.abi
            );
            // SAFETY: kill(2) on the process group this function started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        }
        if quiet > SILENCE_LIMIT && !silent {
            silent = true;
            log!(
                "kernel {}: the guest printed nothing for {quiet:.0?}: stopping the VM",
                kernel.abi
            );
            // SAFETY: kill(2) on the process group this function started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(500));
    };
    for r in readers {
        let _ = r.join();
    }
    let console = console
        .lock()
        .map_err(|_| anyhow!("console reader panicked"))?;
    let log_path = vm_dir.join(format!("{}.log", kernel.abi));
    let _ = fs::write(&log_path, console.all.join("\n") + "\n");
    if console.all.is_empty() {
        return Err(anyhow::Error::new(Silent(status)));
    }
    let error = (!console.all.iter().any(|l| l.contains(DONE_MARK))).then(|| {
        format!(
            "the VM stopped before the tests finished (vng: {status}{}); console's last \
             lines (whole console in {}):\n{}",
            if boot_hung {
                format!(", stopped: no test began within {BOOT_LIMIT:?}, the guest hung booting")
            } else if silent {
                format!(", stopped after {SILENCE_LIMIT:?} without a line: the guest hung")
            } else if status.code() == Some(124) {
                format!(", timed out after {VM_TIMEOUT:?}")
            } else {
                String::new()
            },
            log_path.display(),
            console
                .tail
                .iter()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    Ok(Booted {
        lines: console.all.clone(),
        error,
    })
}

/// What a VM printed: everything, and the last lines for error messages.
#[derive(Default)]
pub(super) struct Console {
    all: Vec<String>,
    tail: VecDeque<String>,
    /// When the last line came.
    last: Option<Instant>,
    /// The guest script began a test.
    began: bool,
}

impl Console {
    fn push(&mut self, line: String) {
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        self.began |= line.contains(START_MARK);
        self.all.push(line);
        self.last = Some(Instant::now());
    }
}
