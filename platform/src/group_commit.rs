//! Group commit for both stores' event repositories [issue 13]: cqrs-es's repositories
//! (sqlite-es, postgres-es) for reads, one multi-row `INSERT` per group of commits for
//! writes.
//!
//! sqlite-es and postgres-es insert a commit's events one statement each, in a
//! transaction of its own: on SQLite every statement is a round trip to the single
//! writer's worker thread, on PostgreSQL a round trip to the server and every commit a
//! WAL flush, and those were the largest part of a purchase's cost. Here the commits that
//! queued up meanwhile go in one transaction, all their events in multi-row `INSERT`s
//! ([`GroupWriter`]) — on SQLite the feed trigger still numbers them one by one, in
//! order; on PostgreSQL the sequencer numbers them by commit order as before — with the
//! crates' own tables, columns and optimistic check: a sequence already taken violates
//! the primary key and is reported as a conflict, as the crates report it.

use crate::db::Db;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use cqrs_es::Aggregate;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{mpsc, Mutex};

/// Events one `INSERT` carries at most (7 parameters each, well inside both stores'
/// limits).
const EVENTS_PER_STATEMENT: usize = 100;

/// Commits written together at most.
const COMMITS_PER_GROUP: usize = 256;

/// Groups in flight at once on PostgreSQL (its connections write in parallel, and a
/// group waiting for its WAL flush need not hold back the next); SQLite has one writer.
const POSTGRES_WRITERS: usize = 4;

/// One commit waiting for the writer.
struct Commit {
    aggregate_type: &'static str,
    events: Vec<SerializedEvent>,
    /// (aggregate id, state, snapshot version, the sequence the state is at).
    snapshot: Option<(String, Value, usize, i64)>,
    written: tokio::sync::oneshot::Sender<Result<(), PersistenceError>>,
}

/// Group commit: every aggregate's commits go to a queue, and a writer task writes
/// whatever has queued up meanwhile in one transaction — one multi-row `INSERT` for all
/// their events — and answers each once that transaction is committed. Under load, many
/// commands share one round of statements and one flush; alone, a commit is written at
/// once. If a group fails (a commit's optimistic check), each of its commits is written
/// again on its own, so each gets its own answer.
pub struct GroupWriter {
    queue: mpsc::UnboundedSender<Commit>,
}

impl GroupWriter {
    /// Starts the writers on `db`'s write pool: one on SQLite (its single writer), a few
    /// on PostgreSQL. They end when every handle is gone.
    pub fn start(db: &Db) -> Arc<Self> {
        let (queue, rx) = mpsc::unbounded_channel::<Commit>();
        let rx = Arc::new(Mutex::new(rx));
        let writers = if db.is_postgres() { POSTGRES_WRITERS } else { 1 };
        for _ in 0..writers {
            let (db, rx) = (db.clone(), rx.clone());
            tokio::spawn(async move {
                while let Some(group) = next_group(&rx).await {
                    write_and_answer(&db, group).await;
                }
            });
        }
        Arc::new(Self { queue })
    }

