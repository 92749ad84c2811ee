//! The policy means the same whatever route the agent takes (issue 14,
//! docs/routes.md): io_uring and opens by handle are refused, a program a rule
//! forbids does not run through the dynamic loader or by descriptor, fileless
//! programs (memfd, deleted files) are named and refused by `[sessions]`, raw and
//! packet sockets are refused, and `sendmmsg` and TCP Fast Open meet the network
//! rules. Each test asserts what a user would check (the secret never reached the
//! process, the program never ran, no datagram arrived) and that the event names the
//! route and the rule.
//!
//! On the tracepoint tier (this project's machines) refusals are kills before the
//! call returns; where BPF-LSM runs (`cargo xtask vm-test`) io_uring and sockets are
//! refused with EPERM and the process lives.

use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use guard_tests::{Enforcing, Event, Finished, PY_SENDMMSG_TYPES, dump, fake_agent_exe};

const SIGKILL: i64 = libc::SIGKILL as i64;
const EPERM: i64 = libc::EPERM as i64;
const SECRET: &str = "route-secret-7c1f";

/// A daemon enforcing `body` (`{dir}` is the test directory) for a fresh agent.
fn start(body: &str) -> Enforcing {
    Enforcing::start(fake_agent_exe!(), "guard-e2e-routes", body, |_| {})
}

/// The route event of `route` in the run's session, naming `rule`.
fn route_event<'e>(events: &'e [Event], run: &Finished, route: &str, rule: &str) -> &'e Event {
    Enforcing::of_run(events, run)
        .into_iter()
        .find(|e| e.kind() == "route" && e.str("route") == Some(route))
        .filter(|e| e.str("rule") == Some(rule))
        .unwrap_or_else(|| {
            panic!(
                "no route event {route} by {rule} for {}:\n{}",
                run.pid,
                dump(events)
            )
        })
}

