//! A stand-in for an AI agent, driven by the end-to-end tests.
//!
//! The tests copy this binary under a unique name, start `guard daemon --agent <that name>`
//! and run one scenario, picked by the first argument:
//!
//! - `tree DIR`: child processes of every kind (shell, setsid double fork, vfork, execveat)
//!   and a thread; the files they open are in DIR.
//! - `files DIR`: opens files in DIR in every way the daemon has to resolve.
//! - `net PORT4 PORT6 UPORT4 UPORT6 CLOSED4`: TCP and UDP to the test's loopback listeners.
//! - `exit CODE`: exits with CODE at once.
//! - `signals`: has a child killed by SIGKILL, then dies of SIGTERM itself.
//! - `read PATH`: reads PATH and prints what it read as `data=...`.
//! - `read-then-cat PATH`: reads PATH itself (`data=...`), then has `cat PATH` read it
//!   (`cat_pid`, `cat_out=...`, and `cat_signal` or `cat_code`).
//! - `run PROG [ARG]...`: runs PROG in its own process group, its stdout and stderr
//!   this process's; reports `child`, then `child_signal` or `child_code`, then kills
//!   whatever is left of that process group.
//! - `edit-then-run ADDR PATH`: talks to ADDR over TCP (its model's API), writes a
//!   script to PATH itself and has `sh` run it (`child_code=...`).
//! - `net-try SPEC...`: for each `tcp:ADDR` (connect, then send `hello`), `udp:ADDR`
//!   (`sendto` from an unconnected socket) or `udpc:ADDR` (connect, then send), ADDR
//!   being `IP:PORT` or `[IP6]:PORT`, reports `SPEC=0` on success or `SPEC=<errno>`.
//! - `egress SPEC...`: moves [`EGRESS_BYTES`] each way to loopback test servers, per SPEC:
//!   `tcp:ADDR` (connect, send them, shut down writing, read as many back until EOF),
//!   `udp:ADDR` (unconnected socket, `sendto` in lockstep: 16 KiB datagrams each
//!   answered by one byte, then one-byte requests each answered by 16 KiB), or
//!   `inherit:ADDR` (as `tcp`, but a forked child moves the bytes on the socket this
//!   process connected, after this process closed its copy), or `redirect:ADDR+ADDR2`
//!   (one unconnected UDP socket: a 1000-byte datagram to ADDR, then one to ADDR2, each
//!   answered by one byte), or `slow:ADDR` (TCP: 1000 bytes, 11 s of nothing, 1000
//!   bytes, shut down writing, read until EOF: a flow that lasts past the periodic
//!   report interval). Reports `SPEC=ok` and the local port as `SPEC_local=PORT`;
//!   `inherit` also `SPEC_child=PID`.
//! - `flood PATH STOP THREADS SECS`: THREADS threads open and close PATH as fast as
//!   they can until the file STOP exists or SECS seconds passed; `STOP.started` is
//!   created once they run. Reports `opens`.
//! - `fs-try SPEC...`: for each file-system change `OP:PATH[:PATH2]` (`create`, `write`
//!   (append), `trunc-open`, `read`, `mkdir`, `rmdir`, `unlink`, `rename:FROM:TO`,
//!   `link:FROM:TO`, `symlink:TARGET:PATH`, `truncate`, `chmod`, `chown`, `exec`),
//!   made by this process itself with one system call, reports `SPEC=0` or
//!   `SPEC=<errno>`, then `alive=1`.
//! - `tamper OP [ARG]...`: one attempt against guard's daemon, made by this process
//!   itself with one system call: `signal PID SIG` (kill(2)), `seize PID`
//!   (ptrace(PTRACE_SEIZE)), `vmread PID` (process_vm_readv), `read PATH` (open, then
//!   read: the result is the bytes read), `opendir PATH`, `bpf`
//!   (bpf(BPF_PROG_GET_NEXT_ID)), `perf` (perf_event_open of a software clock);
//!   reports `attempt=<result or -errno>`, then `alive=1`.
//!
//! Whatever the tests need to match against the daemon's events (pids, tids, fds, errnos)
//! is printed on stdout as `key=value` lines. Any failure exits non-zero with a message.

use std::ffi::{CStr, CString};
use std::fmt::Display;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::{io, ptr, thread};

