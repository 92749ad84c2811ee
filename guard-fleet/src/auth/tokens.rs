//! The tokens file: who may send (hosts, clusters) and who may look (the dashboard).
//!
//! ```toml
//! [[token]]
//! name = "build-01"        # a host's name: its records must say host.name = "build-01"
//! sha256 = "<64 hex>"      # SHA-256 of the token; the token itself is never stored
//! scope = "host"           # "host", "cluster" or "dashboard"
//! ```
//!
//! A presented token is hashed and compared with every entry in constant time, so
//! neither the answer's timing nor an early exit tells which entry came close.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// Send the records of one host, the token's name.
    Host,
    /// Send the records of many hosts (a collector, a cluster's gateway): each is
    /// stored as `<token name>/<host.name>`.
    Cluster,
    /// Look at the dashboard and its API.
    Dashboard,
    /// Look, and steer: upload policies and assign them to groups of hosts.
    Admin,
}

impl Scope {
    /// The name the file uses.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One entry of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    hash: [u8; 32],
}

/// The file's entries.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// A problem with the tokens file.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the tokens file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("tokens file {path}: token `{name}`: sha256 must be 64 hex digits")]
    Hash { path: PathBuf, name: String },
    #[error("tokens file {path}: token `{name}`: {reason}")]
    Name {
        path: PathBuf,
        name: String,
        reason: &'static str,
    },
    #[error("tokens file {path}: two tokens are named `{name}` with scope {scope}")]
    Duplicate {
        path: PathBuf,
        name: String,
        scope: &'static str,
    },
    #[error("tokens file {path}: tokens `{first}` and `{second}` are the same token")]
    SameToken {
        path: PathBuf,
        first: String,
        second: String,
    },
    #[error("cannot write the tokens file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no random numbers from the kernel")]
    Random(#[source] getrandom::Error),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    scope: Scope,
}

impl Tokens {
    /// Reads and checks the tokens file at `path`.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Checks the tokens file `text` (from `path`, for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, TokensError> {
        let file: File = toml::from_str(text).map_err(|source| TokensError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let mut tokens: Vec<Token> = Vec::with_capacity(file.token.len());
        for e in file.token {
            let hash = parse_hex32(&e.sha256).ok_or_else(|| TokensError::Hash {
                path: path.to_owned(),
                name: e.name.clone(),
            })?;
            if let Err(reason) = check_name(&e.name, e.scope) {
                return Err(TokensError::Name {
                    path: path.to_owned(),
                    name: e.name,
                    reason,
                });
            }
            if tokens
                .iter()
                .any(|t| t.name == e.name && t.scope == e.scope)
            {
                return Err(TokensError::Duplicate {
                    path: path.to_owned(),
                    name: e.name,
                    scope: e.scope.as_str(),
                });
            }
            if let Some(other) = tokens.iter().find(|t| t.hash == hash) {
                return Err(TokensError::SameToken {
                    path: path.to_owned(),
                    first: other.name.clone(),
                    second: e.name,
                });
            }
            tokens.push(Token {
                name: e.name,
                scope: e.scope,
                hash,
            });
        }
        Ok(Self { tokens })
    }

    /// The entry `presented` is the token of, if any. Every entry is compared, each
    /// in constant time.
    pub fn verify(&self, presented: &str) -> Option<&Token> {
        let hash = sha256(presented.as_bytes());
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.hash.ct_eq(&hash)) {
                found = Some(t);
            }
        }
        found
    }

    /// How many entries the file has.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the file has no entry.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// A name must work as a host identity: printable, no `/` (a cluster's hosts are
/// `<cluster>/<host>`), at most 253 bytes (a DNS name's length).
pub fn check_name(name: &str, scope: Scope) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > 253 {
        return Err("the name is longer than 253 bytes");
    }
    if matches!(scope, Scope::Host | Scope::Cluster) && name.contains('/') {
        return Err("a host or cluster name cannot hold `/`");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the name holds a space or a control character");
    }
    Ok(())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new token: 32 random bytes from the kernel, as 64 hex digits.
pub fn generate() -> Result<String, TokensError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(TokensError::Random)?;
    Ok(hex(&bytes))
}

