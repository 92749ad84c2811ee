//! A real DNS server for the tests: Debian's dnsmasq, answering the names it is
//! given (and every name below them) with one address, forwarding nowhere, and
//! logging each query it gets. Stopped at drop.

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{scaled, wait_until};

pub struct Dnsmasq {
    child: Child,
    log: PathBuf,
}

impl Dnsmasq {
    /// Started by `cmd` (`dnsmasq`, or a namespace's `ip netns exec NS dnsmasq`),
    /// listening on `listen`:53 (UDP and TCP), answering each of `zones` (and
    /// every name below it) with `answer`, logging to a file in `dir`.
    pub fn start(
        mut cmd: Command,
        listen: Ipv4Addr,
        zones: &[&str],
        answer: Ipv4Addr,
        dir: &Path,
    ) -> Self {
        let log = dir.join(format!("dnsmasq-{listen}.log"));
        let out = std::fs::File::create(&log).expect("create the dnsmasq log");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--log-queries",
            "--log-facility=-",
            "--pid-file=",
            "--user=root",
        ])
        .arg(format!("--listen-address={listen}"));
        for zone in zones {
            // `local`: the zone's other types (AAAA, HTTPS) get an empty answer, not
            // REFUSED (which musl's resolver, Codex's, takes as a failed lookup).
            cmd.arg(format!("--address=/{zone}/{answer}"))
                .arg(format!("--local=/{zone}/"));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(out);
        let child = cmd.spawn().expect("start dnsmasq (a test dependency)");
        let d = Self { child, log };
        wait_until("dnsmasq listens", scaled(Duration::from_secs(10)), || {
            d.queries().contains("cleared cache")
        });
        d
    }

    /// Its log: every query it got (`query[A] NAME from ...`).
    pub fn queries(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/etc/netns/NAME/resolv.conf` naming `server` (what `ip netns exec NAME` puts
/// in place of /etc/resolv.conf), removed at drop.
pub struct NsResolvConf(PathBuf);

impl NsResolvConf {
    pub fn new(ns: &str, server: Ipv4Addr) -> Self {
        let etc = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/NS");
        std::fs::write(
            etc.join("resolv.conf"),
            format!("nameserver {server}\noptions attempts:2 timeout:2\n"),
        )
        .expect("write resolv.conf");
        Self(etc)
    }
}

impl Drop for NsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
