//! A PostgreSQL cluster of the test's own, for the fleet server: Debian's
//! postgresql-15 (`cargo xtask test` installs it), `initdb` in a temporary directory
//! as `nobody` (initdb refuses root), listening on 127.0.0.1 at a port the kernel
//! picked, trust authentication for its one role. It can be stopped and started
//! again (a database outage), and is stopped (by `pg_ctl`, for its own data
//! directory) and removed when dropped.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::{TempDir, scaled, watch};

/// Where Debian's postgresql-15 puts its programs (`GUARD_FLEET_TEST_PG_BIN` to
/// change, as guard-fleet's own tests read it).
fn bin_dir() -> PathBuf {
    std::env::var_os("GUARD_FLEET_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// `nobody`'s uid and gid.
fn nobody() -> (u32, u32) {
    // SAFETY: a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
    assert!(!pw.is_null(), "no user `nobody` to run PostgreSQL as");
    // SAFETY: non-null, returned by getpwnam.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

pub struct Postgres {
    dir: TempDir,
    pub port: u16,
    /// The postmaster (a session leader: its group is it and its children), killed
    /// if the test's deadline expires before this is dropped.
    owned: std::cell::RefCell<Option<watch::Entry>>,
}

impl Postgres {
    /// Makes the cluster and its database `fleet`, and starts it.
    pub fn start() -> Self {
        let bin = bin_dir();
        assert!(
            bin.join("initdb").is_file(),
            "no PostgreSQL at {} (Debian's postgresql-15; cargo xtask test installs it)",
            bin.display()
        );
        let dir = TempDir::new("guard-e2e-pg");
        let (uid, gid) = nobody();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the cluster's directory");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .expect("chown the cluster's directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Self {
            dir,
            port,
            owned: std::cell::RefCell::new(None),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "fleet",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.resume();
        pg.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "fleet",
                "fleet",
            ],
        );
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// A program of the cluster's, run as `nobody`, which must succeed.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let (uid, gid) = nobody();
        let mut cmd = Command::new(bin_dir().join(program));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .uid(uid)
            .gid(gid);
        let out = watch::output(&mut cmd, scaled(Duration::from_secs(120)));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
        out
    }

    /// The URL the fleet server connects with.
    pub fn url(&self) -> String {
        format!("postgres://fleet@127.0.0.1:{}/fleet", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        let pid: i32 = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok())
            .expect("the postmaster's pid");
        *self.owned.borrow_mut() = Some(watch::own_group(pid));
    }

    /// Stops the server (a database outage), waiting until it has.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        self.owned.borrow_mut().take();
    }

    /// One value of a query, as psql prints it unaligned.
    pub fn value(&self, sql: &str) -> String {
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "fleet",
                "-d",
                "fleet",
                "-At",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Its own data directory: this cluster's postmaster and nothing else.
        let (uid, gid) = nobody();
        let _ = Command::new(bin_dir().join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .current_dir(self.dir.path())
            .uid(uid)
            .gid(gid)
            .output();
    }
}
