//! The projections runner and view reads. Each batch of feed events is folded into the
//! documents it touches and committed together with the projections' checkpoint, so a
//! crash never leaves a view with an update it will apply twice or one it lost [E2].

use crate::db::{Db, DbError};
use crate::feed::Feed;
use crate::runner::decode;
use serde_json::Value;
use std::collections::HashMap;
use tare_projections::Projection;

/// The checkpoint name of the projections.
pub const PROJECTIONS: &str = "projections";

/// Reads and writes view documents.
#[derive(Clone)]
pub struct Views {
    db: Db,
}

impl Views {
    /// Views in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One document.
    pub async fn get(&self, view: &str, id: &str) -> Result<Option<Value>, DbError> {
        let sql = "SELECT doc FROM views WHERE view = $1 AND id = $2";
        let row: Option<(String,)> =
            crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(view).bind(id).fetch_optional(pool).await?);
        Ok(row.map(|(d,)| serde_json::from_str(&d)).transpose()?)
    }

    /// Documents of `view` owned by `owner`, by id.
    pub async fn by_owner(&self, view: &str, owner: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        let sql = "SELECT doc FROM views WHERE view = $1 AND owner = $2 ORDER BY id LIMIT $3";
        let rows: Vec<(String,)> =
            crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(view).bind(owner).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Documents of `view` whose owner starts with `prefix`, by owner then id (a range
    /// on the owner index, not a scan).
    pub async fn by_owner_prefix(&self, view: &str, prefix: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        // Every owner with the prefix sorts at or after it and before the prefix with its
        // last byte raised by one (prefixes here end in ASCII).
        let mut end = prefix.to_string();
        let last = end.pop().map_or('\u{1}', |c| char::from_u32(c as u32 + 1).unwrap_or(char::MAX));
        end.push(last);
        self.by_owner_range(view, prefix, &end, limit).await
    }

    /// Documents of `view` whose owner is in `[from, to)` (byte order), by owner then id.
    pub async fn by_owner_range(&self, view: &str, from: &str, to: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        // Byte order on both stores (PostgreSQL's locale collations skip punctuation).
        let sql = if self.db.is_postgres() {
            r#"SELECT doc FROM views WHERE view = $1 AND owner COLLATE "C" >= $2 AND owner COLLATE "C" < $3 ORDER BY owner COLLATE "C", id LIMIT $4"#
        } else {
            "SELECT doc FROM views WHERE view = $1 AND owner >= $2 AND owner < $3 ORDER BY owner, id LIMIT $4"
        };
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql)
            .bind(view).bind(from).bind(to).bind(limit).fetch_all(pool).await?);
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Up to `limit` documents of `view` (owned by `owner`, when given) whose id sorts
    /// after `after`, by id: a page of a listing, through the primary key or the owner
    /// index.
    pub async fn page(&self, view: &str, owner: Option<&str>, after: &str, limit: i64) -> Result<Vec<Value>, DbError> {
        let collate = if self.db.is_postgres() { r#" COLLATE "C""# } else { "" };
        let by_owner = if owner.is_some() { "AND owner = $4 " } else { "" };
        let sql = format!("SELECT doc FROM views WHERE view = $1 AND id{collate} > $2 {by_owner}ORDER BY id{collate} LIMIT $3");
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => {
            let q = sqlx::query_as(&sql).bind(view).bind(after).bind(limit);
            let q = match owner { Some(o) => q.bind(o), None => q };
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Up to `limit` documents of `view` whose owner is in one of `owners` (each a
    /// `[from, to)` byte range; every owner when empty) and whose id sorts after `after`,
    /// by id: a page of a listing over several owners or an owner prefix.
    pub async fn page_in_owner_ranges(
        &self,
        view: &str,
        owners: &[(String, String)],
        after: &str,
        limit: i64,
    ) -> Result<Vec<Value>, DbError> {
        let collate = if self.db.is_postgres() { r#" COLLATE "C""# } else { "" };
        let ranges: Vec<String> = (0..owners.len())
            .map(|i| format!("(owner{collate} >= ${} AND owner{collate} < ${})", 4 + 2 * i, 5 + 2 * i))
            .collect();
        let by_owner = if ranges.is_empty() {
            String::new()
        } else {
            format!("AND ({}) ", ranges.join(" OR "))
        };
        let sql = format!("SELECT doc FROM views WHERE view = $1 AND id{collate} > $2 {by_owner}ORDER BY id{collate} LIMIT $3");
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => {
            let mut q = sqlx::query_as(&sql).bind(view).bind(after).bind(limit);
            for (from, to) in owners {
                q = q.bind(from).bind(to);
            }
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Every document of `view`, by id.
    pub async fn all(&self, view: &str) -> Result<Vec<Value>, DbError> {
        let sql = "SELECT doc FROM views WHERE view = $1 ORDER BY id";
        let rows: Vec<(String,)> = crate::on_read_db!(&self.db, pool => sqlx::query_as(sql).bind(view).fetch_all(pool).await?);
        rows.into_iter().map(|(d,)| Ok(serde_json::from_str(&d)?)).collect()
    }

    /// Drops every view document and the checkpoint, for a rebuild by replay.
    pub async fn reset(&self) -> Result<(), DbError> {
        crate::on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM views").execute(&mut *tx).await?;
            sqlx::query("DELETE FROM checkpoints WHERE name = $1 OR name LIKE $2")
                .bind(PROJECTIONS).bind(format!("{PROJECTIONS}/%")).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }
}

/// The planogram index the pricing saga reads [C2]: the lanes of each product, from the
/// `product_lanes` view.
pub struct ViewPlanograms(pub Views);

#[async_trait::async_trait]
impl tare_sagas::ports::PlanogramIndex for ViewPlanograms {
    async fn lanes_holding(
        &self,
        sku: &tare_domain::Sku,
    ) -> Result<Vec<(tare_domain::CabinetId, tare_domain::DoorNo, tare_domain::LaneNo)>, String> {
        let Some(doc) = self
            .0
            .get(tare_projections::ProductLanes::VIEW, sku.as_str())
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(vec![]);
        };
        let doc: tare_projections::ProductLanesDoc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        Ok(doc
            .lanes
            .into_iter()
            .filter_map(|(c, d, l)| {
                let cabinet = tare_domain::CabinetId::parse(&c).ok()?;
                let door = tare_domain::DoorNo::parse("door", i64::from(d)).ok()?;
                let lane = tare_domain::LaneNo::parse("lane", i64::from(l)).ok()?;
                Some((cabinet, door, lane))
            })
            .collect())
    }
}

/// A document's key within a batch: (view, id).
type DocKey = (&'static str, String);

/// One pass of the projections: folds up to `batch` events after the checkpoint.
pub async fn project_step(
    db: &Db,
    feed: &Feed,
    projections: &[Box<dyn Projection>],
    batch: i64,
    cursor: &crate::runner::Cursor,
) -> Result<usize, DbError> {
    let from = match cursor.get() {
        Some(p) => p,
        None => {
            let sql = "SELECT position FROM checkpoints WHERE name = $1";
            let row: Option<(i64,)> = crate::on_db!(db, pool => sqlx::query_as(sql).bind(PROJECTIONS).fetch_optional(pool).await?);
            row.map_or(0, |r| r.0)
        }
    };
    cursor.forget();
    let events = feed.read_after(from, batch).await?;
    let applied = project_events(db, PROJECTIONS, &events, projections).await?;
    // All of them applied: the checkpoint is the last (otherwise read it again: some
    // were applied before, by a replay's install or another node).
    match events.last() {
        None => cursor.set(from),
        Some(last) if applied == events.len() => cursor.set(last.position),
        Some(_) => {}
    }
    Ok(events.len())
}

/// Documents one statement reads or writes at most (5 parameters a row on writes).
const DOCS_PER_STATEMENT: usize = 200;

/// A document as a batch holds it: its owner, contents, and the position of the write
/// that last changed it (`None`: as loaded, unchanged).
type CachedDoc = (Option<String>, Option<Value>, Option<i64>);

/// Folds `events` (in feed order) into the views and moves checkpoint `name` past them,
/// in one transaction. Events at or before the checkpoint were applied already (a
/// redelivery, or another node got there first) and are skipped; on PostgreSQL the
/// checkpoint row is locked for the transaction, so two nodes handed the same event
/// apply it once. Returns how many events were applied.
///
/// Batched: every document the batch touches is read first (a few statements per view,
/// locked on PostgreSQL in (view, id) order), the events are folded in memory, and each
/// changed document is written once at the end with multi-row upserts — an order's
/// summary changed by ten events of a batch is one write.
pub async fn project_events(
    db: &Db,
    name: &str,
    events: &[crate::feed::FeedEvent],
    projections: &[Box<dyn Projection>],
) -> Result<usize, DbError> {
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(0);
    };
    crate::on_db!(db, pool => {
        let mut tx = pool.begin().await?;
        // The checkpoint, and the floors of views rebuilt by replay (which already hold
        // the events up to their floor). SQLite's writer is this transaction alone: one
        // read for both. PostgreSQL locks the checkpoint row (two nodes handed the same
        // event apply it once) but not the floors, which every partition reads.
        let (from, floor_rows) = if db.is_postgres() {
            sqlx::query("INSERT INTO checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
                .bind(name).execute(&mut *tx).await?;
            let (from,): (i64,) = sqlx::query_as("SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE")
                .bind(name).fetch_one(&mut *tx).await?;
            let floor_rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, position FROM checkpoints WHERE name LIKE $1")
                .bind(crate::replay::floors_pattern()).fetch_all(&mut *tx).await?;
            (from, floor_rows)
        } else {
            let mut rows: Vec<(String, i64)> = sqlx::query_as("SELECT name, position FROM checkpoints WHERE name = $1 OR name LIKE $2")
                .bind(name).bind(crate::replay::floors_pattern()).fetch_all(&mut *tx).await?;
            let from = match rows.iter().position(|(n, _)| n == name) {
                Some(i) => rows.swap_remove(i).1,
                None => {
                    sqlx::query("INSERT INTO checkpoints (name, position) VALUES ($1, 0)").bind(name).execute(&mut *tx).await?;
                    0
                }
            };
            (from, rows)
        };
        let events: Vec<_> = events.iter().filter(|e| e.position > from).collect();
        if events.is_empty() {
            return Ok(0);
        }
        let floors = crate::replay::floors(floor_rows);
        let plan = plan_batch(&events, projections, &floors);
        // Every touched document, read up front: a few statements per view.
        let mut wanted: std::collections::BTreeMap<&'static str, std::collections::BTreeSet<String>> = Default::default();
        for (_, _, steps) in &plan {
            for (p, ids) in steps {
                wanted.entry(projections[*p].name()).or_default().extend(ids.iter().cloned());
            }
        }
        let mut cache: HashMap<DocKey, CachedDoc> = HashMap::new();
        for (view, ids) in wanted {
            let ids: Vec<String> = ids.into_iter().collect();
            for chunk in ids.chunks(DOCS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("SELECT id, owner, doc FROM views WHERE view = ");
                q.push_bind(view).push(" AND id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(id.as_str());
                }
                q.push(")");
                if db.is_postgres() {
                    q.push(r#" ORDER BY id COLLATE "C" FOR UPDATE"#);
                }
                let rows: Vec<(String, Option<String>, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                for (id, owner, doc) in rows {
                    cache.insert((view, id), (owner, Some(serde_json::from_str(&doc)?), None));
                }
            }
        }
        for (ev, event, steps) in &plan {
            let time = ev.time();
            for (p, ids) in steps {
                let p = &projections[*p];
                let docs: Vec<(String, Option<Value>)> = ids
                    .iter()
                    .map(|id| (id.clone(), cache.get(&(p.name(), id.clone())).and_then(|(_, d, _)| d.clone())))
                    .collect();
                for w in p.apply(&docs, &ev.aggregate_id, event, ev.position, time) {
                    cache.insert((p.name(), w.id), (w.owner, Some(w.doc), Some(ev.position)));
                }
            }
        }
        let mut dirty: Vec<(DocKey, CachedDoc)> = cache.into_iter().filter(|(_, (_, _, at))| at.is_some()).collect();
        dirty.sort_by(|a, b| a.0.cmp(&b.0));
        for chunk in dirty.chunks(DOCS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO views (view, id, owner, doc, position) ");
            let mut rows = Vec::with_capacity(chunk.len());
            for ((view, id), (owner, doc, at)) in chunk {
                rows.push((*view, id.as_str(), owner.as_deref(), serde_json::to_string(doc)?, at.unwrap_or(last)));
            }
            q.push_values(rows, |mut b, (view, id, owner, doc, at)| {
                b.push_bind(view).push_bind(id).push_bind(owner).push_bind(doc).push_bind(at);
            });
            q.push(" ON CONFLICT (view, id) DO UPDATE SET owner = excluded.owner, doc = excluded.doc, position = excluded.position");
            q.build().execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE checkpoints SET position = $1 WHERE name = $2")
            .bind(last).bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(events.len())
    })
}

/// An event of a batch, decoded, with the projections it concerns and the documents each
/// touches.
type BatchStep<'e> = (&'e crate::feed::FeedEvent, tare_domain::AnyEvent, Vec<(usize, Vec<String>)>);

/// For each event of a batch, the projections it concerns (not past their replay floor)
/// and the documents each touches: known before any document is read, since `touches`
/// reads only the event.
fn plan_batch<'e>(
    events: &[&'e crate::feed::FeedEvent],
    projections: &[Box<dyn Projection>],
    floors: &std::collections::BTreeMap<String, i64>,
) -> Vec<BatchStep<'e>> {
    events
        .iter()
        .filter_map(|ev| {
            let event = decode(ev)?;
            let steps = projections
                .iter()
                .enumerate()
                .filter(|(_, p)| floors.get(p.name()).is_none_or(|f| ev.position > *f))
                // (A projection may write without reading: the ledger appends.)
                .map(|(i, p)| (i, p.touches(&ev.aggregate_id, &event)))
                .collect();
            Some((*ev, event, steps))
        })
        .collect()
}
