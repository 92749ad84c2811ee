//! The fleet's policy key: Ed25519 (ring), PKCS#8 on disk; the signature hosts
//! check with the public half they pinned.

use std::path::Path;

use base64::Engine as _;
use guard_policy::signed::Envelope;
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair as _},
};

/// Why the signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the policy signing key {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not an Ed25519 key in PKCS#8 (make one with `guard-fleet policy-key --new`)"
    )]
    Invalid { path: std::path::PathBuf },
    #[error("cannot write the policy signing key {path}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The fleet's policy key.
pub struct Signer {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads the key at `path` (PKCS#8 DER).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let der = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let key =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| KeyError::Invalid {
                path: path.to_owned(),
            })?;
        Ok(Self { key })
    }

    /// Makes a new key and writes it to `path` (readable by its owner only; an
    /// existing file is never replaced).
    pub fn create(path: &Path) -> Result<Self, KeyError> {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        let write = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| write(std::io::Error::other("no randomness")))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(der.as_ref()).and_then(|()| f.sync_all()))
            .map_err(write)?;
        Self::load(path)
    }

    /// The public key as hosts pin it (`[fleet] public_key`): base64 of 32 bytes.
    pub fn public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.public_key().as_ref())
    }

    /// `envelope`, signed.
    pub fn sign(&self, envelope: Envelope) -> Envelope {
        envelope.sign(|m| self.key.sign(m).as_ref().to_vec())
    }
}
