//! The audit trail: one JSON event per line (schema in docs/events.md) to stdout
//! or a file, flushed after every batch the daemon drains.

use crate::event::Event;
use std::{
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open the event log {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write events to {target}")]
    Write {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where events go.
pub struct Sink {
    out: BufWriter<Box<dyn Write + Send>>,
    target: String,
}

impl Sink {
    /// `-` is standard output; anything else a file, appended to and created 0600.
    pub fn open(target: &Path) -> Result<Self, Error> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            use std::os::unix::fs::OpenOptionsExt;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(target)
                .map_err(|source| Error::Open {
                    path: target.to_owned(),
                    source,
                })?;
            Box::new(file)
        };
        Ok(Self {
            out: BufWriter::with_capacity(1 << 16, out),
            target: target.display().to_string(),
        })
    }

    /// Serialises an event into the buffer, one line.
    pub fn write_event(&mut self, ev: &Event) -> Result<(), Error> {
        serde_json::to_writer(&mut self.out, ev)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| Error::Write {
                target: self.target.clone(),
                source,
            })
    }

    /// Writes an already serialised event, one line.
    pub fn write_line(&mut self, line: &str) -> Result<(), Error> {
        self.out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|source| Error::Write {
                target: self.target.clone(),
                source,
            })
    }

    pub fn flush(&mut self) -> Result<(), Error> {
        self.out.flush().map_err(|source| Error::Write {
            target: self.target.clone(),
            source,
        })
    }
}