use anyhow::{Context, Result, bail, ensure};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["tree", dir] => tree(Path::new(dir)),
        ["files", dir] => files(Path::new(dir)),
        ["net", port4, port6, uport4, uport6, closed4] => net(
            port(port4)?,
            port(port6)?,
            port(uport4)?,
            port(uport6)?,
            port(closed4)?,
        ),
        ["exit", code] => std::process::exit(code.parse().context("bad exit code")?),
        ["signals"] => signals(),
        ["read", path] => read(Path::new(path)),
        ["read-then-cat", path] => read_then_cat(Path::new(path)),
        ["run", prog, rest @ ..] => run(prog, rest),
        ["edit-then-run", addr, path] => edit_then_run(addr, Path::new(path)),
        ["net-try", specs @ ..] if !specs.is_empty() => net_try(specs),
        ["stdin-then-net-try", specs @ ..] if !specs.is_empty() => {
            io::copy(&mut io::stdin(), &mut io::sink()).context("stdin")?;
            net_try(specs)
        }
        ["taint", secret, denied, allowed] => taint(Path::new(secret), denied, allowed),
        ["fs-try", specs @ ..] if !specs.is_empty() => fs_try(specs),
        ["tamper", op, rest @ ..] => tamper(op, rest),
        ["egress", specs @ ..] if !specs.is_empty() => egress(specs),
        ["flood", path, stop, threads, secs] => flood(
            path,
            Path::new(stop),
            threads.parse().context("bad thread count")?,
            secs.parse().context("bad seconds")?,
        ),
        _ => bail!(
            "usage: guard-fake-agent tree DIR | files DIR | net PORT4 PORT6 UPORT4 UPORT6 CLOSED4 \
             | exit CODE | signals | read PATH | read-then-cat PATH | run PROG [ARG]... \
             | net-try SPEC... | stdin-then-net-try SPEC... | fs-try SPEC... | egress SPEC... \
             | taint SECRET DENIED_ADDR ALLOWED_ADDR | edit-then-run ADDR PATH \
             | flood PATH STOP THREADS SECS"
        ),
    }
}

/// `threads` threads opening and closing `path` as fast as they can, until the file
/// `stop` exists or `secs` seconds passed; creates `<stop>.started` once they run.
/// Reports `opens`.
fn flood(path: &str, stop: &Path, threads: usize, secs: u64) -> Result<()> {
    let path = CString::new(path).context("path")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let opens = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let path = &path;
                scope.spawn(move || {
                    let mut n: u64 = 0;
                    while !stop.exists() && std::time::Instant::now() < deadline {
                        for _ in 0..4096 {
                            // SAFETY: a NUL-terminated path; the descriptor is closed at once.
                            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                            if fd >= 0 {
                                // SAFETY: a descriptor this thread just opened.
                                unsafe { libc::close(fd) };
                            }
                        }
                        n += 4096;
                    }
                    n
                })
            })
            .collect();
        let mut started = stop.as_os_str().to_owned();
        started.push(".started");
        std::fs::write(&started, b"")?;
        Ok::<u64, io::Error>(workers.into_iter().map(|w| w.join().unwrap_or(0)).sum())
    })
    .context("start the flood")?;
    report("opens", opens);
    Ok(())
}

