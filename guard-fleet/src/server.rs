//! `guard-fleet serve`: the configuration, the tokens and the database put
//! together behind one listener (HTTP, or HTTPS with optional client certificates),
//! and the periodic tasks (retention, tokens file reloads).
//!
//! The server holds no state of its own: replicas behind a load balancer share
//! the database, and a replica killed at any moment loses nothing a host was told
//! was stored.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::IntoResponse,
    routing::{get, post},
};
use axum_server::{Handle, tls_rustls::RustlsConfig};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};
use tokio::task::JoinHandle;

pub use crate::app::App;
use crate::{
    app::Cached,
    auth::{
        source::TokenSource,
        tokens::{self, TokensError},
    },
    config::{ClientAuth, Config, ConfigError, Tls},
    ingest,
    signing::Signer,
    store::{Store, StoreError, now_ms},
    web,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tokens(#[from] TokensError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    PolicyKey(#[from] crate::signing::KeyError),
    #[error("tls: cannot read {path}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("tls: {path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("tls: the certificate, key or client CA is not usable")]
    Tls(#[source] rustls::Error),
    #[error("tls: the client CA is not usable")]
    ClientCa(#[source] rustls::server::VerifierBuilderError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A server that is running.
#[derive(Debug)]
pub struct Running {
    /// Where it listens (the port chosen when the configuration said 0).
    pub addr: SocketAddr,
    pub app: Arc<App>,
    handle: Handle<SocketAddr>,
    server: JoinHandle<io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits until the server stops (it does not by itself).
    pub async fn wait(self) -> io::Result<()> {
        let r = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        };
        for t in &self.tasks {
            t.abort();
        }
        r
    }

    /// Stops accepting, lets requests under way finish (at most `grace`), then
    /// stops.
    pub async fn shutdown(self, grace: Duration) -> io::Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        let store = self.app.store.clone();
        let r = self.wait().await;
        store.close().await;
        r
    }
}

/// The tokens file, made for a trial when the configuration relies on the default
/// one and it does not exist yet.
fn tokens(config: &Config) -> Result<TokenSource, ServeError> {
    if config.tokens_file_is_default && !config.tokens_file.exists() {
        let (ingest, dashboard) = tokens::create_trial(&config.tokens_file)?;
        // Printed once, for the person starting a trial; only hashes are stored.
        eprintln!(
            "guard-fleet: made {} for a trial.\n  hosts send with:   Authorization: Bearer {ingest}   (cluster token `trial`)\n  dashboard token:   {dashboard}\nKeep them; the file holds only their hashes.",
            config.tokens_file.display()
        );
    }
    Ok(TokenSource::load(&config.tokens_file)?)
}

/// What a trial prints at start: the dashboard's URL and the tokens file.
pub fn trial_note(config: &Config, addr: SocketAddr) -> String {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = if addr.ip().is_unspecified() {
        "<this host>".to_owned()
    } else {
        addr.to_string()
    };
    let at = if addr.ip().is_unspecified() {
        format!("{host}:{}", addr.port())
    } else {
        host
    };
    format!(
        "guard-fleet: the dashboard is at {scheme}://{at}/ (sign in with a dashboard token).\n  \
         tokens: {} (hashes only; a lost token cannot be read back: \
         `guard-fleet token --name NAME --scope dashboard` prints a new one and its entry)",
        config.tokens_file.display()
    )
}

/// The rustls configuration of `tls`.
pub fn rustls_config(tls: &Tls) -> Result<ServerConfig, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pem_err = |path: &PathBuf| {
        let path = path.clone();
        move |source| ServeError::TlsFile { path, source }
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(pem_err(&tls.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(&tls.cert))?;
    if certs.is_empty() {
        return Err(ServeError::NoCertificate {
            path: tls.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(pem_err(&tls.key))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(ServeError::Tls)?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(pem_err(ca))? {
                roots
                    .add(c.map_err(pem_err(ca))?)
                    .map_err(ServeError::Tls)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match tls.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(ServeError::ClientCa)?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(ServeError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every route: ingest, health, the dashboard and its API.
pub fn router(app: Arc<App>) -> Router {
    let tls = app.config.tls.is_some();
    Router::new()
        .route("/v1/logs", post(ingest::logs))
        .route("/v1/policy", get(crate::policy::serve))
        .route("/v1/packages", get(crate::policy::package_names))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(web::router(Arc::clone(&app)))
        .layer(middleware::from_fn(move |req, next| {
            web::security_headers(tls, req, next)
        }))
        .with_state(app)
}

/// Ready when the database answers (a load balancer's check).
async fn ready(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is unavailable",
        ),
    }
}

/// Starts the server of `config`: tokens, database (migrated unless the
/// configuration says otherwise), listener, periodic tasks.
pub async fn start(config: Config) -> Result<Running, ServeError> {
    config.ensure_state_dir()?;
    let tokens = tokens(&config)?;
    if tokens.get().is_empty() {
        tracing::warn!(path = %config.tokens_file.display(), "the tokens file has no token: nobody can send or look");
    }
    let store = Store::connect(&config.database).await?;
    if config.database.migrate {
        store.migrate().await?;
    }
    let tls = config.tls.as_ref().map(rustls_config).transpose()?;
    let listener = TcpListener::bind(config.listen).map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let signer = config.policy_key.as_deref().map(Signer::load).transpose()?;
    let app = Arc::new(App {
        signer,
        ingest_slots: tokio::sync::Semaphore::new(config.limits.max_concurrent),
        suggestions: Cached::default(),
        alert_rules: Cached::default(),
        config,
        store,
        tokens,
    });
    let service = router(Arc::clone(&app)).into_make_service();
    let handle = Handle::new();
    let bind_err = |source| ServeError::Bind { addr, source };
    let server = match tls {
        Some(tls) => {
            let mut s =
                axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(tls)))
                    .map_err(bind_err)?
                    .handle(handle.clone());
            // A client gets 30 s to send a request's headers.
            s.http_builder()
                .http1()
                .header_read_timeout(Some(Duration::from_secs(30)));
            tokio::spawn(s.serve(service))
        }
        None => {
            let mut s = axum_server::from_tcp(listener)
                .map_err(bind_err)?
                .handle(handle.clone());
            // A client gets 30 s to send a request's headers.
            s.http_builder()
                .http1()
                .header_read_timeout(Some(Duration::from_secs(30)));
            tokio::spawn(s.serve(service))
        }
    };
    tracing::info!(%addr, tls = app.config.tls.is_some(), backend = ?app.store.backend(), "guard-fleet listening");
    if app.config.tokens_file_is_default {
        // A trial: where to look, and (at every start, not only the first) where
        // its tokens are.
        eprintln!("{}", trial_note(&app.config, addr));
    }
    let tasks = vec![
        tokio::spawn(retention(Arc::clone(&app))),
        tokio::spawn(reload_tokens(Arc::clone(&app))),
        tokio::spawn(crate::alerts::deliver(Arc::clone(&app))),
    ];
    Ok(Running {
        addr,
        app,
        handle,
        server,
        tasks,
    })
}

async fn retention(app: Arc<App>) {
    let r = app.config.retention;
    // Replicas started together need not prune together.
    tokio::time::sleep(Duration::from_secs(5)).await;
    loop {
        match app.store.prune(&r, now_ms()).await {
            Ok(p) if p.events > 0 || p.sessions > 0 => {
                tracing::info!(
                    events = p.events,
                    sessions = p.sessions,
                    "retention deleted rows"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, source = ?std::error::Error::source(&e), "retention failed")
            }
        }
        tokio::time::sleep(r.interval).await;
    }
}

async fn reload_tokens(app: Arc<App>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        match app.tokens.reload_if_changed() {
            Ok(true) => tracing::info!(tokens = app.tokens.get().len(), "tokens file read again"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "tokens file not read again; the previous tokens stay")
            }
        }
    }
}
