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

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::setup;
use crate::util::{self, log};

/// virtme-ng, pinned (the version the VM recipe was measured with).
const VIRTME_NG: &str = "virtme-ng==1.42";
/// What booting a kernel needs on the host: QEMU, modprobe and busybox for
/// virtme-ng's initramfs, and udev (virtme-ng's init finds its console ports
/// through /dev/virtio-ports; without udev the output is lost and every exit
/// status is 255).
/// libseccomp and libcap-ng: what [`VIRTIOFSD`] links against.
pub const VM_PACKAGES: &[&str] = &[
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
/// stopped, it is booted again for the tests it cut off ([`REBOOTS`]).
const APPEND: &str =
    "lsm=lockdown,capability,landlock,yama,apparmor,bpf loglevel=5 softlockup_panic=1";
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

/// Where a test of the subset runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernels {
    /// Every kernel of the matrix that loads the default build: what BPF-LSM
    /// decides (its deny, self-protection, routes refused with EPERM), and pinned
    /// links of every type it has. (The compat build's kernel runs [`COMPAT_SET`].)
    Every,
    /// The oldest kernel only: the tracepoint tier and the programs' portability
    /// (the oldest verifier is the strictest), which newer kernels run the same.
    Oldest,
    /// The compat build's kernel only ([`OLDER_SERIES`]): what its events feed
    /// (`guard top`, the export), which the host's tests prove for the default build.
    Compat,
}

/// The tests of [`SUBSET`] that the [`OLDER_SERIES`] kernel runs, with guard's compat
/// build (docs/kernels.md), besides its own ([`Kernels::Compat`]): every tier the
/// daemon claims there, each by the test that proves it on the newer kernels. The
/// tree followed with its session id, roles; the kills at exec and before a read
/// returns (the tracepoints the daemon holds there), and from user space; BPF-LSM's
/// deny of execs, reads and every change but chown (which the test expects through
/// there), of Unix sockets, raw sockets and attempts on guard; fileless execs killed,
/// io_uring refused; the identity walk's clear directories forgotten at a rename;
/// network deny, the resolver, egress accounting. Every daemon start
/// there verifies the compat programs (~5 s under emulation, 2026-11-28) and the
/// guest runs two tests at a time. Other tests of the subset run there when named
/// (`--series 5.10 --test MODULE::NAME`).
const COMPAT_SET: &[(&str, &[&str])] = &[
    ("tree", &["agent_process_tree_is_one_session"]),
    (
        "policy",
        &[
            "exec_kill_in_kernel_stops_the_program_before_it_runs",
            "read_kill_in_kernel_keeps_the_data_from_the_reader",
            "network_deny_refuses_with_eperm_and_nothing_arrives",
            "argv_rule_kills_from_user_space",
        ],
    ),
    (
        "deny",
        &[
            "deny_refuses_every_change_and_the_agent_lives",
            "the_agent_s_own_reads_of_secrets_and_ignored_files_are_refused_where_the_kernel_can",
        ],
    ),
    (
        "roles",
        &["a_runtime_s_script_names_the_agent_and_tools_carry_its_session_id"],
    ),
    (
        "routes",
        &[
            "io_uring_is_refused_by_default_and_allowed_by_policy",
            "raw_sockets_are_refused_and_every_send_meets_the_rules",
            "fileless_programs_are_named_and_killed_when_the_policy_says_so",
        ],
    ),
    (
        "tamper",
        &["attempts_on_guard_from_a_session_are_stopped_and_reported"],
    ),
    ("unix", &["a_connect_to_a_protected_socket_sends_nothing"]),
    // The identity walk's clear directories, in the compat build's walk.
    (
        "identity",
        &["a_clear_directory_moved_into_a_protected_one_is_walked_again"],
    ),
    (
        "egress",
        &["bytes_each_way_are_counted_per_socket_and_reported"],
    ),
    (
        "resolver",
        &["names_off_the_allowlist_never_leave_and_allowed_ones_resolve"],
    ),
];

/// The root end-to-end tests' one binary (`tests/tests/e2e/main.rs`).
const E2E_BINARY: &str = "e2e";