/// Processes of every kind, all of which the daemon must put in this agent's session.
fn tree(dir: &Path) -> Result<()> {
    // A shell running a builtin and an external command.
    let mut sh = Command::new("sh")
        .args(["-c", "true; /bin/echo hi > /dev/null"])
        .spawn()
        .context("spawn sh")?;
    report("sh", sh.id());
    let status = sh.wait().context("wait for sh")?;
    ensure!(status.success(), "sh failed: {status}");

    escape_with_setsid(dir)?;

    // vfork + exec, the way posix_spawn does it.
    let argv = [c"/bin/true".as_ptr(), ptr::null()];
    let envp: [*const libc::c_char; 1] = [ptr::null()];
    let mut pid: libc::pid_t = 0;
    // SAFETY: plain FFI; attr is initialised before use and destroyed after; argv and envp
    // are NULL-terminated arrays of C strings that outlive the call.
    let rc = unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawnattr_init(&mut attr);
        libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_USEVFORK);
        let rc = libc::posix_spawn(
            &mut pid,
            c"/bin/true".as_ptr(),
            ptr::null(),
            &attr,
            argv.as_ptr().cast(),
            envp.as_ptr().cast(),
        );
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    ensure!(
        rc == 0,
        "posix_spawn /bin/true: {}",
        io::Error::from_raw_os_error(rc)
    );
    report("vfork", pid);
    wait_ok(pid, "vfork child")?;

    // execveat of `true` relative to a directory fd for /bin, in a forked child.
    let bin = check(
        // SAFETY: plain FFI with a valid C string.
        unsafe {
            libc::open(
                c"/bin".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        },
        "open /bin",
    )?;
    let argv = [c"true".as_ptr(), ptr::null()];
    let child = fork()?;
    if child == 0 {
        // SAFETY: the arguments are valid NUL-terminated strings and arrays; if execveat
        // returns at all it failed, and the child leaves without running any Rust cleanup.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                bin,
                c"true".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                0,
            );
            libc::_exit(127);
        }
    }
    report("execveat", child);
    wait_ok(child, "execveat child")?;

    // A thread (not a process) that opens a file.
    let thread_file = dir.join("thread-file");
    thread::spawn(move || -> Result<()> {
        // SAFETY: gettid has no preconditions.
        report("thread_tid", unsafe { libc::gettid() });
        std::fs::File::open(&thread_file)
            .with_context(|| format!("thread: open {}", thread_file.display()))?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread panicked"))??;

    // Leaving now: the setsid grandchild is still alive, so it is a straggler.
    Ok(())
}

/// fork, setsid, fork again: the grandchild ends up in its own session and process group,
/// reparented away from the agent, as a daemonising tool would do. It opens `DIR/marker`
/// while the agent is still running, tells the agent so, then lives until the agent exits.
fn escape_with_setsid(dir: &Path) -> Result<()> {
    let marker = cpath(&dir.join("marker"));
    let (opened_r, opened_w) = pipe()?; // grandchild -> agent: "marker opened"
    let (hold_r, hold_w) = pipe()?; // agent -> grandchild: EOF once the agent has exited

    let intermediate = fork()?;
    if intermediate == 0 {
        // SAFETY: in the single-threaded child: plain syscalls, then _exit without
        // returning into the parent's Rust frames.
        unsafe {
            libc::close(opened_r);
            libc::close(hold_w);
            if libc::setsid() < 0 {
                libc::_exit(10);
            }
            let me = libc::getpid();
            let grandchild = libc::fork();
            if grandchild < 0 {
                libc::_exit(11);
            }
            if grandchild == 0 {
                // Open only once reparented (the intermediate has exited), so that the
                // open is that of an escaped process. Not reparented within 10 s: leave
                // without opening, and the agent fails saying so.
                let mut waited_ms = 0;
                while libc::getppid() == me {
                    if waited_ms == 10_000 {
                        libc::_exit(13);
                    }
                    libc::usleep(1000);
                    waited_ms += 1;
                }
                let fd = libc::open(marker.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                report("grandchild_fd", fd);
                let _ = libc::write(opened_w, b"x".as_ptr().cast(), 1);
                libc::close(opened_w);
                // Block until every write end of `hold` is closed, i.e. the agent is gone.
                let mut byte = 0u8;
                while libc::read(hold_r, (&raw mut byte).cast(), 1) > 0 {}
                libc::_exit(if fd >= 0 { 0 } else { 12 });
            }
            report("grandchild", grandchild);
            libc::_exit(0);
        }
    }
    report("intermediate", intermediate);
    // SAFETY: closing fds this process owns and no longer uses.
    unsafe {
        libc::close(opened_w);
        libc::close(hold_r);
    }
    wait_ok(intermediate, "setsid intermediate child")?;

    let mut byte = 0u8;
    // SAFETY: reading one byte into a local from a pipe fd this process owns.
    let n = unsafe { libc::read(opened_r, (&raw mut byte).cast(), 1) };
    ensure!(
        n == 1,
        "the setsid grandchild did not open {marker:?} (or was not reparented)"
    );
    // `hold_w` stays open (close-on-exec) until this process exits.
    Ok(())
}

/// Opens in every way the daemon has to turn into an absolute path. Each result is
/// printed as `key=<fd>` or `key=-<errno>`.
fn files(dir: &Path) -> Result<()> {
    let at = |name: &str| cpath(&dir.join(name));
    let rdonly = libc::O_RDONLY | libc::O_CLOEXEC;

    report("abs", openat(libc::AT_FDCWD, &at("abs.txt"), rdonly, 0));
    // SAFETY: open(2) through the raw syscall, valid C string.
    let fd = unsafe { libc::syscall(libc::SYS_open, at("open.txt").as_ptr(), rdonly) };
    report("open", ret(fd));

    let c_dir = cpath(dir);
    // SAFETY: plain FFI with a valid C string.
    check(unsafe { libc::chdir(c_dir.as_ptr()) }, "chdir")?;
    report("relative", openat(libc::AT_FDCWD, c"rel.txt", rdonly, 0));
    report(
        "missing_relative",
        openat(libc::AT_FDCWD, c"sub/../nothere", rdonly, 0),
    );

    let dirfd = openat(libc::AT_FDCWD, &c_dir, rdonly | libc::O_DIRECTORY, 0);
    check(dirfd as i32, "open DIR")?;
    report("dirfd", openat(dirfd as i32, c"dirfd.txt", rdonly, 0));

    report("symlink", openat(libc::AT_FDCWD, &at("link"), rdonly, 0));
    report(
        "dotdot",
        openat(libc::AT_FDCWD, &at("sub/../dotdot.txt"), rdonly, 0),
    );
    let via_proc = format!("/proc/self/root{}", dir.join("procroot.txt").display());
    report(
        "procroot",
        openat(libc::AT_FDCWD, &cstr(&via_proc), rdonly, 0),
    );
    report("missing", openat(libc::AT_FDCWD, &at("missing"), rdonly, 0));
    report(
        "rdwr",
        openat(libc::AT_FDCWD, &at("rdwr.txt"), libc::O_RDWR, 0),
    );

    let write_flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    report(
        "written",
        openat(libc::AT_FDCWD, &at("written.txt"), write_flags, 0o644),
    );
    // SAFETY: creat(2) through the raw syscall (glibc may route creat() to openat).
    let fd = unsafe { libc::syscall(libc::SYS_creat, at("created.txt").as_ptr(), 0o644) };
    report("creat", ret(fd));

    let how = OpenHow {
        flags: rdonly as u64,
        mode: 0,
        resolve: 0,
    };
    // SAFETY: openat2(2) with a valid path and a fully initialised open_how of the given size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            at("openat2.txt").as_ptr(),
            &raw const how,
            size_of::<OpenHow>(),
        )
    };
    report("openat2", ret(fd));
    Ok(())
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// TCP and UDP to the test's loopback listeners, over IPv4 and IPv6.
fn net(port4: u16, port6: u16, uport4: u16, uport6: u16, closed4: u16) -> Result<()> {
    let v4 = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = |port| SocketAddr::from((Ipv6Addr::LOCALHOST, port));

    TcpStream::connect(v4(port4))
        .and_then(|mut s| s.write_all(b"tcp4"))
        .context("TCP over IPv4")?;
    TcpStream::connect(v6(port6))
        .and_then(|mut s| s.write_all(b"tcp6"))
        .context("TCP over IPv6")?;
    let refused = TcpStream::connect(v4(closed4))
        .err()
        .context("connect to a closed port")?;
    report("refused_errno", refused.raw_os_error().unwrap_or(0));

    // A connected UDP socket: connect(2), then send(2) without a destination.
    let udp = UdpSocket::bind(v4(0)).context("bind UDP")?;
    udp.connect(v4(uport4)).context("connect UDP")?;
    udp.send(b"udp4-connected")
        .context("send on connected UDP")?;

    // Unconnected UDP sockets: every datagram carries its destination.
    let udp = UdpSocket::bind(v4(0)).context("bind UDP")?;
    udp.send_to(b"udp4-sendto", v4(uport4))
        .context("sendto over IPv4")?;
    let udp = UdpSocket::bind(v6(0)).context("bind UDP over IPv6")?;
    udp.send_to(b"udp6-sendto", v6(uport6))
        .context("sendto over IPv6")?;
    Ok(())
}

/// Bytes each `egress` flow moves each way: 1 MiB.
const EGRESS_BYTES: usize = 1 << 20;
/// The size of the UDP datagrams that carry them.
const EGRESS_DATAGRAM: usize = 16 << 10;

fn egress(specs: &[&str]) -> Result<()> {
    let data = vec![0x5a_u8; EGRESS_BYTES];
    let mut back = vec![0_u8; EGRESS_BYTES + 1];
    for spec in specs {
        let (kind, addr) = spec
            .split_once(':')
            .with_context(|| format!("bad egress spec {spec}"))?;
        if let ("redirect", Some((first, second))) = (kind, addr.split_once('+')) {
            let u = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("bind UDP")?;
            u.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            report(&format!("{spec}_local"), u.local_addr()?.port());
            for to in [first, second] {
                let to: SocketAddr = to.parse().with_context(|| format!("bad address {to}"))?;
                u.send_to(&data[..1000], to).context("sendto")?;
                u.recv(&mut back).context("the server's ack")?;
            }
            report(spec, "ok");
            continue;
        }
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("bad address in {spec}"))?;
        match kind {
            "tcp" => {
                let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
                report(&format!("{spec}_local"), s.local_addr()?.port());
                tcp_both_ways(&mut s, &data, &mut back).with_context(|| spec.to_string())?;
            }
            "inherit" => {
                let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
                report(&format!("{spec}_local"), s.local_addr()?.port());
                let child = fork()?;
                if child == 0 {
                    let code = i32::from(tcp_both_ways(&mut s, &data, &mut back).is_err());
                    // SAFETY: leaving the forked child at once.
                    unsafe { libc::_exit(code) };
                }
                // The child's copy is now the socket's only descriptor.
                drop(s);
                report(&format!("{spec}_child"), child);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                check(unsafe { libc::waitpid(child, &mut status, 0) }, "waitpid")?;
                ensure!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "{spec}: the child failed ({status})"
                );
            }
            "udp" => {
                let local: SocketAddr = match addr {
                    SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
                    SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
                };
                let u = UdpSocket::bind(local).context("bind UDP")?;
                u.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
                report(&format!("{spec}_local"), u.local_addr()?.port());
                for chunk in data.chunks(EGRESS_DATAGRAM) {
                    u.send_to(chunk, addr).context("sendto")?;
                    let n = u.recv(&mut back).context("the server's ack")?;
                    ensure!(n == 1, "ack of {n} bytes");
                }
                let mut got = 0;
                while got < EGRESS_BYTES {
                    u.send_to(b"d", addr).context("sendto a request")?;
                    got += u.recv(&mut back).context("a datagram from the server")?;
                }
                ensure!(got == EGRESS_BYTES, "{spec}: received {got} bytes");
            }
            "slow" => {
                use std::io::Read;
                let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
                report(&format!("{spec}_local"), s.local_addr()?.port());
                s.write_all(&data[..1000]).context("send")?;
                // Past the kernel's 10 s between two records of a flow.
                thread::sleep(std::time::Duration::from_secs(11));
                s.write_all(&data[..1000]).context("send")?;
                s.shutdown(std::net::Shutdown::Write).context("shutdown")?;
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).context("receive")?;
            }
            "redirect" => bail!("{spec}: redirect takes two addresses, ADDR+ADDR2"),
            _ => bail!("bad egress kind in {spec}"),
        }
        report(spec, "ok");
    }
    Ok(())
}