/// The tokens file's entry for `token`.
pub fn entry(name: &str, scope: Scope, token: &str) -> String {
    format!(
        "[[token]]\nname = \"{}\"\nsha256 = \"{}\"\nscope = \"{}\"\n",
        name.replace('\\', "\\\\").replace('"', "\\\""),
        hex(&sha256(token.as_bytes())),
        scope.as_str()
    )
}

/// For a trial: writes a tokens file at `path` (mode 0600, failing if one exists)
/// with a cluster token `trial` and a dashboard token `admin`, and returns the two
/// tokens, which are nowhere else.
pub fn create_trial(path: &Path) -> Result<(String, String), TokensError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let ingest = generate()?;
    let dashboard = generate()?;
    let text = format!(
        "# Made by `guard-fleet serve` for a trial. Add entries with `guard-fleet token`.\n\n{}\n{}",
        entry("trial", Scope::Cluster, &ingest),
        entry("admin", Scope::Dashboard, &dashboard)
    );
    let write_err = |source| TokensError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    f.write_all(text.as_bytes()).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    Ok((ingest, dashboard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, Scope, &str)]) -> String {
        entries
            .iter()
            .map(|(n, s, t)| entry(n, *s, t))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_token_verifies_as_its_entry_and_nothing_else_does() {
        let text = file(&[
            ("build-01", Scope::Host, "tok-a"),
            ("eu-west", Scope::Cluster, "tok-b"),
            ("sec-team", Scope::Dashboard, "tok-c"),
        ]);
        assert!(!text.contains("tok-a"), "the file holds hashes only");
        let tokens = Tokens::parse(Path::new("t.toml"), &text).expect("parse");
        assert_eq!(tokens.len(), 3);
        let a = tokens.verify("tok-a").expect("a");
        assert_eq!((a.name.as_str(), a.scope), ("build-01", Scope::Host));
        assert_eq!(
            tokens.verify("tok-b").map(|t| t.scope),
            Some(Scope::Cluster)
        );
        assert_eq!(
            tokens.verify("tok-c").map(|t| t.scope),
            Some(Scope::Dashboard)
        );
        assert!(tokens.verify("tok-").is_none());
        assert!(tokens.verify("").is_none());
        assert!(
            tokens.verify(&hex(&sha256(b"tok-a"))).is_none(),
            "the hash is not the token"
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_entry_named() {
        let p = Path::new("t.toml");
        let bad_hash = "[[token]]\nname = \"h\"\nsha256 = \"abc\"\nscope = \"host\"\n";
        assert!(
            matches!(Tokens::parse(p, bad_hash), Err(TokensError::Hash { name, .. }) if name == "h")
        );
        let bad_scope = "[[token]]\nname = \"h\"\nsha256 = \"00\"\nscope = \"root\"\n";
        assert!(matches!(
            Tokens::parse(p, bad_scope),
            Err(TokensError::Parse { .. })
        ));
        let slash = file(&[("a/b", Scope::Host, "x")]);
        assert!(matches!(
            Tokens::parse(p, &slash),
            Err(TokensError::Name { .. })
        ));
        let twice = file(&[("a", Scope::Host, "x"), ("a", Scope::Host, "y")]);
        assert!(matches!(
            Tokens::parse(p, &twice),
            Err(TokensError::Duplicate { .. })
        ));
        let shared = file(&[("a", Scope::Host, "x"), ("b", Scope::Dashboard, "x")]);
        assert!(matches!(
            Tokens::parse(p, &shared),
            Err(TokensError::SameToken { .. })
        ));
        let plain = "[[token]]\nname = \"h\"\ntoken = \"x\"\nscope = \"host\"\n";
        assert!(
            Tokens::parse(p, plain).is_err(),
            "a plain token is not a key"
        );
    }

    #[test]
    fn generated_tokens_are_long_and_different() {
        let a = generate().expect("a");
        let b = generate().expect("b");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_trial_file_is_private_and_holds_both_tokens() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.toml");
        let (ingest, dashboard) = create_trial(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let tokens = Tokens::load(&path).expect("load");
        assert_eq!(
            tokens.verify(&ingest).map(|t| t.scope),
            Some(Scope::Cluster)
        );
        assert_eq!(
            tokens.verify(&dashboard).map(|t| t.scope),
            Some(Scope::Dashboard)
        );
        assert!(create_trial(&path).is_err(), "never overwrites");
    }
}
