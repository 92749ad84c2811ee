//! Policies served to hosts: the fleet's Ed25519 key ([`Signer`]) and
//! `GET /v1/policy?group=G`, where a host (its own credential, as for `/v1/logs`)
//! pulls its group's assignment as a signed [`Envelope`]. The host checks the
//! signature with the key it pinned, then applies the policy like a reload
//! (docs/fleet.md, "Policy from the fleet").

use std::{path::Path, sync::Arc};

use axum::{
    Json,
    extract::{Query, Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use axum_server::tls::TlsInfo;
use base64::Engine as _;
use guard_policy::signed::Envelope;
use ring::{
    rand::SystemRandom,
    signature::{Ed25519KeyPair, KeyPair as _},
};
use serde::Deserialize;

use crate::{
    ingest::sender_of,
    server::App,
    web::policies::{error, store_error},
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

/// `GET /v1/policy`'s parameters.
#[derive(Debug, Deserialize)]
pub struct PolicyParams {
    /// The host's group (`[fleet] group`, else its name).
    pub group: String,
}

/// `GET /v1/policy?group=G`: the group's assignment, signed; 404 when the group
/// has none, 503 when the fleet has no signing key or the database is away.
pub async fn serve(
    State(app): State<Arc<App>>,
    Query(params): Query<PolicyParams>,
    request: Request,
) -> Response {
    let tls = request.extensions().get::<Arc<TlsInfo>>();
    let sender = match sender_of(&app, request.headers(), tls) {
        Ok(s) => s,
        Err(refusal) => {
            tracing::warn!(%refusal, "policy request refused");
            return error(refusal.status(), refusal.to_string());
        }
    };
    let Some(signer) = &app.signer else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this fleet serves no policy: [policy] signing_key is not set",
        );
    };
    let assigned = match app.store.assigned(&params.group).await {
        Ok(a) => a,
        Err(e) => return store_error(&e),
    };
    let Some((a, text)) = assigned else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no policy is assigned to group {}", params.group),
        );
    };
    tracing::debug!(?sender, group = %a.group, serial = a.serial, "policy served");
    let envelope = Envelope {
        group: a.group,
        serial: u64::try_from(a.serial).unwrap_or(0),
        policy: a.policy,
        version: u64::try_from(a.version).unwrap_or(0),
        mode: a.mode,
        text,
        signature: String::new(),
    };
    Json(signer.sign(envelope)).into_response()
}
