//! `guard-fleet serve --config FILE`: the TOML file, its defaults, and its checks.
//!
//! Parsing is in two phases: serde reads the file (unknown keys are errors, with
//! the line and column toml gives), then [`Config::from_file`] checks every value and
//! turns it into the types the server uses. With no file at all, the defaults run a
//! trial on one machine: SQLite in the state directory, loopback only.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use axum::http::HeaderName;
use serde::Deserialize;

mod alerts;

pub use alerts::{
    AlertRule, Alerts, Destination, HOST_SILENT, Kind, Mail, PAGERDUTY_EVENTS, SEND_TIMEOUT, routes,
};

/// Where the server listens when the file names no address: loopback, OTLP/HTTP's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4318";

/// A problem with the configuration, found at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("{key}: `{value}` is not a duration (e.g. \"15m\", \"30s\")")]
    Duration {
        key: &'static str,
        value: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("{key}: `{value}` is not a size (e.g. \"8MiB\"): {reason}")]
    Size {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("{key} must be more than zero")]
    Zero { key: &'static str },
    #[error("listen: `{value}` is not an address and port (e.g. \"0.0.0.0:4318\")")]
    Listen {
        value: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("database.url: {reason} (use postgres://USER@HOST/DB or sqlite://PATH)")]
    DatabaseUrl { reason: &'static str },
    #[error("database.password_file: cannot read {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database.password_env: ${name} is not set")]
    PasswordEnv { name: String },
    #[error("database: a password applies to PostgreSQL only")]
    PasswordForSqlite,
    #[error("database: set password_file or password_env, not both")]
    TwoPasswords,
    #[error("tls: `cert` and `key` go together")]
    TlsHalf,
    #[error("tls.client_auth = \"required\" needs tls.client_ca")]
    ClientAuthWithoutCa,
    #[error("dashboard.trusted_header: `{value}` is not a header name")]
    HeaderName { value: String },
    #[error("alerts: {reason}")]
    Alerts { reason: String },
    #[error("cannot create the state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file as written: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
    #[serde(default)]
    database: DatabaseFile,
    tls: Option<TlsFile>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    dashboard: DashboardFile,
    #[serde(default)]
    retention: RetentionFile,
    #[serde(default)]
    policy: PolicyFile,
    #[serde(default)]
    alerts: alerts::AlertsFile,
}

/// `[policy]`: policies served to hosts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// The Ed25519 key (PKCS#8) policies are signed with
    /// (`guard-fleet policy-key --new PATH`).
    signing_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
    url: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    max_connections: Option<u32>,
    migrate: Option<bool>,
    connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_auth: Option<ClientAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_body: Option<String>,
    max_decompressed: Option<String>,
    max_summary: Option<String>,
    max_event: Option<String>,
    max_concurrent: Option<usize>,
    body_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardFile {
    trusted_header: Option<String>,
    stale_after: Option<String>,
    cookie_max_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    events_days: Option<u32>,
    events_max_rows: Option<u64>,
    sessions_days: Option<u32>,
    interval: Option<String>,
}

/// Whether a client certificate is asked for, once `tls.client_ca` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Hosts may present one (then it is their identity) or use a token.
    #[default]
    Optional,
    /// The TLS handshake fails without a certificate the CA signed.
    Required,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Holds the SQLite file and the trial tokens file when nothing else is named.
    pub state_dir: PathBuf,
    /// The tokens file (`[[token]]` entries); `<state_dir>/tokens.toml` by default.
    pub tokens_file: PathBuf,
    /// Whether `tokens_file` was the default (then `serve` may create it for a trial).
    pub tokens_file_is_default: bool,
    pub database: Database,
    pub tls: Option<Tls>,
    pub limits: Limits,
    pub dashboard: Dashboard,
    pub retention: Retention,
    /// The key policies served to hosts are signed with; `None`: the fleet
    /// serves no policy (`GET /v1/policy` answers 503).
    pub policy_key: Option<PathBuf>,
    pub alerts: Alerts,
}

