//! The daemon's control socket: a Unix stream socket speaking JSON lines. The
//! server checks the peer's credentials from the kernel (SO_PEERCRED): `run`
//! registers the connecting process itself, never a pid the client names.

pub mod client;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/guard/guard.sock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Track the calling process as the root of a new session; it will exec `argv`.
    Run { argv: Vec<String> },
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request handed to the daemon's main loop, which owns the kernel maps.
pub enum Command {
    Register {
        pid: u32,
        uid: u32,
        argv: Vec<String>,
        reply: oneshot::Sender<Response>,
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

    /// Accepts clients until the daemon stops, forwarding their commands.
    pub async fn serve(self, commands: mpsc::Sender<Command>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, commands.clone()));
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

async fn handle(stream: UnixStream, commands: mpsc::Sender<Command>) {
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => return tracing::warn!("control client without credentials: {e}"),
    };
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Run { argv }) => match cred.pid() {
                Some(pid) if pid > 0 => {
                    let (reply, answer) = oneshot::channel();
                    let cmd = Command::Register {
                        pid: pid as u32,
                        uid: cred.uid(),
                        argv,
                        reply,
                    };
                    if commands.send(cmd).await.is_err() {
                        return;
                    }
                    answer
                        .await
                        .unwrap_or_else(|_| Response::error("the daemon is stopping"))
                }
                _ => Response::error("the kernel gave no pid for this client"),
            },
            Err(e) => Response::error(&format!("bad request: {e}")),
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        if write.write_all(&out).await.is_err() {
            return;
        }
    }
}

impl Response {
    pub fn error(msg: &str) -> Self {
        Self {
            ok: false,
            session: None,
            error: Some(msg.to_owned()),
        }
    }
}
