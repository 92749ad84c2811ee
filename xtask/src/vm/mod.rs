//! `cargo xtask vm-test`: a chosen subset of the root end-to-end tests, run inside
//! Debian's stock kernels (the newest 6.1 and 6.12 of the machine's configured apt
//! suites, and 5.10 where one is reachable) booted one at a time under QEMU through
//! virtme-ng, with the host's root file system shared read-only: the freshly built
//! `guard` and the test binaries built here run inside as they are.
//!
//! Kernels come from `apt-get download linux-image-<abi>-unsigned` (vmlinuz and
//! modules), unpacked with `dpkg-deb -x` under `target/vm/kernels/`, never installed,
//! and kept there between runs. virtme-ng comes from PyPI, pinned, into a virtualenv
//! under `target/vm/`.
//!
//! Software emulation (TCG) only: this project's machines have a PVM `/dev/kvm`, which
//! cannot run stock kernels. Each kernel must boot and pass every test of the subset;
//! a test that needs BPF-LSM must not skip there (`GUARD_E2E_REQUIRE_LSM`): Debian's
//! kernels list `bpf` in their default `CONFIG_LSM`.

mod guest;
mod kernels;
mod subset;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use self::guest::{REBOOTS, Silent, TestRun, VM_MEMORY, boot, guest_script, results};
pub(crate) use self::guest::{Verdict, run_command};
use self::kernels::{Kernel, fetch, matrix, virtiofsd, virtme_ng};
use self::subset::{COMPAT_SET, E2E_BINARY, Kernels, SUBSET};
use crate::setup;
use crate::util::{self, log};

/// virtme-ng, pinned (the version the VM recipe was measured with).
const VIRTME_NG: &str = "virtme-ng==1.42";
/// What booting a kernel needs on the host: QEMU, modprobe and busybox for
/// virtme-ng's initramfs, and udev (virtme-ng's init finds its console ports
/// through /dev/virtio-ports; without udev the output is lost and every exit
/// status is 255).
/// libseccomp and libcap-ng: what [`VIRTIOFSD`] links against.
pub(crate) const VM_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "kmod",
    "busybox-static",
    "udev",
    "libseccomp-dev",
    "libcap-ng-dev",
];
/// The Rust virtiofsd, pinned, built from crates.io into the virtme-ng virtualenv
/// (where vng looks first). It shares the host's root with the guest over
/// virtio-fs; without it virtme-ng falls back to 9p (Debian 12 ships only QEMU's
/// old C virtiofsd, which virtme-ng cannot drive), and a guest file operation
/// costs several times more: a daemon's start in a 6.1 guest took 12.5 s over
/// 9p and 7.9 s over virtio-fs (2026-11-27), most of it the identity index's
/// stat calls and inotify watches.
const VIRTIOFSD: &str = "1.14.0";
/// Kernel series of the matrix; each must be found in the configured suites.
const SERIES: &[&str] = &["6.1", "6.12"];
/// An older series, Debian 11's (bullseye): no `bpf_loop`, so guard loads its compat
/// build there, and the kernel runs [`COMPAT_SET`]. Its package comes from
/// bullseye's suites, configured for that download alone ([`Bullseye`]).
const OLDER_SERIES: &str = "5.10";
/// Kernel command line: the LSM list made explicit (Debian's default already has bpf);
/// the console (which `vng -v` shows) gets warnings and worse (a panic, an oops, a
/// lockup, a WARN), not the notices (audit's line per BPF program loaded) that would
/// slow an emulated serial line. A soft lockup panics the guest (virtme-ng runs it
/// with `panic=-1` and `-no-reboot`, so QEMU exits): under TCG both vCPUs have been
/// seen spinning at a call site being patched (`bpf_lsm_bpf+0x0`, 6.1, 2026-11-25),
/// a guest that would otherwise print lockup warnings until the VM's time ran out;
/// stopped, it is booted again for the tests it cut off ([`REBOOTS`]). The stuck vCPU
/// is reported as an RCU stall first (21 s; the soft lockup came 24 and 28 s later in
/// the two consoles that show both, 6.1 and 5.10, 2026-11-28/29, and no passing run
/// has had a stall), so a stall panics the guest too.
const APPEND: &str = "lsm=lockdown,capability,landlock,yama,apparmor,bpf loglevel=5 \
     softlockup_panic=1 sysctl.kernel.panic_on_rcu_stall=1";