/// The tests run in the kernels, by module of [`E2E_BINARY`] and exact test name:
/// programs load and a session starts, the tree is followed (fork, setsid double
/// fork, vfork, threads, exec), each action keeps its guarantee (kill at exec, kill
/// before a read returns, network deny, user-space kill), every BPF-LSM deny,
/// enforcement with no daemon (pinned links), and egress accounting (cgroup_skb,
/// socket storage, sock_release: the 6.1 verifier).
const SUBSET: &[(&str, Kernels, &[&str])] = &[
    (
        "daemon",
        Kernels::Oldest,
        &["each_agent_name_starts_its_own_session"],
    ),
    // The verifier's work per program within its budget (docs/kernels.md): the
    // counts are the kernel's own, so on every kernel.
    (
        "daemon",
        Kernels::Every,
        &["every_program_stays_within_its_verifier_budget"],
    ),
    (
        "tree",
        Kernels::Oldest,
        &["agent_process_tree_is_one_session"],
    ),
    (
        "policy",
        Kernels::Oldest,
        &[
            "exec_kill_in_kernel_stops_the_program_before_it_runs",
            "read_kill_in_kernel_keeps_the_data_from_the_reader",
            "network_deny_refuses_with_eperm_and_nothing_arrives",
            "argv_rule_kills_from_user_space",
        ],
    ),
    (
        "deny",
        Kernels::Every,
        &[
            "deny_refuses_every_change_and_the_agent_lives",
            "component_run_is_killed_in_the_kernel_at_open",
            "the_agent_s_own_reads_of_secrets_and_ignored_files_are_refused_where_the_kernel_can",
        ],
    ),
    // Roles decided at exec on 6.1's verifier (the environment scan for the
    // profiles' session variables and a runtime's script scan, both under
    // bpf_loop); a role-scoped BPF-LSM deny on every kernel.
    (
        "roles",
        Kernels::Oldest,
        &[
            "roles_are_decided_at_exec_and_scope_kernel_kills",
            "a_runtime_s_script_names_the_agent_and_tools_carry_its_session_id",
        ],
    ),
    (
        "roles",
        Kernels::Every,
        &["role_scoped_deny_refuses_the_tool_and_not_the_agent"],
    ),
    // Routes around the hooks: io_uring and raw/packet sockets are refused with EPERM
    // by BPF-LSM (the process lives); the loader route and fileless execs are killed
    // at tracepoints.
    (
        "routes",
        Kernels::Every,
        &[
            "io_uring_is_refused_by_default_and_allowed_by_policy",
            "raw_sockets_are_refused_and_every_send_meets_the_rules",
        ],
    ),
    (
        "routes",
        Kernels::Oldest,
        &[
            "a_denied_program_runs_neither_through_the_loader_nor_by_descriptor",
            "fileless_programs_are_named_and_killed_when_the_policy_says_so",
        ],
    ),
    // BPF-LSM deny by identity: a hard link, a bind mount, a moved directory, a
    // file replaced by rename and /proc aliases of a protected file are refused with
    // EPERM at `file_open` (the path names no rule), the process lives; a file too
    // deep to place fails closed with EPERM, as does, past the bound of the files
    // indexed, a file with several names; a hard link to a file inside a protected
    // directory is that file; a hard link to a denied program is
    // refused at `bprm_check_security`. (Every test whose assertions depend on
    // BPF-LSM runs on every kernel.)
    // The identity walk's verifier on every kernel; its other cases behave alike
    // wherever it loads (kept to the oldest for the CI's time, with 5.10 in the matrix).
    (
        "identity",
        Kernels::Every,
        &["a_hard_link_to_a_protected_file_is_the_protected_file"],
    ),
    (
        "identity",
        Kernels::Oldest,
        &[
            "a_file_too_deep_to_place_fails_closed",
            "a_hard_link_to_a_denied_program_is_the_program",
            "a_bind_mount_of_a_protected_directory_is_the_protected_directory",
            "a_moved_protected_directory_stays_protected",
            "a_protected_file_replaced_by_rename_is_resolved_again",
            "proc_root_and_cwd_aliases_are_the_real_path",
            "a_hard_link_to_a_file_inside_a_protected_directory_is_that_file",
            "past_the_bound_a_file_with_several_names_fails_closed",
            "a_clear_directory_moved_into_a_protected_one_is_walked_again",
            "a_file_mounted_over_a_clear_path_is_judged_by_its_name",
        ],
    ),
    // Repeated opens counted in the kernel, on each verifier; a counted file moved
    // into a protected directory is judged again (refused by BPF-LSM where it runs),
    // and so is one a new policy protects.
    (
        "repeats",
        Kernels::Oldest,
        &[
            "a_file_opened_again_and_again_is_reported_with_its_count",
            "a_directory_moved_into_a_protected_one_is_judged_again",
        ],
    ),
    (
        "repeats",
        Kernels::Oldest,
        &["a_new_policy_judges_a_counted_file_again"],
    ),
    // Pinned links of every type the kernel has (LSM ones included) keep enforcing
    // with no daemon, and a restart replaces them without a read getting through.
    (
        "survive",
        Kernels::Every,
        &[
            "sigkill_of_the_daemon_leaves_the_kernel_enforcing_and_the_next_daemon_adopts",
            "restart_replaces_the_programs_with_no_read_getting_through",
        ],
    ),
    // Self-protection: BPF-LSM refuses a session's signals, ptrace, /proc reads, pin
    // opens, bpf() and perf_event_open() against guard.
    (
        "tamper",
        Kernels::Every,
        &[
            "attempts_on_guard_from_a_session_are_stopped_and_reported",
            "kill_9_of_guard_from_a_session",
        ],
    ),
    // Sandbox truth: the namespaces, seccomp and no_new_privs of each exec read
    // through CO-RE on every kernel; a tool outside its session's sandbox killed.
    (
        "sandbox",
        Kernels::Oldest,
        &["a_tool_outside_the_sandbox_its_session_used_is_seen_and_killed"],
    ),
    // Programs by digest: the file's size read through CO-RE and the SIGSTOP at
    // sched_process_exec on every kernel; a copy killed while held, a program of
    // the same size let go.
    (
        "digest",
        Kernels::Oldest,
        &[
            "a_copy_of_a_program_named_by_digest_is_that_program",
            "a_program_of_the_same_size_is_held_and_let_go",
        ],
    ),
    (
        "egress",
        Kernels::Oldest,
        &["bytes_each_way_are_counted_per_socket_and_reported"],
    ),
    // Landlock from `guard run --landlock`: a true deny on each kernel's Landlock
    // ABI (2 on 6.1: no truncate right; 6 on 6.12).
    (
        "landlock",
        Kernels::Every,
        &[
            "landlock_refuses_reads_and_writes_and_the_command_lives",
            "landlock_keeps_tmp_writable_when_the_workspace_is_below_it",
        ],
    ),
    // `guard run`'s mount namespace: a true deny inside the workspace on every
    // kernel (a hook write refused, EROFS; secrets and ignored files hidden).
    (
        "run",
        Kernels::Oldest,
        &["run_confines_the_session_in_a_mount_namespace_for_root_and_for_a_user"],
    ),
    // Unix domain sockets: BPF-LSM refuses a connect and a datagram to a protected
    // socket file with EPERM.
    (
        "unix",
        Kernels::Every,
        &[
            "a_connect_to_a_protected_socket_sends_nothing",
            "a_datagram_to_a_protected_socket_is_refused_or_reported",
        ],
    ),
    // Delegation: BPF-LSM refuses a session's connect to a known spawner (a tmux
    // server outside every session) with EPERM.
    (
        "delegation",
        Kernels::Oldest,
        &["a_refusing_policy_stops_the_request_to_a_tmux_server"],
    ),
    // The shipped workstation policy against a red team's playbook (issue 49): a
    // multi-call binary's applet read at exec on each verifier, and BPF-LSM refusing
    // the writes to the system's persistence paths with EPERM (in a mount namespace
    // of the test's own).
    (
        "redteam",
        Kernels::Oldest,
        &[
            "multi_call_binaries_meet_the_rules_on_their_applets",
            "system_wide_persistence_is_refused",
        ],
    ),
    // Downloads: a written file's identity and the descriptors of a process that
    // reached the network read through CO-RE on the oldest verifier; the exec of
    // a download held and killed (the bind hooks and the cloned flow storage load
    // in every guest test; their behaviour is the host's test's). BPF-LSM
    // refusing wget's read of ~/.netrc (wget goes on), in a user's home the test
    // makes.
    (
        "redteam",
        Kernels::Oldest,
        &[
            "a_downloaded_script_or_program_does_not_run",
            "wget_goes_on_without_the_netrc",
        ],
    ),
    // guard's resolver: DNS pointed at it by the sock_addr hooks and the answers'
    // source given back (recvmsg, getpeername) on the oldest kernel.
    (
        "resolver",
        Kernels::Oldest,
        &["names_off_the_allowlist_never_leave_and_allowed_ones_resolve"],
    ),
    // What the compat build's events feed: `guard top` (a session and its tree
    // shown live, killed from the view) and the OTLP export of a session.
    (
        "top",
        Kernels::Compat,
        &["top_shows_a_session_and_kills_it"],
    ),
    (
        "export",
        Kernels::Compat,
        &["a_session_arrives_with_ids_attributes_and_the_report_s_numbers"],
    ),
];