    /// Writes one commit with whatever else is waiting; returns once it is durable.
    pub(crate) async fn persist(
        &self,
        aggregate_type: &'static str,
        events: &[SerializedEvent],
        snapshot: Option<(String, Value, usize, i64)>,
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

/// The next commit and whatever queued up behind it (`None` once every handle is gone).
async fn next_group(rx: &Mutex<mpsc::UnboundedReceiver<Commit>>) -> Option<Vec<Commit>> {
    let mut rx = rx.lock().await;
    let mut group = vec![rx.recv().await?];
    while group.len() < COMMITS_PER_GROUP {
        match rx.try_recv() {
            Ok(c) => group.push(c),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Writes `group` and answers each commit: together, or one by one if together failed.
async fn write_and_answer(db: &Db, mut group: Vec<Commit>) {
    match write(db, &group).await {
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
                let alone = write(db, std::slice::from_ref(&c)).await;
                let _ = c.written.send(alone);
            }
        }
    }
}

/// Writes `commits` in one transaction: their events in multi-row `INSERT`s, then their
/// snapshots (a stale snapshot is a conflict, checked inside the transaction).
async fn write(db: &Db, commits: &[Commit]) -> Result<(), PersistenceError> {
    let rows: Vec<(&'static str, &SerializedEvent)> = commits
        .iter()
        .flat_map(|c| c.events.iter().map(move |e| (c.aggregate_type, e)))
        .collect();
    crate::on_db!(db, pool => {
        let mut tx = pool.begin().await.map_err(persistence)?;
        let written: Result<(), PersistenceError> = async {
        for chunk in rows.chunks(EVENTS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new(
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
            let updated = match &c.snapshot {
                None => continue,
                Some((aggregate_id, payload, 1, last_sequence)) => sqlx::query(
                    "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload) VALUES ($1, $2, $3, 1, $4)",
                )
                .bind(c.aggregate_type)
                .bind(aggregate_id)
                .bind(last_sequence)
                .bind(payload)
                .execute(&mut *tx)
                .await
                .map_err(persistence)?,
                Some((aggregate_id, payload, current_snapshot, last_sequence)) => {
                    let current_snapshot = *current_snapshot as i64;
                    sqlx::query(
                        "UPDATE snapshots SET last_sequence = $1, payload = $2, current_snapshot = $3 WHERE aggregate_type = $4 AND aggregate_id = $5 AND current_snapshot = $6",
                    )
                    .bind(last_sequence)
                    .bind(payload)
                    .bind(current_snapshot)
                    .bind(c.aggregate_type)
                    .bind(aggregate_id)
                    .bind(current_snapshot - 1)
                    .execute(&mut *tx)
                    .await
                    .map_err(persistence)?
                }
            };
            if updated.rows_affected() != 1 {
                return Err(PersistenceError::OptimisticLockError);
            }
        }
        Ok(())
        }
        .await;
        match written {
            Ok(()) => tx.commit().await.map_err(persistence),
            // Ended at once rather than when the connection is next used: an open
            // transaction holds PostgreSQL's sequencer back (it numbers only below the
            // oldest one running).
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    })
}

/// A cqrs-es repository (sqlite-es's or postgres-es's) for reads, with commits written
/// by the [`GroupWriter`] (see the module documentation).
pub struct GroupCommitRepository<R> {
    reads: R,
    writer: Arc<GroupWriter>,
    snapshot_every: Option<usize>,
}

impl<R> GroupCommitRepository<R> {
    /// The repository reading through `reads` and writing through `writer` (both on the
    /// same store), for a store that takes a snapshot every `snapshot_every` events.
    pub fn new(reads: R, writer: Arc<GroupWriter>, snapshot_every: Option<usize>) -> Self {
        Self {
            reads,
            writer,
            snapshot_every,
        }
    }

    /// The sequence a snapshot made by this commit is at. cqrs-es snapshots at the last
    /// multiple of its interval the commit reaches, which may come before the commit's
    /// last event; sqlite-es and postgres-es record the last event's sequence instead, so
    /// a later load skipped the events between [issue 13].
    fn snapshot_sequence(&self, events: &[SerializedEvent]) -> i64 {
        let last = events.last().map_or(0, |e| e.sequence);
        let at = match self.snapshot_every {
            Some(every) if every > 0 => last - last % every,
            _ => last,
        };
        at as i64
    }
}

/// A store error as cqrs-es expects it, classified as the crates classify it: a
/// primary-key violation (SQLite's extended code 1555, PostgreSQL's 23505) is the
/// optimistic check failing.
fn persistence(e: sqlx::Error) -> PersistenceError {
    match &e {
        sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "1555" || c == "23505") => PersistenceError::OptimisticLockError,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(e))
        }
        _ => PersistenceError::UnknownError(Box::new(e)),
    }
}

impl<R: PersistedEventRepository> PersistedEventRepository for GroupCommitRepository<R> {
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
        let at = self.snapshot_sequence(events);
        let snapshot = snapshot_update.map(|(id, state, version)| (id, state, version, at));
        self.writer.persist(A::TYPE, events, snapshot).await
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cached_store::tests::Tally;
    use serde_json::json;

    fn event(sequence: usize, n: u32) -> SerializedEvent {
        event_of("t", sequence, n)
    }

    /// A `tally` event (`Added`, payload `n`, time 1) for the store tests.
    pub(crate) fn event_of(id: &str, sequence: usize, n: u32) -> SerializedEvent {
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

    /// A fresh store of each kind: an embedded one in a temporary directory and a
    /// scratch PostgreSQL database (`TARE_TEST_POSTGRES`, the local server by default).
    struct Stores {
        dir: std::path::PathBuf,
        admin: String,
        pg_url: String,
        stores: Vec<Db>,
    }

    impl Stores {
        async fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("tare-group-{}", uuid::Uuid::now_v7()));
            let admin = std::env::var("TARE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let pg_url = crate::db::create_scratch_postgres(&admin, "tare_group").await.unwrap();
            let stores = vec![Db::open_sqlite(&dir).await.unwrap(), Db::open_postgres(&pg_url, 8).await.unwrap()];
            Self {
                dir,
                admin,
                pg_url,
                stores,
            }
        }

        async fn close(self) {
            for db in self.stores {
                db.close().await;
            }
            crate::db::drop_scratch_postgres(&self.admin, &self.pg_url).await.unwrap();
            let _ = std::fs::remove_dir_all(self.dir);
        }
    }

    /// The repository over `db`, reading through the crate of its kind.
    enum Repo {
        Sqlite(GroupCommitRepository<sqlite_es::SqliteEventRepository>),
        Postgres(GroupCommitRepository<postgres_es::PostgresEventRepository>),
    }

    macro_rules! on_repo {
        ($repo:expr, $r:ident => $body:expr) => {
            match $repo {
                Repo::Sqlite($r) => $body,
                Repo::Postgres($r) => $body,
            }
        };
    }

    fn repo(db: &Db) -> Repo {
        let writer = GroupWriter::start(db);
        match db {
            Db::Sqlite { write, .. } => Repo::Sqlite(GroupCommitRepository::new(
                sqlite_es::SqliteEventRepository::new(write.clone()),
                writer,
                None,
            )),
            Db::Postgres(pool) => Repo::Postgres(GroupCommitRepository::new(
                postgres_es::PostgresEventRepository::new(pool.clone()),
                writer,
                None,
            )),
        }
    }

    /// The feed once it holds `events` (or after 10 s): (position, aggregate id,
    /// sequence). PostgreSQL's sequencer numbers only below the server's oldest running
    /// transaction, which may be another test's.
    async fn feed(db: &Db, events: usize) -> Vec<(i64, String, i64)> {
        let f = crate::feed::Feed::new(db.clone());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            f.sequence_postgres(1000).await.unwrap();
            let sql = "SELECT position, aggregate_id, sequence FROM feed ORDER BY position";
            let fed: Vec<(i64, String, i64)> = crate::on_db!(db, pool => sqlx::query_as(sql).fetch_all(pool).await.unwrap());
            if fed.len() >= events || std::time::Instant::now() > deadline {
                return fed;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_written_together_each_get_their_own_answer() {
        let stores = Stores::new().await;
        for db in &stores.stores {
            let repo = Arc::new(repo(db));
            on_repo!(&*repo, r => r.persist::<Tally>(&[event_of("taken", 1, 1)], None).await.unwrap());
            // Fifty commits at once, one of them at a sequence already taken.
            let commits = (0..50).map(|i| {
                let repo = repo.clone();
                tokio::spawn(async move {
                    let (id, seq) = if i == 25 { ("taken".to_string(), 1) } else { (format!("a{i}"), 1) };
                    let events = [event_of(&id, seq, i), event_of(&id, seq + 1, i)];
                    on_repo!(&*repo, r => r.persist::<Tally>(&events, None).await)
                })
            });
            let answers: Vec<_> = futures::future::join_all(commits).await.into_iter().map(Result::unwrap).collect();
            for (i, a) in answers.iter().enumerate() {
                match i {
                    25 => assert!(matches!(a, Err(PersistenceError::OptimisticLockError)), "{a:?}"),
                    _ => assert!(a.is_ok(), "commit {i}: {a:?}"),
                }
            }
            let fed = feed(db, 1 + 49 * 2).await;
            assert_eq!(fed.len(), 1 + 49 * 2, "{fed:?}");
            // Each commit's events are numbered together and in order.
            for w in fed.windows(2).filter(|w| w[0].1 == w[1].1) {
                assert_eq!((w[1].0, w[1].2), (w[0].0 + 1, w[0].2 + 1), "{w:?}");
            }
        }
        stores.close().await;
    }

    #[tokio::test]
    async fn a_commit_is_one_insert_numbered_in_order_and_a_taken_sequence_is_a_conflict() {
        let stores = Stores::new().await;
        for db in &stores.stores {
            on_repo!(&repo(db), repo => {
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
                let fed = feed(db, 3).await;
                assert_eq!(fed.iter().map(|r| r.2).collect::<Vec<_>>(), [1, 2, 3]);
                assert!(fed.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{fed:?}");
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
            });
        }
        stores.close().await;
    }

    /// Adds each number of a command, one event each.
    #[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sum {
        total: u32,
    }

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Summed(u32);

    impl cqrs_es::DomainEvent for Summed {
        fn event_type(&self) -> String {
            "Summed".into()
        }
        fn event_version(&self) -> String {
            "1".into()
        }
    }

    impl Aggregate for Sum {
        const TYPE: &'static str = "sum";
        type Command = Vec<u32>;
        type Event = Summed;
        type Error = crate::cached_store::tests::Never;
        type Services = ();
        async fn handle(&mut self, ns: Vec<u32>, _: &(), sink: &cqrs_es::event_sink::EventSink<Self>) -> Result<(), Self::Error> {
            for n in ns {
                sink.write(Summed(n), self).await;
            }
            Ok(())
        }
        fn apply(&mut self, Summed(n): Summed) {
            self.total += n;
        }
    }

    #[tokio::test]
    async fn a_snapshot_taken_inside_a_commit_is_recorded_at_its_own_sequence() {
        use cqrs_es::persist::PersistedEventStore;
        use cqrs_es::EventStore;
        let stores = Stores::new().await;
        for db in &stores.stores {
            let writer = GroupWriter::start(db);
            // A snapshot every 4 events; the second command's events are 3..=6, so the
            // snapshot holds 1 + 2 + 10 + 20 (at 4) and events 5 and 6 come after it.
            let total = on_repo!(repo(db), r => {
                let repo = GroupCommitRepository::new(r.reads, writer.clone(), Some(4));
                let store = crate::cached_store::CachedEventStore::<_, Sum>::new(PersistedEventStore::new_snapshot_store(repo, 4), Some(4), 8);
                let cqrs = cqrs_es::CqrsFramework::new(store, vec![], ());
                cqrs.execute("s", vec![1, 2]).await.unwrap();
                cqrs.execute("s", vec![10, 20, 30, 40]).await.unwrap();
                // As a node starting afresh reads it: the snapshot, then what follows.
                let fresh = match db {
                    Db::Sqlite { write, .. } => PersistedEventStore::<_, Sum>::new_snapshot_store(sqlite_es::SqliteEventRepository::new(write.clone()), 4).load_aggregate("s").await,
                    Db::Postgres(pool) => PersistedEventStore::<_, Sum>::new_snapshot_store(postgres_es::PostgresEventRepository::new(pool.clone()), 4).load_aggregate("s").await,
                };
                fresh.unwrap().aggregate.total
            });
            assert_eq!(total, 103, "postgres: {}", db.is_postgres());
        }
        stores.close().await;
    }
}