/// Sends `data`, shuts down writing, reads until EOF: exactly as many bytes back.
fn tcp_both_ways(s: &mut TcpStream, data: &[u8], back: &mut [u8]) -> Result<()> {
    use std::io::Read;
    s.write_all(data).context("send")?;
    s.shutdown(std::net::Shutdown::Write).context("shutdown")?;
    let mut got = 0;
    loop {
        let n = s.read(&mut back[got..]).context("receive")?;
        if n == 0 {
            break;
        }
        got += n;
        ensure!(got <= data.len(), "received more than sent");
    }
    ensure!(
        got == data.len(),
        "received {got} bytes, not {}",
        data.len()
    );
    Ok(())
}

/// A child killed by SIGKILL, then this process killed by SIGTERM.
fn signals() -> Result<()> {
    let child = fork()?;
    if child == 0 {
        loop {
            // SAFETY: pause has no preconditions; the child waits here to be killed.
            unsafe { libc::pause() };
        }
    }
    report("killed", child);
    let mut status = 0;
    // SAFETY: signalling our own child, then waiting for it.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, &mut status, 0);
    }
    ensure!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "the child was not killed by SIGKILL: wait status {status:#x}"
    );
    // SAFETY: SIGTERM's default action ends this process here.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    bail!("still alive after SIGTERM")
}

