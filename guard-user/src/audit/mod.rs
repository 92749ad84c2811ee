//! The audit trail: one JSON event per line (schema in docs/events.md) to stdout
//! or a file, flushed after every batch the daemon drains. With `[audit] format =
//! "ocsf"` each event is written as its OCSF records instead (an activity, and a
//! Detection Finding after a violation: guard_common::ocsf), from which `guard
//! events --log` reads the same events back.

use guard_common::{line::EventLine, ocsf};
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
    /// Set: events are written as OCSF records of this host.
    ocsf: Option<OcsfHost>,
}

/// The host OCSF records name as their `device`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OcsfHost {
    pub hostname: String,
    pub host_uid: Option<String>,
}

impl OcsfHost {
    /// This host: its name and machine id.
    pub fn this() -> Self {
        let facts = crate::export::host::facts("", "", Vec::new(), &[]);
        Self {
            hostname: facts.name,
            host_uid: (!facts.id.is_empty()).then_some(facts.id),
        }
    }

    /// The context of its records.
    pub fn context(&self) -> ocsf::Context<'_> {
        ocsf::Context {
            hostname: &self.hostname,
            host_uid: self.host_uid.as_deref(),
            product_version: env!("CARGO_PKG_VERSION"),
        }
    }
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
            ocsf: None,
        })
    }

    /// Writes events as guard's lines (`None`) or as OCSF records of `host`.
    pub fn set_ocsf(&mut self, host: Option<OcsfHost>) {
        self.ocsf = host;
    }

    /// Whether events are written as OCSF records.
    pub fn is_ocsf(&self) -> bool {
        self.ocsf.is_some()
    }

    /// Writes the OCSF records of an event (its JSON object), one a line.
    fn write_ocsf(&mut self, event: &serde_json::Value) -> Result<(), Error> {
        let Some(host) = &self.ocsf else {
            return Ok(());
        };
        for record in ocsf::records(event, &host.context()) {
            serde_json::to_writer(&mut self.out, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"))
                .map_err(|source| Error::Write {
                    target: self.target.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Serialises an event into the buffer, one line.
    pub fn write_event(&mut self, ev: &EventLine) -> Result<(), Error> {
        if self.ocsf.is_some() {
            let v = serde_json::to_value(ev).unwrap_or_default();
            return self.write_ocsf(&v);
        }
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
        if self.ocsf.is_some() {
            // Not JSON (a writer's bug): kept as it is rather than lost.
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                return self.write_ocsf(&v);
            }
        }
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

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use serde_json::Value;

    use super::*;
    use crate::event::{Event, SessionId, Written as _, test_support};

    fn exec(pid: u32, argv: &[&str]) -> Event {
        let task = test_support::task(pid, 1, "codex");
        let detail = test_support::exec("/usr/bin/codex", argv, true);
        Event::derived(
            1_700_000_000_123_456_789,
            Some(SessionId(0xabc)),
            task,
            detail,
        )
    }

    /// The file's lines, each parsed; fails unless every line is a JSON object and the
    /// file ends with a newline.
    fn json_lines(path: &Path) -> Vec<Value> {
        let text = std::fs::read_to_string(path).expect("read the events file");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "the last line is not terminated: {text:?}"
        );
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                assert!(v.is_object(), "not an object: {line}");
                v
            })
            .collect()
    }

    #[test]
    fn events_are_one_json_object_a_line_in_the_file_once_flushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut sink = Sink::open(&path).expect("open");
        // Arguments with a newline and quotes still make one line each.
        let argv = ["sh", "-c", "echo \"a\nb\"; exit 0"];
        sink.write_event(&exec(10, &argv).to_line()).expect("write");
        sink.write_line(r#"{"kind":"lost","total":3}"#)
            .expect("write a line");
        sink.write_event(&exec(11, &["true"]).to_line())
            .expect("write");
        sink.flush().expect("flush");

        let lines = json_lines(&path);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["kind"], "exec");
        assert_eq!(lines[0]["pid"], 10);
        assert_eq!(lines[0]["session"], "0000000000000abc");
        assert_eq!(lines[0]["argv"], serde_json::json!(argv));
        assert_eq!(lines[1], serde_json::json!({"kind": "lost", "total": 3}));
        assert_eq!(lines[2]["pid"], 11);
    }

    #[test]
    fn a_batch_larger_than_the_buffer_is_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut sink = Sink::open(&path).expect("open");
        let long = "x".repeat(1000);
        // About 1.2 MB, many times the 64 KiB buffer.
        for pid in 1..=1000 {
            sink.write_event(&exec(pid, &[&long]).to_line())
                .expect("write");
        }
        sink.flush().expect("flush");
        let pids: Vec<u64> = json_lines(&path)
            .iter()
            .map(|v| v["pid"].as_u64().expect("pid"))
            .collect();
        assert_eq!(pids, (1..=1000).collect::<Vec<u64>>());
    }

    #[test]
    fn a_new_file_is_private_and_an_existing_one_is_appended_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let mut sink = Sink::open(&path).expect("open");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "mode {mode:o}: events can name secrets"
        );
        sink.write_event(&exec(1, &["first"]).to_line())
            .expect("write");
        sink.flush().expect("flush");
        drop(sink);

        // A restarted daemon keeps what the last one wrote.
        let mut sink = Sink::open(&path).expect("open again");
        sink.write_event(&exec(2, &["second"]).to_line())
            .expect("write");
        sink.flush().expect("flush");
        let pids: Vec<Value> = json_lines(&path).iter().map(|v| v["pid"].clone()).collect();
        assert_eq!(pids, [1, 2]);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir/events.jsonl");
        let err = Sink::open(&path).err().expect("opening must fail");
        let Error::Open {
            path: named,
            source,
        } = &err
        else {
            panic!("not an open error: {err:?}");
        };
        assert_eq!(named, &path);
        assert_eq!(source.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            format!("cannot open the event log {}", path.display())
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept"
        );
    }

    /// /dev/full takes the open and fails every write with ENOSPC: the failure must
    /// come back, naming where the events were going, not vanish in the buffer.
    #[test]
    fn a_write_that_fails_is_an_error_naming_the_target() {
        let full = Path::new("/dev/full");
        let mut sink = Sink::open(full).expect("open /dev/full");
        sink.write_event(&exec(1, &["true"]).to_line())
            .expect("buffered");
        let err = sink.flush().expect_err("the flush must fail");
        let Error::Write { target, source } = &err else {
            panic!("not a write error: {err:?}");
        };
        assert_eq!(target, "/dev/full");
        assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(err.to_string(), "cannot write events to /dev/full");

        // Past the buffer, the write itself fails.
        let mut sink = Sink::open(full).expect("open /dev/full");
        let long = "x".repeat(1 << 12);
        let failed = (0..64).find_map(|pid| sink.write_event(&exec(pid, &[&long]).to_line()).err());
        assert!(
            matches!(failed, Some(Error::Write { .. })),
            "64 events of 4 KiB went into a 64 KiB buffer without an error: {failed:?}"
        );
        let failed = sink.write_line("{}").and_then(|()| sink.flush());
        assert!(matches!(failed, Err(Error::Write { .. })), "{failed:?}");
    }

    /// `-` is standard output, not a file named `-`. Run in a child process (this test
    /// again, told so by an environment variable) whose standard output is read back.
    #[test]
    fn dash_is_standard_output() {
        const CHILD: &str = "GUARD_AUDIT_TEST_STDOUT_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let mut sink = Sink::open(Path::new("-")).expect("open stdout");
            sink.write_event(&exec(4242, &["to-stdout"]).to_line())
                .expect("write");
            sink.flush().expect("flush");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let name = concat!(module_path!(), "::dash_is_standard_output");
        // The harness names tests without the crate.
        let (_, name) = name.split_once("::").expect("a module path");
        let out = Command::new(std::env::current_exe().expect("the test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .current_dir(dir.path())
            .output()
            .expect("run the test binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness writes on the same stdout: "test NAME ... " before the event.
        let events: Vec<Value> = stdout
            .lines()
            .filter_map(|l| serde_json::from_str(&l[l.find('{')?..]).ok())
            .collect();
        assert!(
            events
                .iter()
                .any(|e| e["pid"] == 4242 && e["argv"] == serde_json::json!(["to-stdout"])),
            "the event is not on standard output:\n{stdout}"
        );
        assert!(!dir.path().join("-").exists(), "`-` made a file named `-`");
    }
}