/// Which database, and how to reach it.
#[derive(Clone)]
pub struct Database {
    /// The connection URL, password included when one was configured.
    pub url: String,
    pub backend: Backend,
    pub max_connections: u32,
    /// Run the migrations at start-up (else `guard-fleet migrate` does).
    pub migrate: bool,
    /// How long start-up waits for the database to answer.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for Database {
    // The URL may hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .field("max_connections", &self.max_connections)
            .field("migrate", &self.migrate)
            .finish_non_exhaustive()
    }
}

/// The two databases the one query layer runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// TLS for every listener (ingest and dashboard share one port).
#[derive(Clone, Debug)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Bounds on what one request may make the server hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A request body as sent (compressed or not).
    pub max_body: usize,
    /// A body once gunzipped: the bound that stops a gzip bomb.
    pub max_decompressed: usize,
    /// One session summary's body, as JSON.
    pub max_summary: usize,
    /// One event's body, as JSON.
    pub max_event: usize,
    /// Requests decoded and written at once; the rest wait. With the sizes above it
    /// bounds the memory ingest can take.
    pub max_concurrent: usize,
    /// How long a request's body may take to arrive (408 past it).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 8 << 20,
            max_decompressed: 64 << 20,
            max_summary: 4 << 20,
            max_event: 64 << 10,
            max_concurrent: 8,
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// The dashboard's options.
#[derive(Clone, Debug)]
pub struct Dashboard {
    /// A header the organisation's reverse proxy sets to the signed-in user; honoured
    /// only when configured.
    pub trusted_header: Option<HeaderName>,
    /// A host with no batch for longer than this is shown as stopped reporting.
    pub stale_after: Duration,
    /// How long the login cookie lasts.
    pub cookie_max_age: Duration,
}

impl Default for Dashboard {
    fn default() -> Self {
        Self {
            trusted_header: None,
            stale_after: Duration::from_secs(15 * 60),
            cookie_max_age: Duration::from_secs(12 * 3600),
        }
    }
}

/// How long rows stay.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Events older than this many days are deleted.
    pub events_days: u32,
    /// At most this many events are kept (the oldest go first).
    pub events_max_rows: u64,
    /// Sessions (and their violations) not updated for this many days are deleted;
    /// 0 keeps them.
    pub sessions_days: u32,
    /// How often the retention task runs.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events_days: 30,
            events_max_rows: 10_000_000,
            sessions_days: 0,
            interval: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// Reads and checks `path`, or takes every default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            None => File::default(),
            Some(path) => {
                let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(path, &text)?
            }
        };
        Self::from_file(file)
    }

    /// Reads and checks the configuration `text` (from `path`, for messages).
    pub fn from_str_at(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::from_file(Self::parse(path, text)?)
    }

    fn parse(path: &Path, text: &str) -> Result<File, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    fn from_file(file: File) -> Result<Self, ConfigError> {
        let listen_text = file.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().map_err(|source| ConfigError::Listen {
            value: listen_text.to_owned(),
            source,
        })?;
        let state_dir = file.state_dir.unwrap_or_else(default_state_dir);
        let (tokens_file, tokens_file_is_default) = match file.tokens_file {
            Some(p) => (p, false),
            None => (state_dir.join("tokens.toml"), true),
        };
        let database = database(file.database, &state_dir)?;
        let tls = match file.tls {
            None => None,
            Some(t) => Some(tls(t)?),
        };
        let limits = limits(file.limits)?;
        let dashboard = dashboard(file.dashboard)?;
        let retention = retention(file.retention)?;
        Ok(Self {
            listen,
            state_dir,
            tokens_file,
            tokens_file_is_default,
            database,
            tls,
            limits,
            dashboard,
            retention,
            policy_key: file.policy.signing_key,
            alerts: alerts::alerts(file.alerts)?,
        })
    }

    /// Creates the state directory when the configuration relies on it (the SQLite
    /// file, the default tokens file).
    pub fn ensure_state_dir(&self) -> Result<(), ConfigError> {
        if self.database.backend == Backend::Sqlite || self.tokens_file_is_default {
            fs::create_dir_all(&self.state_dir).map_err(|source| ConfigError::StateDir {
                path: self.state_dir.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `/var/lib/guard-fleet` for
/// root and `~/.local/state/guard-fleet` for anyone else.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home {
        Some(home) if home != Path::new("/root") && home != Path::new("/") => {
            home.join(".local/state/guard-fleet")
        }
        _ => PathBuf::from("/var/lib/guard-fleet"),
    }
}

fn duration(
    key: &'static str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(&value).map_err(|source| ConfigError::Duration {
        key,
        value: value.clone(),
        source,
    })?;
    if d.is_zero() {
        return Err(ConfigError::Zero { key });
    }
    Ok(d)
}