/// Reads `path` and prints its content (`data=...`): a kill at open leaves no `data` line.
fn read(path: &Path) -> Result<()> {
    report("pid", std::process::id());
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    report("data", String::from_utf8_lossy(&data).trim_end());
    Ok(())
}

/// Reads `path` itself, then has a `cat` child read it.
fn read_then_cat(path: &Path) -> Result<()> {
    read(path)?;
    let cat = Command::new("cat")
        .arg(path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn cat")?;
    report("cat_pid", cat.id());
    let out = cat.wait_with_output().context("wait for cat")?;
    report("cat_out", String::from_utf8_lossy(&out.stdout).trim_end());
    report_status("cat", out.status);
    Ok(())
}

/// Runs `prog` in its own process group and reports how it ended; then kills what is
/// left of its group (what a killed script had started).
fn run(prog: &str, args: &[&str]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(prog)
        .args(args)
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawn {prog}"))?;
    let pid = child.id();
    report("child", pid);
    let status = child.wait().with_context(|| format!("wait for {prog}"))?;
    report_status("child", status);
    // SAFETY: signalling the process group the child led (ESRCH if it is empty).
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    Ok(())
}

/// What an agent does with a model's answer: it talks to its API (a TCP exchange
/// with `addr`), writes the script the answer holds to `path` itself, and has `sh`
/// run it (reported as `run`).
fn edit_then_run(addr: &str, path: &Path) -> Result<()> {
    let mut api = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    api.write_all(b"POST /v1/responses\r\n\r\n")
        .context("send to the model")?;
    std::fs::write(path, "echo EDIT-RAN\n").with_context(|| format!("write {path:?}"))?;
    let status = Command::new("sh").arg(path).status().context("spawn sh")?;
    report_status("child", status);
    Ok(())
}

/// `KEY_signal=N` or `KEY_code=N`.
fn report_status(key: &str, status: std::process::ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    match (status.signal(), status.code()) {
        (Some(signal), _) => report(&format!("{key}_signal"), signal),
        (None, Some(code)) => report(&format!("{key}_code"), code),
        (None, None) => report(&format!("{key}_status"), status),
    }
}

/// Taint: a sibling forked before the secret read, a read of `secret`, then a child
/// forked after it tries TCP to `denied` and `allowed` (`ADDR:PORT`); the sibling
/// then tries `denied`. Reports `sibling_pid`, `child_pid`, `denied_child` and
/// `allowed_child` (0 or the errno), `denied_sibling`.
fn taint(secret: &Path, denied: &str, allowed: &str) -> Result<()> {
    let me = std::env::current_exe().context("current_exe")?;
    let spec = |addr: &str| format!("tcp:{addr}");
    let mut sibling = Command::new(&me)
        .args(["stdin-then-net-try", &spec(denied)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn the sibling")?;
    report("sibling_pid", sibling.id());
    read(secret)?;
    let child = Command::new(&me)
        .args(["net-try", &spec(denied), &spec(allowed)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn the child")?;
    report("child_pid", child.id());
    let out = child.wait_with_output().context("wait for the child")?;
    let results = String::from_utf8_lossy(&out.stdout).into_owned();
    let result = |addr: &str| -> Result<String> {
        let key = format!("{}=", spec(addr));
        results
            .lines()
            .find_map(|l| l.strip_prefix(&key).map(str::to_owned))
            .with_context(|| format!("no result for {addr} in {results:?}"))
    };
    report("denied_child", result(denied)?);
    report("allowed_child", result(allowed)?);
    drop(sibling.stdin.take());
    let mut out = String::new();
    io::Read::read_to_string(sibling.stdout.as_mut().context("sibling stdout")?, &mut out)
        .context("read the sibling")?;
    sibling.wait().context("wait for the sibling")?;
    let key = format!("{}=", spec(denied));
    let value = out
        .lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_owned))
        .with_context(|| format!("no result from the sibling in {out:?}"))?;
    report("denied_sibling", value);
    Ok(())
}

/// TCP connects and UDP datagrams to the given destinations, each reported as 0 or its
/// errno.
fn net_try(specs: &[&str]) -> Result<()> {
    for spec in specs {
        let (proto, addr) = spec
            .split_once(':')
            .with_context(|| format!("bad spec {spec:?}"))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("bad address in {spec:?}"))?;
        let result = match proto {
            // A blocking connect: on loopback it completes or fails at once.
            "tcp" => TcpStream::connect(addr).and_then(|mut s| s.write_all(b"hello")),
            "udp" | "udpc" => {
                let local: SocketAddr = match addr {
                    SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                UdpSocket::bind(local)
                    .and_then(|s| match proto {
                        "udp" => s.send_to(b"hello", addr),
                        _ => s.connect(addr).and_then(|()| s.send(b"hello")),
                    })
                    .map(drop)
            }
            _ => bail!("bad protocol in {spec:?}"),
        };
        report(
            spec,
            result.err().map_or(0, |e| e.raw_os_error().unwrap_or(-1)),
        );
    }
    Ok(())
}

fn fs_try(specs: &[&str]) -> Result<()> {
    use std::ffi::CString;
    let c = |p: &str| CString::new(p).context("NUL in a path");
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        // SAFETY (all calls below): plain system calls on valid C strings.
        let rc: i64 = unsafe {
            match parts.as_slice() {
                ["create", p] => fd_result(libc::open(
                    c(p)?.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )),
                ["write", p] => {
                    let fd = libc::open(c(p)?.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
                    if fd >= 0 {
                        let n = libc::write(fd, b"x".as_ptr().cast(), 1);
                        libc::close(fd);
                        ret(n as libc::c_long)
                    } else {
                        ret(fd.into())
                    }
                }
                ["trunc-open", p] => {
                    fd_result(libc::open(c(p)?.as_ptr(), libc::O_WRONLY | libc::O_TRUNC))
                }
                ["read", p] => fd_result(libc::open(c(p)?.as_ptr(), libc::O_RDONLY)),
                ["mkdir", p] => ret(libc::mkdir(c(p)?.as_ptr(), 0o755).into()),
                ["rmdir", p] => ret(libc::rmdir(c(p)?.as_ptr()).into()),
                ["unlink", p] => ret(libc::unlink(c(p)?.as_ptr()).into()),
                ["rename", a, b] => ret(libc::rename(c(a)?.as_ptr(), c(b)?.as_ptr()).into()),
                ["link", a, b] => ret(libc::link(c(a)?.as_ptr(), c(b)?.as_ptr()).into()),
                ["symlink", a, b] => ret(libc::symlink(c(a)?.as_ptr(), c(b)?.as_ptr()).into()),
                ["truncate", p] => ret(libc::truncate(c(p)?.as_ptr(), 0).into()),
                ["chmod", p] => ret(libc::chmod(c(p)?.as_ptr(), 0o777).into()),
                ["chown", p] => ret(libc::chown(c(p)?.as_ptr(), 1, 1).into()),
                ["exec", p] => match Command::new(p).status() {
                    Ok(_) => 0,
                    Err(e) => -i64::from(e.raw_os_error().unwrap_or(-1)),
                },
                _ => bail!("bad fs-try spec {spec:?}"),
            }
        };
        report(spec, if rc < 0 { -rc } else { 0 });
    }
    report("alive", 1);
    Ok(())
}

fn tamper(op: &str, args: &[&str]) -> Result<()> {
    let pid = |s: &str| s.parse::<libc::pid_t>().context("bad pid");
    // SAFETY (all calls below): plain system calls on buffers that outlive them.
    let rc: i64 = unsafe {
        match (op, args) {
            ("signal", [p, sig]) => {
                ret(libc::kill(pid(p)?, sig.parse().context("bad signal")?).into())
            }
            ("seize", [p]) => ret(libc::ptrace(
                libc::PTRACE_SEIZE,
                pid(p)?,
                ptr::null_mut::<libc::c_void>(),
                ptr::null_mut::<libc::c_void>(),
            )),
            ("vmread", [p]) => {
                let mut buf = [0u8; 64];
                let local = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                // Any address: the refusal comes before the kernel looks at it.
                let remote = libc::iovec {
                    iov_base: 0x10000 as *mut libc::c_void,
                    iov_len: buf.len(),
                };
                ret(libc::process_vm_readv(pid(p)?, &local, 1, &remote, 1, 0) as libc::c_long)
            }
            ("read", [path]) => {
                let path = CString::new(*path).context("NUL in a path")?;
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    ret(fd.into())
                } else {
                    let mut buf = vec![0u8; 1 << 16];
                    let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                    libc::close(fd);
                    ret(n as libc::c_long)
                }
            }
            ("opendir", [path]) => {
                let path = CString::new(*path).context("NUL in a path")?;
                fd_result(libc::open(
                    path.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                ))
            }
            ("bpf", []) => {
                // union bpf_attr for BPF_PROG_GET_NEXT_ID (11): start_id, next_id.
                let mut attr = [0u32; 4];
                ret(libc::syscall(
                    libc::SYS_bpf,
                    11,
                    attr.as_mut_ptr(),
                    size_of_val(&attr),
                ))
            }
            ("perf", []) => {
                // struct perf_event_attr: type PERF_TYPE_SOFTWARE (1), size, config
                // PERF_COUNT_SW_CPU_CLOCK (0); the rest zero.
                let mut attr = [0u8; 128];
                attr[..4].copy_from_slice(&1u32.to_ne_bytes());
                attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
                let fd = libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0);
                if fd >= 0 {
                    libc::close(fd as libc::c_int);
                    0
                } else {
                    ret(fd)
                }
            }
            _ => bail!("bad tamper attempt {op} {args:?}"),
        }
    };
    report("attempt", rc);
    report("alive", 1);
    Ok(())
}

/// An open's result: closes a descriptor it got (0), or minus the errno.
fn fd_result(fd: libc::c_int) -> i64 {
    if fd >= 0 {
        // SAFETY: closing the descriptor just opened.
        unsafe { libc::close(fd) };
        0
    } else {
        ret(fd.into())
    }
}

/// Prints `key=value` with a single write(2): safe in a forked child, and never duplicated
/// by a stdio buffer that a fork copies.
fn report(key: &str, value: impl Display) {
    let line = format!("{key}={value}\n");
    // SAFETY: writing an initialised buffer of the given length to stdout.
    let n = unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
    if usize::try_from(n).ok() != Some(line.len()) {
        // SAFETY: leaving at once is always sound.
        unsafe { libc::_exit(3) };
    }
}

/// `openat(2)` through the raw syscall; returns the fd, or minus the errno.
fn openat(dirfd: i32, path: &CStr, flags: i32, mode: libc::mode_t) -> i64 {
    // SAFETY: openat(2) with a valid C string.
    ret(unsafe { libc::syscall(libc::SYS_openat, dirfd, path.as_ptr(), flags, mode) })
}

/// A raw syscall's result as the kernel returned it: the value, or minus the errno.
fn ret(rc: libc::c_long) -> i64 {
    if rc < 0 {
        -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        rc
    }
}

fn check(rc: i32, what: &str) -> Result<i32> {
    ensure!(rc >= 0, "{what}: {}", io::Error::last_os_error());
    Ok(rc)
}

fn fork() -> Result<libc::pid_t> {
    // SAFETY: this process is single-threaded whenever it forks; the child only makes
    // syscalls and leaves with _exit or exec.
    check(unsafe { libc::fork() }, "fork")
}

fn pipe() -> Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    check(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    )?;
    Ok((fds[0], fds[1]))
}

fn wait_ok(pid: libc::pid_t, what: &str) -> Result<()> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    check(unsafe { libc::waitpid(pid, &mut status, 0) }, "waitpid")?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} (pid {pid}) failed: wait status {status:#x}"
    );
    Ok(())
}

fn port(arg: &str) -> Result<u16> {
    arg.parse().with_context(|| format!("bad port {arg:?}"))
}

fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("paths from the tests have no NUL")
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("strings from the tests have no NUL")
}