/// A VM that has not finished by then is stopped and counted as failed. With the
/// identity, taint and DNS work the subset has 26 tests; on 2026-11-23 (session 5) the
/// 6.1 VM took 764 s on an idle machine and 6.12 486 s (every daemon start pays the
/// verifier, slower on 6.1): 24 minutes leaves room for a busy CI machine.
const VM_TIMEOUT: Duration = Duration::from_secs(24 * 60);
/// One test's deadline inside a VM (`GUARD_E2E_TEST_DEADLINE`): the test then
/// prints what it waited for and its state, and ends what it started. The slowest
/// test of the subset took 60 s on 6.1 under TCG.
const TEST_DEADLINE_SECS: u64 = 240;
/// The guest's own bound on one test process, past its deadline: `timeout` kills
/// it and the guest prints the kernel's view (blocked tasks, their stacks, memory).
const TEST_KILL_SECS: u64 = TEST_DEADLINE_SECS + 60;
/// A guest silent for this long has stopped running (see `boot`).
const SILENCE_LIMIT: Duration = Duration::from_secs(TEST_KILL_SECS + 120);
/// The guest reaches its first test within seconds of booting (tens under load):
/// one that has not after this long hung in its boot (seen on 6.1 under TCG, right
/// after the MTRR lines, on 2026-11-25) and is stopped, to boot once more.
const BOOT_LIMIT: Duration = Duration::from_secs(180);
/// Console lines shown when a VM fails.
const TAIL_LINES: usize = 60;
/// Software emulation runs the tests 6 to 48 times slower than the host: their
/// timeouts (bounds on waits for conditions, never sleeps) are scaled by this.
const TIME_SCALE: u32 = 10;
/// Printed by the guest script when every test has run.
const DONE_MARK: &str = "guard-vm: done";
/// Printed by the guest script before and after each test: `begin BIN NAME`,
/// `end BIN NAME rc=N secs=S`.
const BEGIN_MARK: &str = "guard-vm: begin ";
/// Printed as a test starts (its output comes whole, between the markers, at its end).
const START_MARK: &str = "guard-vm: start ";
const END_MARK: &str = "guard-vm: end ";
/// Printed by a test that skipped (see tests/src/lib.rs `SKIP_PREFIX`).
const SKIP_MARK: &str = "SKIPPED:";

/// The result of one kernel's run: each test's, and whether the VM itself
/// failed (did not boot, stopped before the end).
pub(crate) struct Outcome {
    pub abi: String,
    pub wall: Duration,
    pub tests: Vec<TestRun>,
    pub error: Option<String>,
    /// What happened that a pass alone does not tell (a guest that hung or died,
    /// and the boot that ran the rest).
    pub notes: Vec<String>,
}

impl Outcome {
    pub(crate) fn passed(&self) -> bool {
        self.error.is_none() && self.tests.iter().all(|t| t.verdict == Verdict::Passed)
    }
}

/// What to run: every kernel and the whole subset, or (to chase a problem) some
/// kernels, some tests, several times over.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct Options {
    /// Only the kernels of this series (`5.10`, Debian 11's, where guard loads its
    /// compat build; `6.1`; `6.12`); repeatable.
    #[arg(long = "series")]
    pub series: Vec<String>,
    /// Only this test of the subset, as MODULE::NAME (`routes::io_uring_is_…`) or
    /// MODULE (every test of it); repeatable.
    #[arg(long = "test")]
    pub tests: Vec<String>,
    /// Run the chosen tests this many times in each VM.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
}

