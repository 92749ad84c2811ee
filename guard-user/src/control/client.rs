//! The client side of the control socket (blocking: `guard run` calls it before
//! exec with nothing else to do, and `guard top` from its own threads).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use guard_common::protocol::{Reply, Request};
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the guard daemon at {path} (is `guard daemon` running?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the guard daemon at {path} did not answer")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the guard daemon sent an unreadable answer: {0}")]
    Answer(String),
    #[error("the guard daemon refused: {0}")]
    Refused(String),
}

/// Opens a subscription and returns the line reader over the event stream.
pub fn subscribe(path: &Path, request: &Request) -> Result<BufReader<UnixStream>, Error> {
    let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
        path: path.to_owned(),
        source,
    })?;
    let mut line = serde_json::to_vec(request).map_err(|e| Error::Answer(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(BufReader::new(stream))
}

/// Sends one request and reads its answer.
pub fn call<T: DeserializeOwned>(path: &Path, request: &Request) -> Result<T, Error> {
    let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
        path: path.to_owned(),
        source,
    })?;
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut line = serde_json::to_vec(request).map_err(|e| Error::Answer(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    let reply: Reply<T> =
        serde_json::from_str(&answer).map_err(|e| Error::Answer(format!("{e}: {answer:?}")))?;
    match reply {
        Reply {
            ok: true,
            data: Some(data),
            ..
        } => Ok(data),
        Reply { error, .. } => Err(Error::Refused(
            error.unwrap_or_else(|| "no answer".to_owned()),
        )),
    }
}
