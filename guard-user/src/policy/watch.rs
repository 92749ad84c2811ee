//! Reloading a policy file when it changes: its modification time is checked on the
//! daemon's one-second beat, and a change is acted on once it holds still for a
//! beat, so a file being written is not read half-way.

use std::time::SystemTime;

use super::Source;

pub struct Watch {
    source: Source,
    /// The file's modification time when it was last loaded.
    loaded: Option<SystemTime>,
    /// A changed time seen at the last beat.
    changed: Option<Option<SystemTime>>,
}

impl Watch {
    pub fn new(source: Source) -> Self {
        let loaded = stamp(&source);
        Self {
            source,
            loaded,
            changed: None,
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Call when the policy is (re)loaded, whatever the reason.
    pub fn loaded(&mut self) {
        self.loaded = stamp(&self.source);
        self.changed = None;
    }

    /// One beat: true when the file changed and has held still since the last beat.
    pub fn due(&mut self) -> bool {
        self.due_at(stamp(&self.source))
    }

    fn due_at(&mut self, now: Option<SystemTime>) -> bool {
        if now == self.loaded {
            self.changed = None;
            false
        } else if self.changed == Some(now) {
            self.changed = None;
            true
        } else {
            self.changed = Some(now);
            false
        }
    }
}

/// The policy file's modification time (None for built-ins and missing files).
fn stamp(source: &Source) -> Option<SystemTime> {
    match source {
        Source::File(p) => std::fs::metadata(p).and_then(|m| m.modified()).ok(),
        Source::Builtin(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_change_is_due_once_it_holds_still() {
        let mut w = Watch::new(Source::Builtin("workstation"));
        assert!(!w.due_at(None), "unchanged");
        let t1 = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
        let t2 = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2));
        assert!(!w.due_at(t1), "first sight of a change waits a beat");
        assert!(!w.due_at(t2), "still changing");
        assert!(w.due_at(t2), "held still for a beat");
        assert!(!w.due_at(t2), "due once");
    }

    #[test]
    fn a_file_rewritten_is_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "a").expect("write");
        let mut w = Watch::new(Source::File(path.clone()));
        assert!(!w.due());
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("touch");
        assert!(!w.due());
        assert!(w.due());
        w.loaded();
        assert!(!w.due());
    }
}