/// One kernel of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kernel {
    series: &'static str,
    /// Debian's ABI name: `6.1.0-56-amd64`, `6.12.117+deb12-amd64`.
    abi: String,
}

impl Kernel {
    fn package(&self) -> String {
        format!("linux-image-{}-unsigned", self.abi)
    }
}

/// The result of one kernel's run: each test's, and whether the VM itself
/// failed (did not boot, stopped before the end).
pub struct Outcome {
    pub abi: String,
    pub wall: Duration,
    pub tests: Vec<TestRun>,
    pub error: Option<String>,
    /// What happened that a pass alone does not tell (a guest that hung or died,
    /// and the boot that ran the rest).
    pub notes: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.tests.iter().all(|t| t.verdict == Verdict::Passed)
    }
}

/// What to run: every kernel and the whole subset, or (to chase a problem) some
/// kernels, some tests, several times over.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Options {
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
            bail!("{want} names no test of the VM subset (xtask/src/vm.rs SUBSET)");
        }
        out.extend(matched);
    }
    Ok(out)
}

/// What booting the kernels needs, installed and fetched: [`prepare`] does it
/// (while the tests build), [`run_prepared`] boots.
pub struct Prepared {
    vm_dir: PathBuf,
    venv: PathBuf,
    unpacked: Vec<(Kernel, PathBuf)>,
    took: Duration,
}

