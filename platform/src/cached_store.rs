//! Aggregates kept in memory between commands [issue 13]: a command no longer reads its
//! aggregate's events from the store when this node committed the last of them.
//!
//! A wrapper around a cqrs-es `PersistedEventStore`: `load_aggregate` answers from an LRU
//! cache of (state, last sequence, snapshot version) when it has the aggregate, and
//! `commit` writes through the store and keeps the state the command left. Correct under
//! several writers because the store's commit is optimistic: events are inserted at the
//! sequences after the cached one, and a sequence another node (or a write that bypassed
//! this cache) already took makes the insert fail with a conflict — the entry is then
//! dropped and the command re-decided on state loaded from the store. Any failed commit
//! drops the entry too, so the cache never holds a state the store does not. Only
//! commands fill the cache, and `store` runs them one at a time per aggregate: a state
//! read before a commit can never be put back over it.

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use hashlink::LruCache;
use std::collections::HashMap;
use std::sync::Mutex;

/// Aggregates kept per type.
pub const CACHED_AGGREGATES: usize = 20_000;

/// What the cache keeps of one aggregate.
struct Cached<A> {
    aggregate: A,
    sequence: usize,
    snapshot: Option<usize>,
}

/// A `PersistedEventStore` whose loads come from memory after this node's commits; a
/// cheap handle (clones share one cache).
pub struct CachedEventStore<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate + Send + Sync,
{
    shared: std::sync::Arc<Shared<R, A>>,
}

