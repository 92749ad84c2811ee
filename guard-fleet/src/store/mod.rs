//! The database: PostgreSQL in production, SQLite for a trial, one query layer for
//! both (sqlx's Any driver: `$n` placeholders, times as i64, JSON as TEXT).
//!
//! All of the server's state is here; replicas share it. A batch is written in one
//! transaction ([`write`]) before its host hears 200; the dashboard reads
//! ([`read`]); a periodic task bounds what is kept ([`retention`]).

pub mod alerts;
pub mod policy;
pub mod read;
pub mod retention;
mod rollup;
pub mod rows;
mod sql;
pub mod write;

use std::{str::FromStr as _, time::Duration};

use sqlx::{
    AnyConnection, AnyPool, Connection as _, Executor as _,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::{Migration, MigrationType, Migrator},
};

use crate::config::{Backend, Database};

/// A day in milliseconds.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// A failure of the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("the database's migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("the database failed to {what}")]
    Query {
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("no randomness for an alert claim's token")]
    Random(#[source] getrandom::Error),
}

impl StoreError {
    pub(crate) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { what, source }
    }
}

/// The migrations of `backend`, embedded in the binary.
fn migrator(backend: Backend) -> Migrator {
    use sqlx::SqlSafeStr as _;
    let (init, destinations) = match backend {
        Backend::Postgres => (
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/postgres/0004_destinations.sql"),
        ),
        Backend::Sqlite => (
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0004_destinations.sql"),
        ),
    };
    let migration = |version, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(1, "init", init),
        migration(
            2,
            "dashboard_at_size",
            include_str!("../../migrations/common/0002_dashboard_at_size.sql"),
        ),
        migration(
            3,
            "questions",
            include_str!("../../migrations/common/0003_questions.sql"),
        ),
        migration(4, "destinations", destinations),
        migration(
            5,
            "policies",
            include_str!("../../migrations/common/0005_policies.sql"),
        ),
        migration(
            6,
            "alerts",
            include_str!("../../migrations/common/0006_alerts.sql"),
        ),
        migration(
            7,
            "credential_targets",
            include_str!("../../migrations/common/0007_credential_targets.sql"),
        ),
        migration(
            8,
            "host_labels",
            include_str!("../../migrations/common/0008_host_labels.sql"),
        ),
        migration(
            9,
            "alert_rules",
            include_str!("../../migrations/common/0009_alert_rules.sql"),
        ),
        migration(
            10,
            "packages",
            include_str!("../../migrations/common/0010_packages.sql"),
        ),
        migration(
            11,
            "package_names",
            include_str!("../../migrations/common/0011_package_names.sql"),
        ),
    ])
}

/// A pool of connections to the database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time: this process's writers queue here, in
    /// order, rather than in SQLite's busy handler (which sleeps and retries). Other
    /// processes sharing the file still meet `busy_timeout`.
    sqlite_writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Connects, retrying until `db.connect_timeout` has passed (a database that
    /// starts with the server, as in a Compose file or a pod).
    pub async fn connect(db: &Database) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = db.backend;
        let options = AnyPoolOptions::new()
            .max_connections(db.max_connections)
            // A request waits this long for a connection, then the host hears 503.
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers do not block the writer; a busy writer is
                        // waited for (several processes may share the file).
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            });
        // One connection first: its error says why (refused, authentication, TLS),
        // where the pool's would only say it timed out.
        let target = AnyConnectOptions::from_str(&db.url).map_err(StoreError::Connect)?;
        let deadline = tokio::time::Instant::now() + db.connect_timeout;
        let mut wait = Duration::from_millis(250);
        loop {
            match AnyConnection::connect_with(&target).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    break;
                }
                Err(e) if tokio::time::Instant::now() + wait < deadline => {
                    tracing::warn!(error = %e, "database not reachable yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(StoreError::Connect(e)),
            }
        }
        let pool = options
            .connect_with(target)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Self {
            pool,
            backend,
            sqlite_writer: std::sync::Arc::default(),
        })
    }

    /// Applies the migrations this binary has and the database lacks. Replicas
    /// starting together are serialised by the migrator's lock (PostgreSQL's
    /// advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrator(self.backend)
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::query("answer"))
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Held while writing: SQLite's one writer (see `sqlite_writer`); nothing on
    /// PostgreSQL.
    pub(crate) async fn writer(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.sqlite_writer.lock().await),
            Backend::Postgres => None,
        }
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
