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

/// Events a slow subscriber may have queued before it starts missing some.
pub const SUBSCRIBER_QUEUE: usize = 8192;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Track the calling process as the root of a new session; it will exec `argv`.
    Run { argv: Vec<String> },
    /// Every session the daemon knows, with its live process tree.
    Sessions,
    /// The daemon's health: event rates, lost events, resource use, programs.
    Status,
    /// Stream events (JSON lines as in the audit log), optionally only one session's
    /// or some kinds. A slow reader gets `{"kind":"missed","count":N}` notices
    /// instead of stalling the daemon.
    Subscribe {
        #[serde(default)]
        session: Option<String>,
        #[serde(default)]
        kinds: Vec<String>,
    },
    /// Kill a whole session, or the subtree rooted at `pid` (root clients only).
    Kill {
        #[serde(default)]
        session: Option<String>,
        #[serde(default)]
        pid: Option<u32>,
    },
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer to `sessions`, `status` or `kill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// What a subscriber wants to see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    pub kinds: Vec<String>,
}

impl Filter {
    pub fn wants(&self, session: Option<&str>, kind: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && match (&self.session, session) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => kind == "lost",
            }
    }
}

/// A request handed to the daemon's main loop, which owns the kernel maps.
pub enum Command {
    Register {
        pid: u32,
        uid: u32,
        argv: Vec<String>,
        reply: oneshot::Sender<Response>,
    },
    Query {
        request: Request,
        uid: u32,
        reply: oneshot::Sender<Response>,
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
            Ok(request @ (Request::Sessions | Request::Status | Request::Kill { .. })) => {
                let (reply, answer) = oneshot::channel();
                if commands
                    .send(Command::Query {
                        request,
                        uid: cred.uid(),
                        reply,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                answer
                    .await
                    .unwrap_or_else(|_| Response::error("the daemon is stopping"))
            }
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

impl Response {
    pub fn error(msg: &str) -> Self {
        Self {
            ok: false,
            error: Some(msg.to_owned()),
            ..Self::default()
        }
    }

    pub fn data(data: serde_json::Value) -> Self {
        Self {
            ok: true,
            data: Some(data),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_json_lines() {
        let r: Request =
            serde_json::from_str(r#"{"op":"subscribe","session":"00ab","kinds":["exec"]}"#)
                .expect("parse");
        assert!(
            matches!(r, Request::Subscribe { session: Some(s), kinds } if s == "00ab" && kinds == ["exec"])
        );
        let r: Request = serde_json::from_str(r#"{"op":"kill","pid":42}"#).expect("parse");
        assert!(matches!(
            r,
            Request::Kill {
                session: None,
                pid: Some(42)
            }
        ));
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }

    #[test]
    fn filters_by_session_and_kind() {
        let f = Filter {
            session: Some("a".into()),
            kinds: vec!["open".into()],
        };
        assert!(f.wants(Some("a"), "open"));
        assert!(!f.wants(Some("b"), "open"));
        assert!(!f.wants(Some("a"), "exec"));
        assert!(Filter::default().wants(None, "lost"));
    }
}
