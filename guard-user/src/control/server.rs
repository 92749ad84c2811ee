//! The control socket's server: a Unix stream socket speaking JSON lines
//! (`guard_common::protocol`). It checks the peer's credentials from the kernel
//! (SO_PEERCRED): `run` registers the connecting process itself, never a pid the
//! client names, and `kill` is for root only.

use std::path::{Path, PathBuf};

use guard_common::protocol::{
    KillReport, Registered, Reply, Request, SUBSCRIBER_QUEUE, SessionInfo, Status,
};
use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use super::fanout::Filter;

/// An answer the daemon's loop sends back: the data, or why not.
pub type Answer<T> = oneshot::Sender<Result<T, String>>;

/// A request handed to the daemon's main loop, which owns the kernel maps.
pub enum Command {
    Register {
        pid: u32,
        uid: u32,
        argv: Vec<String>,
        /// The client confines itself (Landlock, a mount namespace): it needs the
        /// paths to hide and to make read-only.
        confine: bool,
        /// The home it names besides the caller's (`Request::Run`).
        home: Option<String>,
        reply: Answer<Registered>,
    },
    /// An agent's hook asks what was stopped for its thread (the hook socket).
    Stops {
        thread: String,
        uid: u32,
        reply: Answer<Vec<guard_common::protocol::Stop>>,
    },
    /// An agent's hook declares a tool call of its session (the hook socket); answered
    /// as `Stops` is, for the call's thread.
    ToolCall {
        pid: u32,
        uid: u32,
        call: guard_common::protocol::ToolCall,
        reply: Answer<Vec<guard_common::protocol::Stop>>,
    },
    /// A session's root says how it confined itself (Landlock, mount namespace).
    Confined {
        pid: u32,
        session: String,
        landlock: Option<String>,
        mount_ns: Option<String>,
        reply: Answer<String>,
    },
    Sessions {
        reply: Answer<Vec<SessionInfo>>,
    },
    Status {
        reply: Answer<Status>,
    },
    Report {
        session: String,
        reply: Answer<guard_common::report::Report>,
    },
    Kill {
        session: Option<String>,
        pid: Option<u32>,
        uid: u32,
        reply: Answer<KillReport>,
    },
    Subscribe {
        filter: Filter,
        events: mpsc::Sender<std::sync::Arc<str>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the control socket directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another guard daemon is listening on {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A bound control socket; the file is removed on drop.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
}

impl Server {
    pub fn bind(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::InUse(path.to_owned()));
            }
            let _ = std::fs::remove_file(path); // stale, from a daemon that died
        }
        let listener = UnixListener::bind(path).map_err(|source| Error::Bind {
            path: path.to_owned(),
            source,
        })?;
        set_access(path);
        Ok(Self {
            listener,
            path: path.to_owned(),
        })
    }

    /// The hook socket at `path`: anyone may connect, and ask only what was
    /// stopped for their own sessions ([`Request::Stops`]); nothing else.
    pub fn bind_hooks(path: &Path) -> Result<Self, Error> {
        let server = Self::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
        Ok(server)
    }

    /// Accepts clients until the daemon stops, forwarding their commands; with
    /// `hooks_only`, only the questions an agent's hook may ask.
    pub async fn serve(self, commands: mpsc::Sender<Command>, hooks_only: bool) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, commands.clone(), hooks_only));
                }
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Root-owned, and group-accessible to a `guard` group when the host has one.
fn set_access(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let group = uzers::get_group_by_name("guard");
    let mode = if group.is_some() { 0o660 } else { 0o600 };
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    if let Some(g) = group {
        let _ = std::os::unix::fs::chown(path, Some(0), Some(g.gid()));
    }
}