/// The subset's tests that `opts` chose: (binary, name), in the subset's order.
fn chosen(opts: &Options) -> Result<Vec<(&'static str, &'static str, Kernels)>> {
    let all: Vec<(&str, &str, Kernels)> = SUBSET
        .iter()
        .flat_map(|(bin, kernels, names)| names.iter().map(move |n| (*bin, *n, *kernels)))
        .collect();
    if opts.tests.is_empty() {
        return Ok(all);
    }
    let mut out = Vec::new();
    for want in &opts.tests {
        let matched: Vec<_> = all
            .iter()
            .filter(|(bin, name, _)| match want.split_once("::") {
                Some((b, n)) => b == *bin && n == *name,
                None => want == bin,
            })
            .copied()
            .collect();
        if matched.is_empty() {
            bail!("{want} names no test of the VM subset (xtask/src/vm/subset.rs SUBSET)");
        }
        out.extend(matched);
    }
    Ok(out)
}

/// What booting the kernels needs, installed and fetched: [`prepare`] does it
/// (while the tests build), [`run_prepared`] boots.
pub(crate) struct Prepared {
    vm_dir: PathBuf,
    venv: PathBuf,
    unpacked: Vec<(Kernel, PathBuf)>,
    took: Duration,
}

/// Installs what the VMs need (QEMU and the rest from Debian, virtme-ng) and fetches
/// the kernels of the matrix that `opts` chooses. Needs no test binary.
pub(crate) fn prepare(opts: &Options) -> Result<Prepared> {
    if std::env::consts::ARCH != "x86_64" {
        bail!(
            "the kernel matrix boots Debian's amd64 kernels; this host is {}",
            std::env::consts::ARCH
        );
    }
    let started = Instant::now();
    setup::debian_packages(VM_PACKAGES)?;
    let vm_dir = util::target_dir().join("vm");
    fs::create_dir_all(&vm_dir).with_context(|| format!("cannot create {}", vm_dir.display()))?;
    let venv = virtme_ng(&vm_dir)?;
    virtiofsd(&venv)?;
    let older = opts.series.is_empty() || opts.series.iter().any(|s| s == OLDER_SERIES);
    let kernels: Vec<Kernel> = matrix(&vm_dir, older)?
        .into_iter()
        .filter(|k| opts.series.is_empty() || opts.series.iter().any(|s| s == k.series))
        .collect();
    if kernels.is_empty() {
        bail!("no kernel of the matrix is in the series {:?}", opts.series);
    }
    let unpacked: Vec<(Kernel, PathBuf)> = kernels
        .iter()
        .map(|k| Ok((k.clone(), fetch(&vm_dir, k)?)))
        .collect::<Result<_>>()?;
    let took = started.elapsed();
    log!("kernel matrix: set-up took {took:.0?}");
    Ok(Prepared {
        vm_dir,
        venv,
        unpacked,
        took,
    })
}

