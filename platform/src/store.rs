//! The event-sourced aggregates over either store: cqrs-es `CqrsFramework`s (for
//! commands) and `PersistedEventStore`s (for loading state), with the metadata every
//! event carries (time, correlation and causation ids, the command id).
//!
//! cqrs-es queries are deliberately not used: read models come from the global feed with
//! their own checkpoints (a crash between commit and an in-process query would lose the
//! update).

use crate::cached_store::{CachedEventStore, CACHED_AGGREGATES};
use crate::db::Db;
use crate::group_commit::{GroupCommitRepository, GroupWriter};
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework};
use postgres_es::PostgresEventRepository;
use std::collections::HashMap;
use std::sync::Arc;
use tare_domain::cabinet::Cabinet;
use tare_domain::order::Order;
use tare_domain::payment::Payment;
use tare_domain::product::Product;
use tare_domain::shopper::Shopper;
use tare_domain::UnixMs;
use tare_sagas::ports::{AggregatePort, CommandMeta};
use tokio::sync::watch;

pub use tare_sagas::ports::CommandError;

/// Metadata stamped on the events of one command [E1].
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Time of the command (Unix ms).
    pub at: UnixMs,
    /// The order/session/request the events belong to.
    pub correlation_id: String,
    /// The event or request that caused the command.
    pub causation_id: String,
    /// Unique id of the command.
    pub command_id: String,
    /// The operator on whose request the command runs ([`crate::actor`]), if any.
    pub actor: Option<String>,
}

impl Meta {
    /// Metadata for a command caused by `causation_id` within `correlation_id`.
    pub fn new(at: UnixMs, correlation_id: impl Into<String>, causation_id: impl Into<String>) -> Self {
        Self {
            at,
            correlation_id: correlation_id.into(),
            causation_id: causation_id.into(),
            command_id: uuid::Uuid::now_v7().to_string(),
            actor: crate::actor::current(),
        }
    }

    /// The metadata of a command a saga's effect issues (with a fresh command id).
    pub fn from_saga(meta: CommandMeta) -> Self {
        Self::new(meta.at, meta.correlation_id, meta.causation_id)
    }

    fn into_map(self) -> HashMap<String, String> {
        let mut map = HashMap::from([
            ("time".to_string(), self.at.to_string()),
            ("correlation_id".to_string(), self.correlation_id),
            ("causation_id".to_string(), self.causation_id),
            ("command_id".to_string(), self.command_id),
        ]);
        if let Some(actor) = self.actor {
            map.insert("actor".to_string(), actor);
        }
        map
    }
}

type CachedSqlite<A> = CachedEventStore<GroupCommitRepository<sqlite_es::SqliteEventRepository>, A>;
type CachedPg<A> = CachedEventStore<GroupCommitRepository<PostgresEventRepository>, A>;

/// One aggregate type's command side and loader, on whichever store is in use.
pub struct AggregateStore<A: Aggregate<Services = ()> + Clone> {
    backend: Backend<A>,
    commits: Arc<watch::Sender<u64>>,
    /// Locks by a hash of the aggregate id: commands on one aggregate run one at a time
    /// (none when nothing is cached).
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Whoever waits for one aggregate's next commit in this process (see
    /// [`AggregateStore::wait_until`]).
    waiters: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
}

/// How often a waiter looks again without a wake-up (a commit on another node of a
/// cluster wakes nobody here).
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Lock stripes per aggregate type (unrelated aggregates rarely share one).
const STRIPES: usize = 1024;

/// The stripe of aggregate `id`.
fn stripe(id: &str) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id);
    (h % STRIPES as u64) as usize
}

// One per aggregate type, made once at start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Backend<A: Aggregate<Services = ()> + Clone> {
    Sqlite {
        cqrs: CqrsFramework<A, CachedSqlite<A>>,
        /// The embedded store has one writer, this process: loads share the commands'
        /// cache.
        loader: CachedSqlite<A>,
    },
    Postgres {
        cqrs: CqrsFramework<A, CachedPg<A>>,
        /// Loads share the commands' cache when this process is the store's only
        /// writer; otherwise they read the store (the cache then holds nothing).
        loader: CachedPg<A>,
    },
}

/// How many events between snapshots for long-lived aggregates (cabinets, shoppers).
const SNAPSHOT_EVERY: usize = 100;

