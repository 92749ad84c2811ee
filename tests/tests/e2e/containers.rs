//! Sessions chosen by container (`[agents] containers` and `cgroups`), end to end.
//!
//! No container runtime runs here, and none is needed: what guard reads is the cgroup a
//! process runs in. The tests make cgroups named the way runtimes name theirs (docker and
//! containerd with the systemd driver: `docker-<64 hex>.scope`) under a parent cgroup of
//! their own, and move the processes they start into them. The policies choose only
//! those random ids (or paths under that parent), so nothing else on the host is policed.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use guard_tests::{
    Daemon, Event, EventsTo, FakeAgent, Running, TempDir, check_schema, dump, fake_agent_exe, find,
    session_of, unique_name, write_policy,
};

/// Writes the OCI bundle containerd's CRI plugin would make for a Kubernetes container
/// (`config.json` with its `io.kubernetes.cri.*` annotations), under `root`.
fn containerd_bundle(root: &Path, id: &str, namespace: &str, pod: &str, name: &str) {
    let bundle = root.join(format!(
        "run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}"
    ));
    fs::create_dir_all(&bundle).expect("mkdir bundle");
    let spec = serde_json::json!({
        "ociVersion": "1.2.0",
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": name,
            "io.kubernetes.cri.image-name": "ghcr.io/example/agent:1",
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.sandbox-namespace": namespace,
        }
    });
    fs::write(bundle.join("config.json"), spec.to_string()).expect("write config.json");
}

/// The cgroup2 mount, from mountinfo (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
/// hybrid hosts).
fn cgroup2_root() -> PathBuf {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    text.lines()
        .find_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let point = pre.split_whitespace().nth(4)?;
            (post.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(point))
        })
        .expect("no cgroup2 mount")
}

/// A random 64-hex-digit container id.
fn container_id() -> String {
    (0..8).map(|_| unique_name("")).collect()
}

/// A parent cgroup of the test's own, removed (with its children) on drop. Every process
/// the test moved in must have exited by then: [`Running`] kills its group on drop, and
/// the cgroups are declared before them so they are dropped after.
struct TestCgroups {
    dir: PathBuf,
    /// The parent's path as `/proc/PID/cgroup` shows it.
    rel: String,
}

