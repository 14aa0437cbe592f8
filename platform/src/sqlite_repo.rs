//! The embedded store's event repository: sqlite-es for reads, group commit for writes
//! [issue 13].
//!
//! sqlite-es inserts a commit's events one statement each; on SQLite every statement is a
//! round trip to the connection's worker thread, and those round trips were the largest
//! part of a purchase's cost. Here a commit's events go in one multi-row `INSERT` (the
//! feed trigger still numbers them one by one, in order), and the commits that queued up
//! meanwhile go in the same transaction ([`GroupWriter`]), with sqlite-es's tables,
//! columns and optimistic check: a sequence already taken violates the primary key and is
//! reported as a conflict, as sqlite-es reports it.

use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::{Pool, Sqlite};

/// Events one `INSERT` carries at most (7 parameters each, well inside SQLite's limit).
const EVENTS_PER_STATEMENT: usize = 100;

/// Commits written together at most.
const COMMITS_PER_GROUP: usize = 256;

/// One commit waiting for the writer.
struct Commit {
    aggregate_type: &'static str,
    events: Vec<SerializedEvent>,
    snapshot: Option<(String, Value, usize)>,
    written: tokio::sync::oneshot::Sender<Result<(), PersistenceError>>,
}

/// Group commit for the embedded store: every aggregate's commits go to one task, which
/// writes whatever has queued up meanwhile in one transaction — one multi-row `INSERT`
/// for all their events — and answers each once that transaction is committed. Under
/// load, many commands share one round of statements on the single writer; alone, a
/// commit is written at once. If a group fails (a commit's optimistic check), each of its
/// commits is written again on its own, so each gets its own answer.
pub struct GroupWriter {
    queue: tokio::sync::mpsc::UnboundedSender<Commit>,
}

impl GroupWriter {
    /// Starts the writer on `pool` (it ends when every handle is gone).
    pub fn start(pool: Pool<Sqlite>) -> std::sync::Arc<Self> {
        let (queue, mut rx) = tokio::sync::mpsc::unbounded_channel::<Commit>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < COMMITS_PER_GROUP {
                    match rx.try_recv() {
                        Ok(c) => group.push(c),
                        Err(_) => break,
                    }
                }
                match write(&pool, &group).await {
                    Ok(()) => {
                        for c in group {
                            let _ = c.written.send(Ok(()));
                        }
                    }
                    Err(e) if group.len() == 1 => {
                        let _ = group.pop().map(|c| c.written.send(Err(e)));
                    }
                    Err(_) => {
                        for c in group {
                            let alone = write(&pool, std::slice::from_ref(&c)).await;
                            let _ = c.written.send(alone);
                        }
                    }
                }
            }
        });
        std::sync::Arc::new(Self { queue })
    }

    /// Writes one commit with whatever else is waiting; returns once it is durable.
    async fn persist(
        &self,
        aggregate_type: &'static str,
        events: &[SerializedEvent],
        snapshot: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let (written, answer) = tokio::sync::oneshot::channel();
        let commit = Commit {
            aggregate_type,
            events: events.to_vec(),
            snapshot,
            written,
        };
        let gone = || PersistenceError::ConnectionError("the store's writer has stopped".into());
        self.queue.send(commit).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Writes `commits` in one transaction: their events in multi-row `INSERT`s, then their
/// snapshots.
async fn write(pool: &Pool<Sqlite>, commits: &[Commit]) -> Result<(), PersistenceError> {
    let mut tx = pool.begin().await.map_err(persistence)?;
    let rows: Vec<(&'static str, &SerializedEvent)> = commits
        .iter()
        .flat_map(|c| c.events.iter().map(move |e| (c.aggregate_type, e)))
        .collect();
    for chunk in rows.chunks(EVENTS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) ",
        );
        q.push_values(chunk, |mut row, (aggregate_type, e)| {
            row.push_bind(*aggregate_type)
                .push_bind(e.aggregate_id.as_str())
                .push_bind(e.sequence as i64)
                .push_bind(e.event_type.as_str())
                .push_bind(e.event_version.as_str())
                .push_bind(&e.payload)
                .push_bind(&e.metadata);
        });
        q.build().execute(&mut *tx).await.map_err(persistence)?;
    }
    for c in commits {
        let last_sequence = c.events.last().map_or(0, |e| e.sequence) as i64;
        match &c.snapshot {
            None => {}
            Some((aggregate_id, payload, 1)) => {
                sqlx::query(
                    "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) VALUES (?, ?, ?, 1, ?)",
                )
                .bind(c.aggregate_type)
                .bind(aggregate_id)
                .bind(last_sequence)
                .bind(payload)
                .execute(&mut *tx)
                .await
                .map_err(persistence)?;
            }
            Some((aggregate_id, payload, current_snapshot)) => {
                let current_snapshot = *current_snapshot as i64;
                let updated = sqlx::query(
                    "UPDATE snapshots SET last_sequence = ?, payload = ?, current_snapshot = ? WHERE aggregate_type = ? AND aggregate_id = ? AND current_snapshot = ?",
                )
                .bind(last_sequence)
                .bind(payload)
                .bind(current_snapshot)
                .bind(c.aggregate_type)
                .bind(aggregate_id)
                .bind(current_snapshot - 1)
                .execute(&mut *tx)
                .await
                .map_err(persistence)?;
                if updated.rows_affected() != 1 {
                    return Err(PersistenceError::OptimisticLockError);
                }
            }
        }
    }
    tx.commit().await.map_err(persistence)
}

