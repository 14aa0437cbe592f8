//! The two stores: an SQLite file (embedded default) and PostgreSQL (scaled out), with
//! their migrations from `migrations/`. SQL that both accept is written once and run on
//! either through [`on_db!`](crate::on_db).

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A store connection failure or SQL error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQL or connection error.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migration failure.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored JSON did not decode.
    #[error("stored json: {0}")]
    Json(#[from] serde_json::Error),
    /// Bad configuration.
    #[error("config: {0}")]
    Config(String),
}

impl DbError {
    /// Whether the store could not be reached (see [`store_unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Sql(e) if store_unreachable(e))
    }
}

/// Whether `e` (or an error it wraps) says the store could not be reached rather than
/// that a statement was wrong: a connection lost or refused, the pool exhausted or shut,
/// the server shutting down or crashed, or SQLite busy. Such a failure passes: the API
/// answers 503 with `Retry-After`, not 500, and effects retry it.
pub fn store_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(sql) = e.downcast_ref::<sqlx::Error>() {
            return match sql {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                    // PostgreSQL: connection exceptions (08…), too many connections,
                    // shutting down or starting up (57P01–57P03); SQLite: busy or locked.
                    c.starts_with("08") || matches!(c.as_ref(), "53300" | "57P01" | "57P02" | "57P03" | "5" | "6" | "517" | "262")
                }),
                _ => false,
            };
        }
        if e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

/// The store in use.
#[derive(Debug, Clone)]
pub enum Db {
    /// Embedded: one writer connection (SQLite serializes writers anyway; one connection
    /// means no SQLITE_BUSY and a trivially gap-free feed) and a pool of readers (WAL).
    Sqlite {
        /// The single writer.
        write: SqlitePool,
        /// Readers.
        read: SqlitePool,
    },
    /// PostgreSQL.
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the writer pool of whichever store is in use.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { write: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to a reader pool.
#[macro_export]
macro_rules! on_read_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite { read: $pool, .. } => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Db {
    /// Opens (creating if needed) the SQLite store at `dir/tare.db` and migrates it.
    pub async fn open_sqlite(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Config(format!("data dir {}: {e}", dir.display())))?;
        let path = dir.join("tare.db");
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is acknowledged. With WAL, NORMAL
            // survives a crash of the process but not a power loss, which could drop the
            // last committed payment events after their provider calls were made [issue 14].
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.clone())
            .await?;
        SQLITE_MIGRATIONS.run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self::Sqlite { write, read })
    }

    /// Connects to PostgreSQL at `url` (a pool of up to `max_connections`) and migrates (migrations take an advisory lock,
    /// so several nodes may start at once).
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Self, DbError> {
        let opts = PgConnectOptions::from_str(url)?;
        // A connection not had within 10 s (the server down, the pool exhausted) fails the
        // request as `store_unavailable` (503, retry) well inside the 30 s request timeout.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        POSTGRES_MIGRATIONS.run(&pool).await?;
        Ok(Self::Postgres(pool))
    }

    /// The migrations applied to this store: (version, description), oldest first.
    pub async fn applied_migrations(&self) -> Result<Vec<(i64, String)>, DbError> {
        let sql = "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version";
        let rows: Vec<(i64, String)> = crate::on_read_db!(self, pool => sqlx::query_as(sql).fetch_all(pool).await?);
        Ok(rows)
    }

    /// The store's identity, made once with it (migration `store_identity`): what the
    /// JetStream streams are bound to, and what a backup carries with the log.
    pub async fn store_id(&self) -> Result<String, DbError> {
        let sql = "SELECT store_id FROM store_identity";
        let (id,): (String,) = crate::on_read_db!(self, pool => sqlx::query_as(sql).fetch_one(pool).await?);
        Ok(id)
    }

    /// Whether this is the PostgreSQL store.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Closes the pools (waits for connections to be returned).
    pub async fn close(&self) {
        match self {
            Self::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Self::Postgres(p) => p.close().await,
        }
    }
}

/// Creates a fresh, uniquely named database on the PostgreSQL server at `admin_url`
/// (e.g. `postgres://postgres@127.0.0.1:5432/postgres`) and returns its URL: tests and
/// benchmarks use one each so they run in parallel and leave nothing shared behind.
pub async fn create_scratch_postgres(admin_url: &str, prefix: &str) -> Result<String, DbError> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}

/// Drops a database made by [`create_scratch_postgres`].
pub async fn drop_scratch_postgres(admin_url: &str, db_url: &str) -> Result<(), DbError> {
    use sqlx::Connection;
    let name = db_url.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbError::Config(format!("not a scratch database: {db_url}")));
    }
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_embedded_store_acknowledges_only_what_is_on_disk() {
        let dir = std::env::temp_dir().join(format!("tare-db-{}", uuid::Uuid::now_v7()));
        let db = Db::open_sqlite(&dir).await.unwrap();
        let Db::Sqlite { write, .. } = &db else { unreachable!() };
        // 2 = FULL (1 = NORMAL: a power loss could drop the last commits), in WAL mode.
        let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous").fetch_one(write).await.unwrap();
        let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode").fetch_one(write).await.unwrap();
        assert_eq!((synchronous, journal.as_str()), (2, "wal"));
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A store that cannot be reached is told apart from one that failed: the API
    /// answers the first 503 (retry), the second 500.
    #[tokio::test]
    async fn an_unreachable_store_is_told_apart_from_a_failing_one() {
        assert!(DbError::Sql(sqlx::Error::PoolTimedOut).is_unreachable());
        assert!(DbError::Sql(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())).is_unreachable());
        assert!(!DbError::Sql(sqlx::Error::RowNotFound).is_unreachable());
        assert!(!DbError::Config("x".into()).is_unreachable());
        // Nothing listens on this port: the connection is refused.
        let refused = PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect("postgres://nobody@127.0.0.1:9/none")
            .await
            .expect_err("nothing listens there");
        assert!(store_unreachable(&refused), "{refused:?}");
        // Wrapped, as the event store's errors come.
        let wrapped: Box<dyn std::error::Error + Send + Sync> = Box::new(DbError::Sql(sqlx::Error::PoolClosed));
        assert!(store_unreachable(wrapped.as_ref()));
    }
}