impl TestCgroups {
    fn new() -> Self {
        guard_tests::require_root();
        let name = format!("guard-e2e-{}", unique_name("c"));
        let dir = cgroup2_root().join(&name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self {
            dir,
            rel: format!("/{name}"),
        }
    }

    /// Makes the child cgroup `name`; returns its directory.
    fn make(&self, name: &str) -> PathBuf {
        let dir = self.dir.join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        dir
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        // Deepest first; a cgroup whose last process is still exiting is busy a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut dirs = vec![self.dir.clone()];
            let mut i = 0;
            while i < dirs.len() {
                if let Ok(entries) = fs::read_dir(&dirs[i]) {
                    dirs.extend(
                        entries
                            .flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
                i += 1;
            }
            let mut busy = false;
            for dir in dirs.iter().rev() {
                busy |= fs::remove_dir(dir).is_err();
            }
            if !busy || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `program ARGS...`, started in the cgroup `cgroup` in a process group of its own: a
/// shell moves itself in, then execs the program (so that exec is the first one in the
/// cgroup, as a container's entry point is).
fn spawn_in(cgroup: &Path, program: &Path, args: &[&str]) -> Running {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(cgroup)
        .arg(program)
        .args(args);
    Running::spawn_group(cmd)
}

fn start_daemon(policy: &Path) -> Daemon {
    start_daemon_with(policy, &[])
}

fn start_daemon_with(policy: &Path, extra: &[&OsStr]) -> Daemon {
    let mut args = vec![OsStr::new("--policy"), policy.as_os_str()];
    args.extend_from_slice(extra);
    let mut daemon = Daemon::start_with_args(&[], EventsTo::File, &args);
    daemon.wait_for("policy_loaded", |ev| {
        ev.iter().any(|e| e.kind() == "policy_loaded")
    });
    daemon
}

/// Waits until the daemon has chosen the cgroup `dir`, which a test just made: a probe
/// started in it gets a session, from its exec if the daemon knew of the cgroup by then,
/// else from the adoption that learning of it brings. The probe is gone, its session
/// ended, on return.
fn wait_until_chosen(daemon: &mut Daemon, dir: &Path) {
    let probe = spawn_in(dir, Path::new("/bin/sleep"), &["60"]);
    let pid = probe.pid();
    daemon.wait_for(
        &format!("a session of the probe ({pid}) in {}", dir.display()),
        |ev| {
            ev.iter()
                .any(|e| e.kind() == "session_start" && e.int("root_pid") == Some(pid))
        },
    );
    drop(probe); // kills its process group
    daemon.wait_for(
        &format!("the end of the probe's ({pid}) session"),
        guard_tests::session_ended(pid),
    );
}

fn session_start(events: &[Event], root: i64) -> &Event {
    find(events, &format!("session_start of {root}"), |e| {
        e.kind() == "session_start" && e.int("root_pid") == Some(root)
    })
}

/// A process in a chosen container is the root of an agent session from its exec: its
/// children are followed and the policy applies to them; the same program in another
/// container is not watched at all.
#[test]
fn processes_in_a_chosen_container_are_agent_sessions() {
    let since = SystemTime::now();
    let cgroups = TestCgroups::new();
    let chosen_id = container_id();
    let other_id = container_id();
    let chosen = cgroups.make(&format!("docker-{chosen_id}.scope"));
    let other = cgroups.make(&format!("docker-{other_id}.scope"));
    let agent = FakeAgent::install(fake_agent_exe!());
    let dir = TempDir::new("guard-e2e-containers");
    fs::create_dir(dir.join("secret")).expect("mkdir secret");
    let file = dir.join("secret/auth.json");
    let text = format!("AUTH-{}", unique_name("s"));
    fs::write(&file, &text).expect("write the secret");
    let policy = dir.join("guard.toml");
    // A prefix of the id, as `docker ps` shows it; no names: only the container counts.
    write_policy(
        &policy,
        &format!(
            r#"[agents]
names = []
containers = ["{}"]

[[rule]]
id = "tools-keep-out"
kind = "file"
paths = ["{}/secret/**"]
access = ["read"]
action = "kill"
scope = "descendants"
"#,
            &chosen_id[..12],
            dir.path().display()
        ),
    );
    let mut daemon = start_daemon(&policy);

    let file_arg = file.to_str().expect("UTF-8 path");
    let outside = spawn_in(&other, agent.path(), &["read-then-cat", file_arg]).finish();
    let inside = spawn_in(&chosen, agent.path(), &["read-then-cat", file_arg]).finish();
    inside.assert_success();
    outside.assert_success();

    // In the chosen container: the root may read, the cat it runs is killed.
    assert_eq!(inside.reports.get("data"), Some(&text), "{inside:?}");
    assert_eq!(inside.report("cat_signal"), 9, "{inside:?}");
    // In the other one, nothing is stopped.
    assert_eq!(outside.report("cat_code"), 0, "{outside:?}");
    assert_eq!(
        outside.reports.get("cat_out"),
        Some(&text),
        "the cat outside was stopped: {outside:?}"
    );

    let root = inside.pid;
    let events = daemon.wait_for("the container session's end", |ev| {
        guard_tests::session_ended(root)(ev)
    });
    check_schema(&events, since);
    let start = session_start(&events, root);
    assert_eq!(start.str("how"), Some("container"), "{start}");
    assert_eq!(start.str("container"), Some(chosen_id.as_str()), "{start}");
    assert_eq!(start.str("agent"), Some(agent.name()), "{start}");
    let session = session_of(&events, root);
    let cat = inside.report("cat_pid");
    let cat_open = find(&events, "the cat's open of the secret", |e| {
        e.is("open", cat) && e.str("path") == file.to_str()
    });
    assert_eq!(cat_open.session(), Some(session.as_str()), "{cat_open}");
    assert_eq!(
        cat_open.str("container"),
        Some(chosen_id.as_str()),
        "{cat_open}"
    );
    assert_eq!(cat_open.str("rule"), Some("tools-keep-out"), "{cat_open}");
    assert_eq!(cat_open.str("outcome"), Some("killed"), "{cat_open}");

    // Nothing of the other container's processes was seen.
    let strangers = [outside.pid, outside.report("cat_pid")];
    let seen: Vec<&Event> = events
        .iter()
        .filter(|e| e.pid().is_some_and(|p| strangers.contains(&p)))
        .collect();
    assert!(
        seen.is_empty(),
        "processes of an unchosen container were watched:\n{}",
        dump(&events)
    );
    daemon.stop_ok();
}

/// A container whose cgroup appears after the daemon started is chosen as soon as it
/// appears (the agent's exec there starts a session), and a reload that chooses a
/// container adopts what already runs in it, children included.
#[test]
fn containers_chosen_as_they_appear_and_on_reload() {
    let since = SystemTime::now();
    let cgroups = TestCgroups::new();
    let agent = FakeAgent::install(fake_agent_exe!());
    let dir = TempDir::new("guard-e2e-containers");
    let policy = dir.join("guard.toml");
    let by_path = format!(
        "[agents]\nnames = []\ncgroups = [\"{}/job-*.scope\"]\n",
        cgroups.rel
    );
    write_policy(&policy, &by_path);

    // Already running in a container no policy chooses yet: a shell and its child.
    let running_id = container_id();
    let running_cg = cgroups.make(&format!("docker-{running_id}.scope"));
    let sleeper = spawn_in(
        &running_cg,
        Path::new("/bin/sh"),
        &["-c", "sleep 60 & wait"],
    );
    let mut daemon = start_daemon(&policy);

    // A job cgroup made now: the daemon learns of it from inotify, not from a rescan.
    let job = cgroups.make("job-1.scope");
    wait_until_chosen(&mut daemon, &job);
    let job_run = spawn_in(&job, agent.path(), &["exit", "0"]).finish();
    job_run.assert_success();
    let events = daemon.wait_for("the job's session", |ev| {
        guard_tests::session_ended(job_run.pid)(ev)
    });
    let start = session_start(&events, job_run.pid);
    assert_eq!(start.str("how"), Some("container"), "{start}");
    assert!(
        !events.iter().any(|e| e.pid() == Some(sleeper.pid())),
        "the unchosen container was watched:\n{}",
        dump(&events)
    );

    // Choose the running container too, and reload.
    write_policy(
        &policy,
        &format!("{by_path}containers = [\"{running_id}\"]\n"),
    );
    let pid = daemon.pid().expect("daemon pid");
    // SAFETY: kill(2) on the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let root = sleeper.pid();
    let events = daemon.wait_for("the running agent adopted", |ev| {
        ev.iter()
            .any(|e| e.kind() == "session_start" && e.int("root_pid") == Some(root))
    });
    let start = session_start(&events, root);
    assert_eq!(start.str("how"), Some("scan"), "{start}");
    assert_eq!(start.str("container"), Some(running_id.as_str()), "{start}");

    // Its sleep child is in the session: its death is reported there.
    let session = session_of(&events, root);
    drop(sleeper); // kills the process group: the shell and its sleep
    let events = daemon.wait_for("the adopted session's end", |ev| {
        guard_tests::session_ended(root)(ev)
            && ev
                .iter()
                .filter(|e| e.kind() == "exit" && e.session() == Some(session.as_str()))
                .count()
                >= 2
    });
    check_schema(&events, since);
    daemon.stop_ok();
}

/// Containers chosen by Kubernetes namespace and container name, read from containerd's
/// state (a runtime root of the test's own, with bundles as containerd writes them):
/// the `agent` container of a pod in the namespace is policed, its `sidecar` is not.
#[test]
fn containers_chosen_by_namespace_and_name() {
    let since = SystemTime::now();
    let cgroups = TestCgroups::new();
    let agent = FakeAgent::install(fake_agent_exe!());
    let dir = TempDir::new("guard-e2e-containers");
    let runtime_root = TempDir::new("guard-e2e-runtime");
    let namespace = format!("ci-{}", unique_name("n"));
    let policy = dir.join("guard.toml");
    write_policy(
        &policy,
        &format!("[agents]\nnames = []\ncontainers = [\"namespace={namespace},name=agent\"]\n"),
    );
    let mut daemon = start_daemon_with(
        &policy,
        &[
            OsStr::new("--runtime-root"),
            runtime_root.path().as_os_str(),
        ],
    );

    // As a runtime does it: the bundle first, then the cgroup, then the process.
    let pod_cg = cgroups.make("kubepods-pod");
    let (agent_id, sidecar_id) = (container_id(), container_id());
    containerd_bundle(runtime_root.path(), &agent_id, &namespace, "job-1", "agent");
    containerd_bundle(
        runtime_root.path(),
        &sidecar_id,
        &namespace,
        "job-1",
        "sidecar",
    );
    let agent_cg = pod_cg.join(format!("cri-containerd-{agent_id}.scope"));
    let sidecar_cg = pod_cg.join(format!("cri-containerd-{sidecar_id}.scope"));
    // The sidecar's first: once the daemon has chosen the agent's cgroup, it has
    // looked at the sidecar's too (and left it out), so the sidecar below is not
    // unwatched only because the daemon had not seen its cgroup yet.
    for cg in [&sidecar_cg, &agent_cg] {
        fs::create_dir(cg).unwrap_or_else(|e| panic!("mkdir {}: {e}", cg.display()));
    }
    wait_until_chosen(&mut daemon, &agent_cg);
    let sidecar = spawn_in(&sidecar_cg, agent.path(), &["exit", "0"]).finish();
    let inside = spawn_in(&agent_cg, agent.path(), &["exit", "0"]).finish();
    inside.assert_success();
    sidecar.assert_success();

    let events = daemon.wait_for("the agent container's session", |ev| {
        guard_tests::session_ended(inside.pid)(ev)
    });
    check_schema(&events, since);
    let start = session_start(&events, inside.pid);
    assert_eq!(start.str("how"), Some("container"), "{start}");
    assert_eq!(start.str("container"), Some(agent_id.as_str()), "{start}");
    // Every event of the container says which it is, by name.
    let session = session_of(&events, inside.pid);
    for e in events
        .iter()
        .filter(|e| e.session() == Some(session.as_str()))
    {
        assert_eq!(
            (
                e.str("container_name"),
                e.str("pod_name"),
                e.str("namespace"),
                e.str("image")
            ),
            (
                Some("agent"),
                Some("job-1"),
                Some(namespace.as_str()),
                Some("ghcr.io/example/agent:1")
            ),
            "{e}"
        );
    }
    assert!(
        !events.iter().any(|e| e.pid() == Some(sidecar.pid)),
        "the sidecar was watched:\n{}",
        dump(&events)
    );
    daemon.stop_ok();
}
