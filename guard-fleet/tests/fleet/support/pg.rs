//! A real PostgreSQL for the tests, started and stopped by them.
//!
//! `GUARD_FLEET_TEST_PG` says which:
//! - unset or empty: none (the PostgreSQL variants of the tests skip, saying so);
//! - `initdb` (or `local`): a throwaway cluster: `initdb` in a temporary directory as
//!   an unprivileged user (`nobody` when the tests run as root), `postgres` on
//!   127.0.0.1 at a free port, password authentication; stopped (SIGINT to its
//!   postmaster, by pid) and removed when the last test using it is done. The
//!   binaries come from `GUARD_FLEET_TEST_PG_BIN` (default
//!   `/usr/lib/postgresql/15/bin`, Debian's postgresql-15);
//! - `postgres://USER:PASSWORD@HOST:PORT`: an existing server, on which each test
//!   creates its own database and drops it at the end.
//!
//! Each test gets a database of its own either way ([`database`]).
//!
//! Self-contained, for other crates' tests too (`#[path]`): it needs libc, tempfile,
//! getrandom, tokio and sqlx (`any`, `postgres`, `migrate`).
#![allow(
    dead_code,
    reason = "each test binary uses its own part of the support module"
)]

use std::{
    fs,
    io::{self, Read as _},
    net::TcpListener,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::migrate::MigrateDatabase as _;

/// The environment variable that turns the PostgreSQL variants on.
pub(crate) const ENV: &str = "GUARD_FLEET_TEST_PG";
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
const SUPERUSER: &str = "fleet";

/// A PostgreSQL cluster this process started.
#[derive(Debug)]
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    postmaster: Child,
    pub port: u16,
    password: String,
}

/// The uid and gid to run PostgreSQL as: `nobody` when we are root (initdb
/// refuses root), else ourselves.
fn unprivileged() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = c"nobody";
    // SAFETY: a valid C string; the result is read at once, before any other
    // getpw* call of this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no user `nobody` to run PostgreSQL as");
    // SAFETY: non-null, returned by getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn chown(path: &Path, ids: Option<(u32, u32)>) -> io::Result<()> {
    match ids {
        Some((u, g)) => std::os::unix::fs::chown(path, Some(u), Some(g)),
        None => Ok(()),
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path) -> String {
    let mut s = String::new();
    let _ = fs::File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Cluster {
    /// initdb and start a cluster with the binaries in `bin`.
    pub(crate) fn start(bin: &Path) -> io::Result<Self> {
        let ids = unprivileged();
        let dir = tempfile::Builder::new()
            .prefix("guard-fleet-pg-")
            .tempdir()?;
        chown(dir.path(), ids)?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        let mut random = [0u8; 24];
        getrandom::fill(&mut random).map_err(io::Error::other)?;
        let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
        fs::write(&pwfile, &password)?;
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        chown(&pwfile, ids)?;
        let log_path = dir.path().join("postgres.log");
        let as_user = |cmd: &mut Command| {
            cmd.current_dir(dir.path())
                .env("LC_ALL", "C")
                .env_remove("PGDATA");
            if let Some((u, g)) = ids {
                cmd.uid(u).gid(g);
            }
        };

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb);
        let out = initdb.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }

        // A port picked free can be taken before postgres binds it: try a few.
        let mut error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let log = fs::File::create(&log_path)?;
            let mut postgres = Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", dir.path().display()))
                // Tests: durability against a crash of this machine is not needed
                // (a killed fleet server is what the tests are about).
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "max_connections=200", "-c", "shared_buffers=32MB"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            as_user(&mut postgres);
            let mut child = postgres.spawn()?;
            match wait_ready(&mut child, &log_path) {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        postmaster: child,
                        port,
                        password,
                    });
                }
                Err(e) => {
                    stop(&mut child);
                    let port_taken = e.contains("could not bind") || e.contains("already in use");
                    error = e;
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(io::Error::other(error))
    }

    /// The URL of database `db` as the superuser.
    pub(crate) fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The data directory's log, for failures.
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }
}

/// Waits for the postmaster to say it is ready (its log), or to fail.
fn wait_ready(child: &mut Child, log_path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = tail(log_path);
        if log.contains("ready to accept connections") {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("postgres exited ({status}):\n{log}"));
        }
        if Instant::now() > deadline {
            return Err(format!("postgres not ready after 60 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a postmaster: a fast shutdown (SIGINT), and SIGKILL if it has not gone
/// after 20 s. Only the pid this process started is signalled.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let pid = child.id() as libc::pid_t;
    // SAFETY: our own child's pid, not yet reaped (try_wait above).
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop(&mut self.postmaster);
        // The TempDir removes the directory after this.
    }
}

/// The cluster the tests of this process share while any of them runs.
static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());

fn shared_cluster() -> Arc<Cluster> {
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(c) = shared.upgrade() {
        return c;
    }
    let bin = std::env::var_os("GUARD_FLEET_TEST_PG_BIN")
        .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
    let c = Arc::new(Cluster::start(&bin).expect("start a PostgreSQL cluster"));
    *shared = Arc::downgrade(&c);
    c
}

/// A database of one test.
#[derive(Debug)]
pub(crate) struct TestPg {
    pub url: String,
    /// Keeps a local cluster running while the test needs it.
    cluster: Option<Arc<Cluster>>,
}

impl Drop for TestPg {
    fn drop(&mut self) {
        if self.cluster.is_some() {
            return; // The cluster goes with its last user.
        }
        // On a server of someone else's: drop the database, from a thread with a
        // runtime of its own (this may run inside the test's runtime).
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(sqlx::Any::force_drop_database(&url));
            }
        })
        .join();
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new, empty database for one test, or `None` when `GUARD_FLEET_TEST_PG` is not
/// set.
pub(crate) async fn database() -> Option<TestPg> {
    let setting = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
    sqlx::any::install_default_drivers();
    let name = format!(
        "gf_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let (url, cluster) =
        if setting.starts_with("postgres://") || setting.starts_with("postgresql://") {
            (format!("{}/{name}", setting.trim_end_matches('/')), None)
        } else {
            let c = tokio::task::spawn_blocking(shared_cluster)
                .await
                .expect("cluster");
            (c.url(&name), Some(c))
        };
    sqlx::Any::create_database(&url)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    Some(TestPg { url, cluster })
}