impl<R, A> Clone for CachedEventStore<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate + Send + Sync,
{
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// The store and the cache behind every handle.
struct Shared<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate + Send + Sync,
{
    inner: PersistedEventStore<R, A>,
    /// Events between snapshots, when the store takes them (to follow its versions).
    snapshot_every: Option<usize>,
    /// Aggregates kept at most (0: none).
    capacity: usize,
    cache: Mutex<LruCache<String, Cached<A>>>,
}

impl<R, A> CachedEventStore<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate + Send + Sync,
{
    /// Caches up to `capacity` aggregates of `inner`, which takes a snapshot every
    /// `snapshot_every` events (`None`: never). A capacity of 0 caches nothing: where
    /// other processes write the same aggregates, a command decided on a stale state that
    /// decides *nothing* commits nothing, so no conflict would ever reveal the staleness.
    pub fn new(inner: PersistedEventStore<R, A>, snapshot_every: Option<usize>, capacity: usize) -> Self {
        Self {
            shared: std::sync::Arc::new(Shared {
                inner,
                snapshot_every,
                capacity,
                cache: Mutex::new(LruCache::new(capacity.max(1))),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Cached<A>>> {
        self.shared.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn inner(&self) -> &PersistedEventStore<R, A> {
        &self.shared.inner
    }

    /// Keeps `state` of aggregate `id` unless the cache holds a later one: a load that
    /// read the store before a concurrent command committed must not put back the state
    /// that command replaced (a later command deciding nothing on it would never learn).
    fn keep(&self, id: String, state: Cached<A>) {
        if self.shared.capacity == 0 {
            return;
        }
        let mut cache = self.lock();
        if cache.get(&id).is_none_or(|c| c.sequence < state.sequence) {
            cache.insert(id, state);
        }
    }
}

impl<R, A> CachedEventStore<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate + Send + Sync + Clone,
{
    /// The current state of `id` for a reader: the cached one, or the store's — not
    /// cached, since only commands (one at a time per aggregate, see `store`) may fill the
    /// cache: a reader's state read before a command committed could otherwise be put
    /// back over the command's.
    pub async fn peek(&self, id: &str) -> Result<A, AggregateError<A::Error>> {
        if self.shared.capacity > 0 {
            if let Some(c) = self.lock().get(id) {
                return Ok(c.aggregate.clone());
            }
        }
        Ok(self.inner().load_aggregate(id).await?.aggregate)
    }

    /// The aggregate as it was at `sequence` (the cache keeps it from the load; read again
    /// if it was evicted since). A store that has moved past it is a conflict.
    async fn state_before(&self, id: &str, sequence: usize) -> Result<A, AggregateError<A::Error>> {
        if let Some(c) = self.lock().get(id).filter(|c| c.sequence == sequence) {
            return Ok(c.aggregate.clone());
        }
        let loaded = self.inner().load_aggregate(id).await?;
        if loaded.current_sequence != sequence {
            self.lock().remove(id);
            return Err(AggregateError::AggregateConflict);
        }
        Ok(loaded.aggregate)
    }
}

/// The snapshot version after committing `n` events at `sequence`, as the store computes
/// it: a snapshot is written when the events reach the next multiple of `every`.
fn snapshot_after(every: Option<usize>, sequence: usize, n: usize, snapshot: Option<usize>) -> Option<usize> {
    match every {
        Some(every) if n > 0 && n >= every - sequence % every => Some(snapshot.map_or(1, |v| v + 1)),
        _ => snapshot,
    }
}

impl<R, A> EventStore<A> for CachedEventStore<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate + Send + Sync + Clone,
{
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.inner().load_events(aggregate_id).await
    }

    async fn load_aggregate(&self, aggregate_id: &str) -> Result<Self::AC, AggregateError<A::Error>> {
        if self.shared.capacity == 0 {
            return self.inner().load_aggregate(aggregate_id).await;
        }
        if let Some(c) = self.lock().get(aggregate_id) {
            return Ok(EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_string(),
                aggregate: c.aggregate.clone(),
                current_sequence: c.sequence,
                current_snapshot: c.snapshot,
            });
        }
        let loaded = self.inner().load_aggregate(aggregate_id).await?;
        self.keep(
            aggregate_id.to_string(),
            Cached {
                aggregate: loaded.aggregate.clone(),
                sequence: loaded.current_sequence,
                snapshot: loaded.current_snapshot,
            },
        );
        Ok(loaded)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let id = context.aggregate_id.clone();
        // The handler applied its events to the context's aggregate as it wrote them.
        let after = Cached {
            aggregate: context.aggregate.clone(),
            sequence: context.current_sequence + events.len(),
            snapshot: snapshot_after(
                self.shared.snapshot_every,
                context.current_sequence,
                events.len(),
                context.current_snapshot,
            ),
        };
        let mut context = context;
        if after.snapshot != context.current_snapshot {
            // cqrs-es 0.5 applies the events to the context's aggregate again to make the
            // snapshot, though the handler already did: hand it the state before them.
            context.aggregate = self.state_before(&id, context.current_sequence).await?;
        }
        match self.inner().commit(events, context, metadata).await {
            Ok(envelopes) => {
                self.keep(id, after);
                Ok(envelopes)
            }
            Err(e) => {
                self.lock().remove(&id);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cqrs_es::event_sink::EventSink;
    use cqrs_es::{CqrsFramework, DomainEvent};
    use serde::{Deserialize, Serialize};
    use sqlite_es::SqliteEventRepository;

    /// Only the snapshot arithmetic is ours (the cases of cqrs-es's own test of its
    /// rule).
    #[test]
    fn the_snapshot_version_follows_the_store_s_rule() {
        assert_eq!(snapshot_after(None, 5, 3, None), None);
        assert_eq!(snapshot_after(Some(5), 5, 3, Some(1)), Some(1), "events 6..8 stop short of 10");
        assert_eq!(snapshot_after(Some(4), 5, 3, Some(1)), Some(2), "events 6..8 reach 8");
        assert_eq!(snapshot_after(Some(4), 5, 8, None), Some(1));
        assert_eq!(snapshot_after(Some(100), 99, 1, Some(3)), Some(4));
        assert_eq!(snapshot_after(Some(100), 99, 0, Some(3)), Some(3), "nothing committed");
    }

    /// An aggregate whose events do not commute with themselves: applying one twice shows.
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Tally {
        total: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Added(u32);

    impl DomainEvent for Added {
        fn event_type(&self) -> String {
            "Added".into()
        }
        fn event_version(&self) -> String {
            "1".into()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub(crate) struct Never;

    impl Aggregate for Tally {
        const TYPE: &'static str = "tally";
        type Command = u32;
        type Event = Added;
        type Error = Never;
        type Services = ();
        async fn handle(&mut self, n: u32, _: &(), sink: &EventSink<Self>) -> Result<(), Never> {
            sink.write(Added(n), self).await;
            Ok(())
        }
        fn apply(&mut self, Added(n): Added) {
            self.total += n;
        }
    }

    /// Adds 1, 10 and 100 (a snapshot every two events), then reads the tally as a node
    /// starting afresh would: the snapshot at event 2, then event 3.
    async fn total_after_three(cached: bool) -> u32 {
        let dir = std::env::temp_dir().join(format!("tare-cache-{}", uuid::Uuid::now_v7()));
        let db = crate::db::Db::open_sqlite(&dir).await.unwrap();
        let crate::db::Db::Sqlite { write, .. } = &db else { unreachable!() };
        let store = || PersistedEventStore::<_, Tally>::new_snapshot_store(SqliteEventRepository::new(write.clone()), 2);
        if cached {
            let cqrs = CqrsFramework::new(CachedEventStore::new(store(), Some(2), 8), vec![], ());
            for n in [1, 10, 100] {
                cqrs.execute("t", n).await.unwrap();
            }
        } else {
            let cqrs = CqrsFramework::new(store(), vec![], ());
            for n in [1, 10, 100] {
                cqrs.execute("t", n).await.unwrap();
            }
        }
        let fresh = store().load_aggregate("t").await.unwrap().aggregate.total;
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
        fresh
    }

    #[tokio::test]
    async fn a_snapshot_holds_each_event_once() {
        // cqrs-es alone applies the snapshot's last command twice (1 + 10 + 10, then 100).
        assert_eq!(total_after_three(false).await, 121);
        assert_eq!(total_after_three(true).await, 111, "through the cache: each event once");
    }
}