/// Installs what the VMs need (QEMU and the rest from Debian, virtme-ng) and fetches
/// the kernels of the matrix that `opts` chooses. Needs no test binary.
pub fn prepare(opts: &Options) -> Result<Prepared> {
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
/// only when the matrix could not be set up. `booting` is called once the test
/// binaries are found (cargo is done with the build directory), before the first boot.
pub fn run_prepared(
    guard: &Path,
    opts: &Options,
    prepared: Prepared,
    booting: impl FnOnce(),
) -> Result<Vec<Outcome>> {
    let Prepared {
        vm_dir,
        venv,
        unpacked,
        took,
    } = prepared;
    let started = Instant::now();
    let exe = e2e_binary()?;
    booting();
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

/// A virtualenv with virtme-ng under `vm_dir`; returns its `bin` directory.
fn virtme_ng(vm_dir: &Path) -> Result<PathBuf> {
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
fn virtiofsd(bin: &Path) -> Result<()> {
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
    util::run(
        util::cargo()
            .args(["install", "--locked", "--force", "--quiet", "virtiofsd"])
            .arg("--version")
            .arg(format!("={VIRTIOFSD}"))
            .arg("--root")
            .arg(root)
            .stdin(Stdio::null()),
    )
}

/// `linux-image-*-amd64-unsigned` package names apt knows that match `pattern`.
fn apt_search(pattern: &str) -> Result<Vec<String>> {
    let out = util::stdout_of(Command::new("apt-cache").args(["search", "--names-only", pattern]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The newest generic amd64 ABI of `series` among `packages`, by numeric fields.
fn newest_abi(series: &str, packages: &[String]) -> Option<String> {
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
fn is_generic(series: &str, abi: &str) -> bool {
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

fn numbers(abi: &str) -> Vec<u64> {
    abi.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Debian 11's suites (bullseye, bullseye-security), for the 5.10 kernel's download
/// alone: apt's sources, lists and cache of their own under `vm_dir/apt-bullseye`,
/// passed to each apt command; the host's sources and packages are never touched.
struct Bullseye {
    args: Vec<String>,
}

impl Bullseye {
    /// Its configuration, with lists no older than a day.
    fn new(vm_dir: &Path) -> Result<Bullseye> {
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
        let b = Bullseye { args };
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
fn matrix(vm_dir: &Path, older: bool) -> Result<Vec<Kernel>> {
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
fn fetch(vm_dir: &Path, kernel: &Kernel) -> Result<PathBuf> {
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

/// Tests a guest runs at once: one per vCPU. Each starts a daemon of its own (its
/// own pin directory, agent names and ports), so they cannot see each other. Three
/// at a time ran the 6.1 kernel's tests 8% faster (QEMU used 152% of its 200% with
/// two, 2026-11-27), but in two `.ci/run`s in a row a guest stopped on the emulator's
/// text-patching faults (an `int3` oops in `bpf_lsm_bpf` on 6.12, a soft lockup in
/// `bpf_lsm_file_open` on 6.1: a daemon's LSM link patched in while another
/// daemon's process runs through it), and one second boot costs more than the 8%.
const GUEST_JOBS: usize = 2;

/// Boots after the first for the tests a stopped guest cut off. Under TCG a guest
/// kernel has died mid-run now and then (a hang; an `int3` oops or a soft lockup at
/// a call site being patched while programs attach or detach on the other vCPU:
/// the emulator's cross-modifying code, docs/kernels.md); each boot runs only what
/// the last one did not finish. On 6.1 this hit one boot in two of the last four
/// CI runs (2026-11-25/26), always at `bpf_lsm_bpf`, and the next boot passed.
const REBOOTS: usize = 3;

/// The script the guest runs: mounts what guard needs, then each test of the
/// subset in a process of its own (so that no test depends on another's leftovers,
/// and a hang costs one test), [`GUEST_JOBS`] at a time, each bounded by `timeout`.
/// A test's output is kept apart and printed whole between markers the host reads
/// when it ends (a `start` line says when it began); a test that overran is
/// followed by the kernel's view of what was stuck. `tests` is (binary name,
/// executable, test names).
fn guest_script(
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
const GUEST_MOUNTS: &str = "\
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
pub struct CommandRun {
    pub abi: String,
    pub console: Result<Vec<String>>,
}

/// Boots each kernel [`prepare`] set up (one at a time, as the tests do) to run
/// `command`, a shell command line, as root with what guard needs mounted; `what`
/// names it in the log. A boot that stopped before the command ended (the
/// emulator's flakes, see [`REBOOTS`]) is tried again, up to [`REBOOTS`] times. A
/// command that failed is no VM failure: its exit status is on the console, after
/// [`DONE_MARK`] (`rc=N`), and the caller finds its output missing.
pub fn run_command(prepared: Prepared, what: &str, command: &str) -> Result<Vec<CommandRun>> {
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
pub struct TestRun {
    pub bin: String,
    pub name: String,
    pub verdict: Verdict,
    pub secs: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
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
pub fn results(console: &[String], expected: &[(String, String)]) -> Vec<TestRun> {
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
struct Silent(std::process::ExitStatus);

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
struct Booted {
    lines: Vec<String>,
    error: Option<String>,
}

/// The VM's memory: the most the machine's rules allow one VM.
const VM_MEMORY: &str = "4G";

/// Boots `kernel` and runs the guest script; the console goes to stderr as it comes
/// and to `vm_dir/ABI.log`. Fails when the VM printed nothing; a VM that did not get
/// to the end of the script has `error` set, with the console's last lines.
fn boot(
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
struct Console {
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

#[cfg(test)]
mod tests {
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