/// sqlite-es's repository with commits written by the [`GroupWriter`] (see the module
/// documentation).
pub struct BatchedSqliteRepository {
    reads: SqliteEventRepository,
    writer: std::sync::Arc<GroupWriter>,
}

impl BatchedSqliteRepository {
    /// The repository over sqlite-es's `events` and `snapshots` tables in `pool`, writing
    /// through `writer`.
    pub fn new(pool: Pool<Sqlite>, writer: std::sync::Arc<GroupWriter>) -> Self {
        Self {
            reads: SqliteEventRepository::new(pool),
            writer,
        }
    }
}

/// A store error as cqrs-es expects it, classified as sqlite-es classifies it: a
/// primary-key violation (SQLite's extended code 1555) is the optimistic check failing.
fn persistence(e: sqlx::Error) -> PersistenceError {
    match &e {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "1555") => PersistenceError::OptimisticLockError,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => PersistenceError::ConnectionError(Box::new(e)),
        _ => PersistenceError::UnknownError(Box::new(e)),
    }
}

impl PersistedEventRepository for BatchedSqliteRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_last_events::<A>(aggregate_id, last_sequence).await
    }

    async fn get_snapshot<A: Aggregate>(&self, aggregate_id: &str) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.writer.persist(A::TYPE, events, snapshot_update).await
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cached_store::tests::Tally;
    use serde_json::json;

    fn event(sequence: usize, n: u32) -> SerializedEvent {
        event_of("t", sequence, n)
    }

    fn event_of(id: &str, sequence: usize, n: u32) -> SerializedEvent {
        SerializedEvent::new(
            id.into(),
            sequence,
            "tally".into(),
            "Added".into(),
            "1".into(),
            json!(n),
            json!({"time": "1"}),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_written_together_each_get_their_own_answer() {
        let dir = std::env::temp_dir().join(format!("tare-group-{}", uuid::Uuid::now_v7()));
        let db = crate::db::Db::open_sqlite(&dir).await.unwrap();
        let crate::db::Db::Sqlite { write, .. } = &db else { unreachable!() };
        let repo = std::sync::Arc::new(BatchedSqliteRepository::new(write.clone(), GroupWriter::start(write.clone())));
        repo.persist::<Tally>(&[event_of("taken", 1, 1)], None).await.unwrap();
        // Fifty commits at once, one of them at a sequence already taken.
        let commits = (0..50).map(|i| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let (id, seq) = if i == 25 { ("taken".to_string(), 1) } else { (format!("a{i}"), 1) };
                repo.persist::<Tally>(&[event_of(&id, seq, i), event_of(&id, seq + 1, i)], None)
                    .await
            })
        });
        let answers: Vec<_> = futures::future::join_all(commits).await.into_iter().map(Result::unwrap).collect();
        for (i, a) in answers.iter().enumerate() {
            match i {
                25 => assert!(matches!(a, Err(PersistenceError::OptimisticLockError)), "{a:?}"),
                _ => assert!(a.is_ok(), "commit {i}: {a:?}"),
            }
        }
        let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM events").fetch_one(write).await.unwrap();
        let (fed,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM feed").fetch_one(write).await.unwrap();
        assert_eq!((events, fed), (1 + 49 * 2, 1 + 49 * 2));
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_commit_is_one_insert_numbered_in_order_and_a_taken_sequence_is_a_conflict() {
        let dir = std::env::temp_dir().join(format!("tare-repo-{}", uuid::Uuid::now_v7()));
        let db = crate::db::Db::open_sqlite(&dir).await.unwrap();
        let crate::db::Db::Sqlite { write, .. } = &db else { unreachable!() };
        let repo = BatchedSqliteRepository::new(write.clone(), GroupWriter::start(write.clone()));
        repo.persist::<Tally>(&[event(1, 1), event(2, 10), event(3, 100)], None)
            .await
            .unwrap();
        let stored: Vec<(usize, Value)> = repo
            .get_events::<Tally>("t")
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.sequence, e.payload))
            .collect();
        assert_eq!(stored, [(1, json!(1)), (2, json!(10)), (3, json!(100))]);
        // The feed numbers them in the order of the statement's rows.
        let feed: Vec<(i64, i64)> = sqlx::query_as("SELECT position, sequence FROM feed WHERE aggregate_id = 't' ORDER BY position")
            .fetch_all(write)
            .await
            .unwrap();
        assert_eq!(feed.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(feed.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{feed:?}");
        // Sequence 3 is taken: nothing of this commit is kept.
        let conflict = repo.persist::<Tally>(&[event(3, 7), event(4, 7)], None).await;
        assert!(matches!(conflict, Err(PersistenceError::OptimisticLockError)), "{conflict:?}");
        assert_eq!(repo.get_events::<Tally>("t").await.unwrap().len(), 3);
        // A snapshot is written with its commit, and a stale one is a conflict.
        repo.persist::<Tally>(&[event(4, 1000)], Some(("t".into(), json!({"total": 1111}), 1)))
            .await
            .unwrap();
        let snap = repo.get_snapshot::<Tally>("t").await.unwrap().unwrap();
        assert_eq!(
            (snap.current_sequence, snap.current_snapshot, snap.aggregate),
            (4, 1, json!({"total": 1111}))
        );
        let stale = repo
            .persist::<Tally>(&[event(5, 1)], Some(("t".into(), json!({"total": 0}), 3)))
            .await;
        assert!(matches!(stale, Err(PersistenceError::OptimisticLockError)), "{stale:?}");
        assert_eq!(
            repo.get_events::<Tally>("t").await.unwrap().len(),
            4,
            "the stale commit left nothing"
        );
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
