//! The chunk files: each chunk's records one after another, each its sequence
//! number, its length and its bytes (the encoded `LogRecord`, its id attribute
//! included), in a file of its own under the spool's `chunks/` directory, named by a
//! number the spool never gives twice. The spool's database says which file holds
//! which chunk and how long it is; a file is written and synced before the commit
//! that names it, and removed after the commit that forgets it.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::Error;

/// A record's header in a chunk: its sequence number, then its length (LE).
pub(super) const HEADER: usize = 12;

/// What the database keeps of a chunk (by the sequence number of its first record):
/// its last sequence number, its records, their bytes, and its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Info {
    pub last: u64,
    pub records: u64,
    pub bytes: u64,
    pub file: u64,
}

impl Info {
    /// The chunk's records as `bytes` holds them, in file `file`.
    pub(super) fn of(key: u64, chunk: &[u8], file: u64) -> Self {
        let mut info = Self {
            last: key,
            records: 0,
            bytes: 0,
            file,
        };
        for (seq, record) in Records(chunk) {
            info.add(seq, record.len());
        }
        info
    }

    /// Counts one more record.
    pub(super) fn add(&mut self, seq: u64, len: usize) {
        self.last = seq;
        self.records += 1;
        self.bytes += len as u64;
    }

    /// The length of its file.
    pub(super) fn len(&self) -> u64 {
        self.bytes + HEADER as u64 * self.records
    }

    pub(super) fn value(self) -> (u64, u64, u64, u64) {
        (self.last, self.records, self.bytes, self.file)
    }

    pub(super) fn from_value((last, records, bytes, file): (u64, u64, u64, u64)) -> Self {
        Self {
            last,
            records,
            bytes,
            file,
        }
    }
}

pub(super) fn append(chunk: &mut Vec<u8>, seq: u64, bytes: &[u8]) {
    chunk.extend_from_slice(&seq.to_le_bytes());
    chunk.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    chunk.extend_from_slice(bytes);
}

/// The records of a chunk: (sequence number, bytes). A chunk read whole holds
/// whole records; one cut short ends where it is cut.
pub(super) struct Records<'a>(pub &'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.0.split_at_checked(HEADER)?;
        let seq = u64::from_le_bytes(head[..8].try_into().ok()?);
        let len = u32::from_le_bytes(head[8..].try_into().ok()?) as usize;
        let (bytes, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((seq, bytes))
    }
}

/// The directory of chunk files.
pub(super) struct Dir {
    path: PathBuf,
}

impl Dir {
    pub(super) fn open(spool: &Path) -> Result<Self, Error> {
        let path = spool.join("chunks");
        std::fs::create_dir_all(&path).map_err(|source| Error::Dir {
            path: path.clone(),
            source,
        })?;
        Ok(Self { path })
    }

    fn path_of(&self, file: u64) -> PathBuf {
        self.path.join(format!("{file:016x}"))
    }

    /// The error of an I/O on file `file`.
    pub(super) fn failed(&self, file: u64, source: std::io::Error) -> Error {
        Error::Chunk {
            path: self.path_of(file),
            source,
        }
    }

    fn fail(&self, file: u64) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| self.failed(file, source)
    }

    /// Writes a new file and syncs it.
    pub(super) fn create(&self, file: u64, data: &[u8]) -> Result<(), Error> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.path_of(file))
            .map_err(self.fail(file))?;
        f.write_all(data).map_err(self.fail(file))?;
        f.sync_data().map_err(self.fail(file))
    }

    /// Writes `data` at `at` (the end its chunk's figures give, past whatever an
    /// append that was never committed left) and syncs it.
    pub(super) fn append(&self, file: u64, at: u64, data: &[u8]) -> Result<(), Error> {
        let f = OpenOptions::new()
            .write(true)
            .open(self.path_of(file))
            .map_err(self.fail(file))?;
        f.write_all_at(data, at).map_err(self.fail(file))?;
        f.sync_data().map_err(self.fail(file))
    }

    /// Reads the first `len` bytes of a file: all of them, or an error (a file
    /// shorter than that is `UnexpectedEof`).
    pub(super) fn read(&self, file: u64, len: u64) -> std::io::Result<bytes::Bytes> {
        let mut data = Vec::with_capacity(len as usize);
        File::open(self.path_of(file))?
            .take(len)
            .read_to_end(&mut data)?;
        if (data.len() as u64) < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(data.into())
    }

    /// The length of a file, if there is one.
    pub(super) fn len(&self, file: u64) -> Option<u64> {
        std::fs::metadata(self.path_of(file)).ok().map(|m| m.len())
    }

    /// Cuts a file to `len` bytes (what an append that was never committed left).
    pub(super) fn truncate(&self, file: u64, len: u64) -> Result<(), Error> {
        let f = OpenOptions::new()
            .write(true)
            .open(self.path_of(file))
            .map_err(self.fail(file))?;
        f.set_len(len).map_err(self.fail(file))?;
        f.sync_data().map_err(self.fail(file))
    }

    /// Syncs the directory (the names of files created since).
    pub(super) fn sync(&self) -> Result<(), Error> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(|source| Error::Dir {
                path: self.path.clone(),
                source,
            })
    }

    /// Removes a file; one already gone is no error (a file the database no longer
    /// names is removed again when the spool is next opened).
    pub(super) fn remove(&self, file: u64) {
        if let Err(e) = std::fs::remove_file(self.path_of(file))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "export: cannot remove the spool's file {}: {e}",
                self.path_of(file).display()
            );
        }
    }

    /// The files there: their numbers and lengths (names that are not a chunk's
    /// are left alone).
    pub(super) fn list(&self) -> Result<Vec<(u64, u64)>, Error> {
        let fail = |source| Error::Dir {
            path: self.path.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.path).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let Some(file) = entry
                .file_name()
                .to_str()
                .filter(|n| n.len() == 16)
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            out.push((file, entry.metadata().map_err(fail)?.len()));
        }
        Ok(out)
    }
}

/// The files one write transaction creates and leaves behind: created ones are
/// removed if it does not commit, and left ones once it did.
pub(super) struct Pending<'d> {
    dir: &'d Dir,
    created: Vec<u64>,
    left: Vec<u64>,
}

impl<'d> Pending<'d> {
    pub(super) fn new(dir: &'d Dir) -> Self {
        Self {
            dir,
            created: Vec::new(),
            left: Vec::new(),
        }
    }

    /// Writes `data` as the new file `file`.
    pub(super) fn create(&mut self, file: u64, data: &[u8]) -> Result<(), Error> {
        self.dir.create(file, data)?;
        self.created.push(file);
        Ok(())
    }

    /// Writes `data` at the end of file `file` (see [`Dir::append`]).
    pub(super) fn append(&mut self, file: u64, at: u64, data: &[u8]) -> Result<(), Error> {
        self.dir.append(file, at, data)
    }

    /// A file the transaction forgets: removed once it committed.
    pub(super) fn leave(&mut self, file: u64) {
        self.left.push(file);
    }

    /// Before the commit: the new files' names on disk.
    pub(super) fn sync(&self) -> Result<(), Error> {
        if self.created.is_empty() {
            return Ok(());
        }
        self.dir.sync()
    }

    /// After the commit: the files it forgot go.
    pub(super) fn committed(mut self) {
        self.created.clear();
        for file in std::mem::take(&mut self.left) {
            self.dir.remove(file);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        for &file in &self.created {
            self.dir.remove(file);
        }
    }
}