fn copy_exe(from: &str, to: &str) {
    if let Some(dir) = Path::new(to).parent() {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {from} to {to}: {e}"));
    fs::set_permissions(to, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The child was killed, or (`denied`) lived and saw EPERM under `key`.
fn assert_refused(run: &Finished, key: &str, denied: bool) {
    run.assert_refused(key, denied);
    if denied {
        assert_eq!(run.report("child_code"), 0, "{run:?}");
    }
}

const IO_URING_SETUP: &str = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)
print(f"ring={fd if fd >= 0 else ctypes.get_errno()}", flush=True)
"#;

/// io_uring is refused for session processes by default: its operations would
/// read files without passing the open hooks. On the tracepoint tier the caller is
/// killed at io_uring_setup's entry (the kernel may create the ring, but the process
/// dies before the call returns its descriptor, so no operation is ever submitted);
/// where BPF-LSM runs, io_uring_setup fails with EPERM. `[sessions] io_uring =
/// "allow"` lets it through.
#[test]
fn io_uring_is_refused_by_default_and_allowed_by_policy() {
    let mut s = start("");
    let (run, events) = s.python(IO_URING_SETUP);
    // BPF-LSM's part comes with `inode_init_security_anon` (Linux 5.12).
    let lsm = s.denies("route_io_uring");
    assert_refused(&run, "ring", lsm);
    assert!(!run.stdout.contains(SECRET));
    let e = route_event(&events, &run, "io_uring", "sessions.io_uring");
    let (outcome, result) = if lsm {
        ("denied", "EPERM")
    } else {
        ("killed", "killed")
    };
    assert_eq!(e.str("outcome"), Some(outcome), "{e}");
    assert_eq!(e.str("result"), Some(result), "{e}");
    assert_eq!(e.str("comm"), Some("python3"), "{e}");
    s.finish();

    let mut s = start("[sessions]\nio_uring = \"allow\"\n");
    let (run, events) = s.python(IO_URING_SETUP);
    assert!(run.report("ring") >= 0, "{run:?}");
    assert_eq!(run.report("child_code"), 0, "{run:?}");
    assert!(
        !Enforcing::of_run(&events, &run)
            .iter()
            .any(|e| e.kind() == "route"),
        "an allowed route was reported:\n{}",
        dump(&events)
    );
    s.finish();
}

const SECRET_RULE: &str = r#"
[[rule]]
id = "secret-read"
kind = "file"
access = ["read"]
paths = ["{dir}/secret/**"]
action = "kill"
"#;

/// open_by_handle_at opens a file by handle, not by path, so no path rule could
/// see it: the caller is killed before the call returns, and never reads the
/// secret (name_to_handle_at, which opens nothing, is allowed).
#[test]
fn open_by_handle_at_is_killed_before_the_secret_is_read() {
    let mut s = start(SECRET_RULE);
    fs::create_dir_all(s.path("secret")).expect("mkdir");
    fs::write(s.path("secret/key"), SECRET).expect("write secret");
    let (run, events) = s.python(
        r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(8 + 128)
ctypes.memmove(buf, (128).to_bytes(4, "little"), 4)
mount_id = ctypes.c_int()
r = libc.name_to_handle_at(-100, b"{dir}/secret/key", buf, ctypes.byref(mount_id), 0)
print(f"named={r if r >= 0 else ctypes.get_errno()}", flush=True)
mfd = os.open("{dir}", os.O_RDONLY)
fd = libc.open_by_handle_at(mfd, buf, os.O_RDONLY)
print(f"opened={fd if fd >= 0 else ctypes.get_errno()}", flush=True)
if fd >= 0:
    print("data=" + os.read(fd, 100).decode(), flush=True)
"#,
    );
    assert_eq!(run.report("named"), 0, "{run:?}");
    assert_eq!(run.report("child_signal"), SIGKILL, "{run:?}");
    assert!(!run.reports.contains_key("opened"), "{run:?}");
    assert!(!run.stdout.contains(SECRET), "the secret was read: {run:?}");
    let e = route_event(
        &events,
        &run,
        "open_by_handle_at",
        "sessions.open_by_handle_at",
    );
    assert_eq!(e.str("outcome"), Some("killed"), "{e}");
    s.finish();
}

/// A program an exec rule kills does not run through the dynamic loader
/// (`ld-linux-x86-64.so.2 ./prog`: the exec'd file is the loader, which maps the
/// program): the kernel kills the loader when it maps the program executable, by
/// the program's name or path. Nor does it run by descriptor (`execveat` with
/// AT_EMPTY_PATH). Exec events name the loader's target and an interpreter's script.
#[test]
fn a_denied_program_runs_neither_through_the_loader_nor_by_descriptor() {
    let mut s = start(
        r#"
[[rule]]
id = "no-denied-touch"
kind = "exec"
exe = ["denied-touch", "{dir}/bin/other-touch"]
action = "kill"
"#,
    );
    let by_name = s.path("bin/denied-touch");
    let by_path = s.path("bin/other-touch");
    copy_exe("/usr/bin/touch", &by_name);
    copy_exe("/usr/bin/touch", &by_path);
    let loader = "/lib64/ld-linux-x86-64.so.2";

    for (i, target) in [&by_name, &by_path].into_iter().enumerate() {
        let marker = s.path(&format!("ran-loader-{i}"));
        let (run, events) = s.run(loader, &[target, &marker]);
        assert_eq!(run.report("child_signal"), SIGKILL, "{run:?}");
        assert!(
            !Path::new(&marker).exists(),
            "{target} ran through the loader"
        );
        let exec = Enforcing::of_run(&events, &run)
            .into_iter()
            .find(|e| e.kind() == "exec" && e.str("via") == Some("loader"))
            .unwrap_or_else(|| panic!("no loader exec:\n{}", dump(&events)));
        assert_eq!(exec.str("target"), Some(target.as_str()), "{exec}");
        // The kernel's kill at the mapping of the target is the guarantee, and the
        // only kill: user space leaves a loader run of a program the kernel holds the
        // rule of to that hook (`deferred`), so no kill of its own races it.
        assert_eq!(exec.str("rule"), Some("no-denied-touch"), "{exec}");
        assert_eq!(exec.str("outcome"), Some("deferred"), "{exec}");
        let mapping = Enforcing::of_run(&events, &run)
            .into_iter()
            .find(|e| e.kind() == "route" && e.str("route") == Some("exec_mapping"))
            .unwrap_or_else(|| panic!("no exec_mapping route event:\n{}", dump(&events)));
        assert_eq!(mapping.str("rule"), Some("no-denied-touch"), "{mapping}");
        assert_eq!(mapping.str("path"), Some(target.as_str()), "{mapping}");
        assert_eq!(mapping.str("outcome"), Some("killed"), "{mapping}");
        assert_eq!(mapping.pid(), exec.pid(), "{mapping}");
    }

    // execveat(fd, "", AT_EMPTY_PATH), as fexecve does.
    let marker = s.path("ran-fd");
    let (run, events) = s.python(&format!(
        "import os\nfd = os.open('{by_name}', os.O_RDONLY)\nos.execve(fd, ['x', '{marker}'], {{}})\n"
    ));
    assert_eq!(run.report("child_signal"), SIGKILL, "{run:?}");
    assert!(
        !Path::new(&marker).exists(),
        "the program ran by descriptor"
    );
    let exec = Enforcing::of_run(&events, &run)
        .into_iter()
        .find(|e| e.kind() == "exec" && e.str("rule") == Some("no-denied-touch"))
        .unwrap_or_else(|| panic!("no killed exec:\n{}", dump(&events)));
    assert_eq!(exec.str("exe"), Some(by_name.as_str()), "{exec}");
    assert_eq!(exec.str("outcome"), Some("killed"), "{exec}");

    // A script run through an interpreter is named.
    let script = s.path("hello.sh");
    fs::write(&script, "echo hello=1\n").expect("write script");
    let (run, events) = s.run("sh", &[&script]);
    assert_eq!(run.report("hello"), 1, "{run:?}");
    let exec = Enforcing::of_run(&events, &run)
        .into_iter()
        .find(|e| e.kind() == "exec" && e.str("via") == Some("interpreter"))
        .unwrap_or_else(|| panic!("no interpreter exec:\n{}", dump(&events)));
    assert_eq!(exec.str("target"), Some(script.as_str()), "{exec}");
    s.finish();
}

/// Runs a memfd copy of `touch` and a deleted copy, each creating a marker.
fn fileless_runs(s: &mut Enforcing) -> [(Finished, Vec<Event>, String, String); 2] {
    let gone = s.path("bin/gone-touch");
    copy_exe("/usr/bin/touch", &gone);
    let m1 = s.path("ran-memfd");
    let (r1, e1) = s.python(&format!(
        "import os\nfd = os.memfd_create('payload', 0)\nos.write(fd, open('/usr/bin/touch', 'rb').read())\nos.execve(fd, ['touch', '{m1}'], {{}})\n"
    ));
    let m2 = s.path("ran-deleted");
    let (r2, e2) = s.python(&format!(
        "import os\nfd = os.open('{gone}', os.O_RDONLY)\nos.unlink('{gone}')\nos.execve(fd, ['touch', '{m2}'], {{}})\n"
    ));
    [
        (r1, e1, m1, "memfd:payload".to_owned()),
        (r2, e2, m2, format!("{gone} (deleted)")),
    ]
}

fn fileless_exec<'e>(events: &'e [Event], run: &Finished, exe: &str) -> &'e Event {
    Enforcing::of_run(events, run)
        .into_iter()
        .find(|e| {
            e.kind() == "route"
                && e.str("route") == Some("fileless_exec")
                && e.str("path") == Some(exe)
        })
        .unwrap_or_else(|| panic!("no fileless_exec route of {exe}:\n{}", dump(events)))
}

