//! The tokens file as the server holds it: read at start-up, read again when it
//! changes (a Kubernetes Secret updated in place, an entry added by hand), and kept
//! as it was when the new version is broken.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use super::tokens::{Tokens, TokensError};

/// The current tokens, and where they come from.
#[derive(Debug)]
pub struct TokenSource {
    path: PathBuf,
    current: RwLock<(Arc<Tokens>, Option<SystemTime>)>,
}

impl TokenSource {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let modified = modified(path);
        let tokens = Tokens::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((Arc::new(tokens), modified)),
        })
    }

    /// The tokens as of the last good read.
    pub fn get(&self) -> Arc<Tokens> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g.0),
            Err(poisoned) => Arc::clone(&poisoned.into_inner().0),
        }
    }

    /// Reads the file again if its modification time changed. A broken file is
    /// reported and the previous tokens stay.
    pub fn reload_if_changed(&self) -> Result<bool, TokensError> {
        let now = modified(&self.path);
        let before = match self.current.read() {
            Ok(g) => g.1,
            Err(poisoned) => poisoned.into_inner().1,
        };
        if now == before {
            return Ok(false);
        }
        let tokens = Tokens::load(&self.path)?;
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *g = (Arc::new(tokens), now);
        Ok(true)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Scope, tokens::entry};

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, entry("a", Scope::Host, "one")).expect("write");
        let src = TokenSource::load(&path).expect("load");
        assert!(src.get().verify("one").is_some());
        assert!(!src.reload_if_changed().expect("unchanged"));

        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::write(&path, entry("b", Scope::Host, "two")).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("mtime");
        assert!(src.reload_if_changed().expect("changed"));
        assert!(
            src.get().verify("one").is_none(),
            "a removed token stops working"
        );
        assert!(src.get().verify("two").is_some());

        std::fs::write(&path, "not toml [").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later + std::time::Duration::from_secs(5)))
            .expect("mtime");
        assert!(src.reload_if_changed().is_err());
        assert!(
            src.get().verify("two").is_some(),
            "the last good tokens stay"
        );
    }
}