fn size(key: &'static str, value: Option<String>, default: usize) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let bytes = bytesize::ByteSize::from_str(&value)
        .map_err(|reason| ConfigError::Size {
            key,
            value: value.clone(),
            reason,
        })?
        .as_u64();
    if bytes == 0 {
        return Err(ConfigError::Zero { key });
    }
    usize::try_from(bytes).map_err(|_| ConfigError::Size {
        key,
        value,
        reason: "too large".to_owned(),
    })
}

fn database(file: DatabaseFile, state_dir: &Path) -> Result<Database, ConfigError> {
    let url = file
        .url
        .unwrap_or_else(|| format!("sqlite://{}", state_dir.join("fleet.db").display()));
    let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Backend::Postgres
    } else if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        return Err(ConfigError::DatabaseUrl {
            reason: "unknown scheme",
        });
    };
    if backend == Backend::Sqlite && (file.password_file.is_some() || file.password_env.is_some()) {
        return Err(ConfigError::PasswordForSqlite);
    }
    let password = match (file.password_file, file.password_env) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoPasswords),
        (Some(path), None) => Some(
            fs::read_to_string(&path)
                .map_err(|source| ConfigError::PasswordFile { path, source })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        (None, Some(name)) => Some(
            std::env::var(&name).map_err(|_| ConfigError::PasswordEnv { name: name.clone() })?,
        ),
        (None, None) => None,
    };
    let url = match (backend, password) {
        (Backend::Postgres, Some(password)) => with_password(&url, &password)?,
        (Backend::Postgres, None) => url,
        (Backend::Sqlite, _) => sqlite_url(&url)?,
    };
    let max_connections = file.max_connections.unwrap_or(16);
    if max_connections == 0 {
        return Err(ConfigError::Zero {
            key: "database.max_connections",
        });
    }
    Ok(Database {
        url,
        backend,
        max_connections,
        migrate: file.migrate.unwrap_or(true),
        connect_timeout: duration(
            "database.connect_timeout",
            file.connect_timeout,
            Duration::from_secs(30),
        )?,
    })
}

/// `sqlite://PATH` with `mode=rwc` (create the file) unless the URL sets a mode.
fn sqlite_url(url: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or_default();
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(ConfigError::DatabaseUrl {
            reason: "no file named",
        });
    }
    if url.contains("mode=") {
        Ok(url.to_owned())
    } else if url.contains('?') {
        Ok(format!("{url}&mode=rwc"))
    } else {
        Ok(format!("{url}?mode=rwc"))
    }
}

/// The URL with `password` set (percent-encoded), replacing any the URL had.
fn with_password(url: &str, password: &str) -> Result<String, ConfigError> {
    let mut opts =
        sqlx::any::AnyConnectOptions::from_str(url).map_err(|_| ConfigError::DatabaseUrl {
            reason: "not a URL",
        })?;
    opts.database_url
        .set_password(Some(password))
        .map_err(|()| ConfigError::DatabaseUrl {
            reason: "cannot hold a password (no host?)",
        })?;
    Ok(opts.database_url.to_string())
}