/// Sends a command built around a reply channel and serialises the answer as a
/// [`Reply`] line; None when the daemon's loop is gone.
async fn ask<T: Serialize>(
    commands: &mpsc::Sender<Command>,
    command: impl FnOnce(Answer<T>) -> Command,
) -> Option<Vec<u8>> {
    let (reply, answer) = oneshot::channel();
    commands.send(command(reply)).await.ok()?;
    let reply = match answer.await {
        Ok(Ok(data)) => Reply::data(data),
        Ok(Err(why)) => Reply::error(why),
        Err(_) => Reply::error("the daemon is stopping"),
    };
    Some(line(&reply))
}

fn line<T: Serialize>(reply: &Reply<T>) -> Vec<u8> {
    // Serialising these plain types cannot fail; an empty line would tell the
    // client as much.
    let mut out = serde_json::to_vec(reply).unwrap_or_default();
    out.push(b'\n');
    out
}

async fn handle(stream: UnixStream, commands: mpsc::Sender<Command>, hooks_only: bool) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => return tracing::warn!("control client without credentials: {e}"),
    };
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        let uid = cred.uid();
        let request = serde_json::from_str::<Request>(&text);
        if hooks_only && !matches!(request, Ok(Request::Stops { .. } | Request::ToolCall(_))) {
            let out = line(&Reply::<()>::error(
                "the hook socket answers only what was stopped and the calls a hook declares \
                 (use the control socket)",
            ));
            let _ = write.write_all(&out).await;
            return;
        }
        // What the calling process asks about itself needs its pid, from the kernel.
        let peer = cred.pid().filter(|p| *p > 0).map(|p| p as u32);
        let about_itself = matches!(
            request,
            Ok(Request::ToolCall(_) | Request::Confined { .. } | Request::Run { .. })
        );
        if about_itself && peer.is_none() {
            let out = line(&Reply::<()>::error(
                "the kernel gave no pid for this client",
            ));
            if write.write_all(&out).await.is_err() {
                return;
            }
            continue;
        }
        let pid = peer.unwrap_or_default();
        let out = match request {
            Ok(Request::Stops { thread }) => {
                ask(&commands, |reply| Command::Stops { thread, uid, reply }).await
            }
            Ok(Request::Subscribe { session, kinds }) => {
                let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
                let filter = Filter { session, kinds };
                if commands
                    .send(Command::Subscribe { filter, events: tx })
                    .await
                    .is_err()
                {
                    return;
                }
                return stream_events(rx, write).await;
            }
            Ok(Request::Sessions) => ask(&commands, |reply| Command::Sessions { reply }).await,
            Ok(Request::Status) => ask(&commands, |reply| Command::Status { reply }).await,
            Ok(Request::Report { session }) => {
                ask(&commands, |reply| Command::Report { session, reply }).await
            }
            Ok(Request::Kill { session, pid }) => {
                ask(&commands, |reply| Command::Kill {
                    session,
                    pid,
                    uid,
                    reply,
                })
                .await
            }
            Ok(Request::ToolCall(call)) => {
                ask(&commands, |reply| Command::ToolCall {
                    pid,
                    uid,
                    call,
                    reply,
                })
                .await
            }
            Ok(Request::Confined {
                session,
                landlock,
                mount_ns,
            }) => {
                ask(&commands, |reply| Command::Confined {
                    pid,
                    session,
                    landlock,
                    mount_ns,
                    reply,
                })
                .await
            }
            Ok(Request::Run {
                argv,
                landlock,
                mount_ns,
                home,
            }) => {
                ask(&commands, |reply| Command::Register {
                    pid,
                    uid,
                    argv,
                    confine: landlock || mount_ns,
                    home,
                    reply,
                })
                .await
            }
            Err(e) => Some(line(&Reply::<()>::error(format!("bad request: {e}")))),
        };
        let Some(out) = out else { return };
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn stream_events(
    mut events: mpsc::Receiver<std::sync::Arc<str>>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    while let Some(line) = events.recv().await {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if write.write_all(&buf).await.is_err() {
            return; // the client left; the daemon drops its queue on the next send
        }
    }
}