/// A program run from a memfd or a deleted file is named truthfully
/// (`memfd:NAME`, `… (deleted)`) and `[sessions] fileless_exec = "kill"` (the `ci`
/// default) stops it before it runs.
#[test]
fn fileless_programs_are_named_and_killed_when_the_policy_says_so() {
    let mut s = start("[sessions]\nfileless_exec = \"kill\"\n");
    for (run, events, marker, exe) in fileless_runs(&mut s) {
        let e = fileless_exec(&events, &run, &exe);
        assert_eq!(e.str("rule"), Some("sessions.fileless_exec"), "{e}");
        // `kill` kills at sched_process_exec on every tier.
        assert_eq!(e.str("outcome"), Some("killed"), "{e}");
        assert_eq!(e.str("result"), Some("killed"), "{e}");
        assert_eq!(run.report("child_signal"), SIGKILL, "{run:?}");
        assert!(!Path::new(&marker).exists(), "{exe} ran");
    }
    s.finish();
}

/// In `workstation` (`fileless_exec = "alert"`) the program runs and the exec is an
/// alert naming the rule.
#[test]
fn fileless_programs_are_alerted_on_in_workstation() {
    let mut s = start("[sessions]\nfileless_exec = \"alert\"\n");
    for (run, events, marker, exe) in fileless_runs(&mut s) {
        assert_eq!(run.report("child_code"), 0, "{run:?}");
        assert!(Path::new(&marker).exists(), "{exe} did not run");
        let e = fileless_exec(&events, &run, &exe);
        assert_eq!(e.str("rule"), Some("sessions.fileless_exec"), "{e}");
        assert_eq!(e.bool("alert"), Some(true), "{e}");
        assert_eq!(e.str("outcome"), Some("alerted"), "{e}");
        // The exec event names the program truthfully too: `memfd:NAME` from the
        // kernel; a deleted file by its old path, with ` (deleted)` when user space
        // still found the process (never `/`).
        let child = run.report("child");
        let exec = Enforcing::of_run(&events, &run)
            .into_iter()
            .find(|e| {
                e.kind() == "exec"
                    && e.pid() == Some(child)
                    && e.strings("argv")
                        .is_some_and(|a| a.first() == Some(&"touch"))
            })
            .unwrap_or_else(|| panic!("no exec of {exe}:\n{}", dump(&events)));
        let named = exec.str("exe").unwrap_or_default();
        if exe.starts_with("memfd:") {
            assert_eq!(named, exe, "{exec}");
        } else {
            let old = exe.trim_end_matches(" (deleted)");
            assert!(named == old || named == exe, "{exec}");
        }
    }
    s.finish();
}

