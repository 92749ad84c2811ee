//! Sockets in another network namespace: a socket belongs to the namespace of the
//! thread that created it, so each namespace guard's resolver serves has a thread
//! of its own, moved into it once (`setns`), that creates the sockets the resolver
//! listens and forwards on there. The thread ends when the resolver there stops.

use std::{io, os::fd::AsFd, path::PathBuf, sync::mpsc};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Where sockets are made: the daemon's own namespace, or a thread in another.
pub enum Netns {
    Host,
    Other {
        /// Jobs for the namespace's thread.
        jobs: mpsc::Sender<Job>,
    },
}

/// The inode number of the network namespace of process `pid` (`self`: the
/// daemon's), as the kernel's records name it.
pub fn inode(pid: &str) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    u32::try_from(meta.ino()).map_err(|_| io::Error::other("namespace inode above 32 bits"))
}

/// Whether process `pid`'s network namespace has no interface but `lo`: nothing
/// sent there can leave the host.
pub fn isolated(pid: u32) -> io::Result<bool> {
    let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))?;
    Ok(interfaces(&dev).all(|name| name == "lo"))
}

/// The interface names of a `/proc/net/dev` table.
fn interfaces(dev: &str) -> impl Iterator<Item = &str> {
    dev.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim())
}

impl Netns {
    /// The namespace process `pid` runs in, entered by a thread of its own.
    pub fn enter(pid: u32) -> io::Result<Self> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let ns = std::fs::File::open(&path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("guard-dns-{pid}"))
            .spawn(move || {
                let entered = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the namespace thread ended"))??;
        Ok(Self::Other { jobs: tx })
    }

    /// Runs `make` (which creates sockets) in the namespace.
    pub async fn run<T: Send + 'static>(
        &self,
        make: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        match self {
            Self::Host => make(),
            Self::Other { jobs } => {
                let (tx, rx) = oneshot::channel();
                let job: Job = Box::new(move || {
                    let _ = tx.send(make());
                });
                jobs.send(job)
                    .map_err(|_| io::Error::other("the namespace thread ended"))?;
                rx.await
                    .map_err(|_| io::Error::other("the namespace thread ended"))?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_with_only_loopback_is_isolated() {
        let only_lo = "Inter-|   Receive \n face |bytes\n    lo: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(interfaces(only_lo).collect::<Vec<_>>(), ["lo"]);
        let veth = format!("{only_lo}  eth0: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n");
        assert_eq!(interfaces(&veth).collect::<Vec<_>>(), ["lo", "eth0"]);
    }
}