/// Boots each kernel [`prepare`] set up and runs the subset in it. `guard` is the
/// binary under test (built by the caller). Returns each kernel's outcome; fails
/// only when the matrix could not be set up.
#[expect(
    clippy::too_many_lines,
    reason = "each kernel in turn: plan, boot, retry a silent VM, reboot for cut-off tests; then the summary of all"
)]
pub(crate) fn run_prepared(
    guard: &Path,
    opts: &Options,
    prepared: Prepared,
) -> Result<Vec<Outcome>> {
    let Prepared {
        vm_dir,
        venv,
        unpacked,
        took,
    } = prepared;
    let started = Instant::now();
    let exe = e2e_binary()?;
    let chosen = chosen(opts)?;
    let mut modules: Vec<&str> = chosen.iter().map(|(m, _, _)| *m).collect();
    modules.sort_unstable();
    modules.dedup();
    // The plan of one kernel: `oldest` runs the tests of the oldest kernel too, the
    // compat build's kernel its own set.
    let plan_of = |oldest: bool, compat: bool| -> Vec<(&str, PathBuf, Vec<String>)> {
        let runs = |m: &str, n: &str, k: Kernels| {
            if compat && !opts.tests.is_empty() {
                // Named: run there whatever the set.
                true
            } else if compat {
                k == Kernels::Compat
                    || COMPAT_SET
                        .iter()
                        .any(|(cm, names)| *cm == m && names.contains(&n))
            } else {
                match k {
                    Kernels::Every => true,
                    Kernels::Oldest => oldest,
                    Kernels::Compat => false,
                }
            }
        };
        let mut plan = Vec::new();
        for _ in 0..opts.repeat.max(1) {
            for module in &modules {
                let names: Vec<String> = chosen
                    .iter()
                    .filter(|(m, n, k)| m == module && runs(m, n, *k))
                    .map(|(_, n, _)| (*n).to_owned())
                    .collect();
                if !names.is_empty() {
                    plan.push((*module, exe.clone(), names));
                }
            }
        }
        plan
    };
    let expected_of = |plan: &[(&str, PathBuf, Vec<String>)]| -> Vec<(String, String)> {
        plan.iter()
            .flat_map(|(bin, _, names)| names.iter().map(|n| ((*bin).to_owned(), n.clone())))
            .collect()
    };
    let mut outcomes = Vec::new();
    let oldest = unpacked
        .iter()
        .find(|(k, _)| k.series != OLDER_SERIES)
        .map(|(k, _)| k.abi.clone());
    for (kernel, vmlinuz) in &unpacked {
        let t = Instant::now();
        let plan = plan_of(
            oldest.as_deref() == Some(kernel.abi.as_str()),
            kernel.series == OLDER_SERIES,
        );
        let expected = expected_of(&plan);
        if expected.is_empty() {
            log!("kernel {}: none of the chosen tests runs there", kernel.abi);
            continue;
        }
        let script = guest_script(&vm_dir, guard, &plan)?;
        log!(
            "kernel {}: booting (TCG, 2 vCPUs, {VM_MEMORY}) for {} tests",
            kernel.abi,
            expected.len()
        );
        let mut booted = boot(&venv, &vm_dir, kernel, vmlinuz, &script);
        // QEMU under TCG once died here within seconds having printed nothing at all
        // (no firmware, kernel or guest line; the next run of the same kernel passed).
        // That is the emulator failing before anything was tested: boot once more,
        // and say so. A VM that printed anything and failed is never retried.
        if booted.as_ref().is_err_and(|e| e.is::<Silent>()) {
            log!(
                "kernel {}: the VM printed nothing and stopped; booting it once more",
                kernel.abi
            );
            booted = boot(&venv, &vm_dir, kernel, vmlinuz, &script);
        }
        let mut outcome = match booted {
            Ok(console) => Outcome {
                abi: kernel.abi.clone(),
                wall: Duration::ZERO,
                tests: results(&console.lines, &expected),
                error: console.error,
                notes: Vec::new(),
            },
            Err(e) => Outcome {
                abi: kernel.abi.clone(),
                wall: Duration::ZERO,
                tests: Vec::new(),
                error: Some(format!("{e:#}")),
                notes: Vec::new(),
            },
        };
        // A guest that stopped mid-run (its kernel hung or panicked, or the VM ran out
        // of time) cut off the tests under way and those after them: another boot runs
        // them, each in a fresh kernel as always, up to [`REBOOTS`] times. Each
        // stopped boot's console tail stays in the notes; a test cut off by every
        // boot fails.
        for boot_no in 2..=REBOOTS + 1 {
            let cut: Vec<(String, String)> = outcome
                .tests
                .iter()
                .filter(|t| matches!(t.verdict, Verdict::CutOff { .. }))
                .map(|t| (t.bin.clone(), t.name.clone()))
                .collect();
            if cut.is_empty() || outcome.error.is_none() {
                break;
            }
            let under_way: Vec<String> = outcome
                .tests
                .iter()
                .filter(|t| t.verdict == Verdict::CutOff { started: true })
                .map(|t| format!("{}::{}", t.bin, t.name))
                .collect();
            let note = format!(
                "boot {} stopped {}: {}",
                boot_no - 1,
                if under_way.is_empty() {
                    "between tests".to_owned()
                } else {
                    format!("during {}", under_way.join(", "))
                },
                outcome.error.take().unwrap_or_default()
            );
            log!("kernel {}: {note}", kernel.abi);
            log!(
                "kernel {}: booting once more for the {} tests it did not finish",
                kernel.abi,
                cut.len()
            );
            let stopped = vm_dir.join(format!("{}.boot-{}.log", kernel.abi, boot_no - 1));
            let _ = fs::rename(vm_dir.join(format!("{}.log", kernel.abi)), &stopped);
            outcome.notes.push(format!(
                "{note}\n(its whole console: {})",
                stopped.display()
            ));
            let again: Vec<(&str, PathBuf, Vec<String>)> = plan
                .iter()
                .filter_map(|(bin, exe, names)| {
                    let names: Vec<String> = names
                        .iter()
                        .filter(|n| cut.iter().any(|(b, c)| b == bin && c == *n))
                        .cloned()
                        .collect();
                    (!names.is_empty()).then(|| (*bin, exe.clone(), names))
                })
                .collect();
            let script = guest_script(&vm_dir, guard, &again)?;
            match boot(&venv, &vm_dir, kernel, vmlinuz, &script) {
                Ok(console) => {
                    let rerun = results(&console.lines, &cut);
                    for r in rerun {
                        if let Some(t) = outcome
                            .tests
                            .iter_mut()
                            .find(|t| t.bin == r.bin && t.name == r.name)
                        {
                            *t = r;
                        }
                    }
                    outcome.error = console.error;
                }
                Err(e) => outcome.error = Some(format!("boot {boot_no}: {e:#}")),
            }
        }
        let wall = t.elapsed();
        outcome.wall = wall;
        for t in outcome
            .tests
            .iter()
            .filter(|t| t.verdict != Verdict::Passed)
        {
            log!(
                "kernel {}: {}::{}: {:?}",
                kernel.abi,
                t.bin,
                t.name,
                t.verdict
            );
        }
        match &outcome.error {
            None if outcome.passed() => log!(
                "kernel {}: all {} tests passed ({:.0?})",
                kernel.abi,
                outcome.tests.len(),
                wall
            ),
            None => log!("kernel {}: FAILED ({:.0?})", kernel.abi, wall),
            Some(e) => log!("kernel {}: FAILED ({:.0?}): {e}", kernel.abi, wall),
        }
        outcomes.push(outcome);
    }

    log!("kernel matrix summary:");
    for o in &outcomes {
        let passed = o
            .tests
            .iter()
            .filter(|t| t.verdict == Verdict::Passed)
            .count();
        log!(
            "  {:<24} {:>6.1} s  {}/{} passed  {}",
            o.abi,
            o.wall.as_secs_f64(),
            passed,
            o.tests.len(),
            if o.passed() { "passed" } else { "FAILED" }
        );
    }
    log!(
        "  total {:.1} s (and {:.1} s of set-up)",
        started.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    Ok(outcomes)
}

/// The root end-to-end tests' binary (`tests/tests/e2e`): an unprivileged build,
/// run as root in the VM.
fn e2e_binary() -> Result<PathBuf> {
    // The packages `cargo xtask test` builds (its TESTED), so that nothing is built
    // again with other dependency features.
    let out = util::stdout_of(util::cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "guard-ebpf",
        "--profile",
        util::TEST_PROFILE,
        "--no-run",
        "--message-format=json",
    ]))?;
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|msg| {
            let target = &msg["target"];
            // guard-tests' own: another package may have a test of the same name.
            let is_e2e = target["name"] == E2E_BINARY
                && target["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "test"))
                && msg["package_id"]
                    .as_str()
                    .is_some_and(|p| p.contains("#guard-tests@"));
            is_e2e
                .then(|| msg["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .with_context(|| format!("cargo built no test binary named {E2E_BINARY}"))
}

#[cfg(test)]
mod tests {
    use super::kernels::{is_generic, newest_abi};
    use super::*;

    #[test]
    fn each_test_is_read_by_name_and_a_missing_one_fails() {
        let console: Vec<String> = [
            "guard-vm: begin routes io_uring",
            "running 1 test",
            "test routes::io_uring ... ok",
            "guard-vm: end routes io_uring rc=0 secs=12",
            // Renamed: the filter matches nothing, and the harness exits 0.
            "guard-vm: begin routes raw_sockets",
            "running 0 tests",
            "guard-vm: end routes raw_sockets rc=0 secs=1",
            "guard-vm: begin routes loader",
            "running 1 test",
            "test routes::loader ... FAILED",
            "guard-vm: end routes loader rc=101 secs=30",
            "guard-vm: begin deny deny_refuses",
            "running 1 test",
            "SKIPPED: deny_refuses: no BPF-LSM",
            "test deny::deny_refuses ... ok",
            "guard-vm: end deny deny_refuses rc=0 secs=9",
            "guard-vm: begin routes fileless",
            "running 1 test",
            "guard-vm: stuck: routes fileless",
            "guard-vm: end routes fileless rc=124 secs=300",
            // Under way when the VM stopped: started, never printed.
            "guard-vm: start routes cut_short",
        ]
        .map(str::to_owned)
        .to_vec();
        let expected: Vec<(String, String)> = [
            ("routes", "io_uring"),
            ("routes", "raw_sockets"),
            ("routes", "loader"),
            ("deny", "deny_refuses"),
            ("routes", "fileless"),
            ("routes", "never_reached"),
            ("routes", "cut_short"),
        ]
        .map(|(b, n)| (b.to_owned(), n.to_owned()))
        .to_vec();
        let verdicts: Vec<Verdict> = results(&console, &expected)
            .into_iter()
            .map(|t| t.verdict)
            .collect();
        assert_eq!(verdicts[0], Verdict::Passed);
        assert_eq!(verdicts[1], Verdict::Missing);
        assert_eq!(verdicts[2], Verdict::Failed("exit status 101".to_owned()));
        assert_eq!(
            verdicts[3],
            Verdict::Skipped("deny_refuses: no BPF-LSM".to_owned())
        );
        assert!(matches!(&verdicts[4], Verdict::Failed(why) if why.contains("overran")));
        assert_eq!(verdicts[5], Verdict::CutOff { started: false });
        assert_eq!(verdicts[6], Verdict::CutOff { started: true });
    }

    /// The compat kernel's set names tests of the subset (a renamed test would
    /// otherwise drop out of it silently).
    #[test]
    fn the_compat_set_is_part_of_the_subset() {
        for (module, names) in COMPAT_SET {
            for name in *names {
                assert!(
                    SUBSET
                        .iter()
                        .any(|(m, _, ns)| m == module && ns.contains(name)),
                    "{module}::{name} is in COMPAT_SET but not in SUBSET"
                );
            }
        }
    }

    #[test]
    fn picks_the_newest_generic_abi_of_each_series() {
        let packages: Vec<String> = [
            "linux-image-6.1.0-47-amd64-unsigned",
            "linux-image-6.1.0-56-amd64-unsigned",
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-58-rt-amd64-unsigned",
            "linux-image-6.12.107+deb12-amd64-unsigned",
            "linux-image-6.12.117+deb12-amd64-unsigned",
            "linux-image-6.12.99+deb12-amd64-unsigned",
            "linux-image-6.12.118+deb12-cloud-amd64-unsigned",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            newest_abi("6.1", &packages).as_deref(),
            Some("6.1.0-56-amd64")
        );
        assert_eq!(
            newest_abi("6.12", &packages).as_deref(),
            Some("6.12.117+deb12-amd64")
        );
        assert_eq!(newest_abi("5.10", &packages), None);
        assert!(
            !is_generic("6.1", "6.12.117+deb12-amd64"),
            "6.1 is not 6.12"
        );
    }
}
