//! `tare backup` and `tare restore` for the embedded store [issue 14, item 5]: a
//! consistent copy of a running node's store, and putting one back.
//!
//! The backup is a directory: `tare.db`, written by SQLite's `VACUUM INTO` (a snapshot of
//! one read transaction, so it is consistent while the node goes on writing, and compact),
//! checked with `PRAGMA integrity_check` before the command says it is done, and the
//! provider keys (`keys/`, as secret as the keys themselves). A restore copies both into
//! an empty data directory; it refuses one that already holds a store. The store's id
//! travels with it (`store_identity`), so a scaled-out stream recognises a restored store
//! and refuses one that is behind it (see README "Scaled out").
//!
//! PostgreSQL has its own tools for this (`pg_dump -Fc` / `pg_restore`; README
//! "Backups").

use anyhow::{bail, Context};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `tare backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The embedded store to back up (it may be running).
    #[arg(long, env = "TARE_DATA", default_value = "data")]
    pub data: PathBuf,
    /// Where to write the backup: a directory that does not exist yet.
    #[arg(long)]
    pub out: PathBuf,
}

/// `tare restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A directory `tare backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into: it must hold no store (stop the node, move
    /// the old directory aside).
    #[arg(long, env = "TARE_DATA", default_value = "data")]
    pub data: PathBuf,
}

/// What a backup holds, as checked after writing it (or before restoring it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The store's id.
    pub store_id: String,
    /// Events in the log.
    pub events: i64,
    /// The feed's last position.
    pub feed_head: i64,
}

/// The store file inside a data directory or a backup.
const STORE_FILE: &str = "tare.db";

async fn open(path: &Path, read_only: bool) -> anyhow::Result<sqlx::SqliteConnection> {
    SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("opening {}", path.display()))
}

/// Checks the store file at `path` and says what it holds.
pub async fn inspect(path: &Path) -> anyhow::Result<BackupSummary> {
    let mut conn = open(path, true).await?;
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&mut conn).await?;
    if check != "ok" {
        bail!("{} fails SQLite's integrity check: {check}", path.display());
    }
    let (store_id,): (String,) = sqlx::query_as("SELECT store_id FROM store_identity")
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("{} is not a Tare store", path.display()))?;
    let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events").fetch_one(&mut conn).await?;
    let (feed_head,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(position), 0) FROM feed")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(BackupSummary {
        store_id,
        events,
        feed_head,
    })
}

/// Writes a backup of the store in `data` to the new directory `out`.
pub async fn backup(data: &Path, out: &Path) -> anyhow::Result<BackupSummary> {
    let store = data.join(STORE_FILE);
    if !store.exists() {
        bail!("no store at {}", store.display());
    }
    if out.exists() {
        bail!("{} exists: a backup goes to a new directory", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let target = out.join(STORE_FILE);
    let target_text = target.to_str().context("the backup path is not UTF-8")?;
    let mut conn = open(&store, true).await?;
    sqlx::query("VACUUM INTO $1")
        .bind(target_text)
        .execute(&mut conn)
        .await
        .context("VACUUM INTO")?;
    conn.close().await?;
    let keys = data.join("keys");
    if keys.is_dir() {
        copy_dir(&keys, &out.join("keys"))?;
    }
    inspect(&target).await
}

/// Restores the backup in `from` into the data directory `data`, which must hold no
/// store.
pub async fn restore(from: &Path, data: &Path) -> anyhow::Result<BackupSummary> {
    let source = from.join(STORE_FILE);
    if from.join(format!("{STORE_FILE}-wal")).exists() {
        bail!(
            "{} is a store in use (it has a write-ahead log), not a backup: copying its file alone would lose the \
             commits still in the log; make a backup of it with `tare backup`",
            from.display()
        );
    }
    let summary = inspect(&source).await.context("the backup")?;
    let target = data.join(STORE_FILE);
    if target.exists() {
        bail!(
            "{} already holds a store: stop its node and move the directory aside, then restore into an empty one",
            data.display()
        );
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    std::fs::copy(&source, &target).with_context(|| format!("copying to {}", target.display()))?;
    let keys = from.join("keys");
    if keys.is_dir() && !data.join("keys").exists() {
        copy_dir(&keys, &data.join("keys"))?;
    }
    Ok(summary)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `tare backup`: prints what was written.
pub async fn run_backup(a: BackupArgs) -> anyhow::Result<()> {
    let s = backup(&a.data, &a.out).await?;
    println!(
        "backup written: {} (store {}, {} events, feed head {}); keep it as secret as the provider keys it holds",
        a.out.display(),
        s.store_id,
        s.events,
        s.feed_head
    );
    Ok(())
}

/// `tare restore`: prints what was restored.
pub async fn run_restore(a: RestoreArgs) -> anyhow::Result<()> {
    let s = restore(&a.from, &a.data).await?;
    println!(
        "restored into {}: store {}, {} events, feed head {}; start it with `tare serve --data {}`",
        a.data.display(),
        s.store_id,
        s.events,
        s.feed_head,
        a.data.display()
    );
    Ok(())
}
