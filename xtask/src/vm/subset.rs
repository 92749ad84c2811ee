//! Which end-to-end tests each kernel of the matrix runs.

/// Where a test of the subset runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernels {
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
pub(super) const COMPAT_SET: &[(&str, &[&str])] = &[
    ("tree", &["agent_process_tree_is_one_session"]),
    ("files", &["opens_resolve_to_absolute_paths"]),
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
pub(super) const E2E_BINARY: &str = "e2e";

/// The tests run in the kernels, by module of [`E2E_BINARY`] and exact test name:
/// programs load and a session starts, the tree is followed (fork, setsid double
/// fork, vfork, threads, exec), each action keeps its guarantee (kill at exec, kill
/// before a read returns, network deny, user-space kill), every BPF-LSM deny,
/// enforcement with no daemon (pinned links), and egress accounting (cgroup_skb,
/// socket storage, sock_release: the 6.1 verifier).
pub(super) const SUBSET: &[(&str, Kernels, &[&str])] = &[
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
    // An open's arguments as the build gets them (the default build reads them from
    // the registers at the open's exit, the compat build notes them at its entry):
    // open, openat, openat2 and creat, relative, by descriptor, failed.
    (
        "files",
        Kernels::Every,
        &["opens_resolve_to_absolute_paths"],
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