fn tls(file: TlsFile) -> Result<Tls, ConfigError> {
    let (Some(cert), Some(key)) = (file.cert, file.key) else {
        return Err(ConfigError::TlsHalf);
    };
    let client_auth = file.client_auth.unwrap_or_default();
    if client_auth == ClientAuth::Required && file.client_ca.is_none() {
        return Err(ConfigError::ClientAuthWithoutCa);
    }
    Ok(Tls {
        cert,
        key,
        client_ca: file.client_ca,
        client_auth,
    })
}

fn limits(file: LimitsFile) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    Ok(Limits {
        max_body: size("limits.max_body", file.max_body, d.max_body)?,
        max_decompressed: size(
            "limits.max_decompressed",
            file.max_decompressed,
            d.max_decompressed,
        )?,
        max_summary: size("limits.max_summary", file.max_summary, d.max_summary)?,
        max_event: size("limits.max_event", file.max_event, d.max_event)?,
        max_concurrent: match file.max_concurrent {
            Some(0) => {
                return Err(ConfigError::Zero {
                    key: "limits.max_concurrent",
                });
            }
            n => n.unwrap_or(d.max_concurrent),
        },
        body_timeout: duration("limits.body_timeout", file.body_timeout, d.body_timeout)?,
    })
}

fn dashboard(file: DashboardFile) -> Result<Dashboard, ConfigError> {
    let d = Dashboard::default();
    let trusted_header = match file.trusted_header {
        None => None,
        Some(value) => Some(
            HeaderName::from_str(&value.to_ascii_lowercase())
                .map_err(|_| ConfigError::HeaderName { value })?,
        ),
    };
    Ok(Dashboard {
        trusted_header,
        stale_after: duration("dashboard.stale_after", file.stale_after, d.stale_after)?,
        cookie_max_age: duration(
            "dashboard.cookie_max_age",
            file.cookie_max_age,
            d.cookie_max_age,
        )?,
    })
}