/// Raw and packet sockets send below the cgroup hooks: refused for session
/// processes by default. `sendmmsg` meets the network rules per datagram, and a TCP
/// Fast Open `sendto(MSG_FASTOPEN)` meets them as a connect: both fail with EPERM
/// and nothing reaches the listener.
#[test]
fn raw_sockets_are_refused_and_every_send_meets_the_rules() {
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    udp.set_nonblocking(true).expect("nonblocking");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    tcp.set_nonblocking(true).expect("nonblocking");
    let (uport, tport) = (
        udp.local_addr().expect("addr").port(),
        tcp.local_addr().expect("addr").port(),
    );
    let mut s = start(&format!(
        "[[rule]]\nid = \"canaries\"\nkind = \"network\"\ndeny = [\"127.0.0.1:{uport}\", \"127.0.0.1:{tport}\"]\naction = \"deny\"\n"
    ));

    for (key, family, route) in [
        (
            "raw",
            "socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP",
            "raw_socket",
        ),
        (
            "packet",
            "socket.AF_PACKET, socket.SOCK_RAW, 0",
            "packet_socket",
        ),
    ] {
        let (run, events) = s.python(&format!(
            "import socket\ntry:\n    socket.socket({family})\n    print('{key}=0', flush=True)\nexcept OSError as e:\n    print(f'{key}={{e.errno}}', flush=True)\n"
        ));
        assert_refused(&run, key, s.denies("route_raw_sockets"));
        let e = route_event(&events, &run, route, "sessions.raw_sockets");
        assert_eq!(
            e.str("outcome"),
            Some(s.outcome_of("route_raw_sockets")),
            "{e}"
        );
    }

    let (run, events) = s.python(&format!(
        r#"{PY_SENDMMSG_TYPES}
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = ctypes.create_string_buffer(struct.pack("<H", socket.AF_INET) + struct.pack("!H", {uport}) + socket.inet_aton("127.0.0.1") + bytes(8), 16)
data = ctypes.create_string_buffer(b"leak", 4)
iov = iovec(ctypes.addressof(data), 4)
msgs = (mmsghdr * 2)()
for m in msgs:
    m.hdr = msghdr(ctypes.addressof(addr), 16, ctypes.pointer(iov), 1, None, 0, 0)
n = libc.sendmmsg(s.fileno(), msgs, 2, 0)
print(f"mmsg={{n if n >= 0 else ctypes.get_errno()}}", flush=True)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    t.sendto(b"leak", socket.MSG_FASTOPEN, ("127.0.0.1", {tport}))
    print("tfo=0", flush=True)
except OSError as e:
    print(f"tfo={{e.errno}}", flush=True)
"#
    ));
    assert_eq!(run.report("mmsg"), EPERM, "{run:?}");
    assert_eq!(run.report("tfo"), EPERM, "{run:?}");
    let mut buf = [0u8; 16];
    assert_eq!(
        udp.recv_from(&mut buf).map_err(|e| e.kind()).err(),
        Some(ErrorKind::WouldBlock),
        "a datagram of the refused sendmmsg arrived"
    );
    assert_eq!(
        tcp.accept().map_err(|e| e.kind()).err(),
        Some(ErrorKind::WouldBlock),
        "the refused Fast Open connected"
    );
    let evs = Enforcing::of_run(&events, &run);
    for (kind, port) in [("send", uport), ("connect", tport)] {
        let e = evs
            .iter()
            .find(|e| e.kind() == kind && e.int("port") == Some(i64::from(port)))
            .unwrap_or_else(|| panic!("no {kind} to {port}:\n{}", dump(&events)));
        assert_eq!(e.str("result"), Some("EPERM"), "{e}");
        assert_eq!(e.str("outcome"), Some("denied"), "{e}");
        assert_eq!(e.str("rule"), Some("canaries"), "{e}");
    }
    s.finish();
}