/// cqrs-es's store over `repo`, taking a snapshot every [`SNAPSHOT_EVERY`] events when
/// `snapshots`.
fn persisted<R: PersistedEventRepository, A: Aggregate>(repo: R, snapshots: bool) -> PersistedEventStore<R, A> {
    match snapshots {
        true => PersistedEventStore::new_snapshot_store(repo, SNAPSHOT_EVERY),
        false => PersistedEventStore::new_event_store(repo),
    }
}

impl<A: Aggregate<Services = ()> + Clone> AggregateStore<A> {
    fn new(db: &Db, snapshots: bool, cached: usize, commits: Arc<watch::Sender<u64>>, group: &Arc<GroupWriter>) -> Self {
        let every = snapshots.then_some(SNAPSHOT_EVERY);
        let backend = match db {
            Db::Sqlite { write, .. } => {
                let repo = GroupCommitRepository::new(sqlite_es::SqliteEventRepository::new(write.clone()), group.clone(), every);
                let cached = CachedEventStore::new(persisted(repo, snapshots), every, cached);
                Backend::Sqlite {
                    cqrs: CqrsFramework::new(cached.clone(), vec![], ()),
                    loader: cached,
                }
            }
            Db::Postgres(pool) => {
                // Snapshots as on SQLite: the group writer checks a stale one inside the
                // commit's transaction (postgres-es itself found out only after its commit).
                let repo = GroupCommitRepository::new(PostgresEventRepository::new(pool.clone()), group.clone(), every);
                let cached = CachedEventStore::new(persisted(repo, snapshots), every, cached);
                Backend::Postgres {
                    cqrs: CqrsFramework::new(cached.clone(), vec![], ()),
                    loader: cached,
                }
            }
        };
        Self {
            backend,
            commits,
            stripes: (0..if cached > 0 { STRIPES } else { 0 })
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            waiters: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Aggregate `id` once `ready` holds for it, or as it is when `wait` has passed:
    /// woken by its own commits in this process (looked at again every 50 ms besides),
    /// not by polling — hundreds of API calls waiting at once must not become the load.
    pub async fn wait_until(&self, id: &str, wait: std::time::Duration, ready: impl Fn(&A) -> bool) -> Result<A, CommandError<A::Error>> {
        let deadline = tokio::time::Instant::now() + wait;
        let notify = {
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.entry(id.to_string()).or_default().clone()
        };
        let result = loop {
            let a = match self.load(id).await {
                Ok(a) => a,
                Err(e) => break Err(e),
            };
            let now = tokio::time::Instant::now();
            if ready(&a) || now >= deadline {
                break Ok(a);
            }
            let _ = tokio::time::timeout((deadline - now).min(WAIT_POLL), notify.notified()).await;
        };
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        // The last of this id's waiters takes the entry away (the map holds one reference).
        if w.get(id).is_some_and(|n| Arc::strong_count(n) <= 2) {
            w.remove(id);
        }
        result
    }

    /// Executes `command` on aggregate `id`, retrying a few times on concurrency
    /// conflicts (the command is re-decided on fresh state each time).
    pub async fn execute(&self, id: &str, command: A::Command, meta: Meta) -> Result<(), CommandError<A::Error>>
    where
        A::Command: Clone,
    {
        let metadata = meta.into_map();
        // One command at a time per aggregate in this process when it caches: the cache
        // is filled only here, so what it holds is always what the last command committed.
        // (Without a cache the store's optimistic check is enough.)
        let _one_at_a_time = match self.stripes.is_empty() {
            true => None,
            false => Some(self.stripes[stripe(id)].lock().await),
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let r = match &self.backend {
                Backend::Sqlite { cqrs, .. } => cqrs.execute_with_metadata(id, command.clone(), metadata.clone()).await,
                Backend::Postgres { cqrs, .. } => cqrs.execute_with_metadata(id, command.clone(), metadata.clone()).await,
            };
            match r {
                Ok(()) => {
                    // Wake the feed's tailers (they also poll, so a missed wake-up only delays).
                    self.commits.send_modify(|n| *n = n.wrapping_add(1));
                    // A permit is kept for a waiter between its looks (none is lost).
                    if let Some(n) = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
                        n.notify_one();
                    }
                    return Ok(());
                }
                Err(AggregateError::UserError(e)) => return Err(CommandError::Rejected(e)),
                Err(AggregateError::AggregateConflict) if tries < 8 => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(AggregateError::AggregateConflict) => return Err(CommandError::Conflict),
                Err(e) => return Err(store_failure(e)),
            }
        }
    }

    /// Loads the current state of aggregate `id` (the default state if it has no events).
    pub async fn load(&self, id: &str) -> Result<A, CommandError<A::Error>>
    where
        A: Clone,
    {
        let map = store_failure::<A::Error>;
        // A command in flight on `id` may have committed (its events already in the feed,
        // an effect of them already running) without having put its state in the cache
        // yet: wait for it, or the cache would answer with the state before it.
        let _settled = match self.stripes.is_empty() {
            true => None,
            false => Some(self.stripes[stripe(id)].lock().await),
        };
        Ok(match &self.backend {
            Backend::Sqlite { loader, .. } => loader.peek(id).await.map_err(map)?,
            Backend::Postgres { loader, .. } => loader.peek(id).await.map_err(map)?,
        })
    }
}

/// A store failure as a command error: unreachable (the API's 503, a retry) or broken.
fn store_failure<E: std::error::Error>(e: AggregateError<E>) -> CommandError<E> {
    let unreachable = match &e {
        AggregateError::DatabaseConnectionError(inner) | AggregateError::UnexpectedError(inner) => {
            crate::db::store_unreachable(inner.as_ref())
        }
        _ => false,
    };
    if unreachable {
        CommandError::Unavailable(e.to_string())
    } else {
        CommandError::Store(e.to_string())
    }
}

/// The sagas' port onto this store: effects load and command aggregates through it.
#[async_trait::async_trait]
impl<A> AggregatePort<A> for AggregateStore<A>
where
    A: Aggregate<Services = ()> + Clone,
    A::Command: Clone + Send + Sync,
    A::Error: Send + Sync,
{
    async fn load(&self, id: &str) -> Result<A, CommandError<A::Error>> {
        AggregateStore::load(self, id).await
    }

    async fn execute(&self, id: &str, command: A::Command, meta: CommandMeta) -> Result<(), CommandError<A::Error>> {
        AggregateStore::execute(self, id, command, Meta::from_saga(meta)).await
    }
}

/// All aggregates of the platform.
pub struct Aggregates {
    /// Products.
    pub products: Arc<AggregateStore<Product>>,
    /// Cabinets.
    pub cabinets: Arc<AggregateStore<Cabinet>>,
    /// Shoppers with accounts.
    pub shoppers: Arc<AggregateStore<Shopper>>,
    /// Orders.
    pub orders: Arc<AggregateStore<Order>>,
    /// Payments.
    pub payments: Arc<AggregateStore<Payment>>,
    /// Device commands [D7].
    pub commands: Arc<AggregateStore<tare_domain::command::DeviceCommand>>,
    /// Bill reconciliations, one per provider day [R3].
    pub reconciliations: Arc<AggregateStore<tare_domain::reconciliation::Reconciliation>>,
    /// The anomaly queue, one aggregate per anomaly [M3, R4].
    pub anomalies: Arc<AggregateStore<tare_domain::anomaly::AnomalyCase>>,
    /// Restock sessions [O10].
    pub restocks: Arc<AggregateStore<tare_domain::restock::Restock>>,
    /// The emergency switch [B8].
    pub emergency: Arc<AggregateStore<tare_domain::emergency::EmergencyStop>>,
    /// Ad and upgrade campaigns [M5].
    pub campaigns: Arc<AggregateStore<tare_domain::campaign::Campaign>>,
    /// Operator accounts: who may do what [API.md "Auth"].
    pub operators: Arc<AggregateStore<tare_domain::operator::OperatorAccount>>,
    commits: Arc<watch::Sender<u64>>,
}

impl Aggregates {
    /// The aggregates over `db`; `sole_writer`: no other process writes to it (the
    /// embedded store, or one PostgreSQL node without NATS), so commands may decide on the
    /// state this process last committed, kept in memory.
    pub fn new(db: &Db, sole_writer: bool) -> Self {
        let commits = Arc::new(watch::channel(0).0);
        let cached = if sole_writer { CACHED_AGGREGATES } else { 0 };
        // One writer for every aggregate type's commits: they share its groups.
        let g = GroupWriter::start(db);
        Self {
            products: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            cabinets: Arc::new(AggregateStore::new(db, true, cached, commits.clone(), &g)),
            shoppers: Arc::new(AggregateStore::new(db, true, cached, commits.clone(), &g)),
            orders: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            payments: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            commands: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            reconciliations: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            anomalies: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            restocks: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            emergency: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            campaigns: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            operators: Arc::new(AggregateStore::new(db, false, cached, commits.clone(), &g)),
            commits,
        }
    }

    /// Wakes the loops as a commit would (after a change outside the aggregates, such as
    /// an operator reviving a buried effect).
    pub fn nudge(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after every successful command.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }
}