fn retention(file: RetentionFile) -> Result<Retention, ConfigError> {
    let d = Retention::default();
    let events_days = file.events_days.unwrap_or(d.events_days);
    if events_days == 0 {
        return Err(ConfigError::Zero {
            key: "retention.events_days",
        });
    }
    let events_max_rows = file.events_max_rows.unwrap_or(d.events_max_rows);
    if events_max_rows == 0 {
        return Err(ConfigError::Zero {
            key: "retention.events_max_rows",
        });
    }
    Ok(Retention {
        events_days,
        events_max_rows,
        sessions_days: file.sessions_days.unwrap_or(d.sessions_days),
        interval: duration("retention.interval", file.interval, d.interval)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_at(Path::new("fleet.toml"), text)
    }

    /// Every fleet configuration the docs show (```` ```toml guard-fleet ````) has
    /// only keys the server reads (the files it names need not exist here).
    #[test]
    fn every_configuration_in_the_docs_has_only_known_keys() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let mut seen = 0;
        let pages = fs::read_dir(&docs).expect("docs/").flatten();
        for page in pages.filter(|p| p.path().extension().is_some_and(|e| e == "md")) {
            let text = fs::read_to_string(page.path()).expect("a page");
            let mut block: Option<(usize, String)> = None;
            for (n, line) in text.lines().enumerate() {
                match &mut block {
                    None if line.trim() == "```toml guard-fleet" => {
                        block = Some((n + 1, String::new()))
                    }
                    Some((at, body)) if line.trim() == "```" => {
                        let at = format!("{}:{at}", page.path().display());
                        if let Err(e) = Config::parse(Path::new(&at), body) {
                            panic!("{at}: {}", chain(&e));
                        }
                        seen += 1;
                        block = None;
                    }
                    Some((_, body)) => {
                        body.push_str(line);
                        body.push('\n');
                    }
                    None => {}
                }
            }
        }
        assert!(seen >= 3, "only {seen} fleet configurations found in docs/");
    }

    /// The error and its causes, as `guard-fleet` prints them.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    #[test]
    fn no_file_is_a_loopback_trial_on_sqlite() {
        let c = Config::load(None).expect("defaults");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.database.backend, Backend::Sqlite);
        assert!(c.database.url.starts_with("sqlite://"));
        assert!(c.database.url.ends_with("fleet.db?mode=rwc"));
        assert!(c.tokens_file_is_default);
        assert!(c.tls.is_none());
        assert_eq!(c.limits.max_body, 8 << 20);
        assert_eq!(c.limits.max_decompressed, 64 << 20);
        assert_eq!(c.dashboard.stale_after, Duration::from_secs(900));
    }

    #[test]
    fn every_section_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("pw");
        fs::write(&pw, "s3cr/t@x\n").expect("write");
        let c = parse(&format!(
            r#"
            listen = "0.0.0.0:8443"
            tokens_file = "/etc/guard-fleet/tokens.toml"
            [database]
            url = "postgres://fleet@db.internal:5432/fleet"
            password_file = "{}"
            max_connections = 4
            [tls]
            cert = "/c.pem"
            key = "/k.pem"
            client_ca = "/ca.pem"
            client_auth = "required"
            [limits]
            max_body = "1MiB"
            max_decompressed = "2MiB"
            [dashboard]
            trusted_header = "X-Forwarded-User"
            stale_after = "5m"
            [retention]
            events_days = 7
            events_max_rows = 1000
            interval = "1m"
            "#,
            pw.display()
        ))
        .expect("config");
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.database.backend, Backend::Postgres);
        // The password is percent-encoded into the URL, and never printed.
        assert_eq!(
            c.database.url,
            "postgres://fleet:s3cr%2Ft%40x@db.internal:5432/fleet"
        );
        assert!(!format!("{c:?}").contains("s3cr"));
        assert_eq!(c.database.max_connections, 4);
        let tls = c.tls.expect("tls");
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert_eq!(c.limits.max_body, 1 << 20);
        assert_eq!(c.limits.max_decompressed, 2 << 20);
        assert_eq!(
            c.dashboard.trusted_header.expect("header").as_str(),
            "x-forwarded-user"
        );
        assert_eq!(c.dashboard.stale_after, Duration::from_secs(300));
        assert_eq!(c.retention.events_days, 7);
        assert!(!c.tokens_file_is_default);
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = chain(&parse("lisen = \"x\"").expect_err("typo"));
        assert!(unknown.contains("lisen"), "{unknown}");
        assert!(unknown.contains("line 1"), "{unknown}");
        let cases = [
            ("listen = \"localhost\"", "listen"),
            ("[database]\nurl = \"mysql://x\"", "unknown scheme"),
            (
                "[database]\nurl = \"sqlite://x.db\"\npassword_env = \"X\"",
                "PostgreSQL only",
            ),
            (
                "[database]\nurl = \"postgres://a@b/c\"\npassword_env = \"GUARD_FLEET_NO_SUCH_VAR\"",
                "GUARD_FLEET_NO_SUCH_VAR",
            ),
            ("[tls]\ncert = \"/c\"", "go together"),
            (
                "[tls]\ncert = \"/c\"\nkey = \"/k\"\nclient_auth = \"required\"",
                "client_ca",
            ),
            ("[limits]\nmax_body = \"lots\"", "limits.max_body"),
            ("[limits]\nmax_body = \"0B\"", "more than zero"),
            (
                "[dashboard]\nstale_after = \"soon\"",
                "dashboard.stale_after",
            ),
            (
                "[dashboard]\ntrusted_header = \"bad header\"",
                "header name",
            ),
            ("[retention]\nevents_days = 0", "retention.events_days"),
        ];
        for (text, needle) in cases {
            let e = chain(&parse(text).expect_err(text));
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn sqlite_urls_create_their_file() {
        assert_eq!(
            sqlite_url("sqlite:///d/f.db").expect("url"),
            "sqlite:///d/f.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite:///d/f.db?cache=shared").expect("url"),
            "sqlite:///d/f.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://f.db?mode=ro").expect("url"),
            "sqlite://f.db?mode=ro"
        );
        assert!(sqlite_url("sqlite://").is_err());
    }
}
